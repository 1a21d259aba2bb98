"""Batch execution: one transaction, an outcome per item, abort or skip, same as one by one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import func, select

from flowkernel import (
    SYSTEM,
    AccessDenied,
    Actor,
    ChecklistIncomplete,
    EventContext,
    ExecutionResult,
    Flowkernel,
    HandlerFailed,
    InvalidArgument,
    ItemNotFound,
    MethodNotAvailable,
    RequirementMissing,
    StageSpec,
    hookimpl,
)
from flowkernel.examples.charging_station import build_station_class
from flowkernel.hookspecs import EventHandler
from flowkernel.runtime.batch import MAX_BATCH, BatchFailure, BatchResult
from flowkernel.store.tables import history, items, method_calls, outbox

OPERATOR = Actor.user(1, None)


class Recorder:
    """A plugin whose `record_call` handler notes every item it runs for; some items refuse."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []
        self.refuse: set[int] = set()

    def record_call(self, context: EventContext) -> None:
        if context.item.object_id in self.refuse:
            raise ValueError(f"station {context.item.object_id} is unreachable")
        self.calls.append((context.item.id, context.method.code))

    @hookimpl
    def flowkernel_event_handlers(self) -> Mapping[str, EventHandler]:
        return {"record_call": self.record_call}


@pytest.fixture
def recorder(fk: Flowkernel) -> Recorder:
    plugin = Recorder()
    fk.register_plugin(plugin, name="recorder")
    return plugin


def stations(
    fk: Flowkernel, count: int, *, first_object: int = 1, code: str = "station"
) -> list[int]:
    """Place `count` stations and enable them (state unavailable)."""
    ids = [fk.place(code, "charging_station", first_object + i, OPERATOR).id for i in range(count)]
    for item_id in ids:
        fk.execute(item_id, "enable", OPERATOR)
    return ids


@pytest.fixture
def station_class(fk: Flowkernel, recorder: Recorder) -> str:
    build_station_class(fk)
    # a handler that runs on every heartbeat and availability report, per item
    fk.definitions.add_event("station", "heartbeat", "record_call", label="Record")
    fk.definitions.add_event("station", "available", "record_call", label="Record")
    return "station"


def snapshot_db(fk: Flowkernel) -> dict[str, Any]:
    """Everything a batch may change: item rows, history, call log, outbox."""
    with fk.engine.connect() as conn:
        return {
            "items": conn.execute(
                select(
                    items.c.id,
                    items.c.flow_stage_id,
                    items.c.version,
                    items.c.position,
                    items.c.deleted_at,
                ).order_by(items.c.id)
            ).all(),
            "history": conn.execute(select(func.count()).select_from(history)).scalar(),
            "calls": conn.execute(select(func.count()).select_from(method_calls)).scalar(),
            "outbox": conn.execute(select(func.count()).select_from(outbox)).scalar(),
        }


def states(fk: Flowkernel, ids: Sequence[int]) -> list[str]:
    return [fk.item(i, SYSTEM).state for i in ids]


def moves(fk: Flowkernel, item_id: int) -> list[tuple[str | None, str, str | None, bool]]:
    return [(e.from_state, e.to_state, e.method, e.is_system) for e in fk.history(item_id, SYSTEM)]


# --- mixed heartbeats and state changes ----------------------------------------------------


def test_mixed_heartbeats_and_availability_in_one_batch(
    fk: Flowkernel, station_class: str, recorder: Recorder
) -> None:
    ids = stations(fk, 6)
    before = snapshot_db(fk)
    methods = ["heartbeat", "available", "heartbeat", "available", "faulted", "heartbeat"]
    batch = fk.execute_batch(ids, methods, SYSTEM, params={"status": "ok"})

    assert isinstance(batch, BatchResult) and batch.ok
    assert [r.item_id for r in batch.results] == ids
    assert [r.changed for r in batch.results] == [False, True, False, True, True, False]
    assert [r.to_state for r in batch.results] == [
        "unavailable", "available", "unavailable", "available", "faulted", "unavailable"
    ]  # fmt: skip
    assert len({r.executed_at for r in batch.results}) == 1  # one transaction, one moment
    assert states(fk, ids) == [r.to_state for r in batch.results]
    # the recording handler ran once per heartbeat and availability report, in request order
    assert recorder.calls == [
        (ids[0], "heartbeat"), (ids[1], "available"), (ids[2], "heartbeat"),
        (ids[3], "available"), (ids[5], "heartbeat"),
    ]  # fmt: skip
    after = snapshot_db(fk)
    assert after["history"] == before["history"] + 3
    assert after["calls"] == before["calls"] + 3  # a state change is written to history only
    # heartbeats leave the item row alone; state changes bump the version
    versions = {row.id: row.version for row in before["items"]}
    for row in after["items"]:
        bumped = row.id in (ids[1], ids[3], ids[4])
        assert row.version == versions[row.id] + (1 if bumped else 0)
    assert moves(fk, ids[1])[-1] == ("unavailable", "available", "available", True)
    with fk.engine.connect() as conn:
        called = conn.execute(
            select(method_calls.c.params, method_calls.c.to_stage_id)
            .where(method_calls.c.flow_item_id == ids[0])
            .order_by(method_calls.c.id.desc())
            .limit(1)
        ).one()
        moved = conn.execute(
            select(history.c.params, history.c.action_code)
            .where(history.c.flow_item_id == ids[1])
            .order_by(history.c.id.desc())
            .limit(1)
        ).one()
    assert tuple(called) == ({"status": "ok"}, None)
    assert tuple(moved) == ({"status": "ok"}, "available")


