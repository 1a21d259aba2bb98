"""Pipeline administration: pipelines, stages, columns, requirements, checklists, automations, movement rules, templates."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from engine.runtime import Runtime


class PipelineAdmin:
    """Pipeline administration: pipelines, stages, columns, requirements, checklists, automations, movement rules, templates."""

    def __init__(self, sessions: sessionmaker[Session], runtime: Runtime) -> None:
        self._sessions = sessions
        self._runtime = runtime
