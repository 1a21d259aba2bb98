"""The runtime: placing objects, executing methods, refusals, rollback, concurrency, history."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from flowkernel import (
    SYSTEM,
    AccessDenied,
    Actor,
    EventContext,
    ExecutionResult,
    Flowkernel,
    HandlerFailed,
    InvalidArgument,
    ItemNotFound,
    MethodNotAvailable,
    ObjectAlreadyPlaced,
    WrongObjectType,
    hookimpl,
)
from flowkernel.hookspecs import EventHandler
from flowkernel.store.schema import ItemRow, MethodCallRow, StageHistoryRow

ALICE = Actor.user(1, None)
items_table = ItemRow.__table__
history_table = StageHistoryRow.__table__
calls_table = MethodCallRow.__table__


def counts(fk: Flowkernel) -> tuple[int, int, int]:
    """Rows of items, history and the method-call log."""
    with fk.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (items_table, history_table, calls_table)
        )


def history_log(fk: Flowkernel, item_id: int) -> list[Any]:
    with fk.engine.connect() as conn:
        return list(
            conn.execute(
                select(history_table)
                .where(history_table.c.flow_item_id == item_id)
                .order_by(history_table.c.id)
            ).all()
        )


def call_log(fk: Flowkernel, item_id: int) -> list[Any]:
    with fk.engine.connect() as conn:
        return list(
            conn.execute(
                select(calls_table)
                .where(calls_table.c.flow_item_id == item_id)
                .order_by(calls_table.c.id)
            ).all()
        )


class Boom:
    """A test plugin: `boom` raises, `note` records its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def boom(self, context: EventContext) -> None:
        raise RuntimeError(f"boom on {context.method.code}")

    def note(self, context: EventContext) -> None:
        self.calls.append(context.method.code)

    @hookimpl
    def flowkernel_event_handlers(self) -> Mapping[str, EventHandler]:
        return {"boom": self.boom, "submit": self.note}


