"""A bounded soak run: a mixed workload in several processes, then the invariants checked.

    python -m flowkernel.benchmarks.soak --database-url URL --minutes N --workers W

The run works in a scratch area beside the given database (a schema on PostgreSQL, a file on
SQLite), removed afterwards. It builds a pipeline (four stages, the last with an SLA, an
automation on every stage entry and on SLA breaches, a watcher on some items) and a kernel
class, places items, then starts W worker processes that for the given time, on the same
small set of items: move items (by stage code or id, with and without idempotency keys, and
replay earlier keys), execute the kernel class's methods, write custom values, assign and
reorder items, scan for SLA breaches and deliver events. Each worker journals every
operation that succeeded (one JSON line each). After a final delivery drain the run checks:

- per item, history rows = successful state changes + the placement; each row's from-stage
  is the previous row's to-stage; the item's stage is its last row's to-stage; the history's
  transitions are the ones the workers were told happened; executions add up (a state change
  is a history row, a call that changed none a method-call row);
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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy import Engine, func, select

from flowkernel import (
    SYSTEM,
    Actor,
    ColumnSpec,
    ConcurrentUpdate,
    ExecutionResult,
    Flowkernel,
    FlowkernelError,
    InvalidArgument,
    MethodNotAvailable,
    StageSpec,
    hookimpl,
)
from flowkernel.runtime.idempotency import scope_of
from flowkernel.snapshots import OutgoingEvent, WatcherNotification
from flowkernel.store.tables import (
    columns,
    event_log,
    history,
    idempotency_keys,
    item_values,
    items,
    method_calls,
    outbox,
    pipelines,
    stages,
)

from .scratch import scratch

ACCOUNT: Final = 1
STAGES: Final = ("s0", "s1", "s2", "s3")
SLA_STAGE: Final = "s3"
LAMP: Final = "soak_lamp"
WATCHER: Final = 900
SHARED: Final = "shared"
OPERATIONS: Final = (
    ("move", 34),
    ("replay", 6),
    ("execute", 20),
    ("value", 18),
    ("assign", 6),
    ("reorder", 6),
    ("sla", 4),
    ("deliver", 6),
)
"""Operations a worker picks from, with their weights."""


def writer_column(index: int) -> str:
    """The custom column only worker `index` writes."""
    return f"w{index}"


@dataclass(frozen=True)
class Plan:
    """What the workers share: the database, the definitions and items, the time."""

    url: str
    folder: str
    workers: int
    seconds: float
    pipeline_id: int
    stage_ids: dict[str, int]
    items: list[int]
    lamps: list[int]
    seed: int = 0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls(**json.loads(path.read_text()))

    def journal(self, name: str) -> Path:
        return Path(self.folder) / f"{name}.jsonl"


def prepare(
    fk: Flowkernel,
    *,
    url: str,
    folder: str,
    workers: int,
    seconds: float,
    items: int,
    lamps: int,
    seed: int = 0,
) -> Plan:
    """Define the soak's pipeline and kernel class and place its items."""
    admin = Actor.user(1, ACCOUNT)
    info = fk.pipelines.create_pipeline(
        "Soak",
        admin,
        code="soak",
        stages=[
            StageSpec(code.upper(), code=code, sla_days=1 if code == SLA_STAGE else None)
            for code in STAGES
        ],
        columns=[ColumnSpec(SHARED), *(ColumnSpec(writer_column(w)) for w in range(workers))],
    )
    fk.pipelines.add_automation(info.id, "stage_entered", "soak.entered", admin)
    fk.pipelines.add_automation(info.id, "sla_breached", "soak.late", admin)
    d = fk.definitions
    d.add_class(LAMP, "Soak lamp")
    d.add_state(LAMP, "created", "off", "Off")
    d.add_state(LAMP, "enabled", "on", "On")
    d.add_method(LAMP, "off", "enable", code="switch_on")
    d.add_method(LAMP, "on", "disable", code="switch_off")
    d.add_method(LAMP, None, "edit")
    d.add_transition(LAMP, "off", "switch_on", "on")
    d.add_transition(LAMP, "on", "switch_off", "off")
    placed = [fk.place(info.id, "deal", n, admin).id for n in range(items)]
    for item in placed[::3]:
        fk.items.watch(item, WATCHER, admin)
    lit = [fk.place(LAMP, "device", n, admin).id for n in range(lamps)]
    compiled = fk.compiled(info.id, ACCOUNT)
    return Plan(
        url=url,
        folder=folder,
        workers=workers,
        seconds=seconds,
        pipeline_id=info.id,
        stage_ids={code: compiled.states[code].id for code in STAGES},
        items=placed,
        lamps=lit,
        seed=seed,
    )


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


