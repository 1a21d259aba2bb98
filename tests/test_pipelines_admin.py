"""Pipeline administration: pipelines, stages, removal, movement rules, columns, requirements,
automations and tenancy, on SQLite and PostgreSQL.

Every refusal is checked twice: the typed error, and a re-read of every definition and item
table showing that nothing changed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rows import BREACHED_AT
from sqlalchemy import delete, func, insert, select, update

from flowkernel import (
    SYSTEM,
    AccessDenied,
    Actor,
    ChecklistIncomplete,
    DefinitionError,
    DefinitionInUse,
    DuplicateCode,
    FlowkernelError,
    InvalidArgument,
    InvalidDefinition,
    MoveNotAllowed,
    RequirementMissing,
    UnknownDefinition,
)
from flowkernel.definition.pipelines.admin import (
    MAX_CODE,
    REMOVE_STAGE,
    ColumnSpec,
    PipelineInfo,
    StageSpec,
    slugify,
)
from flowkernel.definition.pipelines.specs import ChecklistItem
from flowkernel.errors import StageNotEmpty
from flowkernel.kernel import Flowkernel
from flowkernel.runtime import executor as executor_module
from flowkernel.store.tables import (
    automations,
    columns,
    history,
    items,
    outbox,
    pipelines,
    required_columns,
    sla_breaches,
    sla_due,
    stage_moves,
    stages,
)

ALICE = Actor.user(1, 10)
ALICE_COLLEAGUE = Actor.user(3, 10)
BOB = Actor.user(2, 20)

PROPOSAL_CHECKLIST = [
    {"key": "proposal_sent", "label": "Proposal sent to client", "required": True},
    {"key": "budget_confirmed", "label": "Budget confirmed", "required": True},
    {"key": "legal_reviewed", "label": "Legal review completed", "required": False},
]

SEED_STAGES: list[dict[str, Any]] = [
    {"name": "Lead", "color": "#94a3b8", "probability": 10, "sla_days": 7},
    {"name": "Qualified", "color": "#60a5fa", "probability": 30, "sla_days": 14},
    {
        "name": "Proposal",
        "color": "#f59e0b",
        "probability": 60,
        "sla_days": 10,
        "checklist": PROPOSAL_CHECKLIST,
    },
    {"name": "Won", "color": "#22c55e", "probability": 100, "is_won": True},
    {"name": "Lost", "color": "#ef4444", "probability": 0, "is_lost": True},
]

SEED_COLUMNS: list[dict[str, Any]] = [
    {"name": "decision_maker", "label": "Decision Maker", "field_type": "text"},
    {"name": "contract_value", "label": "Contract Value", "field_type": "number"},
    {"name": "close_date", "label": "Expected Close", "field_type": "date"},
    {
        "name": "priority",
        "label": "Priority",
        "field_type": "select",
        "options": ["High", "Medium", "Low"],
    },
]

TABLES = (pipelines, stages, columns, required_columns, automations, stage_moves, items, history)


def sales(fk: Flowkernel, actor: Actor = ALICE, **kwargs: Any) -> PipelineInfo:
    """The seed's sales pipeline with its columns."""
    return fk.pipelines.create_pipeline(
        "Sales Pipeline",
        actor,
        object_type="crm_opportunity",
        stages=SEED_STAGES,
        columns=SEED_COLUMNS,
        **kwargs,
    )


def db_state(fk: Flowkernel) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the definition and item tables, to prove a refusal changed nothing."""
    with fk.engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(t.c.id))] for t in TABLES
        }


def refused(
    fk: Flowkernel, error: type[FlowkernelError], call: Callable[[], object]
) -> FlowkernelError:
    """Run `call`, expect `error`, and check that the database is exactly as before."""
    before = db_state(fk)
    with pytest.raises(error) as info:
        call()
    assert db_state(fk) == before
    return info.value


def item_row(fk: Flowkernel, item_id: int) -> Any:
    with fk.engine.connect() as conn:
        return conn.execute(
            select(
                items,
                BREACHED_AT,
            ).where(items.c.id == item_id)
        ).one()


def queued(fk: Flowkernel, item_id: int) -> Any:
    """The item's due time on the SLA queue, None when it is not queued."""
    with fk.engine.connect() as conn:
        return conn.execute(
            select(sla_due.c.due_at).where(sla_due.c.flow_item_id == item_id)
        ).scalar()


def version(fk: Flowkernel, pipeline_id: int) -> int:
    with fk.engine.connect() as conn:
        return int(
            conn.execute(
                select(pipelines.c.version).where(pipelines.c.id == pipeline_id)
            ).scalar_one()
        )


# --- pipelines ---------------------------------------------------------------------------


def test_create_pipeline_with_the_seed_stages_and_columns(fk: Flowkernel) -> None:
    p = sales(fk, code="sales", description="New business")
    assert (p.name, p.code, p.description, p.object_type) == (
        "Sales Pipeline",
        "sales",
        "New business",
        "crm_opportunity",
    )
    assert (p.account_id, p.user_id, p.movement) == (10, 1, "free")
    assert not p.is_template and not p.is_system and p.template_id is None
    assert p.allow_backward and p.allow_skip_forward and p.allowed_moves == ()
    assert [(s.code, s.name, s.position) for s in p.stages] == [
        ("lead", "Lead", 0),
        ("qualified", "Qualified", 1),
        ("proposal", "Proposal", 2),
        ("won", "Won", 3),
        ("lost", "Lost", 4),
    ]
    lead, proposal, won = p.stage("lead"), p.stage("proposal"), p.stage("won")
    assert (lead.color, lead.probability, lead.sla_days) == ("#94a3b8", 10, 7)
    assert (won.is_won, won.is_lost, won.sla_days) == (True, False, None)
    assert p.stage("lost").is_lost
    assert proposal.checklist == (
        ChecklistItem("proposal_sent", "Proposal sent to client", True),
        ChecklistItem("budget_confirmed", "Budget confirmed", True),
        ChecklistItem("legal_reviewed", "Legal review completed", False),
    )
    assert p.stage(proposal.id) == proposal
    assert [(c.name, c.label, c.field_type, c.position) for c in p.columns] == [
        ("decision_maker", "Decision Maker", "text", 0),
        ("contract_value", "Contract Value", "number", 1),
        ("close_date", "Expected Close", "date", 2),
        ("priority", "Priority", "select", 3),
    ]
    assert p.column("priority").options == ("High", "Medium", "Low")
    assert p.column("decision_maker").options == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "x"  # type: ignore[misc]
    # The checklist is stored in the seed's JSON form.
    with fk.engine.connect() as conn:
        stored = conn.execute(
            select(stages.c.checklist).where(stages.c.id == proposal.id)
        ).scalar_one()
    assert stored == PROPOSAL_CHECKLIST

    compiled = fk.compiled(p.id)
    assert compiled.is_pipeline and compiled.version == p.version
    assert [s.code for s in compiled.ordered_states] == [
        "lead",
        "qualified",
        "proposal",
        "won",
        "lost",
    ]
    item = fk.place(p.id, "crm_opportunity", 1, ALICE)
    assert item.state == "lead"
    assert fk.move(item.id, "won", ALICE).to_state == "won"


