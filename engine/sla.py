"""SLA detection: find items past their stage's due time and fire sla_breach once per stage entry."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from engine.runtime import Runtime


class SlaScanner:
    """SLA detection: find items past their stage's due time and fire sla_breach once per stage entry."""

    def __init__(self, sessions: sessionmaker[Session], runtime: Runtime) -> None:
        self._sessions = sessions
        self._runtime = runtime
