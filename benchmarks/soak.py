"""A bounded soak run: a mixed workload in several processes, then the invariants checked.

    python -m flowkernel.benchmarks.soak --database-url URL --minutes N --workers W

The run works in a scratch area beside the given database (a schema on PostgreSQL, a file on
SQLite), removed afterwards. It builds a pipeline (four stages, the last with an SLA, an
automation on every stage entry and on SLA breaches, a watcher on some items) and a kernel
class, places items, then starts W worker processes that for the given time, on the same
small set of items: move items (by stage code or id, with and without idempotency keys, in
batches of several items, and replay earlier keys), execute the kernel class's methods, write
custom values, assign and reorder items, scan for SLA breaches and deliver events. Each worker
journals every operation that succeeded (one JSON line each). After a final delivery drain the
run checks:

- per item, history rows = successful state changes + the placement; each row's from-stage
  is the previous row's to-stage and it is dated no earlier (validity periods never
  overlap); the item's stage is its last row's to-stage; the history's transitions are the
  ones the workers were told happened; executions add up (a state change is a history row, a
  call that changed none a method-call row);
- each value is the last successful write of its writer; an assignee is one of the last;
- each idempotency key executed once and every replay returned the first result;
- no event was delivered twice (by any worker) or logged twice, none is pending or dead;
- at most one SLA breach per stage entry, and as many as the scans reported;
- no worker met an error other than the expected refusals and conflicts.

It prints a summary and exits with status 1 when an invariant is violated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select

from flowkernel import (
    SYSTEM,
    Actor,
    ConcurrentUpdate,
    ExecutionResult,
    Flowkernel,
    FlowkernelError,
    InvalidArgument,
    MethodNotAvailable,
    hookimpl,
)
from flowkernel.kinds import MOVE_PREFIX
from flowkernel.snapshots import OutgoingEvent, WatcherNotification
from flowkernel.store.tables import (
    outbox,
)

from .scratch import scratch
from .soak_check import Findings, check, read_journals
from .soak_plan import (
    ACCOUNT,
    OPERATIONS,
    SHARED,
    STAGES,
    Plan,
    prepare,
    writer_column,
)

__all__ = [
    "ACCOUNT",
    "SHARED",
    "check",
    "drain",
    "main",
    "prepare",
    "read_journals",
    "run_workers",
    "soak",
    "writer_column",
]


# --- a worker ----------------------------------------------------------------------------------


class Journal:
    """One JSON line per entry, appended to a file of this process's own."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def write(self, **entry: Any) -> None:
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()


