"""Item operations of pipelines: custom values, checklists, assignment, ordering, watchers."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from engine.runtime import Runtime


class ItemOps:
    """Item operations of pipelines: custom values, checklists, assignment, ordering, watchers."""

    def __init__(self, sessions: sessionmaker[Session], runtime: Runtime) -> None:
        self._sessions = sessions
        self._runtime = runtime
