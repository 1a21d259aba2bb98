"""The LEO seed's SQL, replayed verbatim against the migrated schema, and the engine on its rows.

Every statement and key query of the seed is copied character for character below, comments
included, and bound with `text()`. Flowkernel gives SQLite connections a `NOW()` function, so
the move and the value upsert run on both backends; `jsonb_*` and the `interval` cast are
PostgreSQL syntax and are skipped on SQLite; everything else runs on both backends. The
seed documents no SQL for automations, watchers or checklist definitions, so tests write those
rows through the schema's tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rows import BREACHED_AT
from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError, OperationalError

from flowkernel import (
    Actor,
    ChecklistIncomplete,
    Flowkernel,
    InvalidDefinition,
    ItemNotFound,
    ObjectAlreadyPlaced,
    RequirementMissing,
    WrongObjectType,
)
from flowkernel.store import schema

ACCOUNT = 7
USER = 42
ASSIGNEE = 43
OPPORTUNITY = 1001

# --- the seed's statements, verbatim ---------------------------------------------------------

CREATE_PIPELINE = """INSERT INTO flow_pipelines (name, object_type, iam_account_id, iam_user_id)
VALUES ('Sales Pipeline', 'crm_opportunity', :account_id, :user_id)
RETURNING id;"""

CREATE_STAGES = """INSERT INTO flow_stages (flow_pipeline_id, name, position, color, probability, sla_days, is_won, is_lost)
VALUES
(:pipeline_id, 'Lead', 0, '#94a3b8', 10, 7, false, false),
(:pipeline_id, 'Qualified', 1, '#60a5fa', 30, 14, false, false),
(:pipeline_id, 'Proposal', 2, '#f59e0b', 60, 10, false, false),
(:pipeline_id, 'Won', 3, '#22c55e', 100, NULL, true, false),
(:pipeline_id, 'Lost', 4, '#ef4444', 0, NULL, false, true);"""  # noqa: E501

CREATE_COLUMNS = """INSERT INTO flow_columns (flow_pipeline_id, name, label, field_type, is_required, position)
VALUES
(:pipeline_id, 'decision_maker', 'Decision Maker', 'text', false, 0),
(:pipeline_id, 'contract_value', 'Contract Value', 'number', false, 1),
(:pipeline_id, 'close_date', 'Expected Close', 'date', false, 2),
(:pipeline_id, 'priority', 'Priority', 'select', false, 3);"""  # noqa: E501

SET_OPTIONS = """-- For the select column, set options:
UPDATE flow_columns
SET options = '["High", "Medium", "Low"]'
WHERE name = 'priority' AND flow_pipeline_id = :pipeline_id;"""

REQUIRE_COLUMN = """-- 'close_date' must be filled before an item can enter Proposal stage
INSERT INTO flow_stage_required_columns (flow_stage_id, flow_column_id)
VALUES (:proposal_stage_id, :close_date_column_id);"""

PLACE_ITEM = """INSERT INTO flow_items (
flow_pipeline_id, flow_stage_id,
object_type, object_id,
iam_account_id, iam_user_id, assigned_iam_user_id
)
VALUES (
:pipeline_id, :first_stage_id,
'crm_opportunity', :opportunity_id,
:account_id, :user_id, :assigned_user_id
)
RETURNING id;"""

INITIAL_HISTORY = """INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, from_stage_id, to_stage_id, moved_by_iam_user_id)
VALUES (:item_id, :pipeline_id, NULL, :first_stage_id, :user_id);"""  # noqa: E501

REQUIREMENT_CHECK = """-- Find required columns for the target stage that have no value on this item
SELECT fc.name, fc.label
FROM flow_stage_required_columns fsr
JOIN flow_columns fc ON fc.id = fsr.flow_column_id
WHERE fsr.flow_stage_id = :target_stage_id
AND NOT EXISTS (
SELECT 1 FROM flow_item_values
WHERE flow_item_id = :item_id
AND flow_column_id = fsr.flow_column_id
AND value IS NOT NULL
);"""

MOVE_ITEM = """-- 1. Update the item
UPDATE flow_items
SET flow_stage_id = :new_stage_id,
last_stage_changed_at = NOW(),
checklist_state = NULL,
updated_at = NOW()
WHERE id = :item_id;"""

MOVE_HISTORY = """-- 2. Append to history
INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, from_stage_id, to_stage_id, moved_by_iam_user_id)
VALUES (:item_id, :pipeline_id, :old_stage_id, :new_stage_id, :user_id);"""  # noqa: E501

UPSERT_VALUE = """INSERT INTO flow_item_values (flow_item_id, flow_column_id, value)
VALUES (:item_id, :column_id, :value)
ON CONFLICT (flow_item_id, flow_column_id)
DO UPDATE SET value = EXCLUDED.value, updated_at = NOW();"""

READ_VALUES = """SELECT fc.name, fc.label, fc.field_type, fiv.value
FROM flow_columns fc
LEFT JOIN flow_item_values fiv
ON fiv.flow_column_id = fc.id
AND fiv.flow_item_id = :item_id
WHERE fc.flow_pipeline_id = :pipeline_id
AND fc.is_active = true
ORDER BY fc.position;"""

CHECKLIST = """[
{ "key": "proposal_sent", "label": "Proposal sent to client", "required": true },
{ "key": "budget_confirmed", "label": "Budget confirmed", "required": true },
{ "key": "legal_reviewed", "label": "Legal review completed", "required": false }
]"""

CHECKLIST_STATE = """{
"proposal_sent": { "completed": true, "completed_by": 42, "completed_at": "2026-05-04T10:00:00Z" },
"budget_confirmed": { "completed": false, "completed_by": null, "completed_at": null },
"legal_reviewed": { "completed": false, "completed_by": null, "completed_at": null }
}"""

COMPLETE_CHECKLIST_ITEM = """UPDATE flow_items
SET checklist_state = jsonb_set(
COALESCE(checklist_state::jsonb, '{}'::jsonb),
ARRAY[:key],
jsonb_build_object(
'completed', true,
'completed_by', :user_id,
'completed_at', NOW()
)
),
updated_at = NOW()
WHERE id = :item_id;"""

SLA_BREACHES = """SELECT fi.id, fi.object_type, fi.object_id, fs.name AS stage, fs.sla_days,
NOW() - fi.last_stage_changed_at AS time_in_stage
FROM flow_items fi
JOIN flow_stages fs ON fs.id = fi.flow_stage_id
WHERE fs.sla_days IS NOT NULL
AND fs.is_won = false
AND fs.is_lost = false
AND fi.flow_pipeline_id = :pipeline_id
AND fi.deleted_at IS NULL
AND (NOW() - fi.last_stage_changed_at) > (fs.sla_days || ' days')::interval;"""

MATCHING_AUTOMATIONS = """SELECT event_name, payload_template
FROM flow_automations
WHERE flow_pipeline_id = :pipeline_id
AND is_active = true
AND deleted_at IS NULL
AND trigger IN ('stage_entered', 'stage_exited')
AND (flow_stage_id IS NULL
OR (trigger = 'stage_entered' AND flow_stage_id = :new_stage_id)
OR (trigger = 'stage_exited' AND flow_stage_id = :old_stage_id));"""

WATCHERS = """SELECT iam_user_id
FROM flow_item_watchers
WHERE flow_item_id = :item_id;"""

BOARD = """SELECT fs.name AS stage, fs.position, fi.id, fi.object_type, fi.object_id,
fi.assigned_iam_user_id, fi.last_stage_changed_at
FROM flow_stages fs
LEFT JOIN flow_items fi
ON fi.flow_stage_id = fs.id AND fi.deleted_at IS NULL
WHERE fs.flow_pipeline_id = :pipeline_id
AND fs.deleted_at IS NULL
ORDER BY fs.position, fi.position;"""

ITEM_HISTORY = """SELECT
from_s.name AS from_stage,
to_s.name AS to_stage,
fsh.moved_by_iam_user_id,
fsh.moved_at
FROM flow_stage_history fsh
LEFT JOIN flow_stages from_s ON from_s.id = fsh.from_stage_id
JOIN flow_stages to_s ON to_s.id = fsh.to_stage_id
WHERE fsh.flow_item_id = :item_id
ORDER BY fsh.moved_at;"""

OBJECT_PIPELINES = """SELECT fp.id, fp.name, fs.name AS current_stage
FROM flow_items fi
JOIN flow_pipelines fp ON fp.id = fi.flow_pipeline_id
JOIN flow_stages fs ON fs.id = fi.flow_stage_id
WHERE fi.object_type = 'crm_opportunity'
AND fi.object_id = :opportunity_id
AND fi.deleted_at IS NULL;"""

FUNNEL = """SELECT
COUNT(DISTINCT CASE WHEN to_stage_id = :from_stage_id THEN flow_item_id END) AS entered,
COUNT(DISTINCT CASE WHEN to_stage_id = :to_stage_id THEN flow_item_id END) AS converted
FROM flow_stage_history
WHERE flow_pipeline_id = :pipeline_id;"""

PG_ONLY = {
    "COMPLETE_CHECKLIST_ITEM": (COMPLETE_CHECKLIST_ITEM, "jsonb_set is PostgreSQL only"),
    "SLA_BREACHES": (SLA_BREACHES, "NOW() and the interval cast are PostgreSQL only"),
}
"""Seed statements SQLite cannot run, with the reason their tests skip there."""

# --- helpers ---------------------------------------------------------------------------------

items = schema.ItemRow.__table__
sla_due = schema.SlaDueRow.__table__
sla_breaches = schema.SlaBreachRow.__table__
stages_table = schema.StageRow.__table__
columns_table = schema.ColumnRow.__table__
required_table = schema.StageRequiredColumnRow.__table__
values_table = schema.ItemValueRow.__table__
history_table = schema.StageHistoryRow.__table__
automations_table = schema.AutomationRow.__table__
watchers_table = schema.WatcherRow.__table__
outbox_table = schema.OutboxRow.__table__
pipelines_table = schema.PipelineRow.__table__


@dataclass(frozen=True)
class Seeded:
    """Ids of one pipeline written by the seed's SQL."""

    pipeline_id: int
    stages: Mapping[str, int]
    columns: Mapping[str, int]

    def code(self, stage: str) -> str:
        """The compiled state code of a stage inserted without a code."""
        return f"stage_{self.stages[stage]}"


