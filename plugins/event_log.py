"""The built-in event log: logs every delivered automation event and keeps it queryable."""

from __future__ import annotations

import logging

from sqlalchemy import Engine, insert, select

from flowkernel.hookspecs import hookimpl
from flowkernel.snapshots import LoggedEvent, OutgoingEvent
from flowkernel.store.database import reader
from flowkernel.store.tables import event_log as table

log = logging.getLogger("flowkernel.events")


class EventLogPlugin:
    """Writes each delivered event once (by its id) to `fk_event_log` and to the log."""

    def __init__(self, database: Engine) -> None:
        self._db = database

    @hookimpl
    def flowkernel_deliver_event(self, event: OutgoingEvent) -> None:
        log.info("event %s %s item=%s", event.event_name, event.trigger, event.item_id)
        with self._db.begin() as conn:
            seen = conn.execute(
                select(table.c.id).where(table.c.event_id == event.event_id)
            ).first()
            if seen is None:
                conn.execute(
                    insert(table).values(
                        event_id=event.event_id,
                        event_name=event.event_name,
                        trigger=event.trigger,
                        flow_pipeline_id=event.pipeline_id,
                        flow_item_id=event.item_id,
                        iam_account_id=event.account_id,
                        payload=dict(event.payload),
                    )
                )

    def events(
        self,
        account_id: int | None,
        *,
        event_name: str | None = None,
        item_id: int | None = None,
        limit: int = 100,
    ) -> list[LoggedEvent]:
        """Logged events of an account, oldest first, optionally by name or item."""
        stmt = select(table).where(
            table.c.iam_account_id.is_(None)
            if account_id is None
            else table.c.iam_account_id == account_id
        )
        if event_name is not None:
            stmt = stmt.where(table.c.event_name == event_name)
        if item_id is not None:
            stmt = stmt.where(table.c.flow_item_id == item_id)
        with reader(self._db).connect() as conn:
            rows = conn.execute(stmt.order_by(table.c.id).limit(limit)).all()
        return [
            LoggedEvent(
                r.event_id,
                r.event_name,
                r.trigger,
                r.flow_pipeline_id,
                r.flow_item_id,
                r.iam_account_id,
                dict(r.payload),
                r.logged_at,
            )
            for r in rows
        ]
