"""Item operations: custom values, checklists, assignment, board order, lifecycle, watchers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, text, update

from flowkernel import (
    SYSTEM,
    AccessDenied,
    Actor,
    ChecklistIncomplete,
    Flowkernel,
    InvalidArgument,
    InvalidValue,
    InvalidValues,
    ItemNotDeleted,
    ItemNotFound,
    RequirementMissing,
    UnknownDefinition,
    WatcherNotification,
    hookimpl,
)
from flowkernel.errors import ColumnInactive, ItemDeleted
from flowkernel.runtime.items import ChecklistEntry, ItemValue
from flowkernel.store.database import open_engine
from flowkernel.store.tables import (
    columns,
    history,
    inbox,
    item_values,
    items,
    outbox,
    pipelines,
    required_columns,
    stages,
    watchers,
)

ACCOUNT = 10
OTHER = 20
ALICE = Actor.user(1, ACCOUNT)
BOB = Actor.user(2, ACCOUNT)
MALLORY = Actor.user(9, OTHER)

# The seed's example pipeline: (code, label, sla_days, is_won, is_lost)
STAGES = [
    ("lead", "Lead", 7, False, False),
    ("qualified", "Qualified", 14, False, False),
    ("proposal", "Proposal", 10, False, False),
    ("won", "Won", None, True, False),
    ("lost", "Lost", None, False, True),
]
# The seed's example columns plus the remaining field types: (name, label, type, options)
COLUMNS: list[tuple[str, str, str, list[str] | None]] = [
    ("decision_maker", "Decision Maker", "text", None),
    ("contract_value", "Contract Value", "number", None),
    ("close_date", "Expected Close", "date", None),
    ("priority", "Priority", "select", ["High", "Medium", "Low"]),
    ("tags", "Tags", "multi_select", ["High", "Urgent"]),
    ("signed", "Signed", "boolean", None),
    ("meta", "Meta", "json", None),
]
CHECKLIST = [
    {"key": "proposal_sent", "label": "Proposal sent to client", "required": True},
    {"key": "budget_confirmed", "label": "Budget confirmed", "required": True},
    {"key": "legal_reviewed", "label": "Legal review completed", "required": False},
]


@dataclass(frozen=True)
class Board:
    """A pipeline made for a test: its code, id, stage ids and column ids."""

    code: str
    id: int
    stages: dict[str, int]
    columns: dict[str, int]


def make_board(
    fk: Flowkernel,
    code: str = "sales",
    account: int | None = ACCOUNT,
    *,
    checklists: dict[str, list[dict[str, Any]]] | None = None,
    required: dict[str, list[str]] | None = None,
) -> Board:
    """The seed's Sales Pipeline, built with the authoring API and the seed's own tables."""
    info = fk.definitions.add_class(
        code, "Sales Pipeline", movement="free", account_id=account, object_type="crm_opportunity"
    )
    stage_ids: dict[str, int] = {}
    for position, (stage, label, _, won, lost) in enumerate(STAGES):
        state_type = "disabled" if won or lost else "enabled"
        state = fk.definitions.add_state(
            code, state_type, stage, label, position=position, account_id=account
        )
        stage_ids[stage] = state.id
    column_ids: dict[str, int] = {}
    with fk.engine.begin() as conn:
        for stage, _, sla_days, won, lost in STAGES:
            conn.execute(
                update(stages)
                .where(stages.c.id == stage_ids[stage])
                .values(
                    sla_days=sla_days,
                    is_won=won,
                    is_lost=lost,
                    checklist=(checklists or {}).get(stage),
                )
            )
        for position, (name, label, field_type, options) in enumerate(COLUMNS):
            column_ids[name] = conn.execute(
                insert(columns)
                .values(
                    flow_pipeline_id=info.id,
                    name=name,
                    label=label,
                    field_type=field_type,
                    position=position,
                    options=options,
                )
                .returning(columns.c.id)
            ).scalar_one()
        for stage, names in (required or {}).items():
            for name in names:
                conn.execute(
                    insert(required_columns).values(
                        flow_stage_id=stage_ids[stage], flow_column_id=column_ids[name]
                    )
                )
    return Board(code, info.id, stage_ids, column_ids)


def place(fk: Flowkernel, board: Board, object_id: int, actor: Actor = ALICE) -> int:
    return fk.place(board.code, "crm_opportunity", object_id, actor).id


def db_state(fk: Flowkernel, item_id: int) -> dict[str, Any]:
    """Everything an item operation may touch, read straight from the database."""
    with fk.engine.connect() as conn:
        item = conn.execute(select(items).where(items.c.id == item_id)).mappings().first()
        return {
            "item": dict(item) if item else None,
            "values": sorted(
                tuple(r)
                for r in conn.execute(
                    select(item_values).where(item_values.c.flow_item_id == item_id)
                )
            ),
            "watchers": sorted(
                conn.execute(
                    select(watchers.c.iam_user_id).where(watchers.c.flow_item_id == item_id)
                ).scalars()
            ),
            "history": conn.execute(
                select(func.count()).where(history.c.flow_item_id == item_id)
            ).scalar_one(),
            "outbox": conn.execute(select(func.count()).select_from(outbox)).scalar_one(),
            "inbox": conn.execute(select(func.count()).select_from(inbox)).scalar_one(),
        }


def stage_order(fk: Flowkernel, stage_id: int) -> list[tuple[int, int]]:
    """The seed's board query for one stage: (item id, position) of live items, in order."""
    with fk.engine.connect() as conn:
        return [
            (r.id, r.position)
            for r in conn.execute(
                select(items.c.id, items.c.position)
                .where(items.c.flow_stage_id == stage_id, items.c.deleted_at.is_(None))
                .order_by(items.c.position)
            )
        ]


