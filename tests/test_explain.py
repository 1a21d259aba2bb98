"""`fk.explain`: every reason a method or move cannot run, what a possible one would do, and
that explaining reads only. Each refusal is checked against the runtime: executing the same
method raises the matching error and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from flowkernel import (
    SYSTEM,
    AccessDenied,
    Actor,
    ChecklistIncomplete,
    Flowkernel,
    InvalidDefinition,
    ItemNotDeleted,
    ItemNotFound,
    MethodNotAvailable,
    MoveNotAllowed,
    RequirementMissing,
    UnknownDefinition,
)
from flowkernel.definition.pipelines.admin import PipelineInfo
from flowkernel.runtime.explain import (
    HIDDEN,
    ITEM_DELETED,
    MISSING_FIELDS,
    MOVE_RESTRICTED,
    NO_TRANSITION,
    NOT_DELETED,
    NOT_PERMITTED,
    OPEN_CHECKLIST,
    SAME_STATE,
    STATE_GONE,
    WRONG_STATE,
    Explanation,
)
from flowkernel.store.tables import history, item_values, items, method_calls, outbox, stages

ACCOUNT = 10
REP = Actor.user(7, ACCOUNT)
USER = Actor.user(7, None)


def snapshot(fk: Flowkernel) -> list[Any]:
    """Every row explaining could touch: items, values, history, call log, outbox."""
    with fk.engine.connect() as conn:
        return [
            conn.execute(select(table).order_by(table.c.id)).all()
            for table in (items, item_values, history, method_calls, outbox)
        ]


def explain_refused(
    fk: Flowkernel, item_id: int, asked: str, actor: Actor, error: type[Exception]
) -> Explanation:
    """Explain `asked`; it must be impossible, and running it must raise `error`, changing
    nothing (neither explaining nor the refused execution)."""
    before = snapshot(fk)
    explanation = fk.explain(item_id, asked, actor)
    assert not explanation.possible
    assert explanation.reasons
    assert snapshot(fk) == before
    method = explanation.method or asked
    with pytest.raises(error):
        fk.execute(item_id, method, actor)
    assert snapshot(fk) == before
    return explanation


def codes(explanation: Explanation) -> list[str]:
    return [r.code for r in explanation.reasons]


@pytest.fixture
def lamp(fk: Flowkernel) -> Flowkernel:
    """Class `lamp`: new -start-> lit -fail (hidden)-> broken -repair-> new; lit -stop-> new."""
    d = fk.definitions
    d.add_class("lamp", "Lamp", object_type="lamp")
    d.add_state("lamp", "created", "new", "New")
    d.add_state("lamp", "enabled", "lit", "Lit")
    d.add_state("lamp", "enabled", "broken", "Broken")
    d.add_method("lamp", None, "create")
    d.add_method("lamp", "new", "start")
    d.add_method("lamp", "lit", "stop")
    d.add_method("lamp", "lit", "fail", visible=False)
    d.add_action("repair", "Repair")
    d.add_method("lamp", "broken", "repair")
    for source, method, target in (
        ("new", "start", "lit"),
        ("lit", "stop", "new"),
        ("lit", "fail", "broken"),
        ("broken", "repair", "new"),
    ):
        d.add_transition("lamp", source, method, target)
        d.add_event("lamp", method, "change_object_state")
    return fk


@pytest.fixture
def sales(fk: Flowkernel) -> tuple[Flowkernel, PipelineInfo]:
    """A pipeline of account 10: lead, qualified, proposal (needs close_date, has a required
    checklist item), won, lost; entering won fires `deal.won`."""
    p = fk.pipelines.create_pipeline(
        "Sales",
        REP,
        code="sales",
        stages=[
            {"name": "Lead"},
            {"name": "Qualified"},
            {
                "name": "Proposal",
                "checklist": [
                    {"key": "sent", "label": "Proposal sent", "required": True},
                    {"key": "call", "label": "Follow-up call", "required": False},
                ],
            },
            {"name": "Won", "is_won": True},
            {"name": "Lost", "is_lost": True},
        ],
        columns=[{"name": "close_date", "label": "Close date", "field_type": "date"}],
    )
    fk.pipelines.require_column(p.id, "proposal", "close_date", REP)
    fk.pipelines.add_automation(p.id, "stage_entered", "deal.won", REP, stage="won")
    fk.pipelines.add_automation(p.id, "stage_exited", "deal.left", REP)
    return fk, fk.pipelines.get_pipeline(p.id, REP)


def in_proposal(fk: Flowkernel, pipeline: PipelineInfo, object_id: int = 1) -> int:
    item = fk.place(pipeline.id, "deal", object_id, REP)
    fk.items.set_value(item.id, "close_date", "2030-01-31", REP)
    fk.move(item.id, "proposal", REP)
    return item.id


# --- possible ----------------------------------------------------------------------------


def test_a_possible_move_names_its_target_handlers_and_events(
    sales: tuple[Flowkernel, PipelineInfo],
) -> None:
    fk, pipeline = sales
    item = in_proposal(fk, pipeline)
    fk.items.complete_checklist_item(item, "sent", REP)
    before = snapshot(fk)
    for asked in ("won", "move_to_won", pipeline.stage("won").id):
        explanation = fk.explain(item, asked, REP)
        assert explanation.possible, explanation
        assert explanation.reasons == ()
        assert explanation.method == "move_to_won"
        assert (explanation.state, explanation.target) == ("proposal", "won")
        assert explanation.chain == ("change_object_state",)
        assert explanation.events == ("deal.won", "deal.left")
        assert explanation.class_code == "sales"
    assert "moves it from 'proposal' to 'won'" in explanation.summary
    assert snapshot(fk) == before
    assert fk.move(item, "won", REP).to_state == "won"


def test_a_method_without_transition_keeps_the_state(lamp: Flowkernel) -> None:
    lamp.definitions.add_method("lamp", None, "submit")
    item = lamp.place("lamp", "lamp", 1, USER)
    explanation = lamp.explain(item.id, "submit", USER)
    assert explanation.possible
    assert explanation.target is None
    assert "keeps it in 'new'" in explanation.summary


# --- each reason -------------------------------------------------------------------------


def test_wrong_state_lists_the_states_that_have_the_method(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "lamp", 1, USER)
    explanation = explain_refused(lamp, item.id, "repair", USER, MethodNotAvailable)
    assert codes(explanation) == [WRONG_STATE]
    assert explanation.reasons[0].subjects == ("broken",)
    assert "it runs in broken" in explanation.reasons[0].message
    assert explanation.method is None


def test_hidden_method_is_refused_to_users_and_possible_for_the_system(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "lamp", 1, USER)
    lamp.execute(item.id, "start", USER)
    explanation = explain_refused(lamp, item.id, "fail", USER, MethodNotAvailable)
    assert codes(explanation) == [HIDDEN]
    assert "system actor" in explanation.reasons[0].message
    assert lamp.explain(item.id, "fail", SYSTEM).possible

    # an access rule that lets a group execute it makes it possible for its members
    lamp.definitions.add_access_rule("lamp", subject="ops", subject_kind="group", method="fail")
    assert not lamp.explain(item.id, "fail", USER).possible
    operator = Actor.user(7, None, groups=("ops",))
    assert lamp.explain(item.id, "fail", operator).possible
    assert lamp.execute(item.id, "fail", operator).to_state == "broken"


def test_an_access_rule_denies_a_user(lamp: Flowkernel) -> None:
    item = lamp.place("lamp", "lamp", 1, USER)
    lamp.definitions.add_access_rule("lamp", subject="7", effect="deny", method="start")
    explanation = explain_refused(lamp, item.id, "start", USER, AccessDenied)
    assert codes(explanation) == [NOT_PERMITTED]
    assert "denies user '7'" in explanation.reasons[0].message
    other = Actor.user(8, None)
    assert lamp.explain(item.id, "start", other).possible


def test_a_restricted_move_names_the_rule_and_the_stages_allowed(
    sales: tuple[Flowkernel, PipelineInfo],
) -> None:
    fk, pipeline = sales
    fk.pipelines.set_movement(pipeline.id, REP, allow_backward=False, allow_skip_forward=False)
    item = fk.place(pipeline.id, "deal", 1, REP)
    fk.move(item.id, "qualified", REP)

    back = explain_refused(fk, item.id, "lead", REP, MoveNotAllowed)
    assert codes(back) == [MOVE_RESTRICTED]
    assert "does not let items move back" in back.reasons[0].message
    assert back.reasons[0].subjects == ("proposal", "won", "lost")

    fk.pipelines.set_movement(pipeline.id, REP, allowed_moves=[("qualified", "lost")])
    listed = explain_refused(fk, item.id, "won", REP, MoveNotAllowed)
    assert codes(listed) == [MOVE_RESTRICTED]
    assert listed.reasons[0].subjects == ("lost",)
    assert fk.explain(item.id, "lead", SYSTEM).possible  # the system actor is never restricted


def test_missing_fields_until_they_are_filled(sales: tuple[Flowkernel, PipelineInfo]) -> None:
    fk, pipeline = sales
    item = fk.place(pipeline.id, "deal", 1, REP)
    explanation = explain_refused(fk, item.id, "proposal", REP, RequirementMissing)
    assert codes(explanation) == [MISSING_FIELDS]
    assert explanation.reasons[0].subjects == ("close_date",)
    assert "close_date (Close date)" in explanation.reasons[0].message
    fk.items.set_value(item.id, "close_date", "2030-01-31", REP)
    assert fk.explain(item.id, "proposal", REP).possible


def test_open_checklist_items_hold_an_item_except_towards_the_lost_stage(
    sales: tuple[Flowkernel, PipelineInfo],
) -> None:
    fk, pipeline = sales
    item = in_proposal(fk, pipeline)
    explanation = explain_refused(fk, item, "won", REP, ChecklistIncomplete)
    assert codes(explanation) == [OPEN_CHECKLIST]
    assert explanation.reasons[0].subjects == ("sent",)  # the optional one does not count
    assert fk.explain(item, "lost", REP).possible
    fk.items.complete_checklist_item(item, "sent", REP)
    assert fk.explain(item, "won", REP).possible


def test_a_deleted_item_takes_only_restore_and_drop(
    sales: tuple[Flowkernel, PipelineInfo],
) -> None:
    fk, pipeline = sales
    item = fk.place(pipeline.id, "deal", 1, REP)
    fk.items.delete(item.id, REP)
    explanation = explain_refused(fk, item.id, "qualified", REP, MethodNotAvailable)
    assert codes(explanation) == [ITEM_DELETED]
    assert "restore it first" in explanation.reasons[0].message
    assert fk.explain(item.id, "restore", REP).possible
    assert fk.explain(item.id, "drop", REP).possible


def test_drop_needs_a_deleted_item(sales: tuple[Flowkernel, PipelineInfo]) -> None:
    fk, pipeline = sales
    item = fk.place(pipeline.id, "deal", 1, REP)
    explanation = explain_refused(fk, item.id, "drop", REP, ItemNotDeleted)
    assert codes(explanation) == [NOT_DELETED]
    assert "runs on deleted items only: run delete first" in explanation.reasons[0].message


def test_same_state_and_no_method_leading_there(
    lamp: Flowkernel, sales: tuple[Flowkernel, PipelineInfo]
) -> None:
    item = lamp.place("lamp", "lamp", 1, USER)
    assert codes(lamp.explain(item.id, "new", USER)) == [SAME_STATE]
    nowhere = lamp.explain(item.id, "broken", USER)
    assert codes(nowhere) == [NO_TRANSITION]
    assert nowhere.reasons[0].subjects == ("fail (from lit)",)
    lit = lamp.explain(item.id, "lit", USER)  # a state asks for the method leading there
    assert (lit.possible, lit.method) == (True, "start")

    fk, pipeline = sales
    deal = fk.place(pipeline.id, "deal", 1, REP)
    assert codes(fk.explain(deal.id, "move_to_lead", REP)) == [SAME_STATE]


def test_an_item_in_a_stage_its_class_no_longer_has(
    sales: tuple[Flowkernel, PipelineInfo],
) -> None:
    fk, pipeline = sales
    item = fk.place(pipeline.id, "deal", 1, REP)
    with fk.engine.begin() as conn:  # a stage removed by plain SQL, leaving its item behind
        conn.execute(
            update(stages)
            .where(stages.c.id == pipeline.stage("lead").id)
            .values(deleted_at=datetime.now(UTC))
        )
    explanation = explain_refused(fk, item.id, "won", REP, InvalidDefinition)
    assert codes(explanation) == [STATE_GONE]
    assert explanation.state is None


def test_every_obstacle_at_once(sales: tuple[Flowkernel, PipelineInfo]) -> None:
    fk, pipeline = sales
    fk.pipelines.set_movement(pipeline.id, REP, allow_skip_forward=False)
    fk.definitions.add_access_rule("sales", subject="7", effect="deny", account_id=ACCOUNT)
    item = fk.place(pipeline.id, "deal", 1, SYSTEM)
    explanation = explain_refused(fk, item.id, "proposal", REP, AccessDenied)
    assert codes(explanation) == [NOT_PERMITTED, MOVE_RESTRICTED, MISSING_FIELDS]
    assert "(3 reasons)" in explanation.summary


# --- what it is not ----------------------------------------------------------------------


def test_unknown_names_and_other_accounts(sales: tuple[Flowkernel, PipelineInfo]) -> None:
    fk, pipeline = sales
    item = fk.place(pipeline.id, "deal", 1, REP)
    with pytest.raises(UnknownDefinition, match="unknown method or state 'nowhere'"):
        fk.explain(item.id, "nowhere", REP)
    with pytest.raises(UnknownDefinition, match="unknown stage 9999"):
        fk.explain(item.id, 9999, REP)
    with pytest.raises(ItemNotFound):
        fk.explain(item.id, "won", Actor.user(1, ACCOUNT + 1))
    with pytest.raises(ItemNotFound):
        fk.explain(item.id + 100, "won", REP)
    create = fk.explain(item.id, "create", REP)
    assert codes(create) == [WRONG_STATE]
    assert "places new objects" in create.reasons[0].message