def test_stage_specs_and_defaults(fk: Flowkernel) -> None:
    p = fk.pipelines.create_pipeline(
        "Support",
        ALICE,
        stages=[
            StageSpec("New"),
            StageSpec("New"),
            {"name": "Qualifié ⭐ 1st"},
            {"name": "2nd call"},
            {"name": "!!!"},
            StageSpec("Closed", code="done", is_won=True),
        ],
        columns=[ColumnSpec("notes")],
    )
    assert [s.code for s in p.stages] == [
        "new",
        "new_2",
        "qualifie_1st",
        "stage_2nd_call",
        "stage",
        "done",
    ]
    assert p.column("notes").label == "notes"
    assert p.column("notes").field_type == "text"
    assert slugify("Won deal") == "won_deal"
    assert fk.compiled(p.id).states["qualifie_1st"].label == "Qualifié ⭐ 1st"


@given(st.text(max_size=300))
def test_slugs_are_always_valid_stage_codes(name: str) -> None:
    code = slugify(name)
    assert re.fullmatch(r"[a-z_][a-z0-9_]*", code) and len(code) <= MAX_CODE
    assert not code.endswith("_")


@pytest.mark.parametrize(
    ("stages_in", "error"),
    [
        ([{"name": "A", "is_won": True}, {"name": "B", "is_won": True}], InvalidDefinition),
        ([{"name": "A", "is_lost": True}, {"name": "B", "is_lost": True}], InvalidDefinition),
        ([{"name": "A", "is_won": True, "is_lost": True}], InvalidDefinition),
        ([{"name": "A", "code": "x"}, {"name": "B", "code": "x"}], DuplicateCode),
        ([{"name": "A", "code": "1a"}], InvalidDefinition),
        ([{"name": "A", "code": "a" * 121}], InvalidDefinition),
        ([{"name": ""}], InvalidDefinition),
        ([{"name": "A", "probability": 101}], InvalidDefinition),
        ([{"name": "A", "probability": True}], InvalidDefinition),
        ([{"name": "A", "sla_days": 0}], InvalidDefinition),
        ([{"name": "A", "color": ""}], InvalidDefinition),
        ([{"name": "A", "checklist": {"key": "x"}}], InvalidDefinition),
        ([{"name": "A", "checklist": [{"label": "no key"}]}], InvalidDefinition),
        ([{"name": "A", "checklist": [{"key": "a"}, {"key": "a"}]}], InvalidDefinition),
        ([{"name": "A", "checklist": [{"key": "a", "required": "yes"}]}], InvalidDefinition),
        ([{"name": "A", "checklist": [{"key": "a", "due": 3}]}], InvalidDefinition),
        ([{"name": "A", "colour": "red"}], InvalidDefinition),
        ([{"color": "red"}], InvalidDefinition),
        (["Lead"], InvalidDefinition),
    ],
)
def test_bad_stages_are_refused_and_nothing_is_written(
    fk: Flowkernel, stages_in: list[Any], error: type[DefinitionError]
) -> None:
    err = refused(fk, error, lambda: fk.pipelines.create_pipeline("P", ALICE, stages=stages_in))
    assert isinstance(err, DefinitionError)


def test_won_and_lost_stay_unique_when_stages_are_added_or_edited(fk: Flowkernel) -> None:
    p = sales(fk)
    refused(
        fk, InvalidDefinition, lambda: fk.pipelines.add_stage(p.id, "Won again", ALICE, is_won=True)
    )
    refused(
        fk, InvalidDefinition, lambda: fk.pipelines.edit_stage(p.id, "lead", ALICE, is_lost=True)
    )
    err = refused(
        fk, InvalidDefinition, lambda: fk.pipelines.edit_stage(p.id, "won", ALICE, is_lost=True)
    )
    assert "both" in str(err)
    # Moving the outcome from one stage to another is fine once the first lets go of it.
    fk.pipelines.edit_stage(p.id, "won", ALICE, is_won=False)
    assert fk.pipelines.edit_stage(p.id, "proposal", ALICE, is_won=True).is_won
    assert [s.code for s in fk.pipelines.get_pipeline(p.id, ALICE).stages if s.is_won] == [
        "proposal"
    ]


def test_bad_pipeline_arguments(fk: Flowkernel) -> None:
    refused(fk, InvalidDefinition, lambda: fk.pipelines.create_pipeline(" ", ALICE))
    refused(fk, InvalidDefinition, lambda: fk.pipelines.create_pipeline("P", ALICE, code="a b"))
    refused(fk, InvalidArgument, lambda: fk.pipelines.create_pipeline("P", SYSTEM))
    refused(fk, AccessDenied, lambda: fk.pipelines.create_pipeline("P", ALICE, account_id=20))
    refused(
        fk,
        InvalidDefinition,
        lambda: fk.pipelines.create_pipeline("P", ALICE, columns=[{"label": "x"}]),
    )
    sales(fk, code="sales")
    refused(fk, DuplicateCode, lambda: sales(fk, code="sales"))
    # The same code is free in another account.
    assert sales(fk, BOB, code="sales").account_id == 20
    refused(fk, InvalidArgument, lambda: fk.pipelines.get_pipeline("1", ALICE))  # type: ignore[arg-type]