def checklist_is_null(fk: Flowkernel, item_id: int) -> bool:
    with fk.engine.connect() as conn:
        return conn.execute(
            select(items.c.checklist_state.is_(None)).where(items.c.id == item_id)
        ).scalar_one()


# --- custom values -------------------------------------------------------------------------


def test_values_follow_the_seeds_read_query(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 1)
    empty = fk.items.values(item_id, ALICE)
    assert [v.name for v in empty] == [c[0] for c in COLUMNS]
    assert all(v.value is None and v.parsed is None and v.valid for v in empty)

    fk.items.set_value(item_id, "decision_maker", "Ada Lovelace", ALICE)
    fk.items.set_value(item_id, "contract_value", 42500, ALICE)
    fk.items.set_value(item_id, "close_date", date(2026, 7, 1), ALICE)
    fk.items.set_value(item_id, "priority", "High", ALICE)
    fk.items.set_value(item_id, "tags", ["Urgent", "High"], ALICE)
    fk.items.set_value(item_id, "signed", False, ALICE)
    written = fk.items.set_value(item_id, "meta", {"source": "web", "score": 0.5}, ALICE)
    assert isinstance(written, ItemValue)
    assert written.value == '{"source":"web","score":0.5}'

    read = {v.name: v for v in fk.items.values(item_id, ALICE)}
    assert [(n, v.value) for n, v in read.items()] == [
        ("decision_maker", "Ada Lovelace"),
        ("contract_value", "42500"),
        ("close_date", "2026-07-01"),
        ("priority", "High"),
        ("tags", '["Urgent","High"]'),
        ("signed", "false"),
        ("meta", '{"source":"web","score":0.5}'),
    ]
    assert read["contract_value"].parsed == Decimal(42500)
    assert read["close_date"].parsed == date(2026, 7, 1)
    assert read["tags"].parsed == ["Urgent", "High"]
    assert read["signed"].parsed is False
    assert read["meta"].parsed == {"source": "web", "score": 0.5}
    assert read["priority"].label == "Priority" and read["priority"].field_type == "select"

    # the seed's SQL reads the same text
    with fk.engine.connect() as conn:
        rows = conn.execute(
            select(columns.c.name, item_values.c.value)
            .join(item_values, item_values.c.flow_column_id == columns.c.id)
            .where(item_values.c.flow_item_id == item_id)
            .order_by(columns.c.position)
        ).all()
    assert [tuple(r) for r in rows] == [(n, v.value) for n, v in read.items()]


def test_set_value_upserts_value_and_updated_at(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 1)
    first = fk.items.set_value(item_id, "contract_value", "1000", ALICE)
    second = fk.items.set_value(item_id, "contract_value", "2.50e3", ALICE)
    assert second.value == "2500"
    assert second.updated_at is not None and first.updated_at is not None
    assert second.updated_at >= first.updated_at
    with fk.engine.connect() as conn:
        rows = conn.execute(select(item_values).where(item_values.c.flow_item_id == item_id)).all()
    assert len(rows) == 1
    assert rows[0].value == "2500"
    assert rows[0].created_at <= rows[0].updated_at
    assert rows[0].updated_at == second.updated_at


