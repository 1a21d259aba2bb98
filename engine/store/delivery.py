"""Delivering outbox rows after commit: at least once, in order per item, with retries.

A worker claims due rows in a short transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
several worker processes share the work) and leases them by pushing `available_at` to the end
of the lease; that timestamp is the claim's token. It then calls the delivery hooks row by row
and marks each row delivered, pending again with exponential backoff, or dead after
`max_attempts`. The lease is renewed while the worker works, also while one row's delivery
runs long (`flowkernel.store.leases`, up to `HOLD_LEASES` leases), so no two workers send an
item's events at once. A
worker that dies leaves its rows leased; they come due when the lease ends and another worker
delivers them. A row is never claimed while an earlier row of its item is
pending elsewhere (leased, backing off or being claimed), which keeps each item's events in
order across workers; a dead row no longer holds its item back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pluggy
from sqlalchemy import Connection, Engine, exists, func, or_, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from flowkernel.actors import Actor
from flowkernel.errors import AccessDenied, DatabaseError, EventNotFound, InvalidArgument
from flowkernel.kinds import OutboxKind
from flowkernel.previews import preview
from flowkernel.snapshots import OutgoingEvent, WatcherNotification
from flowkernel.store.database import reader
from flowkernel.store.leases import KEEPER
from flowkernel.store.tables import outbox
from flowkernel.validation import MAX_ID, MIN_ID, check_int, check_text, storable

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
DEAD: Final = "dead"

HOLD_LEASES: Final = 10
"""How many leases one row's delivery may hold its rows for; past that, the worker is taken for
dead and another one may deliver them."""

log = logging.getLogger("flowkernel.store.delivery")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one or more delivery passes did.

    `deferred` counts claimed rows given back unsent: an earlier row of their item failed in
    the same pass, or their lease ran out before their turn.
    """

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0

    @property
    def claimed(self) -> int:
        """Rows the pass claimed."""
        return self.delivered + self.retried + self.dead + self.deferred

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.delivered + other.delivered,
            self.retried + other.retried,
            self.dead + other.dead,
            self.deferred + other.deferred,
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An outbox row that failed `max_attempts` times and is no longer retried."""

    id: int
    event_id: str
    kind: str
    event_name: str
    trigger: str
    pipeline_id: int
    item_id: int
    account_id: int | None
    recipient_user_id: int | None
    payload: Mapping[str, Any]
    attempts: int
    last_error: str | None
    created_at: datetime


@dataclass(slots=True)
class _Batch:
    """Rows one worker holds, and the lease they are held under."""

    rows: list[Any]
    token: datetime
    renew_at: float


def _seconds(name: str, value: timedelta | float, *, positive: bool) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, timedelta | int | float):
        raise InvalidArgument(
            f"{name} must be a timedelta or seconds, not {preview(value)}", **{name: value}
        )
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if delta < timedelta(0) or (positive and delta == timedelta(0)):
        bound = "> 0" if positive else ">= 0"
        raise InvalidArgument(f"{name} must be {bound}, not {preview(value)}", **{name: value})
    return delta


def _positive_int(name: str, value: object) -> int:
    return check_int(name, value, minimum=1, maximum=MAX_ID, error=InvalidArgument)


class Delivery:
    """Sends pending outbox rows through the plugin hooks.

    `max_attempts` failed attempts make a row dead; the n-th failure waits
    `backoff * 2 ** (n - 1)` (at most `max_backoff`) before the next attempt; a claim holds its
    rows for `lease`, renewed while the worker is busy with them.
    """

    def __init__(
        self,
        database: Engine,
        plugin_manager: pluggy.PluginManager,
        *,
        max_attempts: int = 8,
        backoff: timedelta | float = timedelta(seconds=2),
        max_backoff: timedelta | float = timedelta(hours=1),
        lease: timedelta | float = timedelta(seconds=60),
    ) -> None:
        self._db = database
        self._pm = plugin_manager
        self.max_attempts = _positive_int("max_attempts", max_attempts)
        self.backoff = _seconds("backoff", backoff, positive=False)
        self.max_backoff = _seconds("max_backoff", max_backoff, positive=False)
        self.lease = _seconds("lease", lease, positive=True)

    # --- delivering ----------------------------------------------------------------------

    def deliver(self, ids: Sequence[int] | None = None, *, limit: int = 500) -> DeliveryReport:
        """Claim up to `limit` due rows, oldest first, and deliver them.

        With `ids`, only the items of those rows are considered, up to the newest of them, so
        an item's earlier undelivered rows go first. Plugin errors are recorded on the row,
        never raised; database errors are raised.
        """
        _positive_int("limit", limit)
        batch = self._claim(ids, limit)
        if batch is None:
            return DeliveryReport()
        delivered = retried = dead = deferred = 0
        held_back: set[int] = set()  # items whose earlier row failed or slipped away
        for index, row in enumerate(batch.rows):
            if row.flow_item_id not in held_back and time.monotonic() >= batch.renew_at:
                held_back.update(self._renew(batch, batch.rows[index:]))
            if row.flow_item_id in held_back:
                # keep per-item order: later rows wait for the earlier one to go through
                self._finish(
                    row, batch.token, attempts=row.attempts - 1, available_at=datetime.now(UTC)
                )
                deferred += 1
                continue
            remaining = batch.rows[index:]

            def renew(remaining: Sequence[Any] = remaining, held: set[int] = held_back) -> None:
                held.update(self._renew(batch, remaining))

            try:
                # while a send runs long; one that hangs past HOLD_LEASES leases loses them
                until = time.monotonic() + HOLD_LEASES * self.lease.total_seconds()
                with KEEPER.keeping(lambda: batch.renew_at, renew, until=until):
                    self._send(row)
            except Exception as exc:
                held_back.add(row.flow_item_id)
                now = datetime.now(UTC)
                is_dead = row.attempts >= self.max_attempts
                self._finish(
                    row,
                    batch.token,
                    status=DEAD if is_dead else PENDING,
                    last_error=f"attempt {row.attempts}: {exc!r}"[:2000],
                    available_at=now + self._delay(row.attempts),
                )
                if is_dead:
                    log.error(
                        "event %s dead after %s attempts: %r", row.event_id, row.attempts, exc
                    )
                dead += is_dead
                retried += not is_dead
                continue
            self._finish(row, batch.token, status=DELIVERED, delivered_at=datetime.now(UTC))
            delivered += 1
        return DeliveryReport(delivered, retried, dead, deferred)

    def after_commit(self, ids: Sequence[int]) -> DeliveryReport:
        """Deliver the rows a change just committed; never raises (the change stands)."""
        try:
            return self.deliver(ids)
        except Exception:
            # the rows stay pending for the next pass; the caller's change is committed
            log.exception("delivering outbox rows %s after commit failed", list(ids))
            return DeliveryReport()

    def run_forever(
        self,
        every_seconds: float,
        stop: threading.Event | None = None,
        max_runs: int | None = None,
        *,
        limit: int = 500,
    ) -> DeliveryReport:
        """Deliver in passes until `stop` is set or `max_runs` passes ran; the totals.

        Sleeps `every_seconds` after a pass that claimed fewer than `limit` rows, and goes on
        at once after a full one. A lost database connection is logged and retried next pass.
        """
        if (
            isinstance(every_seconds, bool)
            or not isinstance(every_seconds, int | float)
            or not math.isfinite(every_seconds)
            or every_seconds < 0
        ):
            raise InvalidArgument(
                f"every_seconds must be a number >= 0, not {preview(every_seconds)}",
                every_seconds=every_seconds,
            )
        if max_runs is not None:
            _positive_int("max_runs", max_runs)
        _positive_int("limit", limit)
        total = DeliveryReport()
        runs = 0
        while stop is None or not stop.is_set():
            try:
                report = self.deliver(limit=limit)
            except (DatabaseError, OperationalError, InterfaceError):
                log.exception("delivery pass failed; retrying in %s s", every_seconds)
                report = DeliveryReport()
            total += report
            runs += 1
            if max_runs is not None and runs >= max_runs:
                break
            if report.claimed >= limit:
                continue
            if stop is not None:
                stop.wait(every_seconds)
            else:
                time.sleep(every_seconds)
        return total

    # --- dead letters --------------------------------------------------------------------

    def dead_letters(
        self,
        actor: Actor,
        *,
        item_id: int | None = None,
        event_name: str | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        """Dead rows the system `actor` reaches, oldest first, optionally of one item or name."""
        _require_system(actor)
        _positive_int("limit", limit)
        stmt = _dead_of(actor)
        if item_id is not None:
            stmt = stmt.where(outbox.c.flow_item_id == _positive_int("item_id", item_id))
        if event_name is not None:
            check_text("event_name", event_name, empty=True, error=InvalidArgument)
            stmt = stmt.where(outbox.c.event_name == event_name)
        with reader(self._db).connect() as conn:
            rows = conn.execute(stmt.order_by(outbox.c.id).limit(limit)).all()
        return [
            DeadLetter(
                r.id,
                r.event_id,
                r.kind,
                r.event_name,
                r.trigger,
                r.flow_pipeline_id,
                r.flow_item_id,
                r.iam_account_id,
                r.recipient_iam_user_id,
                dict(r.payload),
                r.attempts,
                r.last_error,
                r.created_at,
            )
            for r in rows
        ]

    def retry_dead(
        self,
        actor: Actor,
        event_ids: Sequence[str] | None = None,
        *,
        item_id: int | None = None,
    ) -> int:
        """Requeue dead rows (these `event_ids`, or all the system `actor` reaches) for delivery.

        They become pending with their attempt count reset and are due at once; `last_error`
        is kept until the next attempt. An id that is not a dead row the actor reaches is
        refused (`EventNotFound`) and nothing is requeued. Returns how many were requeued.
        """
        _require_system(actor)
        stmt = _dead_of(actor).with_only_columns(outbox.c.id, outbox.c.event_id)
        wanted: list[str] = []
        if event_ids is not None:
            if (
                isinstance(event_ids, str)
                or not isinstance(event_ids, Sequence)
                or not all(isinstance(e, str) and storable(e) for e in event_ids)
            ):
                raise InvalidArgument(
                    f"event_ids must be a list of event id strings, not {preview(event_ids)}",
                    event_ids=event_ids,
                )
            wanted = list(dict.fromkeys(event_ids))
            if not wanted:
                return 0
            stmt = stmt.where(outbox.c.event_id.in_(wanted))
        if item_id is not None:
            stmt = stmt.where(outbox.c.flow_item_id == _positive_int("item_id", item_id))
        with self._db.begin() as conn:
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            found = {r.event_id: r.id for r in conn.execute(stmt)}
            missing = [e for e in wanted if e not in found]
            if missing:
                raise EventNotFound(missing)
            if not found:
                return 0
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(found.values())), outbox.c.status == DEAD)
                .values(status=PENDING, attempts=0, available_at=datetime.now(UTC))
            )
        log.info("requeued %s dead events", len(found))
        return len(found)

    # --- internals -----------------------------------------------------------------------

    def _delay(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failure."""
        # in float seconds: a timedelta overflows long before a large exponent does
        factor = 2.0 ** min(max(attempts - 1, 0), 64)
        seconds = min(self.backoff.total_seconds() * factor, self.max_backoff.total_seconds())
        return timedelta(seconds=seconds)

    def _claim(self, ids: Sequence[int] | None, limit: int) -> _Batch | None:
        """Lease due rows to this worker, each only when no earlier row of its item is pending."""
        if ids is not None:
            if (
                isinstance(ids, str | bytes)
                or not isinstance(ids, Sequence)
                or not all(
                    isinstance(i, int) and not isinstance(i, bool) and MIN_ID <= i <= MAX_ID
                    for i in ids
                )
            ):
                raise InvalidArgument(f"ids must be outbox row ids, not {preview(ids)}", ids=ids)
            ids = list(ids)
            if not ids:
                return None
        now = datetime.now(UTC)
        token = now + self.lease
        earlier = outbox.alias("earlier")
        waiting = exists().where(
            earlier.c.flow_item_id == outbox.c.flow_item_id,
            earlier.c.id < outbox.c.id,
            earlier.c.status == PENDING,
            earlier.c.available_at > now,
        )
        due = (
            select(outbox.c.id, outbox.c.flow_item_id)
            .where(outbox.c.status == PENDING, outbox.c.available_at <= now, ~waiting)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        with self._db.begin() as conn:
            if ids is not None:
                item_ids = list(
                    conn.execute(
                        select(outbox.c.flow_item_id).where(outbox.c.id.in_(ids)).distinct()
                    ).scalars()
                )
                if not item_ids:
                    return None
                due = due.where(outbox.c.flow_item_id.in_(item_ids), outbox.c.id <= max(ids))
            if conn.dialect.name == "postgresql":
                # rows another worker is claiming are skipped, not waited for
                due = due.with_for_update(skip_locked=True, of=outbox)
            candidates = conn.execute(due).all()
            claimed = self._in_order(conn, candidates)
            if not claimed:
                return None
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(claimed))
                .values(attempts=outbox.c.attempts + 1, available_at=token)
            )
            rows = conn.execute(
                select(outbox).where(outbox.c.id.in_(claimed)).order_by(outbox.c.id)
            ).all()
        return _Batch(list(rows), token, time.monotonic() + self.lease.total_seconds() / 2)

    @staticmethod
    def _in_order(conn: Connection, candidates: Sequence[Any]) -> list[int]:
        """The candidates with no pending row of their item before them outside the claim.

        This read runs after the candidates are locked, so on PostgreSQL it also sees rows
        another worker locked and skipped in the meantime; such a row holds its item's later
        rows back until it is delivered.
        """
        if not candidates:
            return []
        mine = [c.id for c in candidates]
        first_other: dict[int, int] = {
            item: first
            for item, first in conn.execute(
                select(outbox.c.flow_item_id, func.min(outbox.c.id))
                .where(
                    outbox.c.flow_item_id.in_({c.flow_item_id for c in candidates}),
                    outbox.c.status == PENDING,
                    outbox.c.id.not_in(mine),
                )
                .group_by(outbox.c.flow_item_id)
            )
        }
        return [c.id for c in candidates if c.id < first_other.get(c.flow_item_id, c.id + 1)]

    def _renew(self, batch: _Batch, remaining: Sequence[Any]) -> set[int]:
        """Extend the lease of the rows still to send; the items of rows no longer held."""
        token = datetime.now(UTC) + self.lease
        ids = [r.id for r in remaining]
        with self._db.begin() as conn:
            conn.execute(
                update(outbox)
                .where(
                    outbox.c.id.in_(ids),
                    outbox.c.status == PENDING,
                    outbox.c.available_at == batch.token,
                )
                .values(available_at=token)
            )
            held = set(
                conn.execute(
                    select(outbox.c.id).where(outbox.c.id.in_(ids), outbox.c.available_at == token)
                ).scalars()
            )
        batch.token = token
        batch.renew_at = time.monotonic() + self.lease.total_seconds() / 2
        lost = [r for r in remaining if r.id not in held]
        if lost:
            log.warning(
                "lease ran out on outbox rows %s; another worker has them", [r.id for r in lost]
            )
        return {r.flow_item_id for r in lost}

    def _finish(self, row: Any, token: datetime, **values: Any) -> None:
        """Record the outcome, unless the lease ran out and another worker took the row."""
        with self._db.begin() as conn:
            done = conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == row.id,
                    outbox.c.status == PENDING,
                    outbox.c.available_at == token,
                )
                .values(**values)
            ).rowcount
        if not done:
            log.warning("outbox row %s was taken over after its lease ran out", row.id)

    def _send(self, r: Any) -> None:
        if r.kind == OutboxKind.AUTOMATION:
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


def _require_system(actor: Actor) -> None:
    if not isinstance(actor, Actor):
        raise InvalidArgument(f"actor must be an Actor, not {preview(actor)}", actor=actor)
    if not actor.is_system:
        raise AccessDenied(
            "only the system actor may inspect or requeue dead events", user_id=actor.user_id
        )


def _dead_of(actor: Actor) -> Any:
    stmt = select(outbox).where(outbox.c.status == DEAD)
    if actor.account_id is not None:
        # as `Actor.reaches`: rows of no account are everyone's
        stmt = stmt.where(
            or_(outbox.c.iam_account_id.is_(None), outbox.c.iam_account_id == actor.account_id)
        )
    return stmt


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