class DeliveryJournal:
    """A delivery plugin that journals the id of every event and notification it is handed,
    after the other plugins took it (a failure there means a retry, not a delivery)."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    @hookimpl(trylast=True)
    def flowkernel_deliver_event(self, event: OutgoingEvent) -> None:
        self._journal.write(op="delivered", event=event.event_id)

    @hookimpl(trylast=True)
    def flowkernel_notify_watcher(self, notification: WatcherNotification) -> None:
        self._journal.write(op="delivered", event=notification.event_id)


def _result(result: ExecutionResult) -> dict[str, Any]:
    return {
        "item": result.item_id,
        "method": result.method,
        "from": result.from_state,
        "to": result.to_state,
        "changed": result.changed,
    }


class Worker:
    """One process's share of the workload."""

    def __init__(self, plan: Plan, index: int, fk: Flowkernel, journal: Journal) -> None:
        self.plan = plan
        self.index = index
        self.fk = fk
        self.journal = journal
        self.actor = Actor.user(index + 1, ACCOUNT)
        self.rng = random.Random(plan.seed * 1000 + index)
        self.sequence = 0
        self.keyed: list[tuple[Callable[[], ExecutionResult], ExecutionResult, str]] = []
        self.counts: Counter[str] = Counter()

    def run(self, until: float) -> None:
        names = [name for name, _ in OPERATIONS]
        weights = [weight for _, weight in OPERATIONS]
        while time.monotonic() < until:
            name = self.rng.choices(names, weights)[0]
            self.sequence += 1
            try:
                getattr(self, name)()
            except (MethodNotAvailable, InvalidArgument) as exc:
                self.counts[f"refused:{exc.code}"] += 1
            except Exception as exc:  # journaled: the check reports it as a violation
                self.journal.write(op="error", what=name, error=repr(exc))
            else:
                self.counts[name] += 1

    def _key(self) -> str | None:
        return f"w{self.index}-{self.sequence}" if self.rng.random() < 0.3 else None

    def move(self) -> None:
        item = self.rng.choice(self.plan.items)
        code = self.rng.choice(STAGES)
        stage: str | int = self.plan.stage_ids[code] if self.rng.random() < 0.25 else code
        key = self._key()

        def call() -> ExecutionResult:
            return self.fk.move(item, stage, self.actor, idempotency_key=key)

        result = call()
        self.journal.write(op="move", key=key, **_result(result))
        if key is not None:
            self.keyed.append((call, result, key))

    def batch(self) -> None:
        chosen = self.rng.sample(self.plan.items, min(3, len(self.plan.items)))
        methods = [MOVE_PREFIX + self.rng.choice(STAGES) for _ in chosen]
        done = self.fk.execute_batch(chosen, methods, self.actor, on_error="skip")
        for result in done.results:
            self.journal.write(op="move", key=None, **_result(result))
        for failure in done.failures:
            self.counts[f"refused:{failure.code}"] += 1

    def replay(self) -> None:
        if not self.keyed:
            return
        call, first, key = self.rng.choice(self.keyed)
        again = call()
        self.journal.write(op="replay", key=key, item=first.item_id, same=again == first)

    def execute(self) -> None:
        item = self.rng.choice(self.plan.lamps)
        key = self._key()
        choice = self.rng.random()
        call: Callable[[], ExecutionResult]
        if choice < 0.7:
            action = "enable" if choice < 0.35 else "disable"

            def call() -> ExecutionResult:
                return self.fk.execute_action(item, action, self.actor, idempotency_key=key)

        else:
            params = {"n": self.sequence}

            def call() -> ExecutionResult:
                return self.fk.execute(item, "edit", self.actor, params=params, idempotency_key=key)

        result = call()
        self.journal.write(op="execute", key=key, **_result(result))
        if key is not None:
            self.keyed.append((call, result, key))

    def value(self) -> None:
        item = self.rng.choice(self.plan.items)
        text = f"{self.index}-{self.sequence}"
        self.fk.items.set_values(item, {writer_column(self.index): text, SHARED: text}, self.actor)
        self.journal.write(op="value", item=item, value=text)

    def assign(self) -> None:
        item = self.rng.choice(self.plan.items)
        user = self.rng.randint(1, 5)
        self.fk.items.assign(item, user, self.actor)
        self.journal.write(op="assign", item=item, user=user)

    def reorder(self) -> None:
        item = self.rng.choice(self.plan.items)
        position = self.rng.randint(0, 2)
        for _attempt in range(5):
            try:
                self.fk.items.reorder(item, position, self.actor)
            except ConcurrentUpdate:  # the item left its stage meanwhile: retry
                self.journal.write(op="conflict", what="reorder", item=item)
                continue
            self.journal.write(op="reorder", item=item, position=position)
            return

    def sla(self) -> None:
        later = datetime.now(UTC) + timedelta(days=2)  # every item in the SLA stage is due
        report = self.fk.sla.scan(pipeline_id=self.plan.pipeline_id, now=later, limit=20)
        fired = [b.item_id for b in report.breaches if b.fired]
        failed = [f.item_id for f in report.failures]
        self.journal.write(op="sla", items=fired, failed=failed)

    def deliver(self) -> None:
        report = self.fk.deliver_events(limit=50)
        self.journal.write(op="deliver", delivered=report.delivered, retried=report.retried)


def work(plan: Plan, index: int) -> int:
    """A worker process: wait for the start signal, run the workload for the plan's time."""
    journal = Journal(plan.journal(f"worker-{index}"))
    fk = Flowkernel(
        plan.url,
        plugins=[DeliveryJournal(journal)],
        entry_points=False,
        deliver_events=index % 2 == 0,  # half deliver after each commit, half leave it
    )
    try:
        fk.item(plan.items[0], SYSTEM)  # connected and compiled before the start
        Path(plan.folder, f"ready-{index}").touch()
        go = Path(plan.folder, "go")
        deadline = time.monotonic() + 120
        while not go.exists():
            if time.monotonic() > deadline:
                return 3
            time.sleep(0.01)
        worker = Worker(plan, index, fk, journal)
        worker.run(time.monotonic() + plan.seconds)
        journal.write(op="counts", counts=dict(worker.counts))
    finally:
        fk.close()
        journal.close()
    return 0