# --- the check -------------------------------------------------------------------------------


def read_journals(folder: str) -> list[dict[str, Any]]:
    """Every journal entry of a run, each with its `source` (the journal's name)."""
    entries: list[dict[str, Any]] = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            entry["source"] = path.stem
            entries.append(entry)
    return entries


@dataclass
class Findings:
    """The violations a check found and the figures of the run."""

    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def violation(self, message: str) -> None:
        if len(self.violations) < 200:
            self.violations.append(message)


def check(engine: Engine, plan: Plan, entries: Sequence[Mapping[str, Any]]) -> Findings:
    """Check the invariants of the module docstring against the database and the journals."""
    found = Findings()
    mine = [*plan.items, *plan.lamps]
    with engine.connect() as conn:
        codes = {r.id: r.code for r in conn.execute(select(stages.c.id, stages.c.code))}
        rows = conn.execute(
            select(
                history.c.flow_item_id,
                history.c.from_stage_id,
                history.c.to_stage_id,
                history.c.method_code,
                history.c.moved_at,
            )
            .where(history.c.flow_item_id.in_(mine))
            .order_by(history.c.id)
        ).all()
        stage_of = {
            r.id: r.flow_stage_id
            for r in conn.execute(
                select(items.c.id, items.c.flow_stage_id).where(items.c.id.in_(mine))
            )
        }
        calls = conn.execute(
            select(
                method_calls.c.flow_item_id, method_calls.c.method_code, method_calls.c.called_at
            )
            .where(method_calls.c.flow_item_id.in_(mine))
            .order_by(method_calls.c.id)
        ).all()
        values = conn.execute(
            select(item_values.c.flow_item_id, columns.c.name, item_values.c.value)
            .join(columns, columns.c.id == item_values.c.flow_column_id)
            .where(item_values.c.flow_item_id.in_(plan.items))
        ).all()
        assigned = {
            r.id: r.assigned_iam_user_id
            for r in conn.execute(
                select(items.c.id, items.c.assigned_iam_user_id).where(items.c.id.in_(plan.items))
            )
        }
        keys = conn.execute(
            select(
                idempotency_keys.c.scope,
                idempotency_keys.c.idempotency_key,
                idempotency_keys.c.result,
            )
        ).all()
        class_ids = list(
            conn.execute(
                select(pipelines.c.id).where(
                    (pipelines.c.id == plan.pipeline_id) | (pipelines.c.code == LAMP)
                )
            ).scalars()
        )
        events = conn.execute(
            select(outbox.c.event_id, outbox.c.kind, outbox.c.status).where(
                outbox.c.flow_pipeline_id.in_(class_ids)
            )
        ).all()
        logged = Counter(
            conn.execute(
                select(event_log.c.event_id).where(event_log.c.flow_pipeline_id.in_(class_ids))
            ).scalars()
        )

    _check_errors(found, entries)
    _check_history(found, plan, entries, rows, stage_of, codes)
    _check_calls(found, entries, rows, calls, mine)
    _check_values(found, plan, entries, values, assigned)
    _check_keys(found, plan, entries, keys)
    _check_events(found, entries, events, logged)
    ops: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for e in entries:
        if e["op"] == "counts":
            for name, count in e["counts"].items():
                (refused if name.startswith("refused:") else ops)[name] += count
    found.figures.update(
        operations=sum(ops.values()),
        by_operation=dict(sorted(ops.items())),
        refused=dict(sorted(refused.items())),
        history_rows=len(rows),
        method_calls=len(calls),
        events=len(events),
    )
    return found


