"""SLA detection: find items past their stage's due time and fire sla_breach once per stage entry.

The database keeps each item's due time (`flow_items.sla_due_at`, set by trigger from
`last_stage_changed_at` and the stage's `sla_days`, NULL in won and lost stages) and, by
trigger too, a queue of the breaches still to fire (`flow_sla_due`: live items with a due time
whose breach has not fired since they entered their stage). A scan walks the queue in due order,
`batch_size` items per transaction (1,000 by default): it claims them by deleting their queue
rows and recording their breaches (`flow_sla_breaches`), runs their hidden `sla_breach` methods
as the system actor through the executor (which writes the `sla_breached` automation events and
watcher notifications), commits, delivers. The claim is what makes a breach fire once per stage
entry however often and however many scanners run; on PostgreSQL due rows and items are taken
with `SKIP LOCKED`, so parallel scanners share the work, and an item a mover holds is left due
for the next scan (its queue row untouched, for the mover's trigger to rewrite).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from flowkernel.actors import SYSTEM
from flowkernel.errors import InvalidArgument, ItemNotFound, MethodNotAvailable
from flowkernel.kinds import SLA_BREACH
from flowkernel.moments import utc_moment
from flowkernel.previews import preview
from flowkernel.runtime.batch import MAX_BATCH
from flowkernel.runtime.decision import WRONG_STATE
from flowkernel.runtime.executor import Executor, Refusal, Request
from flowkernel.settings import SLA_BATCH_SIZE
from flowkernel.snapshots import ExecutionResult
from flowkernel.store.prepared import Db
from flowkernel.store.writer import Due, Lock
from flowkernel.validation import MAX_ID, check_int, check_optional_id

DEFAULT_BATCH = SLA_BATCH_SIZE
"""Due items claimed and fired per transaction."""

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

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def scan(
        self,
        *,
        pipeline_id: int | None = None,
        now: datetime | None = None,
        limit: int = 1000,
        batch_size: int = DEFAULT_BATCH,
    ) -> SlaReport:
        """Claim and fire up to `limit` items due at `now` (default: the current time).

        Items are handled in due order, `batch_size` per transaction. An item whose execution
        is refused (a handler raised, its stage left the class) is reported in `failures`, left
        due and not retried within this scan.
        """
        moment = utc_moment(now)
        check_optional_id("pipeline_id", pipeline_id)
        check_int("limit", limit, minimum=1, maximum=MAX_ID, error=InvalidArgument)
        check_int("batch_size", batch_size, minimum=1, maximum=MAX_BATCH, error=InvalidArgument)
        breaches: list[SlaBreach] = []
        failures: list[SlaFailure] = []
        excluded: list[int] = []  # refused, or held by a mover: not tried again in this scan
        while len(breaches) + len(failures) < limit:
            take = min(batch_size, limit - len(breaches) - len(failures))
            found = self._executor.transact(
                partial(
                    self._claim_and_fire,
                    moment=moment,
                    pipeline_id=pipeline_id,
                    excluded=excluded,
                    take=take,
                )
            )
            if found is None:
                break
            done, refused, held, outbox_ids, results = found
            breaches.extend(done)
            failures.extend(refused)
            excluded.extend(f.item_id for f in refused)
            excluded.extend(held)
            self._executor.after_commit(outbox_ids, results)
        return SlaReport(
            now=moment,
            breaches=tuple(breaches),
            failures=tuple(failures),
            limit_reached=len(breaches) + len(failures) >= limit,
        )

    def _claim_and_fire(
        self,
        db: Db,
        moment: datetime,
        pipeline_id: int | None,
        excluded: list[int],
        take: int,
    ) -> (
        tuple[list[SlaBreach], list[SlaFailure], list[int], tuple[int, ...], list[ExecutionResult]]
        | None
    ):
        """One transaction: the due items taken, fired and claimed; None when none is due."""
        writer = self._executor.writer
        due = writer.due(db, moment, pipeline_id, excluded, take)
        if not due:
            return None
        params = {d.item_id: {"due_at": d.due_at.isoformat()} for d in due}
        requests = [
            Request(d.item_id, SLA_BREACH, by_action=True, params=params[d.item_id]) for d in due
        ]
        executed = self._executor.run(db, requests, SYSTEM, skip=True, lock=Lock.SKIP)
        done: list[SlaBreach] = []
        refused: list[SlaFailure] = []
        held: list[int] = []
        for entry, outcome in zip(due, executed.outcomes, strict=True):
            if isinstance(outcome, ExecutionResult):
                written = executed.outbox_of.get(entry.item_id, ())
                done.append(_breach(entry, True, written))
            elif isinstance(outcome.error, ItemNotFound):
                held.append(entry.item_id)  # a mover holds it (or it just left): still due
            elif _without_method(outcome):
                done.append(_breach(entry, False, ()))
            else:
                refused.append(SlaFailure(entry.item_id, outcome.error.code, outcome.error.message))
        writer.claim_due(db, [b.item_id for b in done], moment)
        return done, refused, held, executed.outbox_ids, executed.results

    def plan(self, *, pipeline_id: int | None = None, now: datetime | None = None) -> str:
        """The database's plan for the scan's candidate query (EXPLAIN), for operators."""
        check_optional_id("pipeline_id", pipeline_id)
        moment = utc_moment(now)
        writer = self._executor.writer
        lines = self._executor.transact(lambda db: writer.due_plan(db, moment, pipeline_id))
        return "\n".join(lines)

    def run_forever(
        self,
        every_seconds: float,
        *,
        stop: Stop | None = None,
        pipeline_id: int | None = None,
        limit: int = 1000,
        batch_size: int = DEFAULT_BATCH,
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
                f"every_seconds must be a positive number, not {preview(every_seconds)}",
                every_seconds=every_seconds,
            )
        if max_runs is not None and (
            isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1
        ):
            raise InvalidArgument(
                f"max_runs must be an integer >= 1, not {preview(max_runs)}", max_runs=max_runs
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


def _breach(entry: Due, fired: bool, outbox_ids: tuple[int, ...]) -> SlaBreach:
    return SlaBreach(
        entry.item_id, entry.pipeline_id, entry.stage_id, entry.due_at, fired, outbox_ids
    )


def _without_method(refusal: Refusal) -> bool:
    """Whether the item's state has no `sla_breach` method: the breach is claimed, not fired."""
    return refusal.reason == WRONG_STATE and type(refusal.error) is MethodNotAvailable


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
