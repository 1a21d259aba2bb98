"""Idempotency keys on execute, execute_action and move: once per key and actor, the first
result on a repeat, refusals for a reused key, nothing stored for a failed execution, and a
race of several callers with one key."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
from rows import every_row
from sqlalchemy import func, select, text

from flowkernel import (
    SYSTEM,
    Actor,
    EventContext,
    ExecutionError,
    ExecutionResult,
    Flowkernel,
    HandlerFailed,
    IdempotencyKeyReused,
    InvalidArgument,
    MethodNotAvailable,
    StageSpec,
    hookimpl,
)
from flowkernel.hookspecs import EventHandler
from flowkernel.runtime.idempotency import result_from_json, result_to_json, scope_of
from flowkernel.store.tables import idempotency_keys

ACCOUNT = 10
ALICE = Actor.user(1, ACCOUNT, ("sales",))
BOB = Actor.user(2, ACCOUNT)


class Probe:
    """Handlers `note` (counts calls) and `flaky` (raises while `failing`); observes results."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.executed: list[ExecutionResult] = []
        self.failing = False
        self.hold: threading.Event | None = None

    def note(self, context: EventContext) -> None:
        self.calls.append(context.method.code)
        if self.hold is not None:
            self.hold.wait(30)

    def flaky(self, context: EventContext) -> None:
        if self.failing:
            raise RuntimeError("the handler's service is down")

    @hookimpl
    def flowkernel_event_handlers(self) -> Mapping[str, EventHandler]:
        return {"note": self.note, "flaky": self.flaky}

    @hookimpl
    def flowkernel_method_executed(self, result: ExecutionResult) -> None:
        self.executed.append(result)


@pytest.fixture
def probe(fk: Flowkernel) -> Probe:
    plugin = Probe()
    fk.register_plugin(plugin, name="probe")
    return plugin


@pytest.fixture
def deals(fk: Flowkernel, probe: Probe) -> int:
    """Pipeline `deals` (lead, offer, won) with an automation and a watcher on every move."""
    info = fk.pipelines.create_pipeline(
        "Deals",
        ALICE,
        code="deals",
        stages=[StageSpec("Lead"), StageSpec("Offer"), StageSpec("Won")],
    )
    fk.pipelines.add_automation(info.id, "stage_entered", "deal.moved", ALICE)
    for handler in ("change_object_state", "note", "flaky"):  # own events replace the default
        fk.definitions.add_event("deals", "move", handler, account_id=ACCOUNT)
    return info.id


@pytest.fixture
def lamp(fk: Flowkernel, probe: Probe) -> Flowkernel:
    """Kernel class `lamp`: off -switch_on[enable]-> on -switch_off[disable]-> off."""
    d = fk.definitions
    d.add_class("lamp", "Lamp")
    d.add_state("lamp", "created", "off", "Off")
    d.add_state("lamp", "enabled", "on", "On")
    d.add_method("lamp", "off", "enable", code="switch_on")
    d.add_method("lamp", "on", "disable", code="switch_off")
    d.add_method("lamp", None, "edit")
    d.add_transition("lamp", "off", "switch_on", "on")
    d.add_transition("lamp", "on", "switch_off", "off")
    d.add_event("lamp", "enable", "change_object_state")
    d.add_event("lamp", "enable", "note")
    d.add_event("lamp", "edit", "note")
    return fk


def key_rows(fk: Flowkernel) -> list[Any]:
    with fk.engine.connect() as conn:
        return list(conn.execute(select(idempotency_keys).order_by(idempotency_keys.c.id)))


# --- once per key ----------------------------------------------------------------------------


def test_a_repeated_move_returns_the_first_result_and_changes_nothing(
    fk: Flowkernel, deals: int, probe: Probe
) -> None:
    item = fk.place(deals, "deal", 1, ALICE).id
    first = fk.move(item, "offer", ALICE, idempotency_key="move-1")
    assert (first.from_state, first.to_state, first.changed) == ("lead", "offer", True)
    fk.move(item, "won", ALICE)  # the item moves on without a key
    before = every_row(fk)
    calls, executed = list(probe.calls), list(probe.executed)

    again = fk.move(item, "offer", ALICE, idempotency_key="move-1")
    assert again == first  # the first result, not a move from won to offer
    assert every_row(fk) == before  # no history row, call log row, outbox event or key
    assert (probe.calls, probe.executed) == (calls, executed)  # no handler, no observer
    assert fk.item(item, ALICE).state == "won"
    assert [h.to_state for h in fk.history(item, ALICE)] == ["lead", "offer", "won"]