def test_get_list_and_edit_pipelines(fk: Flowkernel) -> None:
    mine = sales(fk)
    template = fk.pipelines.create_pipeline("Support template", ALICE, is_template=True)
    theirs = sales(fk, BOB)
    system = fk.pipelines.create_pipeline("Platform sales", SYSTEM, is_system=True)
    fk.definitions.add_class("region", "Region")  # a kernel class is no pipeline

    assert fk.pipelines.get_pipeline(mine.id, ALICE_COLLEAGUE) == mine
    listed = fk.pipelines.list_pipelines(ALICE)
    assert [p.id for p in listed] == [mine.id, template.id, system.id]
    assert [p.id for p in fk.pipelines.list_pipelines(ALICE, templates=True)] == [
        template.id,
        system.id,
    ]
    assert [p.id for p in fk.pipelines.list_pipelines(ALICE, templates=False)] == [mine.id]
    assert [p.id for p in fk.pipelines.list_pipelines(BOB)] == [theirs.id, system.id]
    assert len(fk.pipelines.list_pipelines(SYSTEM)) == 4
    # A user without an account reads the platform's pipelines only.
    assert [p.id for p in fk.pipelines.list_pipelines(Actor.user(9, None))] == [system.id]
    with pytest.raises(UnknownDefinition):
        fk.pipelines.get_pipeline(mine.id, Actor.user(9, None))
    assert [p.id for p in fk.pipelines.list_pipelines(SYSTEM, account_id=20)] == [
        theirs.id,
        system.id,
    ]
    with pytest.raises(AccessDenied):
        fk.pipelines.list_pipelines(ALICE, account_id=20)
    region = fk.definitions.get_class("region")
    with pytest.raises(UnknownDefinition):
        fk.pipelines.get_pipeline(region.id, SYSTEM)

    before = version(fk, mine.id)
    edited = fk.pipelines.edit_pipeline(
        mine.id, ALICE, name="Deals", code="deals", description="All deals", object_type=None
    )
    assert (edited.name, edited.code, edited.description, edited.object_type) == (
        "Deals",
        "deals",
        "All deals",
        None,
    )
    assert edited.version > before
    assert fk.compiled(mine.id).name == "Deals"
    assert fk.pipelines.edit_pipeline(mine.id, ALICE, description=None).description is None
    assert fk.pipelines.edit_pipeline(mine.id, ALICE, is_template=True).is_template
    refused(
        fk,
        InvalidDefinition,
        lambda: fk.pipelines.edit_pipeline(system.id, SYSTEM, is_template=False),
    )
    refused(fk, DuplicateCode, lambda: fk.pipelines.edit_pipeline(template.id, ALICE, code="deals"))


def test_delete_pipeline_is_soft(fk: Flowkernel) -> None:
    p = sales(fk)
    item = fk.place(p.id, "crm_opportunity", 1, ALICE)
    fk.pipelines.delete_pipeline(p.id, ALICE)
    with fk.engine.connect() as conn:
        row = conn.execute(select(pipelines).where(pipelines.c.id == p.id)).one()
    assert row.deleted_at is not None
    assert item_row(fk, item.id).flow_stage_id == p.stage("lead").id
    with pytest.raises(UnknownDefinition):
        fk.pipelines.get_pipeline(p.id, ALICE)
    assert fk.pipelines.list_pipelines(ALICE) == []
    refused(fk, UnknownDefinition, lambda: fk.place(p.id, "crm_opportunity", 2, ALICE))
    refused(fk, UnknownDefinition, lambda: fk.pipelines.delete_pipeline(p.id, ALICE))
    refused(fk, UnknownDefinition, lambda: fk.pipelines.add_stage(p.id, "X", ALICE))


# --- stages ------------------------------------------------------------------------------


def test_stage_edits_with_items_in_flight(fk: Flowkernel) -> None:
    p = sales(fk)
    first = fk.place(p.id, "crm_opportunity", 1, ALICE)
    second = fk.place(p.id, "crm_opportunity", 2, ALICE)
    fk.move(second.id, "proposal", ALICE)
    lead_id, proposal_id = p.stage("lead").id, p.stage("proposal").id
    before = version(fk, p.id)

    renamed = fk.pipelines.edit_stage(
        p.id,
        "lead",
        ALICE,
        name="Inbound lead",
        color="#000000",
        probability=15,
        checklist=[{"key": "called", "label": "Called back", "required": True}],
    )
    assert (renamed.id, renamed.code, renamed.name, renamed.color, renamed.probability) == (
        lead_id,
        "lead",
        "Inbound lead",
        "#000000",
        15,
    )
    assert renamed.checklist == (ChecklistItem("called", "Called back", True),)
    cleared = fk.pipelines.edit_stage(p.id, lead_id, ALICE, color=None, checklist=None)
    assert (cleared.color, cleared.checklist, cleared.probability) == (None, (), 15)
    fk.pipelines.edit_stage(
        p.id, "proposal", ALICE, checklist=[ChecklistItem("signed", "Signed", True)]
    )
    added = fk.pipelines.add_stage(p.id, "Negotiation", ALICE, position=3, sla_days=5)
    assert (added.code, added.position) == ("negotiation", 3)

    after = fk.pipelines.get_pipeline(p.id, ALICE)
    assert after.version > before
    assert [s.code for s in after.stages] == [
        "lead",
        "qualified",
        "proposal",
        "negotiation",
        "won",
        "lost",
    ]
    assert [s.position for s in after.stages] == [0, 1, 2, 3, 4, 5]
    # The items stay where they were, with the same stage ids.
    assert item_row(fk, first.id).flow_stage_id == lead_id
    assert item_row(fk, second.id).flow_stage_id == proposal_id
    assert fk.item(first.id, ALICE).state == "lead"
    compiled = fk.compiled(p.id)
    assert compiled.states["lead"].label == "Inbound lead"
    assert compiled.version == after.version
    # The compiled class uses the new checklist of the item's current stage right away.
    with pytest.raises(ChecklistIncomplete) as info:
        fk.move(second.id, "negotiation", ALICE)
    assert info.value.open_items == (("signed", "Signed"),)
    fk.items.complete_checklist_item(second.id, "signed", ALICE)
    assert fk.move(second.id, "negotiation", ALICE).to_state == "negotiation"


def test_add_stage_without_position_goes_last_and_codes_stay_unique(fk: Flowkernel) -> None:
    p = sales(fk)
    last = fk.pipelines.add_stage(p.id, "Lead", ALICE)
    assert (last.code, last.position) == ("lead_2", 5)
    refused(fk, DuplicateCode, lambda: fk.pipelines.add_stage(p.id, "Other", ALICE, code="won"))
    refused(fk, DuplicateCode, lambda: fk.pipelines.edit_stage(p.id, "lead_2", ALICE, code="lead"))
    refused(fk, UnknownDefinition, lambda: fk.pipelines.edit_stage(p.id, "nope", ALICE, name="x"))
    refused(
        fk, InvalidDefinition, lambda: fk.pipelines.edit_stage(p.id, "lead", ALICE, sla_days=-1)
    )
    refused(
        fk, InvalidDefinition, lambda: fk.pipelines.edit_stage(p.id, "lead", ALICE, position=-1)
    )


