"""The soak run's check: the invariants the workers' journals and the database must keep."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from flowkernel import (
    Actor,
)
from flowkernel.runtime.idempotency import scope_of
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

from .soak_plan import (
    ACCOUNT,
    LAMP,
    SHARED,
    Plan,
    writer_column,
)

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
            if after.moved_at < before.moved_at:  # validity periods would overlap
                found.violation(
                    f"item {item}: a history row dated {after.moved_at.isoformat()} follows one "
                    f"dated {before.moved_at.isoformat()}"
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
