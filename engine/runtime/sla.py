"""SLA detection: find items past their stage's due time and fire sla_breach once per stage entry.

The database keeps each item's due time (`flow_items.sla_due_at`, set by trigger from
`last_stage_changed_at` and the stage's `sla_days`, NULL in won and lost stages) and, by
trigger too, a queue of the breaches still to fire (`flow_sla_due`: live items with a due time
whose breach has not fired since they entered their stage). A scan walks the queue in due order
and handles one item per transaction: claim it by deleting its queue row and recording the
breach (`flow_sla_breaches`), run its hidden `sla_breach` method as the system actor (which
writes the `sla_breached` automation events and watcher notifications), commit, deliver. The
claim is what makes a breach fire once per stage entry however often and however many scanners
run; on PostgreSQL the candidate is taken with `FOR UPDATE SKIP LOCKED`, so parallel scanners
share the due items instead of queueing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ClauseElement, Select, delete, insert, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler

from flowkernel.actors import SYSTEM
from flowkernel.errors import FlowkernelError, InvalidArgument
from flowkernel.kinds import SLA_BREACH
from flowkernel.moments import utc_moment
from flowkernel.runtime.batch import MAX_BATCH
from flowkernel.runtime.runtime import Runtime
from flowkernel.snapshots import ExecutionResult
from flowkernel.store.tables import items, sla_breaches, sla_due
from flowkernel.validation import MAX_ID, check_int, check_optional_id

Stop = threading.Event | Callable[[], bool]
"""What ends `run_forever`: an event that gets set, or a callable that returns True."""


@dataclass(frozen=True, slots=True)
class SlaBreach:
    """One item found past its due time and claimed by this scan.

    `fired` is False when the item's class has no `sla_breach` method in the item's state
    (a kernel class without one): the breach is recorded, nothing is executed.
    """

    item_id: int
    pipeline_id: int
    stage_id: int
    due_at: datetime
    fired: bool
    outbox_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SlaFailure:
    """An item whose `sla_breach` execution was refused; it stays due and the next scan retries."""

    item_id: int
    error: str
    message: str


@dataclass(frozen=True, slots=True)
class SlaReport:
    """What one scan did. `limit_reached` means more items may be due: scan again."""

    now: datetime
    breaches: tuple[SlaBreach, ...]
    failures: tuple[SlaFailure, ...]
    limit_reached: bool

    @property
    def fired(self) -> tuple[int, ...]:
        """Items whose `sla_breach` method ran."""
        return tuple(b.item_id for b in self.breaches if b.fired)

    @property
    def skipped(self) -> tuple[int, ...]:
        """Items marked breached without an execution (no `sla_breach` method)."""
        return tuple(b.item_id for b in self.breaches if not b.fired)

    @property
    def events(self) -> int:
        """Outbox rows (automation events and watcher notifications) the scan wrote."""
        return sum(len(b.outbox_ids) for b in self.breaches)


class SlaScanner:
    """SLA detection: find items past their stage's due time and fire sla_breach once per entry.

    Items of classes without an `sla_breach` method in their current state (kernel classes
    that define none) are marked breached without an execution, so they are not looked at
    again until they change state; the report lists them as skipped. A kernel class may bind
    any method code to the `sla_breach` action; the first one by sequence runs.
    """

    def __init__(self, sessions: sessionmaker[Session], runtime: Runtime) -> None:
        self._sessions = sessions
        self._runtime = runtime

    def scan(
        self,
        *,
        pipeline_id: int | None = None,
        now: datetime | None = None,
        limit: int = 1000,
        batch_size: int = 1,
    ) -> SlaReport:
        """Claim and fire up to `limit` items due at `now` (default: the current time).

        Items are handled in due order, one transaction each, or `batch_size` per transaction
        through batch execution (`flowkernel.runtime.sla_batch`). An item whose execution is refused
        (a handler raised, its stage left the class) is reported in `failures`, left due and
        not retried within this scan.
        """
        moment = utc_moment(now)
        check_optional_id("pipeline_id", pipeline_id)
        check_int("limit", limit, minimum=1, maximum=MAX_ID, error=InvalidArgument)
        check_int("batch_size", batch_size, minimum=1, maximum=MAX_BATCH, error=InvalidArgument)
        if batch_size > 1:
            from flowkernel.runtime.sla_batch import scan_in_batches

            return scan_in_batches(
                self._runtime, moment, pipeline_id=pipeline_id, limit=limit, batch_size=batch_size
            )
        breaches: list[SlaBreach] = []
        failures: list[SlaFailure] = []
        failed: list[int] = []
        while len(breaches) + len(failures) < limit:
            item_id: int | None = None
            try:
                with self._sessions.begin() as session:
                    row = self._claim(session, moment, pipeline_id, failed)
                    if row is None:
                        break
                    item_id = row.id
                    breach, result = self._fire(session, row)
            except FlowkernelError as exc:
                if item_id is None:
                    raise
                failed.append(item_id)
                failures.append(SlaFailure(item_id, exc.code, exc.message))
                continue
            breaches.append(breach)
            if result is not None:
                self._runtime.after_commit(breach.outbox_ids, (result,))
        return SlaReport(
            now=moment,
            breaches=tuple(breaches),
            failures=tuple(failures),
            limit_reached=len(breaches) + len(failures) >= limit,
        )

    @staticmethod
    def _claim(
        session: Session, now: datetime, pipeline_id: int | None, failed: list[int]
    ) -> Any | None:
        """Lock and claim the next due item; None when no unlocked item is due."""
        conn = session.connection()
        row = conn.execute(_next_due(conn.dialect.name, now, pipeline_id, failed)).first()
        if row is None:
            return None
        conn.execute(delete(sla_due).where(sla_due.c.flow_item_id == row.id))
        conn.execute(insert(sla_breaches).values(flow_item_id=row.id, breached_at=now))
        return row

    def _fire(self, session: Session, row: Any) -> tuple[SlaBreach, ExecutionResult | None]:
        """Run the claimed item's sla_breach method in the caller's transaction."""
        compiled = self._runtime.compiled(session, row.flow_pipeline_id)
        state = compiled.states_by_id.get(row.flow_stage_id)
        method = compiled.method_for_action(state.code, SLA_BREACH) if state else None
        if state is not None and method is None:
            skipped = SlaBreach(
                row.id, row.flow_pipeline_id, row.flow_stage_id, row.sla_due_at, False, ()
            )
            return skipped, None
        # A state the class no longer has falls through: execute_in refuses it (a failure).
        result, outbox_ids = self._runtime.execute_in(
            session,
            row.id,
            method.code if method is not None else SLA_BREACH,
            SYSTEM,
            {"due_at": row.sla_due_at.isoformat()},
            False,
        )
        fired = SlaBreach(
            row.id, row.flow_pipeline_id, row.flow_stage_id, row.sla_due_at, True, tuple(outbox_ids)
        )
        return fired, result

    def plan(self, *, pipeline_id: int | None = None, now: datetime | None = None) -> str:
        """The database's plan for the scan's candidate query (EXPLAIN), for operators."""
        check_optional_id("pipeline_id", pipeline_id)
        with self._sessions.begin() as session:
            conn = session.connection()
            stmt = _next_due(conn.dialect.name, utc_moment(now), pipeline_id, ())
            result = conn.execute(_Explain(stmt))
            try:  # raw rows: the select's column types do not apply to plan text
                rows = result.cursor.fetchall()
            finally:
                result.close()
        return "\n".join(str(r[-1]) for r in rows)

    def run_forever(
        self,
        every_seconds: float,
        *,
        stop: Stop | None = None,
        pipeline_id: int | None = None,
        limit: int = 1000,
        batch_size: int = 1,
        max_runs: int | None = None,
        on_report: Callable[[SlaReport], None] | None = None,
    ) -> int:
        """Scan every `every_seconds` until `stop` is set (or returns True) or `max_runs` ran.

        A scan that hit `limit` with progress is followed at once by the next (a backlog).
        `batch_size` is passed to `scan`. Returns the number of scans; each report goes to
        `on_report`.
        """
        if (
            isinstance(every_seconds, bool)
            or not isinstance(every_seconds, int | float)
            or not every_seconds > 0
        ):
            raise InvalidArgument(
                f"every_seconds must be a positive number, not {every_seconds!r}",
                every_seconds=every_seconds,
            )
        if max_runs is not None and (
            isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1
        ):
            raise InvalidArgument(
                f"max_runs must be an integer >= 1, not {max_runs!r}", max_runs=max_runs
            )
        runs = 0
        while not _stopped(stop):
            report = self.scan(pipeline_id=pipeline_id, limit=limit, batch_size=batch_size)
            runs += 1
            if on_report is not None:
                on_report(report)
            if max_runs is not None and runs >= max_runs:
                break
            if report.limit_reached and report.breaches:
                continue
            _wait(stop, float(every_seconds))
        return runs


def candidates(
    now: datetime, *, pipeline_id: int | None = None, exclude: list[int] | tuple[int, ...] = ()
) -> Select[Any]:
    """The scan's candidate query: the next item of the due queue, in due order."""
    stmt = (
        select(
            sla_due.c.flow_item_id.label("id"),
            sla_due.c.flow_pipeline_id,
            sla_due.c.flow_stage_id,
            sla_due.c.due_at.label("sla_due_at"),
        )
        .where(sla_due.c.due_at <= now)
        .order_by(sla_due.c.due_at, sla_due.c.flow_item_id)
        .limit(1)
    )
    if pipeline_id is not None:
        stmt = stmt.where(sla_due.c.flow_pipeline_id == pipeline_id)
    if exclude:
        stmt = stmt.where(sla_due.c.flow_item_id.not_in(list(exclude)))
    return stmt