def run_workers(plan: Plan, *, timeout: float | None = None) -> list[int]:
    """Start the plan's worker processes together and wait for them; their exit codes."""
    folder = Path(plan.folder)
    plan_file = folder / "plan.json"
    plan.save(plan_file)
    command = [sys.executable, "-m", "flowkernel.benchmarks.soak", "--worker", str(plan_file)]
    procs = [subprocess.Popen([*command, "--index", str(index)]) for index in range(plan.workers)]
    limit = timeout if timeout is not None else plan.seconds + 120
    try:
        deadline = time.monotonic() + 120
        ready = [folder / f"ready-{index}" for index in range(plan.workers)]
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.02)
        (folder / "go").touch()
        return [p.wait(limit) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def drain(plan: Plan, *, deadline: float = 60.0) -> int:
    """Deliver every event left pending (the final drain); the number delivered."""
    journal = Journal(plan.journal("drain"))
    fk = Flowkernel(
        plan.url,
        plugins=[DeliveryJournal(journal)],
        entry_points=False,
        deliver_events=False,
        delivery_backoff=0.05,
    )
    delivered = 0
    ends = time.monotonic() + deadline
    try:
        while time.monotonic() < ends:
            report = fk.deliver_events(limit=500)
            delivered += report.delivered
            if report.claimed == 0:
                with fk.engine.connect() as conn:
                    left = conn.execute(
                        select(func.count()).select_from(outbox).where(outbox.c.status == "pending")
                    ).scalar_one()
                if left == 0:
                    break
                time.sleep(0.1)  # a backoff or a lease still runs
    finally:
        fk.close()
        journal.close()
    return delivered


# --- the command -------------------------------------------------------------------------------


def soak(
    database_url: str | None,
    *,
    seconds: float,
    workers: int,
    items: int = 12,
    lamps: int = 4,
    seed: int = 0,
    out: Callable[[str], None] = print,
) -> Findings:
    """Run the soak in a scratch area beside `database_url`; the findings."""
    with scratch(database_url) as area, tempfile.TemporaryDirectory() as folder:
        setup = Flowkernel(area.url, entry_points=False, deliver_events=False)
        try:
            plan = prepare(
                setup,
                url=area.url,
                folder=folder,
                workers=workers,
                seconds=seconds,
                items=items,
                lamps=lamps,
                seed=seed,
            )
            out(
                f"soak: {workers} workers for {seconds:g} s on {area.kind}, "
                f"{items} pipeline items and {lamps} kernel items"
            )
            started = time.monotonic()
            codes = run_workers(plan)
            elapsed = time.monotonic() - started
            drained = drain(plan)
            found = check(setup.engine, plan, read_journals(folder))
        finally:
            setup.close()
    if any(code != 0 for code in codes):
        found.violation(f"worker exit codes {codes}")
    found.figures.update(
        database=area.kind,
        workers=workers,
        seconds=seconds,
        operations_per_s=round(found.figures["operations"] / seconds, 1),
        wall_seconds=round(elapsed, 1),
        drained=drained,
    )
    return found


def _summary(found: Findings) -> Iterator[str]:
    figures = dict(found.figures)
    by_operation = figures.pop("by_operation", {})
    refused = figures.pop("refused", {})
    yield "figures: " + ", ".join(f"{k}={v}" for k, v in figures.items())
    yield "operations: " + ", ".join(f"{k}={v}" for k, v in by_operation.items())
    yield "refused (expected): " + (", ".join(f"{k}={v}" for k, v in refused.items()) or "none")
    if found.violations:
        yield f"VIOLATIONS ({len(found.violations)}):"
        yield from (f"  {v}" for v in found.violations)
    else:
        yield "invariants: all hold"


def main(argv: Sequence[str] | None = None) -> int:
    """The soak command; 0 when every invariant held, 1 on a violation."""
    parser = argparse.ArgumentParser(
        prog="python -m flowkernel.benchmarks.soak",
        description="Run a mixed workload in several processes, then check the invariants.",
    )
    parser.add_argument("--database-url", help="default: FLOWKERNEL_DATABASE_URL")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="how long the workers run (default 1)")
    length.add_argument("--seconds", type=float, help="the same in seconds")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--items", type=int, default=12, help="pipeline items they share")
    parser.add_argument("--lamps", type=int, default=4, help="kernel-class items they share")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a worker process: its plan file
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return work(Plan.load(Path(args.worker)), args.index)
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes or 1.0)
    if not seconds > 0 or args.workers < 1 or args.items < 3 or args.lamps < 1:
        parser.error("the time and --workers must be positive, --items at least 3")
    try:
        found = soak(
            args.database_url or os.environ.get("FLOWKERNEL_DATABASE_URL"),
            seconds=seconds,
            workers=args.workers,
            items=args.items,
            lamps=args.lamps,
            seed=args.seed,
        )
    except FlowkernelError as exc:
        print(f"soak: {exc.message}", file=sys.stderr)
        return 2
    for line in _summary(found):
        print(line)
    return 1 if found.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
