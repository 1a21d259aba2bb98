"""Read-side queries: board, item history, pipelines of an object, funnel, time in stage."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from engine.runtime import Runtime


class Queries:
    """Read-side queries: board, item history, pipelines of an object, funnel, time in stage."""

    def __init__(self, sessions: sessionmaker[Session], runtime: Runtime) -> None:
        self._sessions = sessions
        self._runtime = runtime