def _next_due(
    dialect: str, now: datetime, pipeline_id: int | None, exclude: list[int] | tuple[int, ...]
) -> Select[Any]:
    """The next due item, locked on PostgreSQL with its queue row, skipping both when another
    transaction holds either: a scanner's claim or a mover. (When the item is the one held,
    the queue row stays locked until the scan's transaction ends, so that mover waits for it.)"""
    stmt = candidates(now, pipeline_id=pipeline_id, exclude=exclude)
    if dialect == "postgresql":
        stmt = stmt.join(items, items.c.id == sla_due.c.flow_item_id).with_for_update(
            of=(sla_due, items), skip_locked=True
        )
    return stmt


def _stopped(stop: Stop | None) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


def _wait(stop: Stop | None, seconds: float) -> None:
    """Sleep `seconds`, waking as soon as `stop` says so."""
    if isinstance(stop, threading.Event):
        stop.wait(seconds)
        return
    deadline = time.monotonic() + seconds
    while not _stopped(stop):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))


class _Explain(Executable, ClauseElement):
    """`EXPLAIN <select>` (`EXPLAIN QUERY PLAN` on SQLite) with the select's typed parameters."""

    inherit_cache = False

    def __init__(self, stmt: Select[Any]) -> None:
        self.stmt = stmt


@compiles(_Explain)
def _compile_explain(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if compiler.dialect.name == "sqlite" else "EXPLAIN "
    return prefix + compiler.process(element.stmt, **kw)