def run(conn: Connection, statement: str, **params: Any) -> CursorResult[Any]:
    """Execute one seed statement with its `:name` parameters bound."""
    return conn.execute(sql_text(statement), params)


def postgresql_only(backend: str, name: str) -> None:
    """Skip on SQLite, naming the seed statement and why SQLite cannot run it."""
    if backend == "sqlite":
        pytest.skip(f"seed statement {name}: {PG_ONLY[name][1]}")


def create_pipeline(engine: Engine, *, require: bool = True) -> Seeded:
    """The seed's "Creating a Pipeline" steps: pipeline, stages, columns, options, requirement."""
    with engine.begin() as conn:
        pipeline_id = run(conn, CREATE_PIPELINE, account_id=ACCOUNT, user_id=USER).scalar_one()
        run(conn, CREATE_STAGES, pipeline_id=pipeline_id)
        run(conn, CREATE_COLUMNS, pipeline_id=pipeline_id)
        run(conn, SET_OPTIONS, pipeline_id=pipeline_id)
        stage_ids = dict(
            conn.execute(
                select(stages_table.c.name, stages_table.c.id).where(
                    stages_table.c.flow_pipeline_id == pipeline_id
                )
            ).all()
        )
        column_ids = dict(
            conn.execute(
                select(columns_table.c.name, columns_table.c.id).where(
                    columns_table.c.flow_pipeline_id == pipeline_id
                )
            ).all()
        )
        seeded = Seeded(pipeline_id, stage_ids, column_ids)
        if require:
            require_close_date(conn, seeded)
    return seeded