def test_a_repeated_execute_returns_the_first_result(lamp: Flowkernel, probe: Probe) -> None:
    item = lamp.place("lamp", "device", 1, ALICE).id
    first = lamp.execute(item, "edit", ALICE, params={"note": "x"}, idempotency_key="k")
    assert first.changed is False
    before = every_row(lamp)
    for _ in range(3):
        assert lamp.execute(item, "edit", ALICE, params={"note": "x"}, idempotency_key="k") == first
    assert every_row(lamp) == before
    assert probe.calls == ["edit"]
    # params None and {} are the same request
    lamp.execute(item, "edit", ALICE, idempotency_key="empty")
    assert lamp.execute(item, "edit", ALICE, params={}, idempotency_key="empty").method == "edit"
    assert probe.calls == ["edit", "edit"]


def test_params_are_compared_as_canonical_json(lamp: Flowkernel, probe: Probe) -> None:
    """One JSON number is one parameter: 1, 1.0 and -0.0 == 0 repeat a request; true is not 1."""
    item = lamp.place("lamp", "device", 1, ALICE).id
    first = lamp.execute(
        item, "edit", ALICE, params={"a": 1, "b": [0, {"c": 2}]}, idempotency_key="n"
    )
    before = every_row(lamp)
    for same in ({"a": 1.0, "b": [-0.0, {"c": 2.0}]}, {"b": [0, {"c": 2}], "a": 1e0}):
        assert lamp.execute(item, "edit", ALICE, params=same, idempotency_key="n") == first
    assert every_row(lamp) == before
    for other in ({"a": True, "b": [0, {"c": 2}]}, {"a": 1.5, "b": [0, {"c": 2}]}, {"a": "1"}):
        with pytest.raises(IdempotencyKeyReused):
            lamp.execute(item, "edit", ALICE, params=other, idempotency_key="n")
    assert every_row(lamp) == before
    assert probe.calls == ["edit"]


def test_execute_action_and_a_move_by_stage_id_take_keys(
    fk: Flowkernel, lamp: Flowkernel, deals: int
) -> None:
    item = fk.place("lamp", "device", 1, ALICE).id
    first = fk.execute_action(item, "enable", ALICE, idempotency_key="on")
    assert fk.execute_action(item, "enable", ALICE, idempotency_key="on") == first
    assert fk.item(item, ALICE).state == "on"

    deal = fk.place(deals, "deal", 1, ALICE).id
    won = fk.compiled(deals, ACCOUNT).states["won"].id
    moved = fk.move(deal, won, ALICE, idempotency_key="won")
    assert moved.to_state == "won"
    assert fk.move(deal, won, ALICE, idempotency_key="won") == moved
    assert len(fk.history(deal, ALICE)) == 2


def test_the_stored_result_round_trips(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "device", 1, ALICE).id
    first = lamp.execute(item, "switch_on", ALICE, idempotency_key="k")
    [row] = key_rows(lamp)
    assert result_from_json(row.result) == first == result_from_json(result_to_json(first))
    assert (row.scope, row.idempotency_key, row.flow_item_id) == (scope_of(ALICE), "k", item)
    assert (row.method_code, len(row.request_hash)) == ("switch_on", 64)
    assert first.executed_at.tzinfo is not None


def test_without_a_key_nothing_is_stored(fk: Flowkernel, deals: int) -> None:
    item = fk.place(deals, "deal", 1, ALICE).id
    fk.move(item, "offer", ALICE)
    fk.move(item, "won", ALICE, idempotency_key=None)  # None: no key
    fk.execute(item, "move_to_lead", ALICE, idempotency_key=None)
    assert key_rows(fk) == []
    assert len(fk.history(item, ALICE)) == 4


# --- refusals ----------------------------------------------------------------------------------


def test_a_key_reused_for_another_request_is_refused(
    fk: Flowkernel, lamp: Flowkernel, deals: int
) -> None:
    item = fk.place("lamp", "device", 1, ALICE).id
    other = fk.place("lamp", "device", 2, ALICE).id
    fk.execute(item, "edit", ALICE, params={"n": 1}, idempotency_key="k")
    before = every_row(fk)
    for call in (
        lambda: fk.execute(item, "edit", ALICE, params={"n": 2}, idempotency_key="k"),
        lambda: fk.execute(other, "edit", ALICE, params={"n": 1}, idempotency_key="k"),
        lambda: fk.execute(item, "switch_on", ALICE, params={"n": 1}, idempotency_key="k"),
        lambda: fk.execute_action(item, "edit", ALICE, params={"n": 1}, idempotency_key="k"),
        lambda: fk.move(item, "lead", ALICE, idempotency_key="k"),
    ):
        with pytest.raises(IdempotencyKeyReused) as reused:
            call()
        error = reused.value
        assert isinstance(error, ExecutionError)
        assert (error.key, error.item_id, error.method) == ("k", item, "edit")
        assert "'k'" in error.message and "new key" in error.message
    assert every_row(fk) == before

    # a move by stage code and one by stage id are different requests
    deal = fk.place(deals, "deal", 1, ALICE).id
    fk.move(deal, "offer", ALICE, idempotency_key="m")
    offer = fk.compiled(deals, ACCOUNT).states["offer"].id
    with pytest.raises(IdempotencyKeyReused):
        fk.move(deal, offer, ALICE, idempotency_key="m")