def test_a_batch_equals_executing_one_by_one(fk: Flowkernel, station_class: str) -> None:
    batched = stations(fk, 8, first_object=1)
    single = stations(fk, 8, first_object=101)
    rounds: list[list[str]] = [
        ["available", "heartbeat", "faulted", "available", "heartbeat", "disable", "heartbeat",
         "available"],
        ["heartbeat", "available", "available", "unavailable", "heartbeat", "enable",
         "faulted", "faulted"],
        ["disable", "heartbeat", "disable", "heartbeat", "available", "delete", "available",
         "heartbeat"],
    ]  # fmt: skip
    actor = SYSTEM
    for methods in rounds:
        batch = fk.execute_batch(batched, methods, actor, on_error="skip")
        one_by_one: list[ExecutionResult | BatchFailure] = []
        for item_id, method in zip(single, methods, strict=True):
            try:
                one_by_one.append(fk.execute(item_id, method, actor))
            except MethodNotAvailable as exc:
                one_by_one.append(BatchFailure(item_id, exc))
        for got, want in zip(batch.outcomes, one_by_one, strict=True):
            if isinstance(want, BatchFailure):
                assert isinstance(got, BatchFailure) and got.code == want.code
            else:
                assert isinstance(got, ExecutionResult)
                assert (got.method, got.from_state, got.to_state, got.changed) == (
                    want.method,
                    want.from_state,
                    want.to_state,
                    want.changed,
                )
    assert states(fk, batched) == states(fk, single)
    for left, right in zip(batched, single, strict=True):
        assert moves(fk, left) == moves(fk, right)
        assert fk.item(left, SYSTEM).deleted == fk.item(right, SYSTEM).deleted
    with fk.engine.connect() as conn:
        per_item = {
            item_id: count
            for item_id, count in conn.execute(
                select(method_calls.c.flow_item_id, func.count()).group_by(
                    method_calls.c.flow_item_id
                )
            )
        }
    assert [per_item.get(i, 0) for i in batched] == [per_item.get(i, 0) for i in single]


# --- abort and skip ------------------------------------------------------------------------


def test_abort_raises_the_first_refusal_and_changes_nothing(
    fk: Flowkernel, station_class: str, recorder: Recorder
) -> None:
    ids = stations(fk, 4)
    fk.execute(ids[2], "available", SYSTEM)  # already available: no 'available' method there
    before = snapshot_db(fk)
    with pytest.raises(MethodNotAvailable) as refused:
        fk.execute_batch(ids, "available", SYSTEM)
    assert refused.value.method == "available"
    assert snapshot_db(fk) == before
    assert states(fk, ids) == ["unavailable", "unavailable", "available", "unavailable"]

    recorder.refuse = {2}  # the handler of station 2 (ids[1]) raises
    with pytest.raises(HandlerFailed):
        fk.execute_batch([ids[0], ids[1], ids[3]], "heartbeat", SYSTEM)
    assert snapshot_db(fk) == before


def test_skip_reports_refused_items_and_commits_the_rest(
    fk: Flowkernel, station_class: str, recorder: Recorder
) -> None:
    ids = stations(fk, 5)
    fk.execute(ids[2], "available", SYSTEM)
    recorder.refuse = {4}  # ids[3]'s handler raises
    before = snapshot_db(fk)
    batch = fk.execute_batch([*ids, 999999], "available", SYSTEM, on_error="skip")

    assert not batch.ok
    assert [type(o).__name__ for o in batch.outcomes] == [
        "ExecutionResult", "ExecutionResult", "BatchFailure", "BatchFailure", "ExecutionResult",
        "BatchFailure",
    ]  # fmt: skip
    failures = {f.item_id: f for f in batch.failures}
    assert failures[ids[2]].code == "method_not_available"
    assert isinstance(failures[ids[3]].error, HandlerFailed)
    assert isinstance(failures[999_999].error, ItemNotFound)
    assert "available" in failures[ids[2]].message
    assert states(fk, ids) == ["available", "available", "available", "unavailable", "available"]
    after = snapshot_db(fk)
    assert after["history"] == before["history"] + 3
    assert after["calls"] == before["calls"]  # the state changes are in the history only
    # the skipped item's row is untouched
    assert [r for r in after["items"] if r.id == ids[3]] == [
        r for r in before["items"] if r.id == ids[3]
    ]