def require_close_date(conn: Connection, seeded: Seeded) -> None:
    """The seed's requirement: close_date before Proposal."""
    run(
        conn,
        REQUIRE_COLUMN,
        proposal_stage_id=seeded.stages["Proposal"],
        close_date_column_id=seeded.columns["close_date"],
    )


def place_item(engine: Engine, seeded: Seeded, opportunity_id: int = OPPORTUNITY) -> int:
    """The seed's placement: the item row and its first history row, in one transaction."""
    with engine.begin() as conn:
        item_id = run(
            conn,
            PLACE_ITEM,
            pipeline_id=seeded.pipeline_id,
            first_stage_id=seeded.stages["Lead"],
            opportunity_id=opportunity_id,
            account_id=ACCOUNT,
            user_id=USER,
            assigned_user_id=ASSIGNEE,
        ).scalar_one()
        run(
            conn,
            INITIAL_HISTORY,
            item_id=item_id,
            pipeline_id=seeded.pipeline_id,
            first_stage_id=seeded.stages["Lead"],
            user_id=USER,
        )
    return int(item_id)


def sql_move(engine: Engine, seeded: Seeded, item_id: int, old: str, new: str) -> None:
    """The seed's move: update the item and append to its history, in one transaction."""
    with engine.begin() as conn:
        run(conn, MOVE_ITEM, new_stage_id=seeded.stages[new], item_id=item_id)
        run(
            conn,
            MOVE_HISTORY,
            item_id=item_id,
            pipeline_id=seeded.pipeline_id,
            old_stage_id=seeded.stages[old],
            new_stage_id=seeded.stages[new],
            user_id=USER,
        )


def insert_value(engine: Engine, item_id: int, column_id: int, value: str | None) -> None:
    """Store a custom column value through the table (no seed statement runs on SQLite)."""
    with engine.begin() as conn:
        conn.execute(
            insert(values_table).values(flow_item_id=item_id, flow_column_id=column_id, value=value)
        )


def fill_close_date(engine: Engine, backend: str, seeded: Seeded, item_id: int) -> None:
    """Give the item a close_date with the seed's upsert."""
    column_id = seeded.columns["close_date"]
    with engine.begin() as conn:
        run(conn, UPSERT_VALUE, item_id=item_id, column_id=column_id, value="2026-07-01")


def query(engine: Engine, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of one seed query."""
    with engine.connect() as conn:
        return [tuple(row) for row in run(conn, statement, **params)]


def history_names(engine: Engine, item_id: int) -> list[tuple[str | None, str, int | None]]:
    """The seed's item history as (from stage, to stage, moved by)."""
    return [(r[0], r[1], r[2]) for r in query(engine, ITEM_HISTORY, item_id=item_id)]


def as_json(value: Any) -> Any:
    """A JSON column read through raw SQL: parsed by psycopg, plain text on SQLite."""
    return json.loads(value) if isinstance(value, str) else value


def item_row(engine: Engine, item_id: int) -> Any:
    """The item's row read through the typed table (timestamps come back aware)."""
    with engine.connect() as conn:
        return conn.execute(
            select(
                items,
                BREACHED_AT,
            ).where(items.c.id == item_id)
        ).one()


def footprint(engine: Engine, item_id: int) -> tuple[Any, ...]:
    """The item's row and how many history, method-call and outbox rows it has."""
    calls = schema.MethodCallRow.__table__
    with engine.connect() as conn:
        counts = tuple(
            conn.execute(
                select(func.count()).select_from(t).where(t.c.flow_item_id == item_id)
            ).scalar_one()
            for t in (history_table, calls, outbox_table)
        )
    return (tuple(item_row(engine, item_id)), *counts)


def checklist_is_null(engine: Engine, item_id: int) -> bool:
    """Whether the item's checklist_state is SQL NULL (not a stored JSON null)."""
    with engine.connect() as conn:
        return bool(
            conn.execute(
                select(func.count()).where(items.c.id == item_id, items.c.checklist_state.is_(None))
            ).scalar_one()
        )


def push_back(engine: Engine, item_id: int, days: float) -> datetime:
    """Pretend the item entered its stage `days` ago; returns the new entry time."""
    when = datetime.now(UTC) - timedelta(days=days)
    with engine.begin() as conn:
        conn.execute(update(items).where(items.c.id == item_id).values(last_stage_changed_at=when))
    return when


@pytest.fixture
def actor() -> Actor:
    """The user whose ids the seed's SQL writes."""
    return Actor.user(USER, ACCOUNT)


@pytest.fixture
def seeded(fk: Flowkernel) -> Seeded:
    """The seed's Sales Pipeline, written by its SQL."""
    return create_pipeline(fk.engine)


# --- creating a pipeline -----------------------------------------------------------------------


def test_creating_a_pipeline_writes_the_documented_rows(fk: Flowkernel, seeded: Seeded) -> None:
    with fk.engine.connect() as conn:
        pipeline = conn.execute(
            select(pipelines_table).where(pipelines_table.c.id == seeded.pipeline_id)
        ).one()
        stages = conn.execute(
            select(stages_table)
            .where(stages_table.c.flow_pipeline_id == seeded.pipeline_id)
            .order_by(stages_table.c.position)
        ).all()
        columns = conn.execute(
            select(columns_table)
            .where(columns_table.c.flow_pipeline_id == seeded.pipeline_id)
            .order_by(columns_table.c.position)
        ).all()
        required = conn.execute(
            select(required_table.c.flow_column_id).where(
                required_table.c.flow_stage_id == seeded.stages["Proposal"]
            )
        ).all()
    assert (pipeline.name, pipeline.object_type) == ("Sales Pipeline", "crm_opportunity")
    assert (pipeline.iam_account_id, pipeline.iam_user_id) == (ACCOUNT, USER)
    assert (pipeline.is_template, pipeline.is_system, pipeline.movement) == (False, False, "free")
    assert pipeline.deleted_at is None
    assert [
        (s.name, s.position, s.color, s.probability, s.sla_days, s.is_won, s.is_lost)
        for s in stages
    ] == [
        ("Lead", 0, "#94a3b8", 10, 7, False, False),
        ("Qualified", 1, "#60a5fa", 30, 14, False, False),
        ("Proposal", 2, "#f59e0b", 60, 10, False, False),
        ("Won", 3, "#22c55e", 100, None, True, False),
        ("Lost", 4, "#ef4444", 0, None, False, True),
    ]
    assert all(s.code is None and s.state_type is None for s in stages)
    assert [(c.name, c.label, c.field_type, c.is_required, c.is_active) for c in columns] == [
        ("decision_maker", "Decision Maker", "text", False, True),
        ("contract_value", "Contract Value", "number", False, True),
        ("close_date", "Expected Close", "date", False, True),
        ("priority", "Priority", "select", False, True),
    ]
    assert [c.options for c in columns] == [None, None, None, ["High", "Medium", "Low"]]
    assert [r[0] for r in required] == [seeded.columns["close_date"]]


def test_engine_compiles_the_sql_pipeline(fk: Flowkernel, seeded: Seeded) -> None:
    compiled = fk.compiled(seeded.pipeline_id, ACCOUNT)
    names = ["Lead", "Qualified", "Proposal", "Won", "Lost"]
    assert [s.code for s in compiled.ordered_states] == [seeded.code(n) for n in names]
    assert [s.label for s in compiled.ordered_states] == names
    assert [s.state_type for s in compiled.ordered_states] == [
        "enabled",
        "enabled",
        "enabled",
        "disabled",
        "disabled",
    ]
    assert compiled.create is not None and compiled.create.target == seeded.code("Lead")
    proposal = compiled.state(seeded.code("Proposal"))
    assert [(r.name, r.label) for r in proposal.required] == [("close_date", "Expected Close")]
    assert compiled.columns["priority"].options == ("High", "Medium", "Low")
    assert compiled.account_id == ACCOUNT and compiled.is_pipeline
    lead_methods = compiled.methods[seeded.code("Lead")]
    assert {f"move_to_{seeded.code(n)}" for n in names[1:]} <= set(lead_methods)


def test_the_engine_refuses_a_second_won_stage(
    fk: Flowkernel, seeded: Seeded, actor: Actor
) -> None:
    with fk.engine.begin() as conn:
        conn.execute(
            insert(stages_table).values(
                flow_pipeline_id=seeded.pipeline_id, name="Won again", position=5, is_won=True
            )
        )
    with pytest.raises(InvalidDefinition) as refused:
        fk.place(seeded.pipeline_id, "crm_opportunity", OPPORTUNITY, actor)
    assert len(refused.value.details()["won"]) == 2
    with fk.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(items)).scalar_one() == 0


