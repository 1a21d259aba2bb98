"""Pipeline templates: system templates, account templates, cloning and independence of the
clones, on SQLite and PostgreSQL."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from flowkernel import (
    SYSTEM,
    AccessDenied,
    Actor,
    DuplicateCode,
    FlowkernelError,
    InvalidArgument,
    InvalidDefinition,
    MoveNotAllowed,
    RequirementMissing,
    UnknownDefinition,
)
from flowkernel.definition.pipelines.admin import PipelineInfo
from flowkernel.kernel import Flowkernel
from flowkernel.store.tables import (
    automations,
    columns,
    history,
    items,
    outbox,
    pipelines,
    required_columns,
    stage_moves,
    stages,
)

ALICE = Actor.user(1, 10)
BOB = Actor.user(2, 20)

CHECKLIST = [{"key": "proposal_sent", "label": "Proposal sent to client", "required": True}]
STAGES: list[dict[str, Any]] = [
    {"name": "Lead", "color": "#94a3b8", "probability": 10, "sla_days": 7},
    {"name": "Qualified", "color": "#60a5fa", "probability": 30, "sla_days": 14},
    {"name": "Proposal", "color": "#f59e0b", "probability": 60, "checklist": CHECKLIST},
    {"name": "Won", "code": "closed_won", "color": "#22c55e", "probability": 100, "is_won": True},
    {"name": "Lost", "color": "#ef4444", "probability": 0, "is_lost": True},
]
COLUMNS: list[dict[str, Any]] = [
    {"name": "close_date", "label": "Expected Close", "field_type": "date"},
    {"name": "priority", "label": "Priority", "field_type": "select", "options": ["High", "Low"]},
]
TABLES = (pipelines, stages, columns, required_columns, automations, stage_moves, items, history)


def db_state(fk: Flowkernel) -> dict[str, list[tuple[Any, ...]]]:
    with fk.engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(t.c.id))] for t in TABLES
        }


def refused(fk: Flowkernel, error: type[FlowkernelError], call: Callable[[], object]) -> None:
    """Run `call`, expect `error`, and check that the database is exactly as before."""
    before = db_state(fk)
    with pytest.raises(error):
        call()
    assert db_state(fk) == before


def full_template(fk: Flowkernel, actor: Actor = SYSTEM, **kwargs: Any) -> PipelineInfo:
    """A template using every part of a definition."""
    admin = fk.pipelines
    if actor is SYSTEM:
        kwargs.setdefault("is_system", True)
    else:
        kwargs.setdefault("is_template", True)
    t = admin.create_pipeline(
        "Sales template",
        actor,
        code="sales",
        description="Blueprint",
        object_type="crm_opportunity",
        stages=STAGES,
        columns=COLUMNS,
        **kwargs,
    )
    admin.add_column(t.id, "legacy", actor)
    admin.deactivate_column(t.id, "legacy", actor)
    admin.require_column(t.id, "proposal", "close_date", actor)
    admin.add_automation(
        t.id, "stage_entered", "deal.won", actor, stage="closed_won", name="Celebrate",
        payload_template={"channel": "#wins"},
    )  # fmt: skip
    admin.add_automation(t.id, "item_created", "deal.created", actor, is_active=False)
    admin.add_automation(t.id, "stage_exited", "deal.gone", actor, stage="lost")
    admin.delete_automation(admin.add_automation(t.id, "sla_breached", "x", actor).id, actor)
    admin.add_stage(t.id, "Dropped", actor)
    admin.remove_stage(t.id, "dropped", actor)
    return admin.set_movement(
        t.id, actor, allow_backward=False, allowed_moves=[("lead", "qualified"), ("lead", "lost")]
    )


def shape(p: PipelineInfo) -> dict[str, Any]:
    """Everything of a definition but ids, owners and versions."""
    return {
        "description": p.description,
        "object_type": p.object_type,
        "movement": (p.movement, p.allow_skip_forward, p.allow_backward, p.allowed_moves),
        "stages": [
            (
                s.code,
                s.name,
                s.position,
                s.color,
                s.probability,
                s.sla_days,
                s.is_won,
                s.is_lost,
                s.checklist,
                s.required_columns,
            )
            for s in p.stages
        ],
        "columns": [
            (c.name, c.label, c.field_type, c.options, c.is_required, c.position, c.is_active)
            for c in p.columns
        ],
        "automations": [
            (a.name, a.trigger, a.stage, a.event_name, dict(a.payload_template), a.is_active)
            for a in p.automations
        ],
    }


# --- system templates --------------------------------------------------------------------


def test_only_the_platform_system_actor_creates_and_changes_system_templates(
    fk: Flowkernel,
) -> None:
    refused(fk, AccessDenied, lambda: fk.pipelines.create_pipeline("T", ALICE, is_system=True))
    refused(
        fk,
        AccessDenied,
        lambda: fk.pipelines.create_pipeline("T", Actor.system(10), is_system=True),
    )
    refused(
        fk,
        InvalidArgument,
        lambda: fk.pipelines.create_pipeline("T", SYSTEM, is_system=True, account_id=10),
    )
    t = full_template(fk)
    assert (t.is_system, t.is_template, t.account_id, t.user_id) == (True, True, None, None)
    # Everyone reads it.
    assert fk.pipelines.get_pipeline(t.id, ALICE) == t
    assert fk.pipelines.get_pipeline(t.id, BOB) == t
    assert t.id in {p.id for p in fk.pipelines.list_pipelines(BOB, templates=True)}
    # Only the platform's system actor changes it.
    admin = fk.pipelines
    auto = t.automations[0].id
    changes: list[Callable[[Actor], object]] = [
        lambda a: admin.edit_pipeline(t.id, a, name="Mine"),
        lambda a: admin.delete_pipeline(t.id, a),
        lambda a: admin.add_stage(t.id, "X", a),
        lambda a: admin.edit_stage(t.id, "lead", a, sla_days=1),
        lambda a: admin.remove_stage(t.id, "qualified", a),
        lambda a: admin.set_movement(t.id, a, allowed_moves=None),
        lambda a: admin.add_column(t.id, "x", a),
        lambda a: admin.require_column(t.id, "lead", "priority", a),
        lambda a: admin.edit_automation(auto, a, name="x"),
        lambda a: admin.delete_automation(auto, a),
    ]
    for actor in (ALICE, Actor.system(10)):
        for change in changes:
            refused(fk, AccessDenied, functools.partial(change, actor))
    assert admin.edit_stage(t.id, "lead", SYSTEM, name="New lead").name == "New lead"


# --- cloning -----------------------------------------------------------------------------


def test_clone_a_system_template_into_two_accounts(fk: Flowkernel) -> None:
    t = full_template(fk)
    mine = fk.pipelines.clone_template(t.id, 10, ALICE)
    theirs = fk.pipelines.clone_template(t.id, 20, BOB, "Bob's sales", code="bob_sales")
    assert shape(mine) == shape(t) == shape(theirs)
    assert (mine.name, mine.code, mine.account_id, mine.user_id) == (
        "Sales template",
        "sales",
        10,
        1,
    )
    assert (theirs.name, theirs.code, theirs.account_id) == ("Bob's sales", "bob_sales", 20)
    for clone in (mine, theirs):
        assert (clone.is_template, clone.is_system, clone.template_id) == (False, False, t.id)
        assert clone.movement == "free"
        # Every id is new, and every reference points inside the clone.
        assert not {s.id for s in clone.stages} & {s.id for s in t.stages}
        assert not {c.id for c in clone.columns} & {c.id for c in t.columns}
        clone_stages = {s.id for s in clone.stages}
        assert {a.stage_id for a in clone.automations} <= clone_stages | {None}
        assert not {a.id for a in clone.automations} & {a.id for a in t.automations}
    with fk.engine.connect() as conn:
        stored = conn.execute(
            select(pipelines.c.template_id).where(pipelines.c.id == mine.id)
        ).scalar_one()
        required = conn.execute(
            select(required_columns.c.flow_stage_id, required_columns.c.flow_column_id)
        ).all()
        moves = conn.execute(
            select(stage_moves.c.flow_pipeline_id, stage_moves.c.from_stage_id)
        ).all()
    assert stored == t.id
    assert (mine.stage("proposal").id, mine.column("close_date").id) in required
    assert {(pid, sid) for pid, sid in moves if pid == mine.id} == {
        (mine.id, mine.stage("lead").id)
    }
    # The template itself is unchanged and Bob cannot see Alice's clone.
    assert fk.pipelines.get_pipeline(t.id, SYSTEM) == t
    refused(fk, UnknownDefinition, lambda: fk.pipelines.get_pipeline(mine.id, BOB))


def test_clones_work_like_the_template_describes(fk: Flowkernel) -> None:
    t = full_template(fk)
    clone = fk.pipelines.clone_template(t.id, 10, ALICE)
    compiled = fk.compiled(clone.id)
    assert compiled.states["proposal"].required[0].name == "close_date"
    assert compiled.states["proposal"].checklist[0].key == "proposal_sent"
    # The clone keeps the template's code, and the account's code wins over the platform's.
    item = fk.place("sales", "crm_opportunity", 1, ALICE)
    assert item.class_id == clone.id and item.state == "lead"
    with pytest.raises(MoveNotAllowed):
        fk.move(item.id, "proposal", ALICE)  # the copied allowed moves
    assert fk.move(item.id, "qualified", ALICE).to_state == "qualified"
    with pytest.raises(MoveNotAllowed):
        fk.move(item.id, "lead", ALICE)  # the copied allow_backward=False
    with pytest.raises(RequirementMissing):
        fk.move(item.id, "proposal", ALICE)
    fk.items.set_value(item.id, "close_date", "2026-07-01", ALICE)
    fk.move(item.id, "proposal", ALICE)
    fk.items.complete_checklist_item(item.id, "proposal_sent", ALICE)
    fk.move(item.id, "closed_won", ALICE)
    with fk.engine.connect() as conn:
        fired = conn.execute(
            select(outbox.c.event_name, outbox.c.flow_automation_id, outbox.c.payload)
        ).all()
    won = next(a for a in clone.automations if a.event_name == "deal.won")
    assert [(name, auto) for name, auto, _ in fired] == [("deal.won", won.id)]
    assert fired[0][2]["channel"] == "#wins"
    # Nothing was placed into the template.
    with fk.engine.connect() as conn:
        assert conn.execute(select(items.c.id).where(items.c.flow_pipeline_id == t.id)).all() == []


def test_clones_and_templates_are_independent(fk: Flowkernel) -> None:
    t = full_template(fk)
    clone = fk.pipelines.clone_template(t.id, 10, ALICE)
    item = fk.place(clone.id, "crm_opportunity", 1, ALICE)
    admin = fk.pipelines

    # Editing the template leaves the clone as it was.
    admin.edit_pipeline(t.id, SYSTEM, name="Sales template v2", description="New")
    admin.edit_stage(
        t.id, "lead", SYSTEM, name="Prospect", sla_days=1, color="#fff", checklist=CHECKLIST
    )
    admin.add_stage(t.id, "Negotiation", SYSTEM, position=3)
    admin.edit_column(t.id, "priority", SYSTEM, options=["Urgent"], label="Prio")
    admin.add_column(t.id, "region", SYSTEM)
    admin.unrequire_column(t.id, "proposal", "close_date", SYSTEM)
    admin.require_column(t.id, "lead", "priority", SYSTEM)
    admin.edit_automation(t.automations[0].id, SYSTEM, event_name="deal.closed")
    admin.set_movement(t.id, SYSTEM, allow_backward=True, allowed_moves=None)
    admin.remove_stage(t.id, "lost", SYSTEM)
    assert admin.get_pipeline(clone.id, ALICE) == clone
    assert fk.item(item.id, ALICE).state == "lead"

    # Editing the clone leaves the template as it was.
    template_now = admin.get_pipeline(t.id, SYSTEM)
    admin.edit_stage(clone.id, "qualified", ALICE, name="Hot", probability=50)
    admin.edit_column(clone.id, "priority", ALICE, options=["A", "B"])
    admin.remove_stage(clone.id, "lead", ALICE, target="qualified")
    admin.delete_automation(clone.automations[0].id, ALICE)
    admin.set_movement(clone.id, ALICE, allow_skip_forward=False)
    admin.delete_pipeline(clone.id, ALICE)
    assert admin.get_pipeline(t.id, SYSTEM) == template_now
    # Cloning again copies the template as it is now.
    again = admin.clone_template(t.id, 10, ALICE)
    assert shape(again) == shape(template_now)


def test_account_templates_clone_only_within_their_account(fk: Flowkernel) -> None:
    t = full_template(fk, ALICE)
    assert (t.is_template, t.is_system, t.account_id) == (True, False, 10)
    clone = fk.pipelines.clone_template(t.id, 10, Actor.user(5, 10), "Team copy", code="team")
    assert shape(clone) == shape(t) and clone.template_id == t.id
    # Other accounts do not find it, not even through the platform's system actor.
    refused(fk, UnknownDefinition, lambda: fk.pipelines.get_pipeline(t.id, BOB))
    refused(fk, UnknownDefinition, lambda: fk.pipelines.clone_template(t.id, 20, BOB))
    refused(fk, UnknownDefinition, lambda: fk.pipelines.clone_template(t.id, 20, SYSTEM))
    assert fk.pipelines.clone_template(t.id, 10, SYSTEM, code="by_system").account_id == 10
    assert t.id not in {p.id for p in fk.pipelines.list_pipelines(BOB)}


def test_bad_clones_are_refused(fk: Flowkernel) -> None:
    t = full_template(fk)
    live = fk.pipelines.create_pipeline("Live", ALICE, stages=STAGES)
    clone = fk.pipelines.clone_template
    refused(fk, AccessDenied, lambda: clone(t.id, 20, ALICE))
    refused(fk, InvalidDefinition, lambda: clone(live.id, 10, ALICE))
    refused(fk, UnknownDefinition, lambda: clone(10_000, 10, ALICE))
    refused(fk, InvalidArgument, lambda: clone(t.id, None, ALICE))  # type: ignore[arg-type]
    refused(fk, InvalidDefinition, lambda: clone(t.id, 10, ALICE, ""))
    refused(fk, InvalidDefinition, lambda: clone(t.id, 10, ALICE, code="not a code"))
    fk.pipelines.clone_template(t.id, 10, ALICE)
    # The template's code is taken in account 10 now: a second copy needs its own.
    refused(fk, DuplicateCode, lambda: clone(t.id, 10, ALICE))
    assert clone(t.id, 10, ALICE, "Second", code="sales_2").code == "sales_2"
    # Deleted templates are gone.
    fk.pipelines.delete_pipeline(t.id, SYSTEM)
    refused(fk, UnknownDefinition, lambda: clone(t.id, 20, BOB))


def test_templates_hold_no_items(fk: Flowkernel) -> None:
    template = full_template(fk)
    before = db_state(fk)
    refused(
        fk, InvalidArgument, lambda: fk.place(template.id, "crm_opportunity", 1, Actor.system(10))
    )
    assert db_state(fk) == before
    clone = fk.pipelines.clone_template(template.id, 10, ALICE)
    assert fk.place(clone.id, "crm_opportunity", 1, ALICE).class_id == clone.id