def test_renamed_and_recoded_stages_take_moves_of_items_in_flight(fk: Flowkernel) -> None:
    p = sales(fk)
    item = fk.place(p.id, "crm_opportunity", 1, ALICE)
    other = fk.place(p.id, "crm_opportunity", 2, ALICE)
    fk.move(other.id, "qualified", ALICE)
    fk.pipelines.edit_stage(p.id, "qualified", ALICE, name="Sales qualified", code="sql")
    fk.pipelines.add_stage(p.id, "Demo", ALICE, position=2)
    # The item already in the recoded stage is in "sql" now, same row, same stage id.
    assert fk.item(other.id, ALICE).state == "sql"
    assert fk.item(other.id, ALICE).state_id == p.stage("qualified").id
    assert fk.move(item.id, "sql", ALICE).to_state == "sql"
    assert fk.move(item.id, "demo", ALICE).to_state == "demo"
    assert fk.move(other.id, "lead", ALICE).to_state == "lead"
    assert "move_to_sql" in {m.code for m in fk.methods(other.id, ALICE)}
    assert [h.to_state for h in fk.history(item.id, ALICE)] == ["lead", "sql", "demo"]
    with pytest.raises(FlowkernelError):
        fk.move(item.id, "qualified", ALICE)


def test_reorder_stages_keeps_items(fk: Flowkernel) -> None:
    p = sales(fk)
    item = fk.place(p.id, "crm_opportunity", 1, ALICE)
    order = ["qualified", "lead", p.stage("proposal").id, "lost", "won"]
    reordered = fk.pipelines.reorder_stages(p.id, order, ALICE)
    assert [(s.code, s.position) for s in reordered] == [
        ("qualified", 0),
        ("lead", 1),
        ("proposal", 2),
        ("lost", 3),
        ("won", 4),
    ]
    assert fk.item(item.id, ALICE).state == "lead"
    assert fk.place(p.id, "crm_opportunity", 2, ALICE).state == "qualified"
    refused(
        fk, InvalidDefinition, lambda: fk.pipelines.reorder_stages(p.id, ["lead", "won"], ALICE)
    )
    refused(
        fk,
        InvalidDefinition,
        lambda: fk.pipelines.reorder_stages(
            p.id, ["lead", "lead", "qualified", "proposal", "won", "lost"], ALICE
        ),
    )
    refused(
        fk,
        UnknownDefinition,
        lambda: fk.pipelines.reorder_stages(
            p.id, ["x", "lead", "qualified", "proposal", "won"], ALICE
        ),
    )


def test_sla_days_change_recomputes_due_time_of_items_in_the_stage(fk: Flowkernel) -> None:
    p = sales(fk)
    first = fk.place(p.id, "crm_opportunity", 1, ALICE)
    second = fk.place(p.id, "crm_opportunity", 2, ALICE)
    elsewhere = fk.place(p.id, "crm_opportunity", 3, ALICE)
    fk.move(elsewhere.id, "qualified", ALICE)
    entered = item_row(fk, first.id).last_stage_changed_at
    assert item_row(fk, first.id).sla_due_at == entered + timedelta(days=7)
    breached = datetime(2030, 1, 1, tzinfo=UTC)
    with fk.engine.begin() as conn:
        conn.execute(delete(sla_due).where(sla_due.c.flow_item_id == second.id))
        conn.execute(insert(sla_breaches).values(flow_item_id=second.id, breached_at=breached))
    untouched = item_row(fk, elsewhere.id)

    fk.pipelines.edit_stage(p.id, "lead", ALICE, sla_days=3)
    row = item_row(fk, first.id)
    assert row.last_stage_changed_at == entered
    assert row.sla_due_at == entered + timedelta(days=3)
    assert row.sla_breached_at is None
    assert queued(fk, first.id) == entered + timedelta(days=3)  # the queue follows
    # A breach already recorded stays recorded; so do the stage and the entry time.
    row = item_row(fk, second.id)
    assert row.sla_due_at == row.last_stage_changed_at + timedelta(days=3)
    assert row.sla_breached_at == breached
    assert queued(fk, second.id) is None  # fired: not due again in this stage entry
    assert row.flow_stage_id == p.stage("lead").id
    assert item_row(fk, elsewhere.id) == untouched

    fk.pipelines.edit_stage(p.id, "lead", ALICE, sla_days=None)
    assert item_row(fk, first.id).sla_due_at is None
    fk.pipelines.edit_stage(p.id, "lead", ALICE, sla_days=2)
    assert item_row(fk, first.id).sla_due_at == entered + timedelta(days=2)
    # Without a due time an item holds no breach: the SLA removed above cleared it.
    assert item_row(fk, second.id).sla_breached_at is None
    assert queued(fk, second.id) == item_row(fk, second.id).sla_due_at  # due again
    # Becoming the won stage ends the SLA of the items in it.
    fk.pipelines.edit_stage(p.id, "won", ALICE, is_won=False)
    fk.pipelines.edit_stage(p.id, "lead", ALICE, is_won=True)
    assert item_row(fk, first.id).sla_due_at is None
    assert queued(fk, first.id) is None


# --- removing stages ---------------------------------------------------------------------