def test_one_object_occupies_one_stage_per_pipeline(
    fk: Flowkernel, seeded: Seeded, actor: Actor
) -> None:
    first = place_item(fk.engine, seeded)
    with pytest.raises(IntegrityError):
        place_item(fk.engine, seeded)
    with pytest.raises(ObjectAlreadyPlaced) as refused:
        fk.place(seeded.pipeline_id, "crm_opportunity", OPPORTUNITY, actor)
    assert refused.value.item_id == first
    with fk.engine.connect() as conn:
        count = conn.execute(
            select(func.count()).select_from(items).where(items.c.object_id == OPPORTUNITY)
        ).scalar_one()
    assert count == 1
    assert history_names(fk.engine, first) == [(None, "Lead", USER)]


# --- placing, requirements, values ---------------------------------------------------------------


def test_placing_an_item_records_the_first_history_row(fk: Flowkernel, seeded: Seeded) -> None:
    item_id = place_item(fk.engine, seeded)
    row = item_row(fk.engine, item_id)
    assert (row.flow_pipeline_id, row.flow_stage_id) == (seeded.pipeline_id, seeded.stages["Lead"])
    assert (row.object_type, row.object_id) == ("crm_opportunity", OPPORTUNITY)
    assert (row.iam_account_id, row.iam_user_id, row.assigned_iam_user_id) == (
        ACCOUNT,
        USER,
        ASSIGNEE,
    )
    assert (row.position, row.version, row.checklist_state, row.deleted_at) == (0, 1, None, None)
    assert abs(row.last_stage_changed_at - datetime.now(UTC)) < timedelta(minutes=1)
    # The trigger derives the due time from Lead's sla_days (7).
    assert row.sla_due_at == row.last_stage_changed_at + timedelta(days=7)
    assert row.sla_breached_at is None
    assert history_names(fk.engine, item_id) == [(None, "Lead", USER)]


def test_requirement_check_lists_missing_columns_until_filled(
    fk: Flowkernel, seeded: Seeded
) -> None:
    item_id = place_item(fk.engine, seeded)
    proposal, qualified = seeded.stages["Proposal"], seeded.stages["Qualified"]
    check = {"target_stage_id": proposal, "item_id": item_id}
    assert query(fk.engine, REQUIREMENT_CHECK, **check) == [("close_date", "Expected Close")]
    assert query(fk.engine, REQUIREMENT_CHECK, target_stage_id=qualified, item_id=item_id) == []
    # A NULL value does not satisfy the requirement.
    insert_value(fk.engine, item_id, seeded.columns["close_date"], None)
    assert query(fk.engine, REQUIREMENT_CHECK, **check) == [("close_date", "Expected Close")]
    with fk.engine.begin() as conn:
        conn.execute(
            update(values_table)
            .where(values_table.c.flow_item_id == item_id)
            .values(value="2026-07-01")
        )
    assert query(fk.engine, REQUIREMENT_CHECK, **check) == []