def test_writing_a_value_bumps_nothing_else(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 1)
    with fk.engine.connect() as conn:
        version = conn.execute(
            select(pipelines.c.version).where(pipelines.c.id == board.id)
        ).scalar_one()
    before = db_state(fk, item_id)
    fk.items.set_values(item_id, {"decision_maker": "Ada", "priority": "Low"}, ALICE)
    fk.items.clear_value(item_id, "priority", ALICE)
    after = db_state(fk, item_id)
    assert after["item"] == before["item"]  # version, updated_at, position: untouched
    assert after["history"] == before["history"] and after["outbox"] == before["outbox"]
    with fk.engine.connect() as conn:
        assert (
            conn.execute(select(pipelines.c.version).where(pipelines.c.id == board.id)).scalar_one()
            == version
        )


def test_set_values_is_all_or_nothing(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 1)
    fk.items.set_value(item_id, "decision_maker", "Ada", ALICE)
    before = db_state(fk, item_id)
    with pytest.raises(InvalidValue) as refused:
        fk.items.set_values(
            item_id,
            {"decision_maker": "Grace", "contract_value": 10, "close_date": "next week"},
            ALICE,
        )
    assert refused.value.column == "close_date"
    assert "ISO 8601" in refused.value.expected
    assert db_state(fk, item_id) == before
    with pytest.raises(InvalidValues) as several:
        fk.items.set_values(
            item_id,
            {"contract_value": "ten", "decision_maker": "Grace", "close_date": "next week"},
            ALICE,
        )
    assert [r["column"] for r in several.value.refused] == ["contract_value", "close_date"]
    assert [r["value"] for r in several.value.refused] == ["ten", "next week"]
    assert (several.value.column, several.value.code) == ("contract_value", "invalid_value")
    assert "'contract_value' refuses 'ten'" in several.value.message
    assert "'close_date' refuses 'next week'" in several.value.message
    assert db_state(fk, item_id) == before
    with pytest.raises(UnknownDefinition):
        fk.items.set_values(item_id, {"decision_maker": "Grace", "budget": 1}, ALICE)
    assert db_state(fk, item_id) == before
    written = fk.items.set_values(item_id, {"decision_maker": "Grace", "contract_value": 10}, ALICE)
    assert [(v.name, v.value) for v in written] == [
        ("decision_maker", "Grace"),
        ("contract_value", "10"),
    ]
    assert fk.items.set_values(item_id, {}, ALICE) == []
    with pytest.raises(InvalidArgument):
        fk.items.set_values(item_id, [("decision_maker", "x")], ALICE)  # type: ignore[arg-type]


def test_unknown_column_lists_the_known_ones(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 1)
    before = db_state(fk, item_id)
    with pytest.raises(UnknownDefinition) as refused:
        fk.items.set_value(item_id, "budget", 1, ALICE)
    assert refused.value.kind == "column"
    assert refused.value.known == tuple(c[0] for c in COLUMNS)
    assert "decision_maker" in str(refused.value)
    with pytest.raises(UnknownDefinition):
        fk.items.clear_value(item_id, "budget", ALICE)
    assert db_state(fk, item_id) == before


def test_inactive_column_refuses_writes_and_leaves_reads(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 1)
    fk.items.set_value(item_id, "priority", "High", ALICE)
    with fk.engine.begin() as conn:
        conn.execute(
            update(columns).where(columns.c.id == board.columns["priority"]).values(is_active=False)
        )
    before = db_state(fk, item_id)
    with pytest.raises(ColumnInactive) as refused:
        fk.items.set_value(item_id, "priority", "Low", ALICE)
    assert refused.value.column == "priority"
    with pytest.raises(ColumnInactive):
        fk.items.clear_value(item_id, "priority", ALICE)
    assert db_state(fk, item_id) == before  # the stored value stays
    assert "priority" not in [v.name for v in fk.items.values(item_id, ALICE)]
    with pytest.raises(UnknownDefinition) as unknown:
        fk.items.set_value(item_id, "budget", 1, ALICE)
    assert "priority" not in unknown.value.known