def test_remove_stage_moves_its_items_with_history(fk: Flowkernel) -> None:
    p = sales(fk)
    placed = [fk.place(p.id, "crm_opportunity", n, ALICE) for n in (1, 2, 3)]
    for item in placed[:2]:
        fk.move(item.id, "qualified", ALICE)
    waiting = fk.place(p.id, "crm_opportunity", 4, ALICE)
    fk.move(waiting.id, "proposal", ALICE)
    with fk.engine.begin() as conn:
        conn.execute(
            update(items)
            .where(items.c.id == placed[0].id)
            .values(checklist_state={"x": {"completed": True}})
        )
    qualified, proposal = p.stage("qualified"), p.stage("proposal")
    before_rows = {i.id: item_row(fk, i.id) for i in placed[:2]}

    removal = fk.pipelines.remove_stage(p.id, "qualified", ALICE_COLLEAGUE, target="proposal")
    assert (removal.stage, removal.stage_id, removal.target, removal.target_id) == (
        "qualified",
        qualified.id,
        "proposal",
        proposal.id,
    )
    assert removal.item_ids == (placed[0].id, placed[1].id) and removal.count == 2
    assert not removal.dry_run

    for item in placed[:2]:
        row = item_row(fk, item.id)
        assert row.flow_stage_id == proposal.id
        assert row.checklist_state is None
        assert row.last_stage_changed_at > before_rows[item.id].last_stage_changed_at
        assert row.version == before_rows[item.id].version + 1
        assert row.sla_due_at == row.last_stage_changed_at + timedelta(days=10)
        last = fk.history(item.id, ALICE)[-1]
        assert (last.from_state, last.to_state, last.method, last.user_id) == (
            "qualified",
            "proposal",
            REMOVE_STAGE,
            3,
        )
        assert last.moved_at == row.last_stage_changed_at
    # Moved items go behind the ones already waiting in the target, in their old order.
    positions = [item_row(fk, i).position for i in (waiting.id, placed[0].id, placed[1].id)]
    assert positions == sorted(positions) and len(set(positions)) == 3
    with fk.engine.connect() as conn:
        stage_row = conn.execute(select(stages).where(stages.c.id == qualified.id)).one()
        moved = conn.execute(
            select(history.c.from_stage_id, history.c.to_stage_id, history.c.moved_by_iam_user_id)
            .where(history.c.method_code == REMOVE_STAGE)
            .order_by(history.c.id)
        ).all()
    assert stage_row.deleted_at is not None  # soft: the history rows still point at it
    assert moved == [(qualified.id, proposal.id, 3), (qualified.id, proposal.id, 3)]
    after = fk.pipelines.get_pipeline(p.id, ALICE)
    assert [s.code for s in after.stages] == ["lead", "proposal", "won", "lost"]
    assert "qualified" not in fk.compiled(p.id).states
    assert fk.item(placed[2].id, ALICE).state == "lead"
    # The moved items keep moving, and the removed stage is no target anymore.
    fk.items.complete_checklist_item(placed[0].id, "proposal_sent", ALICE)
    fk.items.complete_checklist_item(placed[0].id, "budget_confirmed", ALICE)
    assert fk.move(placed[0].id, "won", ALICE).to_state == "won"
    with pytest.raises(FlowkernelError):
        fk.move(placed[2].id, "qualified", ALICE)
    # The code of a removed stage can be used again.
    assert fk.pipelines.add_stage(p.id, "Qualified", ALICE).code == "qualified"


def test_remove_stage_holding_items_needs_a_target(fk: Flowkernel) -> None:
    p = sales(fk)
    ids = [fk.place(p.id, "crm_opportunity", n, ALICE).id for n in (1, 2, 3)]
    fk.items.delete(ids[2], ALICE)  # a deleted item still sits in the stage and moves too
    err = refused(fk, StageNotEmpty, lambda: fk.pipelines.remove_stage(p.id, "lead", ALICE))
    assert isinstance(err, StageNotEmpty) and isinstance(err, DefinitionInUse)
    assert err.count == 3 and err.item_ids == tuple(ids)
    assert "3 item(s)" in str(err)
    refused(
        fk,
        InvalidDefinition,
        lambda: fk.pipelines.remove_stage(p.id, "lead", ALICE, target="lead"),
    )
    refused(
        fk,
        UnknownDefinition,
        lambda: fk.pipelines.remove_stage(p.id, "lead", ALICE, target="nowhere"),
    )
    removal = fk.pipelines.remove_stage(p.id, "lead", ALICE, target="lost")
    assert removal.count == 3
    assert {item_row(fk, i).flow_stage_id for i in ids} == {p.stage("lost").id}
    assert item_row(fk, ids[2]).deleted_at is not None
    assert fk.place(p.id, "crm_opportunity", 9, ALICE).state == "qualified"


def test_remove_stage_moves_items_through_the_executor_in_chunks(
    fk: Flowkernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor_module, "RELOCATE_CHUNK", 2)
    p = sales(fk)
    waiting = fk.place(p.id, "crm_opportunity", 100, ALICE)
    fk.move(waiting.id, "qualified", ALICE)
    ids = [fk.place(p.id, "crm_opportunity", n, ALICE).id for n in range(5)]
    fk.items.delete(ids[1], ALICE)
    fk.move(ids[3], "qualified", ALICE)
    fk.move(ids[3], "lead", ALICE)  # now last in the board's order of lead
    order = [ids[0], ids[1], ids[2], ids[4], ids[3]]
    seen: list[int] = []
    removal = fk.pipelines.remove_stage(
        p.id, "lead", ALICE_COLLEAGUE, target="qualified", on_progress=seen.append
    )
    assert removal.item_ids == tuple(order)
    assert seen == [2, 4, 5]  # one call per chunk of the executor's write
    rows = [item_row(fk, i) for i in [waiting.id, *order]]
    assert {r.flow_stage_id for r in rows} == {p.stage("qualified").id}
    assert [r.id for r in sorted(rows, key=lambda r: r.position)] == [waiting.id, *order]
    assert [r.deleted_at is not None for r in rows[1:]] == [False, True, False, False, False]
    moments = {r.last_stage_changed_at for r in rows[1:]}
    assert len(moments) == 1  # one time for the whole removal, taken after the rows' locks
    with fk.engine.connect() as conn:
        written = conn.execute(
            select(history.c.flow_item_id, history.c.action_code, history.c.moved_at)
            .where(history.c.method_code == REMOVE_STAGE)
            .order_by(history.c.id)
        ).all()
    assert [(w.flow_item_id, w.action_code) for w in written] == [(i, None) for i in order]
    assert {w.moved_at for w in written} == moments
    # the board's counts follow: four live items joined the one already there
    board = fk.queries.board(p.id, ALICE)
    counts = {s.code: s.count for s in board.stages}
    assert counts == {"qualified": 5, "proposal": 0, "won": 0, "lost": 0}


def test_remove_stage_dry_run_reports_and_changes_nothing(fk: Flowkernel) -> None:
    p = sales(fk)
    ids = [fk.place(p.id, "crm_opportunity", n, ALICE).id for n in (1, 2)]
    before = db_state(fk)
    report = fk.pipelines.remove_stage(p.id, "lead", ALICE, dry_run=True)
    assert (report.item_ids, report.count, report.dry_run, report.target) == (
        tuple(ids),
        2,
        True,
        None,
    )
    report = fk.pipelines.remove_stage(p.id, "lead", ALICE, target="won", dry_run=True)
    assert (report.count, report.target, report.target_id) == (2, "won", p.stage("won").id)
    assert db_state(fk) == before


