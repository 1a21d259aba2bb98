"""Several processes moving, executing and editing the same items at once; what a caller that
meets another transaction on its item gets (it waits, or `ConcurrentUpdate`); the soak command.

The processes run the soak's workload (`flowkernel.benchmarks.soak`), each journaling the
operations that succeeded; the test then checks the database against the journals itself and
through the soak's check.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url

from flowkernel import (
    Actor,
    ConcurrentUpdate,
    EventContext,
    Flowkernel,
    StageSpec,
    hookimpl,
)
from flowkernel.benchmarks import soak
from flowkernel.hookspecs import EventHandler
from flowkernel.kinds import MOVE_PREFIX
from flowkernel.store.tables import history as history_table
from flowkernel.store.tables import items, method_calls

ADMIN = Actor.user(1, soak.ACCOUNT)


# --- processes racing on the same items ------------------------------------------------------


def test_processes_racing_on_the_same_items_lose_no_update(
    fk: Flowkernel, database_url: str, tmp_path: Path
) -> None:
    plan = soak.prepare(
        fk, url=database_url, folder=str(tmp_path), workers=4, seconds=4, items=6, lamps=2
    )
    assert soak.run_workers(plan) == [0, 0, 0, 0]
    soak.drain(plan)
    entries = soak.read_journals(str(tmp_path))
    assert [e for e in entries if e["op"] == "error"] == []
    done = Counter(e["op"] for e in entries)
    assert done["move"] > 10 and done["execute"] > 5 and done["value"] > 5

    executions: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for e in entries:
        if e["op"] in ("move", "execute"):
            executions[e["item"]].append(e)
    breaches = Counter(i for e in entries if e["op"] == "sla" for i in e["items"])
    with fk.engine.connect() as conn:
        calls = Counter(
            conn.execute(
                select(method_calls.c.flow_item_id).where(
                    method_calls.c.flow_item_id.in_(plan.items + plan.lamps)
                )
            ).scalars()
        )
    for item in plan.items + plan.lamps:
        history = fk.history(item, ADMIN)
        changes = [e for e in executions[item] if e["changed"]]
        # no lost update: one history row per successful state change, plus the placement
        assert len(history) == len(changes) + 1
        assert history[0].from_state is None
        assert all(after.from_state == before.to_state for before, after in pairwise(history))
        assert fk.item(item, ADMIN).state == history[-1].to_state
        # stored periods never overlap: each ends where the next begins, the last is open
        assert [h.valid_to for h in history] == [h.moved_at for h in history[1:]] + [None]
        assert all(h.moved_at <= h.valid_to for h in history[:-1] if h.valid_to is not None)
        assert Counter((h.from_state, h.to_state) for h in history[1:]) == Counter(
            (e["from"], e["to"]) for e in changes
        )
        # history and call log: the placement, every successful execution, every breach fired
        assert len(history) + calls[item] == 1 + len(executions[item]) + breaches[item]

    last: dict[tuple[int, str], str] = {}
    for e in entries:
        if e["op"] == "value":
            writer = soak.writer_column(int(e["value"].split("-")[0]))
            last[(e["item"], writer)] = e["value"]
    for item in plan.items:
        stored = {v.name: v.value for v in fk.items.values(item, ADMIN) if v.value is not None}
        for index in range(plan.workers):
            column = soak.writer_column(index)
            assert stored.get(column) == last.get((item, column))  # the last successful write
        if soak.SHARED in stored:
            writer = soak.writer_column(int(stored[soak.SHARED].split("-")[0]))
            assert last[(item, writer)] == stored[soak.SHARED]

    found = soak.check(fk.engine, plan, entries)
    assert found.violations == []

    # the check sees what it is there for: a lost history row, a double delivery, a lost value
    moved = next(e for e in entries if e["op"] == "move" and e["changed"])
    tampered = [e for e in entries if e is not moved]
    delivered = next(e for e in entries if e["op"] == "delivered")
    tampered.append(dict(delivered))
    wrote = next(e for e in reversed(entries) if e["op"] == "value")
    tampered.append({**wrote, "value": f"{wrote['value'].split('-')[0]}-999999"})
    problems = "\n".join(soak.check(fk.engine, plan, tampered).violations)
    assert f"item {moved['item']}: " in problems and "history rows" in problems
    assert "delivered more than once" in problems
    assert "the writer's last successful write was" in problems
    assert sum(e["counts"].get("batch", 0) for e in entries if e["op"] == "counts") > 0
    # a history row dated before the row it follows
    longest = max(plan.items, key=lambda i: len(fk.history(i, ADMIN)))
    last_row = fk.history(longest, ADMIN)[-1].id
    with fk.engine.begin() as conn:
        conn.execute(
            update(history_table)
            .where(history_table.c.id == last_row)
            .values(moved_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
    problems = "\n".join(soak.check(fk.engine, plan, entries).violations)
    assert f"item {longest}: a history row dated 2000-01-01" in problems
    now_in = fk.item(plan.items[0], ADMIN).state_id
    elsewhere = next(sid for sid in plan.stage_ids.values() if sid != now_in)
    with fk.engine.begin() as conn:  # an item's stage no longer its last history row's
        conn.execute(
            update(items).where(items.c.id == plan.items[0]).values(flow_stage_id=elsewhere)
        )
    problems = "\n".join(soak.check(fk.engine, plan, entries).violations)
    assert f"item {plan.items[0]} is in stage" in problems


# --- who waits, who gets ConcurrentUpdate (PostgreSQL row locks) ---------------------------------


class Gate:
    """Handler `gate`: once `armed`, holds the execution (and its item's row lock) until
    `release` is set."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def gate(self, context: EventContext) -> None:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.release.wait(30)

    @hookimpl
    def flowkernel_event_handlers(self) -> Mapping[str, EventHandler]:
        return {"gate": self.gate}


@pytest.fixture
def board(fk: Flowkernel, backend: str) -> Iterator[tuple[Flowkernel, Gate, list[int]]]:
    if backend != "postgresql":
        pytest.skip("row locks: SQLite serialises every writer on the database lock")
    gate = Gate()
    fk.register_plugin(gate, name="gate")
    info = fk.pipelines.create_pipeline(
        "Board",
        ADMIN,
        code="board",
        stages=[StageSpec("A", sla_days=1), StageSpec("B"), StageSpec("C")],
    )
    fk.pipelines.add_column(info.id, "note", ADMIN)
    for handler in ("change_object_state", "gate"):
        fk.definitions.add_event("board", "move", handler, account_id=soak.ACCOUNT)
    placed = [fk.place(info.id, "card", n, ADMIN).id for n in range(3)]
    yield fk, gate, placed
    gate.release.set()


def lock_waiters(fk: Flowkernel) -> int:
    with fk.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def while_a_move_holds(fk: Flowkernel, gate: Gate, item: int, call: Callable[[], object]) -> object:
    """Run `call` in a thread while a move of `item` to B holds its row lock; once `call`
    waits on a lock, let the move commit; what `call` returned or raised."""
    outcome: list[object] = []

    def mover() -> None:
        fk.move(item, "b", ADMIN)

    def other() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    gate.armed = True
    first = threading.Thread(target=mover)
    first.start()
    assert gate.entered.wait(10)
    second = threading.Thread(target=other)
    second.start()
    deadline = time.monotonic() + 10
    while lock_waiters(fk) == 0 and not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcome == [] and lock_waiters(fk) == 1  # it waits for the move
    gate.release.set()
    first.join(10)
    second.join(10)
    gate.entered.clear()
    gate.release.clear()
    [result] = outcome
    return result


@pytest.mark.parametrize(
    "operation",
    ["move", "keyed move", "batch", "set_values", "assign", "watch", "delete"],
)
def test_item_writes_wait_for_a_move_of_their_item_then_apply(
    board: tuple[Flowkernel, Gate, list[int]], operation: str
) -> None:
    fk, gate, (card, *_) = board
    calls: dict[str, Callable[[], object]] = {
        "move": lambda: fk.move(card, "c", ADMIN),
        "keyed move": lambda: fk.move(card, "c", ADMIN, idempotency_key="k"),
        "batch": lambda: fk.execute_batch([card], MOVE_PREFIX + "c", ADMIN),
        "set_values": lambda: fk.items.set_values(card, {"note": "x"}, ADMIN),
        "assign": lambda: fk.items.assign(card, 5, ADMIN),
        "watch": lambda: fk.items.watch(card, 5, ADMIN),
        "delete": lambda: fk.items.delete(card, ADMIN),
    }
    result = while_a_move_holds(fk, gate, card, calls[operation])
    assert not isinstance(result, Exception), result
    history = fk.history(card, ADMIN)
    assert history[1].to_state == "b"  # the held move committed first
    if operation.endswith("move") or operation == "batch":  # it started from the outcome
        assert [(h.from_state, h.to_state) for h in history[1:]] == [("a", "b"), ("b", "c")]
    # the waiting write took its time once it held the lock: history never runs backwards
    assert [h.moved_at for h in history] == sorted(h.moved_at for h in history)
    assert fk.state_at(card, datetime.now(UTC), ADMIN) == fk.item(card, ADMIN).state


def test_a_reorder_whose_item_left_its_stage_meanwhile_raises_concurrent_update(
    board: tuple[Flowkernel, Gate, list[int]],
) -> None:
    fk, gate, (card, other, _) = board
    result = while_a_move_holds(fk, gate, card, lambda: fk.items.reorder(card, 1, ADMIN))
    assert isinstance(result, ConcurrentUpdate) and result.item_id == card
    assert "retry" in result.message
    # the retry is safe: the item is now in B, alone there
    assert fk.items.reorder(card, 0, ADMIN).position == 0
    # a reorder of another item of the stage waits and then applies
    gate.armed = True
    mover = threading.Thread(target=lambda: fk.move(other, "b", ADMIN))
    mover.start()
    assert gate.entered.wait(10)
    gate.release.set()
    mover.join(10)
    assert fk.items.reorder(other, 0, ADMIN).position == 0


def test_an_sla_scan_passes_over_an_item_a_move_holds(
    board: tuple[Flowkernel, Gate, list[int]],
) -> None:
    fk, gate, (card, *others) = board
    later = datetime.now(UTC) + timedelta(days=2)  # every card in stage A is due then
    gate.armed = True
    mover = threading.Thread(target=lambda: fk.move(card, "b", ADMIN))
    mover.start()
    assert gate.entered.wait(10)
    try:
        report = fk.sla.scan(now=later)  # returns while the move still holds the card
    finally:
        gate.release.set()
        mover.join(10)
    assert sorted(b.item_id for b in report.breaches) == sorted(others)
    assert fk.item(card, ADMIN).state == "b"


# --- the soak command -----------------------------------------------------------------------------


def test_the_soak_command_runs_a_short_soak_and_finds_every_invariant_held(
    database_url: str, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = soak.main(["--database-url", database_url, "--seconds", "3", "--workers", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "invariants: all hold" in out
    figures = dict(
        part.split("=", 1) for part in out.splitlines()[1].removeprefix("figures: ").split(", ")
    )
    assert int(figures["operations"]) > 0 and figures["workers"] == "3"
    # it ran in a scratch area beside the database, and removed it
    if backend == "sqlite":
        folder = Path(make_url(database_url).database or "").parent
        assert list(folder.glob("flowkernel-bench-*")) == []
    else:
        with Flowkernel(database_url) as fk, fk.engine.connect() as conn:
            schemas = conn.execute(
                text(
                    "SELECT count(*) FROM information_schema.schemata "
                    "WHERE schema_name LIKE 'flowkernel_bench_%'"
                )
            ).scalar_one()
        assert schemas == 0