def test_value_upsert_inserts_then_updates_one_row(
    fk: Flowkernel, backend: str, seeded: Seeded
) -> None:
    item_id = place_item(fk.engine, seeded)
    column_id = seeded.columns["contract_value"]
    with fk.engine.begin() as conn:
        run(conn, UPSERT_VALUE, item_id=item_id, column_id=column_id, value="42500")
    with fk.engine.connect() as conn:
        first = conn.execute(select(values_table)).one()
    with fk.engine.begin() as conn:
        run(conn, UPSERT_VALUE, item_id=item_id, column_id=column_id, value="50000")
    with fk.engine.connect() as conn:
        rows = conn.execute(select(values_table)).all()
    assert len(rows) == 1
    assert (rows[0].id, rows[0].value, rows[0].created_at) == (
        first.id,
        "50000",
        first.created_at,
    )
    assert rows[0].updated_at > first.updated_at


def test_reading_values_lists_every_active_column_in_position_order(
    fk: Flowkernel, seeded: Seeded
) -> None:
    item_id = place_item(fk.engine, seeded)
    other = place_item(fk.engine, seeded, OPPORTUNITY + 1)
    with fk.engine.begin() as conn:
        conn.execute(
            insert(values_table),
            [
                {
                    "flow_item_id": item_id,
                    "flow_column_id": seeded.columns["priority"],
                    "value": "High",
                },
                {
                    "flow_item_id": item_id,
                    "flow_column_id": seeded.columns["contract_value"],
                    "value": "42500",
                },
                {
                    "flow_item_id": other,
                    "flow_column_id": seeded.columns["decision_maker"],
                    "value": "Someone else",
                },
            ],
        )
        conn.execute(
            update(columns_table)
            .where(columns_table.c.id == seeded.columns["decision_maker"])
            .values(position=9)
        )
    values = query(fk.engine, READ_VALUES, item_id=item_id, pipeline_id=seeded.pipeline_id)
    assert values == [
        ("contract_value", "Contract Value", "number", "42500"),
        ("close_date", "Expected Close", "date", None),
        ("priority", "Priority", "select", "High"),
        ("decision_maker", "Decision Maker", "text", None),
    ]
    with fk.engine.begin() as conn:
        conn.execute(
            update(columns_table)
            .where(columns_table.c.id == seeded.columns["priority"])
            .values(is_active=False)
        )
    values = query(fk.engine, READ_VALUES, item_id=item_id, pipeline_id=seeded.pipeline_id)
    assert [v[0] for v in values] == ["contract_value", "close_date", "decision_maker"]


# --- moving --------------------------------------------------------------------------------------