@pytest.mark.parametrize("key", ["", "k" * 256, 7, b"key", ["k"], 1.5, True])
def test_malformed_keys_are_refused_before_anything_runs(
    lamp: Flowkernel, probe: Probe, key: Any
) -> None:
    item = lamp.place("lamp", "device", 1, ALICE).id
    before = every_row(lamp)
    for call in (
        lambda: lamp.execute(item, "switch_on", ALICE, idempotency_key=key),
        lambda: lamp.execute_action(item, "enable", ALICE, idempotency_key=key),
        lambda: lamp.move(item, "on", ALICE, idempotency_key=key),
    ):
        with pytest.raises(InvalidArgument) as refused:
            call()
        assert "idempotency_key" in refused.value.message
    assert every_row(lamp) == before
    assert probe.calls == []
    assert lamp.execute(item, "switch_on", ALICE, idempotency_key="k" * 255).to_state == "on"


def test_keys_belong_to_the_actor(fk: Flowkernel, deals: int) -> None:
    items = [fk.place(deals, "deal", n, ALICE).id for n in range(5)]
    actors = [ALICE, BOB, Actor.system(ACCOUNT), SYSTEM, Actor.user(1, 11)]
    assert len({scope_of(a) for a in actors}) == len(actors)
    assert scope_of(Actor.user(1, ACCOUNT, ("other",))) == scope_of(ALICE)  # groups do not count
    for actor, item in zip(actors[:4], items, strict=False):
        # the same key, each actor's own first use: each moves
        assert fk.move(item, "offer", actor, idempotency_key="same").item_id == item
    assert [fk.item(i, SYSTEM).state for i in items] == ["offer"] * 4 + ["lead"]
    assert len(key_rows(fk)) == 4


# --- failures leave the key free --------------------------------------------------------------


def test_a_failed_execution_stores_nothing_and_may_be_retried_with_its_key(
    fk: Flowkernel, deals: int, probe: Probe
) -> None:
    item = fk.place(deals, "deal", 1, ALICE).id
    before = every_row(fk)
    probe.failing = True
    with pytest.raises(HandlerFailed):
        fk.move(item, "offer", ALICE, idempotency_key="retry-me")
    assert every_row(fk) == before
    probe.failing = False
    result = fk.move(item, "offer", ALICE, idempotency_key="retry-me")
    assert result.to_state == "offer"
    assert fk.move(item, "offer", ALICE, idempotency_key="retry-me") == result


def test_a_refused_execution_stores_nothing(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "device", 1, ALICE).id
    before = every_row(lamp)
    with pytest.raises(MethodNotAvailable):
        lamp.execute(item, "switch_off", ALICE, idempotency_key="off")  # the lamp is off
    assert every_row(lamp) == before
    lamp.execute(item, "switch_on", ALICE)
    assert lamp.execute(item, "switch_off", ALICE, idempotency_key="off").to_state == "off"


# --- a race of callers with one key ------------------------------------------------------------


def waiting_on_locks(fk: Flowkernel) -> int:
    """Other sessions of the test database waiting for a lock (PostgreSQL)."""
    with fk.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        )


def test_callers_racing_with_one_key_execute_once(
    fk: Flowkernel, deals: int, probe: Probe, backend: str
) -> None:
    item = fk.place(deals, "deal", 1, ALICE).id
    fk.move(item, "offer", ALICE)  # compiled and cached: every caller takes the same path
    probe.calls.clear()
    probe.executed.clear()
    callers = 4
    start = threading.Barrier(callers)
    results: list[ExecutionResult] = []
    errors: list[BaseException] = []
    probe.hold = threading.Event()

    def call() -> None:
        try:
            start.wait(10)
            results.append(fk.move(item, "won", ALICE, idempotency_key="race"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while not probe.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert probe.calls == ["move_to_won"]  # one caller runs the chain and holds the key
    if backend == "postgresql":
        # the others queue on the key's unique index until the first one commits
        while waiting_on_locks(fk) < callers - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert waiting_on_locks(fk) == callers - 1
    probe.hold.set()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(results) == callers and all(r == results[0] for r in results)
    assert (results[0].from_state, results[0].to_state) == ("offer", "won")
    assert probe.calls == ["move_to_won"]
    assert probe.executed == results[:1]  # observed once
    assert [h.to_state for h in fk.history(item, ALICE)] == ["lead", "offer", "won"]
    with fk.engine.connect() as conn:
        keys = conn.execute(select(func.count()).select_from(idempotency_keys)).scalar_one()
    assert keys == 1