def test_clear_value_deletes_the_row_and_the_requirement_notices(fk: Flowkernel) -> None:
    board = make_board(fk, required={"proposal": ["close_date"]})
    item_id = place(fk, board, 1)
    fk.items.set_value(item_id, "close_date", "2026-07-01", ALICE)
    assert fk.items.clear_value(item_id, "close_date", ALICE) is True
    assert fk.items.clear_value(item_id, "close_date", ALICE) is False
    assert db_state(fk, item_id)["values"] == []
    assert {v.name: v.value for v in fk.items.values(item_id, ALICE)}["close_date"] is None
    with pytest.raises(RequirementMissing) as refused:
        fk.move(item_id, "proposal", ALICE)
    assert refused.value.missing == (("close_date", "Expected Close"),)
    fk.items.set_value(item_id, "close_date", date(2026, 7, 1), ALICE)
    assert fk.move(item_id, "proposal", ALICE).to_state == "proposal"


def test_stored_text_that_no_longer_fits_reads_as_invalid(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 1)
    with fk.engine.begin() as conn:  # the seed's upsert, run by hand with a bad number
        conn.execute(
            insert(item_values).values(
                flow_item_id=item_id, flow_column_id=board.columns["contract_value"], value="42,5"
            )
        )
    value = {v.name: v for v in fk.items.values(item_id, ALICE)}["contract_value"]
    assert (value.value, value.parsed, value.valid) == ("42,5", None, False)


# --- tenancy and deleted items -------------------------------------------------------------


def _every_operation(item_id: int, actor: Actor) -> list[Callable[[Flowkernel], object]]:
    return [
        lambda fk: fk.items.set_value(item_id, "decision_maker", "x", actor),
        lambda fk: fk.items.set_values(item_id, {"decision_maker": "x"}, actor),
        lambda fk: fk.items.clear_value(item_id, "decision_maker", actor),
        lambda fk: fk.items.values(item_id, actor),
        lambda fk: fk.items.complete_checklist_item(item_id, "proposal_sent", actor),
        lambda fk: fk.items.reopen_checklist_item(item_id, "proposal_sent", actor),
        lambda fk: fk.items.checklist(item_id, actor),
        lambda fk: fk.items.assign(item_id, 9, actor),
        lambda fk: fk.items.reorder(item_id, 0, actor),
        lambda fk: fk.items.delete(item_id, actor),
        lambda fk: fk.items.restore(item_id, actor),
        lambda fk: fk.items.drop(item_id, actor),
        lambda fk: fk.items.watch(item_id, 9, actor),
        lambda fk: fk.items.unwatch(item_id, 1, actor),
        lambda fk: fk.items.watchers(item_id, actor),
    ]


def test_another_accounts_item_is_not_found_and_unchanged(fk: Flowkernel) -> None:
    board = make_board(fk, checklists={"lead": CHECKLIST})
    item_id = place(fk, board, 1)
    fk.items.set_value(item_id, "decision_maker", "Ada", ALICE)
    fk.items.complete_checklist_item(item_id, "proposal_sent", ALICE)
    fk.items.watch(item_id, 1, ALICE)
    before = db_state(fk, item_id)
    confined = Actor.system(OTHER)
    for actor in (MALLORY, confined):
        for operation in _every_operation(item_id, actor):
            with pytest.raises(ItemNotFound):
                operation(fk)
    assert db_state(fk, item_id) == before
    with pytest.raises(ItemNotFound):
        fk.items.values(item_id + 1000, ALICE)


def test_a_deleted_item_refuses_value_and_checklist_writes(fk: Flowkernel) -> None:
    board = make_board(fk, checklists={"lead": CHECKLIST})
    item_id = place(fk, board, 1)
    fk.items.set_value(item_id, "decision_maker", "Ada", ALICE)
    fk.items.watch(item_id, 2, ALICE)
    fk.items.delete(item_id, ALICE)
    before = db_state(fk, item_id)
    writes: list[Callable[[], object]] = [
        lambda: fk.items.set_value(item_id, "decision_maker", "Grace", ALICE),
        lambda: fk.items.set_values(item_id, {"priority": "Low"}, ALICE),
        lambda: fk.items.clear_value(item_id, "decision_maker", ALICE),
        lambda: fk.items.complete_checklist_item(item_id, "proposal_sent", ALICE),
        lambda: fk.items.reopen_checklist_item(item_id, "proposal_sent", ALICE),
        lambda: fk.items.assign(item_id, 2, ALICE),
        lambda: fk.items.reorder(item_id, 0, ALICE),
        lambda: fk.items.watch(item_id, 3, ALICE),
    ]
    for write in writes:
        with pytest.raises(ItemDeleted) as refused:
            write()
        assert refused.value.item_id == item_id
    assert db_state(fk, item_id) == before
    # reads still work
    assert {v.name: v.value for v in fk.items.values(item_id, ALICE)}["decision_maker"] == "Ada"
    assert [e.key for e in fk.items.checklist(item_id, ALICE)] == [c["key"] for c in CHECKLIST]
    assert fk.items.watchers(item_id, ALICE) == [2]
    assert fk.items.unwatch(item_id, 2, ALICE) is True