# --- rules per item ------------------------------------------------------------------------


def test_tenancy_and_hidden_methods_apply_per_item(fk: Flowkernel, station_class: str) -> None:
    acme = Actor.user(7, 1)
    globex = Actor.user(8, 2)
    mine = [fk.place("station", "charging_station", i, acme, account_id=1).id for i in (1, 2)]
    theirs = fk.place("station", "charging_station", 3, globex, account_id=2).id
    for item_id in (*mine, theirs):
        fk.execute(item_id, "enable", SYSTEM)
    before = snapshot_db(fk)

    # another account's item is not found (its existence does not leak), nothing changes
    with pytest.raises(ItemNotFound):
        fk.execute_batch([mine[0], theirs, mine[1]], "disable", acme)
    assert snapshot_db(fk) == before
    skipped = fk.execute_batch([mine[0], theirs, mine[1]], "disable", acme, on_error="skip")
    assert [f.item_id for f in skipped.failures] == [theirs]
    assert isinstance(skipped.failures[0].error, ItemNotFound)
    assert states(fk, [*mine, theirs]) == ["disabled", "disabled", "unavailable"]

    # hidden methods are for the system actor: a user sees no such method
    with pytest.raises(MethodNotAvailable):
        fk.execute_batch([theirs], "heartbeat", globex)
    # an actor confined to one account cannot reach the other's items either
    confined = Actor.system(account_id=1)
    result = fk.execute_batch([theirs, mine[0]], "heartbeat", confined, on_error="skip")
    assert [type(o).__name__ for o in result.outcomes] == ["BatchFailure", "BatchFailure"]
    assert result.failures[0].code == "item_not_found"
    assert result.failures[1].code == "method_not_available"  # disabled: no heartbeat


def test_access_rules_apply_per_item(fk: Flowkernel, station_class: str) -> None:
    ids = stations(fk, 2)
    fk.definitions.add_access_rule("station", subject="1", effect="deny", method="disable")
    with pytest.raises(AccessDenied):
        fk.execute_batch(ids, "disable", OPERATOR)
    assert states(fk, ids) == ["unavailable", "unavailable"]


# --- pipelines: guards, positions, outbox --------------------------------------------------


@pytest.fixture
def deals(fk: Flowkernel) -> int:
    admin = Actor.user(1, 1)
    pipeline = fk.pipelines.create_pipeline(
        "Deals",
        admin,
        stages=[
            StageSpec("Lead", checklist=[{"key": "call", "label": "Call", "required": True}]),
            StageSpec("Qualified"),
            StageSpec("Proposal"),
            StageSpec("Lost", is_lost=True),
        ],
    )
    fk.pipelines.add_column(pipeline.id, "budget", admin, field_type="number")
    fk.pipelines.require_column(pipeline.id, "proposal", "budget", admin)
    fk.pipelines.add_automation(pipeline.id, "stage_entered", "deal.moved", admin)
    return pipeline.id


def test_pipeline_guards_are_checked_per_item(fk: Flowkernel, deals: int) -> None:
    admin = Actor.user(1, 1)
    ids = [fk.place(deals, "deal", i, admin).id for i in range(1, 5)]
    fk.items.complete_checklist_item(ids[0], "call", admin)
    fk.items.complete_checklist_item(ids[1], "call", admin)
    fk.items.set_value(ids[0], "budget", 1000, admin)
    fk.items.set_value(ids[2], "budget", 500, admin)  # but its checklist is open
    before = snapshot_db(fk)
    with pytest.raises(RequirementMissing) as missing:
        fk.execute_batch(ids[:2], "move_to_proposal", admin)
    assert missing.value.missing == (("budget", "budget"),)
    assert missing.value.stage == "proposal"
    assert snapshot_db(fk) == before

    batch = fk.execute_batch(ids, "move_to_proposal", admin, on_error="skip")
    assert isinstance(batch.outcomes[0], ExecutionResult) and batch.outcomes[0].changed
    assert [f.item_id for f in batch.failures] == ids[1:]
    assert isinstance(batch.failures[0].error, RequirementMissing)
    assert [type(f.error) for f in batch.failures] == [
        RequirementMissing, ChecklistIncomplete, RequirementMissing
    ]  # fmt: skip

    # a lost stage needs no checklist; two items land at the end of the stage, in order
    lost = fk.execute_batch([ids[3], ids[2]], "move_to_lost", admin)
    assert lost.ok
    positions = [fk.item(i, admin).position for i in (ids[3], ids[2])]
    assert positions[1] == positions[0] + 1