class Observer:
    """A test plugin: sees each executed method and reads the item from a new connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[ExecutionResult, int | None]] = []

    @hookimpl
    def flowkernel_method_executed(self, result: ExecutionResult) -> None:
        with self.engine.connect() as conn:
            stage = conn.execute(
                select(items_table.c.flow_stage_id).where(items_table.c.id == result.item_id)
            ).scalar()
        self.seen.append((result, stage))


@pytest.fixture
def lamp(fk: Flowkernel) -> Flowkernel:
    """Class `lamp`: off (created) -switch_on[enable]-> on (enabled) -switch_off[disable]-> off."""
    d = fk.definitions
    d.add_class("lamp", "Lamp")
    d.add_state("lamp", "created", "off", "Off")
    d.add_state("lamp", "enabled", "on", "On")
    d.add_method("lamp", "off", "enable", code="switch_on")
    d.add_method("lamp", "on", "disable", code="switch_off")
    d.add_method("lamp", None, "check", code="inspect", visible=False)
    d.add_method("lamp", None, "submit")  # a custom global action: runs anywhere
    d.add_transition("lamp", "off", "switch_on", "on")
    d.add_transition("lamp", "on", "switch_off", "off")
    return fk


@pytest.fixture
def region(fk: Flowkernel) -> Flowkernel:
    fk.definitions.add_class("region", "Region")
    fk.definitions.add_default_methods("region")
    return fk


# --- place -------------------------------------------------------------------------------


def test_object_sits_in_several_classes_at_once(lamp: Flowkernel) -> None:
    lamp.definitions.add_class("region", "Region")
    lamp.definitions.add_default_methods("region")
    in_lamp = lamp.place("lamp", "device", 7, ALICE)
    in_region = lamp.place("region", "device", 7, ALICE)
    assert in_lamp.id != in_region.id
    assert (in_lamp.class_code, in_lamp.state) == ("lamp", "off")
    assert (in_region.class_code, in_region.state) == ("region", "created")
    lamp.execute(in_lamp.id, "switch_on", ALICE)
    assert lamp.item(in_region.id, ALICE).state == "created"


def test_same_object_twice_in_a_class(lamp: Flowkernel) -> None:
    first = lamp.place("lamp", "device", 7, ALICE)
    before = counts(lamp)
    with pytest.raises(ObjectAlreadyPlaced) as refused:
        lamp.place("lamp", "device", 7, SYSTEM)
    assert (refused.value.class_code, refused.value.object_id) == ("lamp", 7)
    assert refused.value.item_id == first.id
    assert counts(lamp) == before
    # Another object type with the same id is another object.
    assert lamp.place("lamp", "socket", 7, ALICE).id != first.id


def test_place_writes_history_with_its_method_and_params(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "device", 1, ALICE, params={"serial": "A1"})
    [entry] = lamp.history(item.id, ALICE)
    assert (entry.from_state, entry.to_state, entry.method, entry.user_id) == (
        None,
        "off",
        "create",
        1,
    )
    [row] = history_log(lamp, item.id)
    assert (row.method_code, row.action_code, row.from_stage_id, row.to_stage_id) == (
        "create",
        "create",
        None,
        item.state_id,
    )
    assert row.params == {"serial": "A1"}
    assert call_log(lamp, item.id) == []  # a state change is written once: to the history


def test_only_the_system_places_into_a_chosen_state(lamp: Flowkernel) -> None:
    before = counts(lamp)
    with pytest.raises(AccessDenied):
        lamp.place("lamp", "device", 1, ALICE, state="on")
    assert counts(lamp) == before
    assert lamp.place("lamp", "device", 1, SYSTEM, state="on").state == "on"


@pytest.mark.parametrize(
    ("object_type", "object_id"), [("", 1), ("device", " 1"), ("d", 2**63), ("d", None)]
)
def test_place_refuses_malformed_objects(
    lamp: Flowkernel, object_type: Any, object_id: Any
) -> None:
    before = counts(lamp)
    with pytest.raises(InvalidArgument):
        lamp.place("lamp", object_type, object_id, ALICE)
    assert counts(lamp) == before


def test_failing_create_handler_places_nothing(lamp: Flowkernel) -> None:
    lamp.register_plugin(Boom(), name="boom")
    lamp.definitions.add_event("lamp", "create", "boom")
    with pytest.raises(HandlerFailed) as failed:
        lamp.place("lamp", "device", 1, ALICE)
    assert failed.value.handler == "boom"
    assert counts(lamp) == (0, 0, 0)


# --- execute -----------------------------------------------------------------------------


def test_execute_by_method_code_and_by_action(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "device", 1, ALICE)
    result = lamp.execute_action(item.id, "enable", ALICE)
    assert (result.method, result.action, result.to_state) == ("switch_on", "enable", "on")
    # The method code is not the action code.
    with pytest.raises(MethodNotAvailable):
        lamp.execute(item.id, "disable", ALICE)
    result = lamp.execute(item.id, "switch_off", ALICE)
    assert (result.method, result.action, result.to_state) == ("switch_off", "disable", "off")
    with pytest.raises(MethodNotAvailable):
        lamp.execute_action(item.id, "disable", ALICE)


def test_execute_action_takes_the_first_method_by_sequence(lamp: Flowkernel) -> None:
    d = lamp.definitions
    d.add_method("lamp", "off", "enable", code="force_on", sequence=99)
    item = lamp.place("lamp", "device", 1, ALICE)
    assert lamp.execute_action(item.id, "enable", ALICE).method == "switch_on"
    lamp.execute(item.id, "switch_off", ALICE)
    d.edit_method("lamp", "off", "force_on", sequence=-1)
    # force_on has no transition: it runs and the lamp stays off.
    result = lamp.execute_action(item.id, "enable", ALICE)
    assert (result.method, result.changed) == ("force_on", False)


def test_wrong_state_names_the_state_and_the_available_methods(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "device", 1, ALICE)
    before = counts(lamp)
    with pytest.raises(MethodNotAvailable) as refused:
        lamp.execute(item.id, "switch_off", ALICE)
    error = refused.value
    assert (error.method, error.state) == ("switch_off", "off")
    assert error.available == ("switch_on", "submit")
    assert error.available == tuple(m.code for m in lamp.methods(item.id, ALICE))
    assert "'off'" in str(error) and "switch_on" in str(error)
    assert counts(lamp) == before


def test_a_deleted_item_offers_only_restore_and_drop(region: Flowkernel) -> None:
    item = region.place("region", "region", 1, ALICE)
    region.execute(item.id, "delete", ALICE)
    with pytest.raises(MethodNotAvailable) as refused:
        region.execute(item.id, "edit", ALICE)
    assert refused.value.available == ("restore", "drop")
    assert "deleted" in refused.value.state


def test_hidden_global_method_for_the_system_only(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "device", 1, ALICE)
    with pytest.raises(MethodNotAvailable):
        lamp.execute(item.id, "inspect", ALICE)
    result = lamp.execute(item.id, "inspect", SYSTEM)
    assert (result.to_state, result.changed) == ("off", False)


def test_failing_handler_rolls_back_state_history_and_call_log(lamp: Flowkernel) -> None:
    plugin = Boom()
    lamp.register_plugin(plugin, name="boom")
    d = lamp.definitions
    for handler in ("submit", "change_object_state", "boom"):
        d.add_event("lamp", "enable", handler)
    item = lamp.place("lamp", "device", 1, ALICE)
    before = counts(lamp)
    with pytest.raises(HandlerFailed) as failed:
        lamp.execute(item.id, "switch_on", ALICE)
    error = failed.value
    assert (error.handler, error.method, error.item_id) == ("boom", "switch_on", item.id)
    assert "RuntimeError" in error.cause
    assert plugin.calls == ["switch_on"]  # the chain ran up to the failing handler
    assert lamp.item(item.id, ALICE).state == "off"
    assert counts(lamp) == before
    assert [e.to_state for e in lamp.history(item.id, ALICE)] == ["off"]


def test_other_accounts_items_do_not_exist(lamp: Flowkernel) -> None:
    tenant = Actor.user(5, 10)
    stranger = Actor.user(6, 20)
    item = lamp.place("lamp", "device", 1, tenant)
    assert item.account_id == 10
    for call in (
        lambda: lamp.item(item.id, stranger),
        lambda: lamp.methods(item.id, stranger),
        lambda: lamp.history(item.id, stranger),
        lambda: lamp.execute(item.id, "switch_on", stranger),
        lambda: lamp.execute(item.id, "switch_on", Actor.system(20)),
    ):
        with pytest.raises(ItemNotFound):
            call()
    assert lamp.item(item.id, tenant).state == "off"
    assert lamp.execute(item.id, "switch_on", Actor.system(10)).to_state == "on"
    with pytest.raises(AccessDenied):
        lamp.place("lamp", "device", 2, tenant, account_id=20)


def test_unknown_item(lamp: Flowkernel) -> None:
    for call in (
        lambda: lamp.item(999, ALICE),
        lambda: lamp.execute(999, "switch_on", ALICE),
        lambda: lamp.history(999, ALICE),
    ):
        with pytest.raises(ItemNotFound):
            call()


# --- concurrency -------------------------------------------------------------------------


def test_concurrent_executions_of_one_move_take_it_once(lamp: Flowkernel) -> None:
    rounds = 4
    ids = [lamp.place("lamp", "device", n, ALICE).id for n in range(rounds)]
    outcomes: list[object] = []
    lock = threading.Lock()

    def run(item_id: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            outcome: object = lamp.execute(item_id, "switch_on", ALICE)
        except Exception as exc:  # collected and asserted below
            outcome = exc
        with lock:
            outcomes.append(outcome)

    for item_id in ids:
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=run, args=(item_id, barrier)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    moved = [o for o in outcomes if isinstance(o, ExecutionResult)]
    refused = [o for o in outcomes if isinstance(o, MethodNotAvailable)]
    assert len(outcomes) == 2 * rounds
    assert (len(moved), len(refused)) == (rounds, rounds), outcomes
    assert all(r.from_state == "off" and r.to_state == "on" for r in moved)
    assert all(e.state == "on" for e in refused)
    for item_id in ids:
        moves = Counter((e.from_state, e.to_state) for e in lamp.history(item_id, ALICE))
        assert moves == Counter({(None, "off"): 1, ("off", "on"): 1})
        assert lamp.item(item_id, ALICE).state == "on"
        assert [r.method_code for r in history_log(lamp, item_id)] == ["create", "switch_on"]
        assert call_log(lamp, item_id) == []


def test_concurrent_no_op_method_is_decided_from_the_new_state(region: Flowkernel) -> None:
    item = region.place("region", "region", 1, ALICE)
    results: list[ExecutionResult] = []
    refusals: list[MethodNotAvailable] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            results.append(region.execute(item.id, "enable", ALICE))
        except MethodNotAvailable as refused:
            refusals.append(refused)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # The second call waits for the first and finds the item enabled, where enable would do
    # nothing: it is refused, and names what to run first.
    assert [(r.from_state, r.to_state, r.changed) for r in results] == [
        ("created", "enabled", True)
    ]
    assert [(e.method, e.state, e.applies_in) for e in refusals] == [
        ("enable", "enabled", ("created", "disabled"))
    ]
    assert [e.from_state for e in region.history(item.id, ALICE)] == [None, "created"]


# --- read side ---------------------------------------------------------------------------


def test_state_at_reads_the_history(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "device", 1, ALICE)
    lamp.execute(item.id, "switch_on", ALICE)
    lamp.execute(item.id, "switch_off", ALICE)
    placed, on, off = lamp.history(item.id, ALICE)
    assert placed.moved_at < on.moved_at < off.moved_at
    tick = timedelta(microseconds=1)
    assert lamp.state_at(item.id, placed.moved_at - timedelta(seconds=1), ALICE) is None
    assert lamp.state_at(item.id, placed.moved_at, ALICE) == "off"
    assert lamp.state_at(item.id, on.moved_at - tick, ALICE) == "off"
    assert lamp.state_at(item.id, on.moved_at, ALICE) == "on"
    assert lamp.state_at(item.id, off.moved_at - tick, ALICE) == "on"
    assert lamp.state_at(item.id, datetime.now(UTC), ALICE) == "off"
    # A naive moment is UTC.
    naive = on.moved_at.astimezone(UTC).replace(tzinfo=None)
    assert lamp.state_at(item.id, naive, ALICE) == "on"


def test_history_records_actor_and_method(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "device", 1, ALICE)
    lamp.execute(item.id, "switch_on", SYSTEM)
    lamp.execute(item.id, "inspect", SYSTEM)  # no state change, no history row
    entries = lamp.history(item.id, ALICE)
    assert [(e.method, e.user_id, e.is_system) for e in entries] == [
        ("create", 1, False),
        ("switch_on", None, True),
    ]
    assert all(e.item_id == item.id for e in entries)


def test_methods_are_ordered_by_sequence(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "device", 1, ALICE)
    listed = lamp.methods(item.id, ALICE)
    assert [m.code for m in listed] == ["switch_on", "submit"]
    assert [m.sequence for m in listed] == sorted(m.sequence for m in listed)
    assert [(m.target, m.is_global) for m in listed] == [("on", False), (None, True)]
    lamp.definitions.edit_method("lamp", None, "submit", sequence=-5)
    assert [m.code for m in lamp.methods(item.id, ALICE)] == ["submit", "switch_on"]
    assert [m.code for m in lamp.methods(item.id, SYSTEM)] == ["submit", "switch_on", "inspect"]


def test_method_call_log(lamp: Flowkernel) -> None:
    tenant = Actor.user(5, 10)
    item = lamp.place("lamp", "device", 1, tenant)
    lamp.execute(item.id, "switch_on", tenant, params={"reason": "dark"})
    lamp.execute(item.id, "inspect", Actor.system(10))
    lamp.execute(item.id, "submit", tenant)
    on = lamp.item(item.id, tenant).state_id
    moves = history_log(lamp, item.id)
    assert [
        (
            r.method_code,
            r.action_code,
            r.from_stage_id,
            r.to_stage_id,
            r.moved_by_iam_user_id,
            r.is_system,
            r.flow_pipeline_id,
        )
        for r in moves
    ] == [
        ("create", "create", None, item.state_id, 5, False, item.class_id),
        ("switch_on", "enable", item.state_id, on, 5, False, item.class_id),
    ]
    assert [r.params for r in moves] == [None, {"reason": "dark"}]
    # the method-call log holds the executions that changed no state
    rows = call_log(lamp, item.id)
    assert [
        (
            r.method_code,
            r.action_code,
            r.from_stage_id,
            r.to_stage_id,
            r.actor_iam_user_id,
            r.is_system,
            r.iam_account_id,
            r.flow_pipeline_id,
        )
        for r in rows
    ] == [
        ("inspect", "check", on, None, None, True, 10, item.class_id),
        ("submit", "submit", on, None, 5, False, 10, item.class_id),
    ]
    assert [r.params for r in rows] == [None, None]
    assert all(a.called_at <= b.called_at for a, b in pairwise(rows))
    assert moves[-1].moved_at <= rows[0].called_at


def test_method_executed_hook_runs_after_commit(lamp: Flowkernel) -> None:
    observer = Observer(lamp.engine)
    lamp.register_plugin(observer, name="observer")
    item = lamp.place("lamp", "device", 1, ALICE)
    assert observer.seen == []  # placing is not a method execution
    lamp.execute(item.id, "switch_on", ALICE)
    with pytest.raises(MethodNotAvailable):
        lamp.execute(item.id, "switch_on", ALICE)
    lamp.execute(item.id, "inspect", SYSTEM)
    on = lamp.item(item.id, ALICE).state_id
    assert [(r.method, r.to_state, stage) for r, stage in observer.seen] == [
        ("switch_on", "on", on),  # another connection already sees the new state
        ("inspect", "on", on),
    ]
    result = observer.seen[0][0]
    assert (result.item_id, result.class_code, result.actor) == (item.id, "lamp", ALICE)


def test_dropped_item_keeps_its_history(region: Flowkernel) -> None:
    tenant = Actor.user(5, 10)
    item = region.place("region", "region", 1, tenant)
    region.execute(item.id, "delete", tenant)
    assert region.execute(item.id, "drop", tenant).dropped
    assert [e.to_state for e in region.history(item.id, tenant)] == ["created", "deleted"]
    with pytest.raises(ItemNotFound):
        region.history(item.id, Actor.user(6, 20))
    with pytest.raises(ItemNotFound):
        region.execute(item.id, "restore", tenant)


def test_dropped_item_ids_are_not_reused(region: Flowkernel) -> None:
    item = region.place("region", "region", 1, ALICE)
    region.execute(item.id, "delete", ALICE)
    region.execute(item.id, "drop", ALICE)
    again = region.place("region", "region", 1, ALICE)
    assert again.id > item.id
    assert [e.to_state for e in region.history(again.id, ALICE)] == ["created"]
    assert [r.method_code for r in history_log(region, again.id)] == ["create"]


def test_state_at_refuses_a_moment_that_is_not_a_datetime(fk: Flowkernel) -> None:
    fk.definitions.add_class("memo", "Memo")
    fk.definitions.add_default_methods("memo")
    item = fk.place("memo", "memo", 1, ALICE)
    with pytest.raises(InvalidArgument, match="when must be a datetime"):
        fk.state_at(item.id, "2020-01-01", ALICE)  # type: ignore[arg-type]


# --- standard actions move on their own ------------------------------------------------------


def test_standard_actions_change_state_whatever_handlers_their_chain_holds(
    region: Flowkernel,
) -> None:
    """The seed: standard actions (enable, disable, delete, restore) handle state changes
    automatically. A handler added to their chain runs, and the item still moves; a custom
    action moves only through `change_object_state`."""
    fk = region
    boom = Boom()
    fk.register_plugin(boom, name="boom")
    for action in ("enable", "disable", "delete", "restore"):
        fk.definitions.add_event("region", action, "submit")
    item = fk.place("region", "region", 1, SYSTEM).id
    for method, state in (
        ("enable", "enabled"),
        ("disable", "disabled"),
        ("delete", "deleted"),
        ("restore", "created"),
    ):
        result = fk.execute(item, method, SYSTEM)
        assert (result.changed, result.to_state) == (True, state), method
    assert boom.calls == ["enable", "disable", "delete", "restore"]
    assert fk.compiled("region").methods["created"]["enable"].chain == (
        "submit",
        "change_object_state",
    )

    # a chain that names the state change itself runs it where the author put it, once
    fk.definitions.add_event("region", "enable", "change_object_state")
    chain = fk.compiled("region").methods["created"]["enable"].chain
    assert sorted(chain) == ["change_object_state", "submit"]

    # a custom action's chain replaces the default: without change_object_state it stays
    d = fk.definitions
    # `submit` is a custom action of the catalogue
    d.add_method("region", "created", "submit")
    d.add_transition("region", "created", "submit", "enabled")
    d.add_event("region", "submit", "submit")
    assert fk.execute(item, "submit", SYSTEM).changed is False
    assert fk.item(item, SYSTEM).state == "created"


def test_a_class_that_declares_its_object_type_refuses_others(fk: Flowkernel) -> None:
    d = fk.definitions
    d.add_class("meter", "Meter", object_type="power_meter")
    d.add_default_methods("meter")
    d.add_class("anything", "Anything")
    d.add_default_methods("anything")
    before = counts(fk)
    with pytest.raises(WrongObjectType) as refused:
        fk.place("meter", "ev_charger", 20, SYSTEM)
    error = refused.value
    assert (error.class_code, error.expected, error.object_type) == (
        "meter",
        "power_meter",
        "ev_charger",
    )
    assert "holds 'power_meter' objects" in error.message
    assert counts(fk) == before
    assert fk.place("meter", "power_meter", 20, SYSTEM).object_type == "power_meter"
    assert fk.place("anything", "ev_charger", 20, SYSTEM).object_type == "ev_charger"