# --- checklists ----------------------------------------------------------------------------


def test_checklist_complete_and_reopen_in_the_seeds_shape(fk: Flowkernel) -> None:
    board = make_board(fk, checklists={"lead": CHECKLIST})
    item_id = place(fk, board, 1)
    entries = fk.items.checklist(item_id, ALICE)
    assert [(e.key, e.label, e.required, e.completed) for e in entries] == [
        ("proposal_sent", "Proposal sent to client", True, False),
        ("budget_confirmed", "Budget confirmed", True, False),
        ("legal_reviewed", "Legal review completed", False, False),
    ]
    before = datetime.now(UTC) - timedelta(seconds=1)
    done = fk.items.complete_checklist_item(item_id, "proposal_sent", ALICE)
    assert isinstance(done, ChecklistEntry)
    assert done.completed and done.completed_by == ALICE.user_id
    assert done.completed_at is not None and done.completed_at >= before
    again = fk.items.complete_checklist_item(item_id, "proposal_sent", BOB)  # idempotent
    assert again == done
    with fk.engine.connect() as conn:
        state = conn.execute(
            select(items.c.checklist_state).where(items.c.id == item_id)
        ).scalar_one()
    assert state == {
        "proposal_sent": {
            "completed": True,
            "completed_by": ALICE.user_id,
            "completed_at": done.completed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }
    reopened = fk.items.reopen_checklist_item(item_id, "proposal_sent", BOB)
    assert (reopened.completed, reopened.completed_by, reopened.completed_at) == (False, None, None)
    with fk.engine.connect() as conn:
        state = conn.execute(
            select(items.c.checklist_state).where(items.c.id == item_id)
        ).scalar_one()
    assert state == {
        "proposal_sent": {"completed": False, "completed_by": None, "completed_at": None}
    }
    assert not any(e.completed for e in fk.items.checklist(item_id, ALICE))


SEED_COMPLETE_CHECKLIST_ITEM = """
UPDATE flow_items
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


def test_checklist_reads_what_the_seeds_statement_writes(fk: Flowkernel, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("the seed's statement uses jsonb_set, which is PostgreSQL only")
    board = make_board(fk, checklists={"lead": CHECKLIST})
    item_id = place(fk, board, 1)
    with fk.engine.begin() as conn:
        conn.execute(
            text(SEED_COMPLETE_CHECKLIST_ITEM),
            {"key": "budget_confirmed", "user_id": 42, "item_id": item_id},
        )
    entries = {e.key: e for e in fk.items.checklist(item_id, ALICE)}
    assert entries["budget_confirmed"].completed
    assert entries["budget_confirmed"].completed_by == 42
    assert entries["budget_confirmed"].completed_at is not None
    assert not entries["proposal_sent"].completed
    fk.items.complete_checklist_item(item_id, "proposal_sent", ALICE)
    assert fk.move(item_id, "qualified", ALICE).changed


def test_unknown_checklist_key_lists_the_stages_keys(fk: Flowkernel) -> None:
    board = make_board(fk, checklists={"lead": CHECKLIST})
    item_id = place(fk, board, 1)
    before = db_state(fk, item_id)
    with pytest.raises(UnknownDefinition) as refused:
        fk.items.complete_checklist_item(item_id, "contract_signed", ALICE)
    assert refused.value.known == ("proposal_sent", "budget_confirmed", "legal_reviewed")
    assert "stage 'lead'" in str(refused.value)
    assert db_state(fk, item_id) == before
    fk.move(item_id, "lost", ALICE)
    with pytest.raises(UnknownDefinition) as no_checklist:
        fk.items.complete_checklist_item(item_id, "proposal_sent", ALICE)
    assert no_checklist.value.known == ()


def test_open_required_checklist_items_block_leaving_the_stage(fk: Flowkernel) -> None:
    board = make_board(fk, checklists={"lead": CHECKLIST, "qualified": CHECKLIST[:1]})
    item_id = place(fk, board, 1)
    fk.items.complete_checklist_item(item_id, "proposal_sent", ALICE)
    before = db_state(fk, item_id)
    with pytest.raises(ChecklistIncomplete) as refused:
        fk.move(item_id, "qualified", ALICE)
    assert refused.value.open_items == (("budget_confirmed", "Budget confirmed"),)
    assert db_state(fk, item_id) == before
    fk.items.complete_checklist_item(item_id, "budget_confirmed", ALICE)  # optional one stays open
    assert fk.move(item_id, "qualified", ALICE).to_state == "qualified"
    # the new stage's checklist starts fresh: the column is NULL again
    assert checklist_is_null(fk, item_id)
    assert [(e.key, e.completed) for e in fk.items.checklist(item_id, ALICE)] == [
        ("proposal_sent", False)
    ]


def test_a_lost_stage_can_be_entered_with_open_checklist_items(fk: Flowkernel) -> None:
    board = make_board(fk, checklists={"lead": CHECKLIST})
    item_id = place(fk, board, 1)
    fk.items.complete_checklist_item(item_id, "proposal_sent", ALICE)
    with pytest.raises(ChecklistIncomplete):
        fk.move(item_id, "won", ALICE)
    assert fk.move(item_id, "lost", ALICE).to_state == "lost"
    assert checklist_is_null(fk, item_id)
    assert fk.items.checklist(item_id, ALICE) == []


# --- assignment and board order ------------------------------------------------------------


def test_assign_and_unassign(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 1)
    snapshot = fk.items.assign(item_id, 42, ALICE)
    assert snapshot.assigned_user_id == 42 and snapshot.state == "lead"
    assert fk.item(item_id, ALICE).assigned_user_id == 42
    assert fk.items.assign(item_id, None, ALICE).assigned_user_id is None
    assert db_state(fk, item_id)["item"]["assigned_iam_user_id"] is None
    before = db_state(fk, item_id)
    for bad in ("42", True, 2**63):
        with pytest.raises(InvalidArgument):
            fk.items.assign(item_id, bad, ALICE)  # type: ignore[arg-type]
    assert db_state(fk, item_id) == before


def test_reorder_keeps_a_dense_board_order(fk: Flowkernel) -> None:
    board = make_board(fk)
    ids = [place(fk, board, n) for n in range(1, 6)]
    lead = board.stages["lead"]
    assert stage_order(fk, lead) == [(i, p) for p, i in enumerate(ids)]
    # leaving the stage leaves a gap; reordering closes it
    fk.move(ids[1], "qualified", ALICE)
    live = [ids[0], ids[2], ids[3], ids[4]]
    moved = fk.items.reorder(ids[4], 0, ALICE)
    assert moved.position == 0
    expected = [ids[4], ids[0], ids[2], ids[3]]
    assert stage_order(fk, lead) == [(i, p) for p, i in enumerate(expected)]
    fk.items.reorder(ids[4], 3, ALICE)
    expected = [ids[0], ids[2], ids[3], ids[4]]
    assert expected == live
    assert stage_order(fk, lead) == [(i, p) for p, i in enumerate(expected)]
    fk.items.reorder(ids[3], 1, ALICE)
    expected = [ids[0], ids[3], ids[2], ids[4]]
    assert stage_order(fk, lead) == [(i, p) for p, i in enumerate(expected)]
    # a deleted item leaves the board; the live ones stay 0..n-1
    fk.items.delete(ids[0], ALICE)
    fk.items.reorder(ids[4], 0, ALICE)
    expected = [ids[4], ids[3], ids[2]]
    assert stage_order(fk, lead) == [(i, p) for p, i in enumerate(expected)]
    with fk.engine.connect() as conn:
        positions = conn.execute(
            select(items.c.position).where(items.c.flow_stage_id == lead)
        ).scalars()
        assert sorted(positions) == [0, 1, 2, 3]  # the deleted item follows the live ones
    before = stage_order(fk, lead)
    for bad in (3, -1, True, "1"):
        with pytest.raises(InvalidArgument):
            fk.items.reorder(ids[4], bad, ALICE)  # type: ignore[arg-type]
    assert stage_order(fk, lead) == before
    assert fk.items.reorder(ids[1], 0, ALICE).state == "qualified"  # alone in its stage


# --- lifecycle -----------------------------------------------------------------------------


def test_delete_restore_drop(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 1)
    fk.items.set_value(item_id, "decision_maker", "Ada", ALICE)
    with pytest.raises(ItemNotDeleted):
        fk.items.drop(item_id, ALICE)
    assert db_state(fk, item_id)["item"]["deleted_at"] is None

    result = fk.items.delete(item_id, ALICE)
    assert (result.method, result.from_state, result.to_state) == ("delete", "lead", "lead")
    state = db_state(fk, item_id)
    assert state["item"]["deleted_at"] is not None
    assert state["item"]["flow_stage_id"] == board.stages["lead"]  # same stage, values kept
    assert state["values"]
    assert fk.item(item_id, ALICE).deleted
    assert stage_order(fk, board.stages["lead"]) == []  # the board hides it

    fk.items.restore(item_id, ALICE)
    assert db_state(fk, item_id)["item"]["deleted_at"] is None
    assert stage_order(fk, board.stages["lead"]) == [(item_id, 0)]

    fk.items.delete(item_id, ALICE)
    dropped = fk.items.drop(item_id, ALICE)
    assert dropped.dropped
    state = db_state(fk, item_id)
    assert state["item"] is None and state["values"] == []
    assert [h.method for h in fk.history(item_id, ALICE)] == ["create"]


# --- watchers and notifications ------------------------------------------------------------


def test_watch_is_idempotent(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 1)
    assert fk.items.watch(item_id, 2, ALICE) is True
    assert fk.items.watch(item_id, 2, ALICE) is False
    assert fk.items.watch(item_id, 1, BOB) is True
    assert fk.items.watchers(item_id, BOB) == [1, 2]
    assert fk.items.unwatch(item_id, 2, ALICE) is True
    assert fk.items.unwatch(item_id, 2, ALICE) is False
    assert fk.items.watchers(item_id, ALICE) == [1]
    with pytest.raises(InvalidArgument):
        fk.items.watch(item_id, "2", ALICE)  # type: ignore[arg-type]


class CommitProbe:
    """Records, for each notification, the item's stage as another connection sees it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[int, str, int | None]] = []

    @hookimpl
    def flowkernel_notify_watcher(self, notification: WatcherNotification) -> None:
        with self.engine.connect() as conn:
            stage = conn.execute(
                select(items.c.flow_stage_id).where(items.c.id == notification.item_id)
            ).scalar()
        self.seen.append((notification.user_id, notification.trigger, stage))


def _inbox_of(fk: Flowkernel, user: int) -> list[tuple[int, str]]:
    return [(e.item_id, e.trigger) for e in fk.items.inbox(user, Actor.user(user, ACCOUNT))]


def test_a_move_notifies_each_watcher_once_after_commit(fk: Flowkernel, database_url: str) -> None:
    probe_engine = open_engine(database_url)
    try:
        probe = CommitProbe(probe_engine)
        fk.register_plugin(probe, name="commit_probe")
        board = make_board(fk, checklists={"qualified": CHECKLIST[:1]})
        item_id = place(fk, board, 1)
        other_id = place(fk, board, 2)
        fk.items.watch(item_id, 1, ALICE)
        fk.items.watch(item_id, 2, ALICE)
        fk.items.watch(item_id, 3, ALICE)
        fk.items.unwatch(item_id, 3, ALICE)
        fk.items.watch(other_id, 4, ALICE)

        fk.move(item_id, "qualified", ALICE)
        qualified = board.stages["qualified"]
        assert sorted(probe.seen) == [
            (1, "stage_changed", qualified),
            (2, "stage_changed", qualified),
        ]
        assert _inbox_of(fk, 1) == [(item_id, "stage_changed")]
        assert _inbox_of(fk, 2) == [(item_id, "stage_changed")]
        assert _inbox_of(fk, 3) == [] and _inbox_of(fk, 4) == []
        entry = fk.items.inbox(1, ALICE)[0]
        assert entry.message == "crm_opportunity 1 moved from Lead to Qualified"

        # a refused move writes no notification and delivers none
        before = db_state(fk, item_id)
        with pytest.raises(ChecklistIncomplete):
            fk.move(item_id, "proposal", ALICE)
        assert db_state(fk, item_id) == before
        assert len(probe.seen) == 2
        assert fk.deliver_events().delivered == 0
        assert len(fk.items.inbox(1, ALICE)) == 1
    finally:
        probe_engine.dispose()


def test_an_sla_breach_notifies_the_watchers(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 7)
    fk.items.watch(item_id, 2, ALICE)
    fk.execute(item_id, "sla_breach", SYSTEM)
    entries = fk.items.inbox(2, BOB)
    assert [(e.item_id, e.trigger) for e in entries] == [(item_id, "sla_breached")]
    assert entries[0].message == "crm_opportunity 7 is past its SLA in Lead"
    assert fk.items.inbox(1, ALICE) == []


def test_inbox_is_private_and_marks_read(fk: Flowkernel) -> None:
    board = make_board(fk)
    other_board = make_board(fk, "support", OTHER)
    item_id = place(fk, board, 1)
    other_item = place(fk, other_board, 1, MALLORY)
    fk.items.watch(item_id, 2, ALICE)
    fk.items.watch(other_item, 2, MALLORY)  # user 2 of the other account: someone else
    fk.move(item_id, "qualified", ALICE)
    fk.move(item_id, "proposal", ALICE)
    fk.move(other_item, "qualified", MALLORY)
    before = db_state(fk, item_id)
    with pytest.raises(AccessDenied):
        fk.items.inbox(2, ALICE)
    with pytest.raises(AccessDenied):
        fk.items.mark_read(2, ALICE)
    assert db_state(fk, item_id) == before

    mine = fk.items.inbox(2, BOB)
    assert [e.item_id for e in mine] == [item_id, item_id]
    assert all(e.read_at is None for e in mine)
    namesake = Actor.user(2, OTHER)
    assert [e.item_id for e in fk.items.inbox(2, namesake)] == [other_item]
    assert len(fk.items.inbox(2, SYSTEM)) == 3  # the platform's system actor: every account
    # a system actor confined to an account sees and marks only that account's entries
    confined = Actor.system(ACCOUNT)
    assert {e.item_id for e in fk.items.inbox(2, confined)} == {item_id}
    assert fk.items.mark_read(2, confined) == 2
    assert fk.items.inbox(2, BOB, unread_only=True) == []
    assert [e.item_id for e in fk.items.inbox(2, namesake, unread_only=True)] == [other_item]
    assert fk.items.mark_read(2, BOB, [e.id for e in fk.items.inbox(2, namesake)]) == 0
    assert fk.items.mark_read(2, namesake) == 1
    assert fk.items.mark_read(2, BOB) == 0


def test_an_inbox_is_one_user_of_one_account(fk: Flowkernel) -> None:
    board = make_board(fk)
    item_id = place(fk, board, 1)
    fk.items.watch(item_id, 1, ALICE)
    fk.move(item_id, "qualified", ALICE)
    stranger = Actor.user(1, 99)  # user 1 of another account
    assert fk.items.inbox(1, stranger) == []
    entry = fk.items.inbox(1, ALICE)[0]
    before = db_state(fk, item_id)
    assert fk.items.mark_read(1, stranger) == 0
    assert fk.items.mark_read(1, stranger, [entry.id]) == 0
    assert db_state(fk, item_id) == before
    assert fk.items.inbox(1, ALICE, unread_only=True) == [entry]


def test_an_item_of_no_account_is_watched_by_platform_users(fk: Flowkernel) -> None:
    platform = make_board(fk, "platform", None)
    item_id = place(fk, platform, 1, SYSTEM)
    before = db_state(fk, item_id)
    with pytest.raises(AccessDenied) as refused:
        fk.items.watch(item_id, 1, ALICE)
    assert "platform users" in refused.value.message
    with pytest.raises(AccessDenied):
        fk.items.watch(item_id, 1, Actor.system(ACCOUNT))
    assert db_state(fk, item_id) == before
    assert fk.items.watch(item_id, 7, SYSTEM)
    fk.move(item_id, "qualified", SYSTEM)
    assert [e.item_id for e in fk.items.inbox(7, Actor.user(7, None))] == [item_id]
    assert fk.items.inbox(7, Actor.user(7, ACCOUNT)) == []


def test_inbox_needs_the_inbox_plugin(fk: Flowkernel) -> None:
    fk.plugin_manager.unregister(name="inbox")
    with pytest.raises(UnknownDefinition) as refused:
        fk.items.inbox(1, ALICE)
    assert refused.value.key == "inbox"