def test_remove_the_won_and_lost_stages(fk: Flowkernel) -> None:
    p = sales(fk)
    item = fk.place(p.id, "crm_opportunity", 1, ALICE)
    fk.move(item.id, "won", ALICE)
    fk.pipelines.add_automation(p.id, "stage_entered", "deal.won", ALICE, stage="won")
    fk.pipelines.set_movement(p.id, ALICE, allowed_moves=[("lead", "won"), ("won", "lead")])
    assert fk.pipelines.remove_stage(p.id, "lost", ALICE).count == 0
    assert fk.pipelines.remove_stage(p.id, "won", ALICE, target="proposal").item_ids == (item.id,)
    after = fk.pipelines.get_pipeline(p.id, ALICE)
    assert [s.code for s in after.stages] == ["lead", "qualified", "proposal"]
    # Rules and automations of a removed stage go with it.
    assert after.allowed_moves == () and after.automations == ()
    assert fk.item(item.id, ALICE).state == "proposal"
    # A new won stage can be added now.
    assert fk.pipelines.add_stage(p.id, "Closed won", ALICE, is_won=True).is_won


# --- movement rules ----------------------------------------------------------------------


def test_no_moving_back(fk: Flowkernel) -> None:
    p = sales(fk)
    item = fk.place(p.id, "crm_opportunity", 1, ALICE)
    fk.move(item.id, "qualified", ALICE)
    before = version(fk, p.id)
    info = fk.pipelines.set_movement(p.id, ALICE, allow_backward=False)
    assert not info.allow_backward and info.allow_skip_forward and info.version > before
    err = refused(fk, MoveNotAllowed, lambda: fk.move(item.id, "lead", ALICE))
    assert isinstance(err, MoveNotAllowed) and err.rule == "no_moving_back"
    assert fk.item(item.id, ALICE).state == "qualified"
    assert "move_to_lead" not in {m.code for m in fk.methods(item.id, ALICE)}
    # The system actor is not restricted; moving forward stays allowed.
    assert fk.move(item.id, "lead", SYSTEM).to_state == "lead"
    assert fk.move(item.id, "qualified", ALICE).to_state == "qualified"
    fk.pipelines.set_movement(p.id, ALICE, allow_backward=True)
    assert fk.move(item.id, "lead", ALICE).to_state == "lead"


def test_no_skipping_forward_except_into_won_or_lost(fk: Flowkernel) -> None:
    p = sales(fk)
    item = fk.place(p.id, "crm_opportunity", 1, ALICE)
    fk.pipelines.set_movement(p.id, ALICE, allow_skip_forward=False)
    err = refused(fk, MoveNotAllowed, lambda: fk.move(item.id, "proposal", ALICE))
    assert isinstance(err, MoveNotAllowed) and err.rule == "no_skipping_forward"
    assert fk.move(item.id, "qualified", ALICE).to_state == "qualified"
    assert fk.move(item.id, "lost", ALICE).to_state == "lost"
    fk.move(item.id, "lead", ALICE)  # backward stays allowed
    assert fk.move(item.id, "won", ALICE).to_state == "won"
    assert fk.move(item.id, "lead", SYSTEM).to_state == "lead"
    assert fk.move(item.id, "proposal", SYSTEM).to_state == "proposal"


def test_allowed_moves_list(fk: Flowkernel) -> None:
    p = sales(fk)
    item = fk.place(p.id, "crm_opportunity", 1, ALICE)
    info = fk.pipelines.set_movement(
        p.id,
        ALICE,
        allowed_moves=[("lead", "proposal"), ("lead", p.stage("lost").id), ("lead", "proposal")],
    )
    assert info.allowed_moves == (("lead", "proposal"), ("lead", "lost"))
    err = refused(fk, MoveNotAllowed, lambda: fk.move(item.id, "qualified", ALICE))
    assert isinstance(err, MoveNotAllowed) and err.rule == "allowed_moves"
    assert {m.target for m in fk.methods(item.id, ALICE) if m.action == "move"} == {
        "proposal",
        "lost",
    }
    assert fk.move(item.id, "proposal", ALICE).to_state == "proposal"
    # Stages the list does not name as a source move freely.
    fk.items.complete_checklist_item(item.id, "proposal_sent", ALICE)
    fk.items.complete_checklist_item(item.id, "budget_confirmed", ALICE)
    assert fk.move(item.id, "qualified", ALICE).to_state == "qualified"
    assert fk.move(item.id, "lead", ALICE).to_state == "lead"
    assert fk.move(item.id, "won", SYSTEM).to_state == "won"  # system bypass
    fk.move(item.id, "lead", ALICE)
    # Leaving the list unset keeps it; None clears it.
    assert fk.pipelines.set_movement(p.id, ALICE, allow_backward=True).allowed_moves != ()
    assert fk.pipelines.set_movement(p.id, ALICE, allowed_moves=None).allowed_moves == ()
    assert fk.move(item.id, "qualified", ALICE).to_state == "qualified"


def test_bad_movement_rules_are_refused(fk: Flowkernel) -> None:
    p = sales(fk)
    fk.pipelines.set_movement(p.id, ALICE, allowed_moves=[("lead", "won")])
    move = fk.pipelines.set_movement
    refused(fk, InvalidDefinition, lambda: move(p.id, ALICE, allowed_moves=[("lead", "lead")]))
    refused(fk, UnknownDefinition, lambda: move(p.id, ALICE, allowed_moves=[("lead", "x")]))
    refused(fk, InvalidDefinition, lambda: move(p.id, ALICE, allowed_moves=[("lead",)]))  # type: ignore[list-item]
    refused(fk, InvalidDefinition, lambda: move(p.id, ALICE, allow_backward="no"))  # type: ignore[arg-type]


# --- columns -----------------------------------------------------------------------------