def _check_errors(found: Findings, entries: Iterable[Mapping[str, Any]]) -> None:
    errors = [e for e in entries if e["op"] == "error"]
    for e in errors[:20]:
        found.violation(f"{e['source']}: {e['what']} raised {e['error']}")
    if len(errors) > 20:
        found.violation(f"... and {len(errors) - 20} more unexpected errors")


def _executions(entries: Iterable[Mapping[str, Any]]) -> dict[int, list[Mapping[str, Any]]]:
    """Successful executions (moves, executes) per item; replays excluded."""
    by_item: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for e in entries:
        if e["op"] in ("move", "execute"):
            by_item[e["item"]].append(e)
    return by_item


def _check_history(
    found: Findings,
    plan: Plan,
    entries: Sequence[Mapping[str, Any]],
    rows: Sequence[Any],
    stage_of: Mapping[int, int],
    codes: Mapping[int, str],
) -> None:
    executions = _executions(entries)
    per_item: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        per_item[row.flow_item_id].append(row)
    for item in [*plan.items, *plan.lamps]:
        chain = per_item.get(item, [])
        changes = [e for e in executions.get(item, []) if e["changed"]]
        if len(chain) != len(changes) + 1:
            found.violation(
                f"item {item}: {len(chain)} history rows, but {len(changes)} successful state "
                "changes + 1 placement"
            )
        if not chain:
            continue
        if chain[0].from_stage_id is not None:
            found.violation(f"item {item}: its first history row does not start at placement")
        for before, after in pairwise(chain):
            if after.from_stage_id != before.to_stage_id:
                found.violation(
                    f"item {item}: a history row from stage {after.from_stage_id} follows one "
                    f"to stage {before.to_stage_id}"
                )
        if stage_of.get(item) != chain[-1].to_stage_id:
            found.violation(
                f"item {item} is in stage {stage_of.get(item)}, its last history row says "
                f"{chain[-1].to_stage_id}"
            )
        told = Counter((e["from"], e["to"]) for e in changes)
        written = Counter((codes.get(r.from_stage_id), codes.get(r.to_stage_id)) for r in chain[1:])
        if told != written:
            found.violation(
                f"item {item}: the history's transitions {dict(written)} are not the ones "
                f"reported to the workers {dict(told)}"
            )


def _check_calls(
    found: Findings,
    entries: Sequence[Mapping[str, Any]],
    rows: Sequence[Any],
    calls: Sequence[Any],
    mine: list[int],
) -> None:
    executions = _executions(entries)
    breaches: Counter[int] = Counter()
    for e in entries:
        if e["op"] == "sla":
            breaches.update(e["items"])
    # every execution, in the order it ran: (moment, is a state change, method)
    per_item: dict[int, list[tuple[datetime, bool, str | None]]] = defaultdict(list)
    for row in rows:
        per_item[row.flow_item_id].append((row.moved_at, True, row.method_code))
    for call in calls:
        per_item[call.flow_item_id].append((call.called_at, False, call.method_code))
    for item in mine:
        logged = sorted(per_item.get(item, []), key=lambda e: e[0])
        expected = 1 + len(executions.get(item, [])) + breaches[item]
        if len(logged) != expected:
            found.violation(
                f"item {item}: {len(logged)} executions logged, expected {expected} "
                "(placement + successful executions + SLA breaches)"
            )
        # one breach per stage entry
        entry, seen = 0, Counter[int]()
        for _moment, changed, method in logged:
            if changed:
                entry += 1
            elif method == "sla_breach":
                seen[entry] += 1
        doubled = [n for n, count in seen.items() if count > 1]
        if doubled:
            found.violation(f"item {item}: {len(doubled)} stage entries breached more than once")
        if sum(seen.values()) != breaches[item]:
            found.violation(
                f"item {item}: {sum(seen.values())} SLA breaches logged, the scans reported "
                f"{breaches[item]}"
            )
    found.figures["sla_breaches"] = sum(breaches.values())


