"""Delivering outbox rows after commit: at least once, in order per item, with retries.

Workers claim due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers share the
work), call the delivery hooks, and mark each row delivered, retried later with backoff, or
dead after `max_attempts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pluggy
from sqlalchemy import Engine, select, update

from engine.outbox import AUTOMATION
from engine.snapshots import OutgoingEvent, WatcherNotification
from engine.tables import outbox

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
DEAD: Final = "dead"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one delivery pass did."""

    delivered: int
    retried: int
    dead: int


class Delivery:
    """Sends pending outbox rows through the plugin hooks."""

    def __init__(
        self,
        database: Engine,
        plugin_manager: pluggy.PluginManager,
        *,
        max_attempts: int = 8,
        backoff: timedelta = timedelta(seconds=2),
        lease: timedelta = timedelta(seconds=60),
    ) -> None:
        self._db = database
        self._pm = plugin_manager
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.lease = lease

    def deliver(self, ids: Sequence[int] | None = None, *, limit: int = 500) -> DeliveryReport:
        """Deliver due rows (only `ids` when given), oldest first."""
        rows = self._claim(ids, limit)
        delivered = retried = dead = 0
        failed_items: set[int] = set()
        for row in rows:
            now = datetime.now(UTC)
            if row.flow_item_id in failed_items:
                # keep per-item order: later events wait until the failed one goes through
                self._finish(row.id, attempts=row.attempts - 1, available_at=now)
                continue
            try:
                self._send(row)
            except Exception as exc:
                failed_items.add(row.flow_item_id)
                is_dead = row.attempts >= self.max_attempts
                self._finish(
                    row.id,
                    status=DEAD if is_dead else PENDING,
                    last_error=repr(exc)[:2000],
                    available_at=now + self.backoff * (2 ** (row.attempts - 1)),
                )
                dead += is_dead
                retried += not is_dead
                continue
            self._finish(row.id, status=DELIVERED, delivered_at=now)
            delivered += 1
        return DeliveryReport(delivered, retried, dead)

    def _claim(self, ids: Sequence[int] | None, limit: int) -> list[Any]:
        """Lease due rows to this worker; a crashed worker's rows come due when the lease ends."""
        if ids is not None and not ids:
            return []
        now = datetime.now(UTC)
        earlier = outbox.alias("earlier")
        blocked = (
            select(earlier.c.id)
            .where(
                earlier.c.flow_item_id == outbox.c.flow_item_id,
                earlier.c.id < outbox.c.id,
                earlier.c.status == PENDING,
                earlier.c.available_at > now,
            )
            .exists()
        )
        due = (
            select(outbox.c.id)
            .where(outbox.c.status == PENDING, outbox.c.available_at <= now, ~blocked)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if ids is not None:
            due = due.where(outbox.c.id.in_(list(ids)))
        with self._db.begin() as conn:
            if conn.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            claimed = list(conn.execute(due).scalars())
            if not claimed:
                return []
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(claimed))
                .values(attempts=outbox.c.attempts + 1, available_at=now + self.lease)
            )
            rows = conn.execute(
                select(outbox).where(outbox.c.id.in_(claimed)).order_by(outbox.c.id)
            ).all()
        return list(rows)

    def _finish(self, row_id: int, **values: Any) -> None:
        with self._db.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))

    def _send(self, r: Any) -> None:
        if r.kind == AUTOMATION:
            self._pm.hook.flowkernel_deliver_event(
                event=OutgoingEvent(
                    event_id=r.event_id,
                    event_name=r.event_name,
                    trigger=r.trigger,
                    pipeline_id=r.flow_pipeline_id,
                    item_id=r.flow_item_id,
                    account_id=r.iam_account_id,
                    automation_id=r.flow_automation_id,
                    payload=r.payload,
                    attempt=r.attempts,
                )
            )
        else:
            payload = r.payload
            self._pm.hook.flowkernel_notify_watcher(
                notification=WatcherNotification(
                    event_id=r.event_id,
                    user_id=r.recipient_iam_user_id,
                    account_id=r.iam_account_id,
                    item_id=r.flow_item_id,
                    pipeline_id=r.flow_pipeline_id,
                    trigger=r.trigger,
                    message=_message(r.trigger, payload),
                    payload=payload,
                )
            )


def _message(trigger: str, payload: dict[str, object]) -> str:
    if trigger == "sla_breached":
        return (
            f"{payload.get('object_type')} {payload.get('object_id')} is past its SLA in "
            f"{payload.get('to_stage_name')}"
        )
    return (
        f"{payload.get('object_type')} {payload.get('object_id')} moved from "
        f"{payload.get('from_stage_name')} to {payload.get('to_stage_name')}"
    )