def test_moves_write_outbox_rows_like_single_moves(fk: Flowkernel, deals: int) -> None:
    admin = Actor.user(1, 1)
    fk_single = [fk.place(deals, "deal", i, admin).id for i in (1, 2)]
    fk_batch = [fk.place(deals, "deal", i, admin).id for i in (3, 4)]
    for item_id in (fk_single[0], fk_batch[0]):
        fk.items.watch(item_id, 42, admin)
    for item_id in (*fk_single, *fk_batch):
        fk.items.complete_checklist_item(item_id, "call", admin)

    def rows_of(item_ids: Sequence[int]) -> list[tuple[str, str, int | None]]:
        with fk.engine.connect() as conn:
            return [
                (r.kind, r.event_name, r.recipient_iam_user_id)
                for r in conn.execute(
                    select(outbox)
                    .where(outbox.c.flow_item_id.in_(item_ids), outbox.c.trigger != "item_created")
                    .order_by(outbox.c.id)
                )
            ]

    for item_id in fk_single:
        fk.move(item_id, "qualified", admin)
    batch = fk.execute_batch(fk_batch, "move_to_qualified", admin)
    assert batch.ok
    assert rows_of(fk_batch) == rows_of(fk_single)
    assert ("notification", "watcher.stage_changed", 42) in rows_of(fk_batch)
    assert ("automation", "deal.moved", None) in rows_of(fk_batch)


def test_soft_delete_restore_and_drop_in_a_batch(fk: Flowkernel, deals: int) -> None:
    admin = Actor.user(1, 1)
    ids = [fk.place(deals, "deal", i, admin).id for i in (1, 2, 3)]
    assert fk.execute_batch(ids, "delete", admin).ok
    assert all(fk.item(i, admin).deleted for i in ids)
    batch = fk.execute_batch(ids, ["restore", "drop", "move_to_qualified"], admin, on_error="skip")
    assert [type(o).__name__ for o in batch.outcomes] == [
        "ExecutionResult", "ExecutionResult", "BatchFailure"
    ]  # fmt: skip
    assert batch.failures[0].code == "method_not_available"  # deleted: restore or drop only
    assert not fk.item(ids[0], admin).deleted
    with pytest.raises(ItemNotFound):
        fk.item(ids[1], admin)
    assert fk.history(ids[1], admin)  # history outlives the dropped item
    assert fk.item(ids[2], admin).deleted


# --- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item_ids", "method", "extra"),
    [
        ([1, 1], "heartbeat", {}),
        ([1, 2], ["heartbeat"], {}),
        ([1, "2"], "heartbeat", {}),
        ([1, 2**64], "heartbeat", {}),
        ("12", "heartbeat", {}),
        ([1], 5, {}),
        ([1], "heartbeat", {"on_error": "ignore"}),
        ([1], "heartbeat", {"params": ["status"]}),
        (list(range(1, MAX_BATCH + 2)), "heartbeat", {}),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(
    fk: Flowkernel, station_class: str, item_ids: Any, method: Any, extra: dict[str, Any]
) -> None:
    stations(fk, 2)
    before = snapshot_db(fk)
    with pytest.raises(InvalidArgument):
        fk.execute_batch(item_ids, method, SYSTEM, **extra)
    assert snapshot_db(fk) == before


def test_an_empty_batch_does_nothing(fk: Flowkernel) -> None:
    assert fk.execute_batch([], "heartbeat", SYSTEM) == BatchResult(())


def test_by_action_resolves_the_first_method_of_the_action(
    fk: Flowkernel, station_class: str
) -> None:
    ids = stations(fk, 2)
    batch = fk.execute_batch(ids, "available", SYSTEM, by_action=True)
    assert [r.method for r in batch.results] == ["available", "available"]
    assert states(fk, ids) == ["available", "available"]


def test_abort_raises_the_first_refusal_in_request_order(
    fk: Flowkernel, station_class: str, recorder: Recorder
) -> None:
    ids = stations(fk, 3)
    fk.execute(ids[2], "available", SYSTEM)  # no 'available' in that state any more
    recorder.refuse = {1}  # the first item's handler refuses
    before = snapshot_db(fk)
    with pytest.raises(HandlerFailed):  # not the third item's MethodNotAvailable
        fk.execute_batch(ids, "available", SYSTEM)
    assert snapshot_db(fk) == before