def test_columns(fk: Flowkernel) -> None:
    p = fk.pipelines.create_pipeline("Tickets", ALICE, stages=[{"name": "Open"}])
    added = {
        kind: fk.pipelines.add_column(
            p.id,
            f"c_{kind}",
            ALICE,
            label=kind.title(),
            field_type=kind,
            options=["a", "b"] if kind in ("select", "multi_select") else None,
        )
        for kind in ("text", "number", "date", "boolean", "select", "multi_select", "json")
    }
    assert [c.position for c in added.values()] == list(range(7))
    assert added["multi_select"].options == ("a", "b")
    required = fk.pipelines.add_column(
        p.id, "severity", ALICE, field_type="select", options=["low", "high"],
        is_required=True, position=1,
    )  # fmt: skip
    assert (required.is_required, required.position, required.label) == (True, 1, "severity")
    info = fk.pipelines.get_pipeline(p.id, ALICE)
    assert [c.name for c in info.columns][:3] == ["c_text", "severity", "c_number"]
    assert fk.compiled(p.id).columns["severity"].options == ("low", "high")

    edited = fk.pipelines.edit_column(
        p.id, "severity", ALICE, label="Severity", options=["low", "mid", "high"],
        position=0, is_required=False,
    )  # fmt: skip
    assert (edited.label, edited.options, edited.position, edited.is_required) == (
        "Severity",
        ("low", "mid", "high"),
        0,
        False,
    )
    assert fk.pipelines.get_pipeline(p.id, ALICE).columns[0].name == "severity"
    assert fk.pipelines.edit_column(p.id, added["text"].id, ALICE, label="Notes").label == "Notes"

    off = fk.pipelines.deactivate_column(p.id, "c_json", ALICE)
    assert not off.is_active
    assert not fk.compiled(p.id).columns["c_json"].is_active
    assert fk.pipelines.activate_column(p.id, "c_json", ALICE).is_active


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"field_type": "money"}, InvalidDefinition),
        ({"field_type": "select"}, InvalidDefinition),
        ({"field_type": "select", "options": []}, InvalidDefinition),
        ({"field_type": "select", "options": "High"}, InvalidDefinition),
        ({"field_type": "select", "options": ["a", "a"]}, InvalidDefinition),
        ({"field_type": "multi_select", "options": ["a", 1]}, InvalidDefinition),
        ({"field_type": "multi_select", "options": ["a", ""]}, InvalidDefinition),
        ({"field_type": "text", "options": ["a"]}, InvalidDefinition),
        ({"field_type": "number", "options": []}, InvalidDefinition),
        ({"label": ""}, InvalidDefinition),
        ({"position": -1}, InvalidDefinition),
        ({"is_required": 1}, InvalidDefinition),
    ],
)
def test_bad_columns_are_refused(
    fk: Flowkernel, kwargs: dict[str, Any], error: type[DefinitionError]
) -> None:
    p = sales(fk)
    refused(fk, error, lambda: fk.pipelines.add_column(p.id, "extra", ALICE, **kwargs))


def test_bad_column_edits_are_refused(fk: Flowkernel) -> None:
    p = sales(fk)
    add, edit = fk.pipelines.add_column, fk.pipelines.edit_column
    refused(fk, DuplicateCode, lambda: add(p.id, "priority", ALICE))
    refused(fk, InvalidDefinition, lambda: add(p.id, "bad name", ALICE))
    refused(fk, InvalidDefinition, lambda: add(p.id, "9lives", ALICE))
    refused(fk, InvalidDefinition, lambda: edit(p.id, "decision_maker", ALICE, options=["a"]))
    refused(fk, InvalidDefinition, lambda: edit(p.id, "priority", ALICE, options=[]))
    refused(fk, UnknownDefinition, lambda: edit(p.id, "missing", ALICE, label="x"))
    refused(fk, UnknownDefinition, lambda: edit(p.id, 10_000, ALICE, label="x"))
    fk.pipelines.deactivate_column(p.id, "decision_maker", ALICE)
    # A deactivated column keeps its name.
    refused(fk, DuplicateCode, lambda: add(p.id, "decision_maker", ALICE))


# --- stage entry requirements --------------------------------------------------------------


def test_required_columns_guard_stage_entry_end_to_end(fk: Flowkernel) -> None:
    p = sales(fk)
    item = fk.place(p.id, "crm_opportunity", 1, ALICE)
    stage = fk.pipelines.require_column(p.id, "proposal", "close_date", ALICE)
    assert stage.required_columns == ("close_date",)
    fk.pipelines.require_column(p.id, "proposal", "close_date", ALICE)  # idempotent
    stage = fk.pipelines.require_column(
        p.id, p.stage("proposal").id, p.column("decision_maker").id, ALICE
    )
    assert stage.required_columns == ("decision_maker", "close_date")
    with fk.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(required_columns)).scalar_one() == 2

    err = refused(fk, RequirementMissing, lambda: fk.move(item.id, "proposal", ALICE))
    assert isinstance(err, RequirementMissing)
    assert err.missing == (("decision_maker", "Decision Maker"), ("close_date", "Expected Close"))
    fk.items.set_value(item.id, "close_date", "2026-07-01", ALICE)
    err = refused(fk, RequirementMissing, lambda: fk.move(item.id, "proposal", ALICE))
    assert isinstance(err, RequirementMissing)
    assert err.missing == (("decision_maker", "Decision Maker"),)
    fk.items.set_value(item.id, "decision_maker", "Dana", ALICE)
    assert fk.move(item.id, "proposal", ALICE).to_state == "proposal"

    # Unrequired columns no longer guard entry.
    other = fk.place(p.id, "crm_opportunity", 2, ALICE)
    fk.pipelines.unrequire_column(p.id, "proposal", "close_date", ALICE)
    stage = fk.pipelines.unrequire_column(p.id, "proposal", "decision_maker", ALICE)
    assert stage.required_columns == ()
    assert fk.move(other.id, "proposal", ALICE).to_state == "proposal"


def test_requirements_and_inactive_columns(fk: Flowkernel) -> None:
    p = sales(fk)
    fk.pipelines.require_column(p.id, "proposal", "close_date", ALICE)
    err = refused(
        fk, DefinitionInUse, lambda: fk.pipelines.deactivate_column(p.id, "close_date", ALICE)
    )
    assert "proposal" in str(err)
    fk.pipelines.deactivate_column(p.id, "priority", ALICE)
    refused(
        fk,
        InvalidDefinition,
        lambda: fk.pipelines.require_column(p.id, "won", "priority", ALICE),
    )
    refused(fk, UnknownDefinition, lambda: fk.pipelines.require_column(p.id, "won", "nope", ALICE))
    refused(
        fk, UnknownDefinition, lambda: fk.pipelines.require_column(p.id, "nope", "priority", ALICE)
    )


# --- automations -------------------------------------------------------------------------


def outbox_events(fk: Flowkernel) -> list[tuple[str, str]]:
    with fk.engine.connect() as conn:
        return [
            (r.event_name, r.trigger)
            for r in conn.execute(
                select(outbox.c.event_name, outbox.c.trigger)
                .where(outbox.c.kind == "automation")
                .order_by(outbox.c.id)
            )
        ]