def _check_values(
    found: Findings,
    plan: Plan,
    entries: Sequence[Mapping[str, Any]],
    values: Sequence[Any],
    assigned: Mapping[int, int | None],
) -> None:
    last: dict[tuple[int, int], str] = {}  # (item, writer) -> its last value
    users: dict[tuple[int, str], int] = {}  # (item, journal) -> its last assignee
    for e in entries:
        if e["op"] == "value":
            last[(e["item"], int(e["value"].split("-")[0]))] = e["value"]
        elif e["op"] == "assign":
            users[(e["item"], e["source"])] = e["user"]
    stored = {(r.flow_item_id, r.name): r.value for r in values}
    for item in plan.items:
        for index in range(plan.workers):
            want = last.get((item, index))
            got = stored.get((item, writer_column(index)))
            if got != want:
                found.violation(
                    f"item {item}: column {writer_column(index)} holds {got!r}, the writer's "
                    f"last successful write was {want!r}"
                )
        shared = stored.get((item, SHARED))
        if shared is None:
            if any(key[0] == item for key in last):
                found.violation(f"item {item}: the shared column lost every write")
        elif last.get((item, int(shared.split("-")[0]))) != shared:
            found.violation(
                f"item {item}: the shared column holds {shared!r}, which its writer overwrote"
            )
        finals = {user for (i, _), user in users.items() if i == item}
        if assigned.get(item) is None and finals:
            found.violation(f"item {item}: unassigned after successful assignments")
        elif finals and assigned.get(item) not in finals:
            found.violation(
                f"item {item}: assigned to {assigned.get(item)}, no worker's last assignment"
            )


def _check_keys(
    found: Findings, plan: Plan, entries: Sequence[Mapping[str, Any]], keys: Sequence[Any]
) -> None:
    stored = {(r.scope, r.idempotency_key): r.result for r in keys}
    executed: Counter[tuple[str, str]] = Counter()
    for e in entries:
        if e["op"] in ("move", "execute") and e.get("key") is not None:
            index = int(e["source"].split("-")[1])
            scope = scope_of(Actor.user(index + 1, ACCOUNT))
            executed[(scope, e["key"])] += 1
            result = stored.get((scope, e["key"]))
            if result is None or (result["from_state"], result["to_state"]) != (e["from"], e["to"]):
                found.violation(f"key {e['key']}: stored result {result} is not the first result")
        elif e["op"] == "replay" and not e["same"]:
            found.violation(f"key {e['key']}: a replay returned another result than the first")
    for key, count in executed.items():
        if count != 1:
            found.violation(f"key {key[1]} executed {count} times")
    found.figures["keyed_executions"] = sum(executed.values())
    found.figures["replays"] = sum(1 for e in entries if e["op"] == "replay")


def _check_events(
    found: Findings,
    entries: Sequence[Mapping[str, Any]],
    events: Sequence[Any],
    logged: Counter[str],
) -> None:
    delivered = Counter(str(e["event"]) for e in entries if e["op"] == "delivered")
    statuses = Counter(str(r.status) for r in events)
    if statuses.get("pending") or statuses.get("dead"):
        found.violation(f"events left after the final drain: {dict(statuses)}")
    twice = [event for event, count in delivered.items() if count > 1]
    if twice:
        found.violation(f"{len(twice)} events delivered more than once, e.g. {twice[0]}")
    ids = {r.event_id for r in events}
    missing = ids - set(delivered)
    if missing:
        found.violation(f"{len(missing)} events never handed to a delivery plugin")
    automations = {r.event_id for r in events if r.kind == "automation"}
    if set(logged) != automations or any(count > 1 for count in logged.values()):
        found.violation(
            f"the event log holds {sum(logged.values())} rows for {len(automations)} "
            "automation events"
        )
    found.figures["events_delivered"] = sum(delivered.values())
    found.figures["conflicts_retried"] = sum(1 for e in entries if e["op"] == "conflict")


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