def test_sql_move_updates_the_item_and_appends_history(
    fk: Flowkernel, backend: str, seeded: Seeded, actor: Actor
) -> None:
    item_id = place_item(fk.engine, seeded)
    entered = push_back(fk.engine, item_id, 9)
    with fk.engine.begin() as conn:
        conn.execute(
            update(items)
            .where(items.c.id == item_id)
            .values(checklist_state={"x": {"completed": True}})
        )
        conn.execute(delete(sla_due).where(sla_due.c.flow_item_id == item_id))
        conn.execute(insert(sla_breaches).values(flow_item_id=item_id, breached_at=entered))
    sql_move(fk.engine, seeded, item_id, "Lead", "Qualified")
    row = item_row(fk.engine, item_id)
    assert row.flow_stage_id == seeded.stages["Qualified"]
    assert row.checklist_state is None
    assert abs(row.last_stage_changed_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert row.sla_due_at == row.last_stage_changed_at + timedelta(days=14)
    assert row.sla_breached_at is None  # a new stage entry clears the breach mark
    assert history_names(fk.engine, item_id) == [
        (None, "Lead", USER),
        ("Lead", "Qualified", USER),
    ]
    # The engine reads the SQL-moved item and keeps moving it.
    assert fk.item(item_id, actor).state == seeded.code("Qualified")
    trail = fk.history(item_id, actor)
    assert [(h.from_state, h.to_state, h.method) for h in trail] == [
        (None, seeded.code("Lead"), None),
        (seeded.code("Lead"), seeded.code("Qualified"), None),
    ]
    assert fk.move(item_id, seeded.stages["Lead"], actor).to_state == seeded.code("Lead")
    assert history_names(fk.engine, item_id)[-1] == ("Qualified", "Lead", USER)


def test_engine_runs_a_pipeline_made_by_sql(fk: Flowkernel, backend: str, actor: Actor) -> None:
    seeded = create_pipeline(fk.engine, require=False)
    engine_item = fk.place(seeded.pipeline_id, "crm_opportunity", 2002, actor)
    assert (engine_item.state, engine_item.state_type) == (seeded.code("Lead"), "enabled")
    assert engine_item.account_id == ACCOUNT and engine_item.class_id == seeded.pipeline_id
    # The requirement arrives by SQL after the engine compiled the pipeline: the definition
    # trigger bumps the class version, so the engine recompiles and enforces it.
    with fk.engine.begin() as conn:
        require_close_date(conn, seeded)
    sql_item = place_item(fk.engine, seeded)
    snapshot = fk.item(sql_item, actor)
    assert (snapshot.state, snapshot.assigned_user_id) == (seeded.code("Lead"), ASSIGNEE)
    with pytest.raises(ItemNotFound):
        fk.item(sql_item, Actor.user(USER, ACCOUNT + 1))

    with fk.engine.begin() as conn:
        conn.execute(
            update(items).where(items.c.id == sql_item).values(checklist_state={"call": {}})
        )
    moved = fk.move(sql_item, seeded.stages["Qualified"], actor)
    assert (moved.from_state, moved.to_state, moved.changed) == (
        seeded.code("Lead"),
        seeded.code("Qualified"),
        True,
    )
    # The engine resets checklist_state to SQL NULL, as the seed's move does: the seed's
    # COALESCE(checklist_state::jsonb, '{}'::jsonb) cannot set a key in a JSON null.
    assert checklist_is_null(fk.engine, sql_item)

    before = footprint(fk.engine, sql_item)
    with pytest.raises(RequirementMissing) as refused:
        fk.move(sql_item, seeded.stages["Proposal"], actor)
    assert refused.value.stage == seeded.code("Proposal")
    assert refused.value.missing == (("close_date", "Expected Close"),)
    assert footprint(fk.engine, sql_item) == before
    check = {"target_stage_id": seeded.stages["Proposal"], "item_id": sql_item}
    assert query(fk.engine, REQUIREMENT_CHECK, **check) == [("close_date", "Expected Close")]

    fill_close_date(fk.engine, backend, seeded, sql_item)
    assert query(fk.engine, REQUIREMENT_CHECK, **check) == []
    assert fk.move(sql_item, seeded.stages["Proposal"], actor).to_state == seeded.code("Proposal")
    won = fk.execute(sql_item, f"move_to_{seeded.code('Won')}", actor)
    assert (won.to_state, won.action) == (seeded.code("Won"), "move")
    assert fk.item(sql_item, actor).state_type == "disabled"

    assert history_names(fk.engine, sql_item) == [
        (None, "Lead", USER),
        ("Lead", "Qualified", USER),
        ("Qualified", "Proposal", USER),
        ("Proposal", "Won", USER),
    ]
    assert history_names(fk.engine, engine_item.id) == [(None, "Lead", USER)]
    board = query(fk.engine, BOARD, pipeline_id=seeded.pipeline_id)
    assert [(r[0], r[2]) for r in board] == [
        ("Lead", engine_item.id),
        ("Qualified", None),
        ("Proposal", None),
        ("Won", sql_item),
        ("Lost", None),
    ]
    funnel = {"pipeline_id": seeded.pipeline_id}
    lead, qualified, proposal = (seeded.stages[n] for n in ("Lead", "Qualified", "Proposal"))
    assert query(fk.engine, FUNNEL, from_stage_id=lead, to_stage_id=qualified, **funnel) == [(2, 1)]
    assert query(fk.engine, FUNNEL, from_stage_id=qualified, to_stage_id=proposal, **funnel) == [
        (1, 1)
    ]
    pipelines = query(fk.engine, OBJECT_PIPELINES, opportunity_id=OPPORTUNITY)
    assert pipelines == [(seeded.pipeline_id, "Sales Pipeline", "Won")]


# --- checklists --------------------------------------------------------------------------------


def test_checklist_completed_by_sql_opens_the_engine_guard(
    fk: Flowkernel, backend: str, seeded: Seeded, actor: Actor
) -> None:
    postgresql_only(backend, "COMPLETE_CHECKLIST_ITEM")
    with fk.engine.begin() as conn:
        conn.execute(
            update(stages_table)
            .where(stages_table.c.id == seeded.stages["Proposal"])
            .values(checklist=json.loads(CHECKLIST))
        )
    item_id = place_item(fk.engine, seeded)
    fill_close_date(fk.engine, backend, seeded, item_id)
    fk.move(item_id, seeded.stages["Proposal"], actor)

    before = footprint(fk.engine, item_id)
    with pytest.raises(ChecklistIncomplete) as refused:
        fk.move(item_id, seeded.stages["Won"], actor)
    assert refused.value.open_items == (
        ("proposal_sent", "Proposal sent to client"),
        ("budget_confirmed", "Budget confirmed"),
    )
    assert footprint(fk.engine, item_id) == before

    with fk.engine.begin() as conn:
        run(conn, COMPLETE_CHECKLIST_ITEM, key="proposal_sent", user_id=USER, item_id=item_id)
    state = item_row(fk.engine, item_id).checklist_state
    example = json.loads(CHECKLIST_STATE)
    assert list(state) == ["proposal_sent"]
    assert set(state["proposal_sent"]) == set(example["proposal_sent"])
    assert state["proposal_sent"]["completed"] is True
    assert state["proposal_sent"]["completed_by"] == USER
    completed_at = datetime.fromisoformat(state["proposal_sent"]["completed_at"])
    assert abs(completed_at - datetime.now(UTC)) < timedelta(minutes=1)

    with pytest.raises(ChecklistIncomplete) as refused:
        fk.move(item_id, seeded.stages["Won"], actor)
    assert refused.value.open_items == (("budget_confirmed", "Budget confirmed"),)

    with fk.engine.begin() as conn:  # COALESCE keeps the keys already completed
        run(conn, COMPLETE_CHECKLIST_ITEM, key="budget_confirmed", user_id=USER, item_id=item_id)
    assert set(item_row(fk.engine, item_id).checklist_state) == {
        "proposal_sent",
        "budget_confirmed",
    }
    assert fk.move(item_id, seeded.stages["Won"], actor).to_state == seeded.code("Won")
    assert checklist_is_null(fk.engine, item_id)  # reset on every stage change


# --- SLA ---------------------------------------------------------------------------------------


def test_sla_query_finds_items_past_their_stage_sla(
    fk: Flowkernel, backend: str, seeded: Seeded, actor: Actor
) -> None:
    postgresql_only(backend, "SLA_BREACHES")
    late = place_item(fk.engine, seeded, 1)
    fresh = place_item(fk.engine, seeded, 2)
    won = fk.place(seeded.pipeline_id, "crm_opportunity", 3, actor).id
    deleted = fk.place(seeded.pipeline_id, "crm_opportunity", 4, actor).id
    qualified = fk.place(seeded.pipeline_id, "crm_opportunity", 5, actor).id
    fk.move(won, seeded.stages["Won"], actor)
    fk.execute(deleted, "delete", actor)
    fk.move(qualified, seeded.stages["Qualified"], actor)
    entered = push_back(fk.engine, late, 8)
    for item_id in (won, deleted):
        push_back(fk.engine, item_id, 100)
    push_back(fk.engine, qualified, 13)
    assert item_row(fk.engine, late).sla_due_at == entered + timedelta(days=7)
    assert item_row(fk.engine, won).sla_due_at is None  # no SLA in a won stage

    def breaches() -> dict[int, tuple[Any, ...]]:
        rows = query(fk.engine, SLA_BREACHES, pipeline_id=seeded.pipeline_id)
        return {r[0]: r[1:] for r in rows}

    found = breaches()
    assert set(found) == {late}
    assert found[late][:4] == ("crm_opportunity", 1, "Lead", 7)
    assert timedelta(days=8) <= found[late][4] < timedelta(days=8, minutes=1)
    assert fresh not in found

    push_back(fk.engine, qualified, 15)  # the engine's move put it into Qualified (14 days)
    found = breaches()
    assert set(found) == {late, qualified}
    assert found[qualified][2:4] == ("Qualified", 14)
    assert item_row(fk.engine, qualified).sla_due_at < datetime.now(UTC)


# --- automations and watchers ---------------------------------------------------------------------


def test_automation_match_agrees_with_the_engine_outbox(
    fk: Flowkernel, seeded: Seeded, actor: Actor
) -> None:
    lead, qualified, proposal = (seeded.stages[n] for n in ("Lead", "Qualified", "Proposal"))
    rules: list[dict[str, Any]] = [
        {
            "trigger": "stage_entered",
            "flow_stage_id": qualified,
            "event_name": "crm.qualified",
            "payload_template": {"source": "flow"},
        },
        {"trigger": "stage_exited", "flow_stage_id": lead, "event_name": "crm.left_lead"},
        {"trigger": "stage_entered", "flow_stage_id": None, "event_name": "crm.any_move"},
        {"trigger": "stage_entered", "flow_stage_id": proposal, "event_name": "crm.proposal"},
        {"trigger": "stage_exited", "flow_stage_id": qualified, "event_name": "crm.left_qualified"},
        {
            "trigger": "stage_entered",
            "flow_stage_id": qualified,
            "event_name": "crm.inactive",
            "is_active": False,
        },
        {
            "trigger": "stage_entered",
            "flow_stage_id": qualified,
            "event_name": "crm.deleted",
            "deleted_at": datetime.now(UTC),
        },
        {"trigger": "item_created", "flow_stage_id": None, "event_name": "crm.created"},
    ]
    with fk.engine.begin() as conn:
        for rule in rules:
            conn.execute(
                insert(automations_table).values(flow_pipeline_id=seeded.pipeline_id, **rule)
            )

    def matching(old: int, new: int) -> dict[str, Any]:
        rows = query(
            fk.engine,
            MATCHING_AUTOMATIONS,
            pipeline_id=seeded.pipeline_id,
            new_stage_id=new,
            old_stage_id=old,
        )
        return {name: as_json(payload) for name, payload in rows}

    first = matching(lead, qualified)
    assert first == {
        "crm.qualified": {"source": "flow"},
        "crm.left_lead": None,
        "crm.any_move": None,
    }
    second = matching(qualified, proposal)
    assert set(second) == {"crm.any_move", "crm.proposal", "crm.left_qualified"}

    item = fk.place(seeded.pipeline_id, "crm_opportunity", OPPORTUNITY, actor)
    fk.move(item.id, qualified, actor)

    def outbox(trigger: tuple[str, ...]) -> dict[str, Any]:
        with fk.engine.connect() as conn:
            rows = conn.execute(
                select(outbox_table.c.event_name, outbox_table.c.payload).where(
                    outbox_table.c.flow_item_id == item.id,
                    outbox_table.c.kind == "automation",
                    outbox_table.c.trigger.in_(trigger),
                )
            ).all()
        return {name: payload for name, payload in rows}

    moves = ("stage_entered", "stage_exited")
    assert set(outbox(moves)) == set(first)
    assert outbox(moves)["crm.qualified"]["source"] == "flow"
    assert outbox(moves)["crm.qualified"]["item_id"] == item.id
    assert set(outbox(("item_created",))) == {"crm.created"}
    insert_value(fk.engine, item.id, seeded.columns["close_date"], "2026-07-01")
    fk.move(item.id, proposal, actor)
    assert set(outbox(moves)) == set(first) | set(second)


def test_watchers_query_names_who_the_engine_notifies(
    fk: Flowkernel, seeded: Seeded, actor: Actor
) -> None:
    item_id = place_item(fk.engine, seeded)
    other = place_item(fk.engine, seeded, OPPORTUNITY + 1)
    with fk.engine.begin() as conn:
        conn.execute(
            insert(watchers_table),
            [
                {"flow_item_id": item_id, "iam_user_id": 50},
                {"flow_item_id": item_id, "iam_user_id": 51},
                {"flow_item_id": other, "iam_user_id": 52},
            ],
        )
    watching = sorted(r[0] for r in query(fk.engine, WATCHERS, item_id=item_id))
    assert watching == [50, 51]
    with pytest.raises(IntegrityError), fk.engine.begin() as conn:
        conn.execute(insert(watchers_table).values(flow_item_id=item_id, iam_user_id=50))

    fk.move(item_id, seeded.stages["Qualified"], actor)
    with fk.engine.connect() as conn:
        recipients = conn.execute(
            select(outbox_table.c.recipient_iam_user_id)
            .where(outbox_table.c.flow_item_id == item_id, outbox_table.c.kind == "notification")
            .order_by(outbox_table.c.recipient_iam_user_id)
        ).scalars()
        assert list(recipients) == watching


# --- board, history, pipelines of an object, funnel -------------------------------------------


def test_board_shows_sql_and_engine_items_by_stage(
    fk: Flowkernel, seeded: Seeded, actor: Actor
) -> None:
    first = fk.place(seeded.pipeline_id, "crm_opportunity", 1, actor, assigned_user_id=60).id
    second = fk.place(seeded.pipeline_id, "crm_opportunity", 2, actor).id
    by_sql = place_item(fk.engine, seeded, 3)
    gone = fk.place(seeded.pipeline_id, "crm_opportunity", 4, actor).id
    fk.move(by_sql, seeded.stages["Qualified"], actor)
    fk.move(gone, seeded.stages["Lost"], actor)
    fk.execute(gone, "delete", actor)
    board = query(fk.engine, BOARD, pipeline_id=seeded.pipeline_id)
    assert [(r[0], r[1], r[2]) for r in board] == [
        ("Lead", 0, first),
        ("Lead", 0, second),
        ("Qualified", 1, by_sql),
        ("Proposal", 2, None),
        ("Won", 3, None),
        ("Lost", 4, None),  # the deleted item leaves the board, its stage stays
    ]
    assert board[0][3:6] == ("crm_opportunity", 1, 60)
    assert board[2][3:6] == ("crm_opportunity", 3, ASSIGNEE)
    moved_at = board[2][6]
    if isinstance(moved_at, str):  # SQLite returns the stored text
        moved_at = datetime.fromisoformat(moved_at).replace(tzinfo=UTC)
    assert abs(moved_at - datetime.now(UTC)) < timedelta(minutes=1)
    with fk.engine.begin() as conn:
        conn.execute(
            update(stages_table)
            .where(stages_table.c.id == seeded.stages["Proposal"])
            .values(deleted_at=datetime.now(UTC))
        )
    board = query(fk.engine, BOARD, pipeline_id=seeded.pipeline_id)
    assert [r[0] for r in board] == ["Lead", "Lead", "Qualified", "Won", "Lost"]


def test_item_history_is_ordered_and_names_the_stages(
    fk: Flowkernel, seeded: Seeded, actor: Actor
) -> None:
    item_id = place_item(fk.engine, seeded)
    fk.move(item_id, seeded.stages["Qualified"], actor)
    fk.move(item_id, seeded.stages["Lead"], Actor.user(USER + 1, ACCOUNT))
    fk.move(item_id, seeded.stages["Lost"], actor)
    rows = query(fk.engine, ITEM_HISTORY, item_id=item_id)
    assert [r[:3] for r in rows] == [
        (None, "Lead", USER),
        ("Lead", "Qualified", USER),
        ("Qualified", "Lead", USER + 1),
        ("Lead", "Lost", USER),
    ]
    engine_view = fk.history(item_id, actor)
    assert [h.user_id for h in engine_view] == [r[2] for r in rows]
    assert [h.to_state for h in engine_view] == [
        seeded.code(n) for n in ("Lead", "Qualified", "Lead", "Lost")
    ]
    assert query(fk.engine, ITEM_HISTORY, item_id=item_id + 1000) == []


def test_pipelines_of_an_object(fk: Flowkernel, seeded: Seeded, actor: Actor) -> None:
    second = create_pipeline(fk.engine)
    place_item(fk.engine, seeded)
    in_second = fk.place(second.pipeline_id, "crm_opportunity", OPPORTUNITY, actor).id
    with pytest.raises(WrongObjectType):  # the pipeline tracks crm_opportunity objects
        fk.place(second.pipeline_id, "support_ticket", OPPORTUNITY, actor)
    fk.move(in_second, second.stages["Qualified"], actor)
    found = sorted(query(fk.engine, OBJECT_PIPELINES, opportunity_id=OPPORTUNITY))
    assert found == [
        (seeded.pipeline_id, "Sales Pipeline", "Lead"),
        (second.pipeline_id, "Sales Pipeline", "Qualified"),
    ]
    fk.execute(in_second, "delete", actor)
    found = query(fk.engine, OBJECT_PIPELINES, opportunity_id=OPPORTUNITY)
    assert found == [(seeded.pipeline_id, "Sales Pipeline", "Lead")]
    assert query(fk.engine, OBJECT_PIPELINES, opportunity_id=OPPORTUNITY + 1) == []


def test_funnel_counts_items_that_entered_and_converted(
    fk: Flowkernel, seeded: Seeded, actor: Actor
) -> None:
    placed = [place_item(fk.engine, seeded, n) for n in (1, 2)]
    placed += [fk.place(seeded.pipeline_id, "crm_opportunity", n, actor).id for n in (3, 4, 5)]
    for item_id in placed[:3]:
        fk.move(item_id, seeded.stages["Qualified"], actor)
    # Back and forth counts once per item.
    fk.move(placed[0], seeded.stages["Lead"], actor)
    fk.move(placed[0], seeded.stages["Qualified"], actor)
    fk.move(placed[1], seeded.stages["Lost"], actor)
    lead, qualified, lost = (seeded.stages[n] for n in ("Lead", "Qualified", "Lost"))

    def funnel(from_stage: int, to_stage: int, pipeline_id: int) -> list[tuple[Any, ...]]:
        return query(
            fk.engine,
            FUNNEL,
            from_stage_id=from_stage,
            to_stage_id=to_stage,
            pipeline_id=pipeline_id,
        )

    assert funnel(lead, qualified, seeded.pipeline_id) == [(5, 3)]
    assert funnel(qualified, lost, seeded.pipeline_id) == [(3, 1)]
    assert funnel(lead, qualified, seeded.pipeline_id + 1000) == [(0, 0)]


# --- the portability boundary ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PG_ONLY))
def test_sqlite_refuses_only_the_postgresql_statements(
    fk: Flowkernel, backend: str, seeded: Seeded, name: str
) -> None:
    """Keeps the skip reasons true: if SQLite learns one of these, its test should run there."""
    if backend != "sqlite":
        pytest.skip("checks the SQLite boundary")
    item_id = place_item(fk.engine, seeded)
    params = {
        "item_id": item_id,
        "new_stage_id": seeded.stages["Qualified"],
        "column_id": seeded.columns["priority"],
        "value": "High",
        "key": "proposal_sent",
        "user_id": USER,
        "pipeline_id": seeded.pipeline_id,
    }
    statement = PG_ONLY[name][0]
    wanted = {k: v for k, v in params.items() if f":{k}" in statement}
    before = item_row(fk.engine, item_id)
    with pytest.raises(OperationalError), fk.engine.begin() as conn:
        run(conn, statement, **wanted)
    assert item_row(fk.engine, item_id) == before