def test_automations_crud_and_firing(fk: Flowkernel) -> None:
    p = sales(fk)
    entered = fk.pipelines.add_automation(
        p.id,
        "stage_entered",
        "deal.qualified",
        ALICE,
        stage="qualified",
        name="Tell sales",
        payload_template={"channel": "#sales"},
    )
    assert (entered.trigger, entered.stage, entered.stage_id, entered.name) == (
        "stage_entered",
        "qualified",
        p.stage("qualified").id,
        "Tell sales",
    )
    assert entered.payload_template == {"channel": "#sales"} and entered.is_active
    created = fk.pipelines.add_automation(p.id, "item_created", "deal.created", ALICE)
    assert created.stage is None and created.payload_template == {}
    exited = fk.pipelines.add_automation(p.id, "stage_exited", "deal.left", ALICE, is_active=False)
    breached = fk.pipelines.add_automation(p.id, "sla_breached", "deal.late", ALICE, stage="lead")
    assert [a.id for a in fk.pipelines.list_automations(p.id, ALICE)] == [
        entered.id,
        created.id,
        exited.id,
        breached.id,
    ]
    assert {a.id for a in fk.compiled(p.id).automations} == {entered.id, created.id, breached.id}

    item = fk.place(p.id, "crm_opportunity", 1, ALICE)
    fk.move(item.id, "qualified", ALICE)
    assert outbox_events(fk) == [
        ("deal.created", "item_created"),
        ("deal.qualified", "stage_entered"),
    ]

    edited = fk.pipelines.edit_automation(
        entered.id,
        ALICE,
        event_name="deal.anywhere",
        stage=None,
        name=None,
        payload_template={"v": 2},
    )
    assert (edited.event_name, edited.stage, edited.name, edited.payload_template) == (
        "deal.anywhere",
        None,
        None,
        {"v": 2},
    )
    assert fk.pipelines.activate_automation(exited.id, ALICE).is_active
    assert not fk.pipelines.deactivate_automation(created.id, ALICE).is_active
    fk.pipelines.edit_automation(breached.id, ALICE, trigger="stage_entered", stage="won")
    fk.move(item.id, "lead", ALICE)
    assert outbox_events(fk)[2:] == [
        ("deal.anywhere", "stage_entered"),
        ("deal.left", "stage_exited"),
    ]
    fk.place(p.id, "crm_opportunity", 2, ALICE)
    assert len(outbox_events(fk)) == 4  # item_created is inactive now

    fk.pipelines.delete_automation(entered.id, ALICE)
    with fk.engine.connect() as conn:
        deleted_at = conn.execute(
            select(automations.c.deleted_at).where(automations.c.id == entered.id)
        ).scalar_one()
    assert deleted_at is not None
    assert [a.id for a in fk.pipelines.list_automations(p.id, ALICE)] == [
        created.id,
        exited.id,
        breached.id,
    ]
    fk.move(item.id, "won", ALICE)
    assert outbox_events(fk)[4:] == [("deal.left", "stage_exited"), ("deal.late", "stage_entered")]
    refused(
        fk, UnknownDefinition, lambda: fk.pipelines.edit_automation(entered.id, ALICE, name="x")
    )
    refused(fk, UnknownDefinition, lambda: fk.pipelines.delete_automation(entered.id, ALICE))


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("stage_moved", "e"), {}),
        (("stage_entered", ""), {}),
        (("stage_entered", "e"), {"stage": "nowhere"}),
        (("stage_entered", "e"), {"payload_template": ["not", "a", "dict"]}),
        (("stage_entered", "e"), {"payload_template": {"when": datetime(2026, 1, 1)}}),
        (("stage_entered", "e"), {"payload_template": {"x": float("nan")}}),
        (("stage_entered", "e"), {"name": ""}),
    ],
)
def test_bad_automations_are_refused(
    fk: Flowkernel, args: tuple[str, str], kwargs: dict[str, Any]
) -> None:
    p = sales(fk)
    refused(fk, DefinitionError, lambda: fk.pipelines.add_automation(p.id, *args, ALICE, **kwargs))


# --- tenancy -----------------------------------------------------------------------------


def test_another_account_can_neither_read_nor_change_a_pipeline(fk: Flowkernel) -> None:
    p = sales(fk)
    fk.place(p.id, "crm_opportunity", 1, ALICE)
    automation = fk.pipelines.add_automation(p.id, "item_created", "deal.created", ALICE)
    admin = fk.pipelines
    calls: list[Callable[[], object]] = [
        lambda: admin.get_pipeline(p.id, BOB),
        lambda: admin.edit_pipeline(p.id, BOB, name="Mine now"),
        lambda: admin.delete_pipeline(p.id, BOB),
        lambda: admin.add_stage(p.id, "Sneaky", BOB),
        lambda: admin.edit_stage(p.id, "lead", BOB, name="x"),
        lambda: admin.edit_stage(p.id, "lead", BOB, sla_days=1),
        lambda: admin.reorder_stages(p.id, ["lead", "qualified", "proposal", "won", "lost"], BOB),
        lambda: admin.remove_stage(p.id, "lead", BOB, target="won"),
        lambda: admin.remove_stage(p.id, "lead", BOB, dry_run=True),
        lambda: admin.set_movement(p.id, BOB, allow_backward=False),
        lambda: admin.add_column(p.id, "x", BOB),
        lambda: admin.edit_column(p.id, "priority", BOB, label="x"),
        lambda: admin.deactivate_column(p.id, "priority", BOB),
        lambda: admin.activate_column(p.id, "priority", BOB),
        lambda: admin.require_column(p.id, "proposal", "close_date", BOB),
        lambda: admin.unrequire_column(p.id, "proposal", "close_date", BOB),
        lambda: admin.add_automation(p.id, "item_created", "x", BOB),
        lambda: admin.list_automations(p.id, BOB),
        lambda: admin.edit_automation(automation.id, BOB, name="x"),
        lambda: admin.deactivate_automation(automation.id, BOB),
        lambda: admin.delete_automation(automation.id, BOB),
    ]
    for call in calls:
        err = refused(fk, UnknownDefinition, call)
        assert "Sales" not in str(err)  # the other account's data stays unnamed
    assert p.id not in {i.id for i in admin.list_pipelines(BOB)}
    # A system actor confined to the other account is confined too.
    refused(fk, UnknownDefinition, lambda: admin.get_pipeline(p.id, Actor.system(20)))
    # The owner's colleagues and the platform's system actor reach it.
    assert admin.edit_stage(p.id, "lead", ALICE_COLLEAGUE, name="Lead!").name == "Lead!"
    assert admin.edit_stage(p.id, "lead", SYSTEM, name="Lead").name == "Lead"
    assert admin.get_pipeline(p.id, Actor.system(10)).id == p.id
