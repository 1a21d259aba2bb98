"""Columns flagged is_required: needed to enter any stage but the first and the lost one."""

from __future__ import annotations

import pytest

from flowkernel import Actor, Flowkernel, InvalidValue, RequirementMissing
from flowkernel.definition.pipelines.admin import ColumnSpec, StageSpec

ALICE = Actor.user(1, 10)


@pytest.fixture
def pipeline_id(fk: Flowkernel) -> int:
    info = fk.pipelines.create_pipeline(
        "Deals",
        ALICE,
        stages=[
            StageSpec("Lead"),
            StageSpec("Offer"),
            StageSpec("Won", is_won=True),
            StageSpec("Lost", is_lost=True),
        ],
        columns=[
            ColumnSpec("amount", "Amount", "number", is_required=True),
            ColumnSpec("note", "Note", "text"),
        ],
    )
    return info.id


def test_a_required_column_guards_every_move_but_to_lost(fk: Flowkernel, pipeline_id: int) -> None:
    item = fk.place(pipeline_id, "deal", 1, ALICE)
    with pytest.raises(RequirementMissing) as refused:
        fk.move(item.id, "offer", ALICE)
    assert refused.value.missing == (("amount", "Amount"),)
    assert fk.item(item.id, ALICE).state == "lead"
    other = fk.place(pipeline_id, "deal", 2, ALICE)
    assert fk.move(other.id, "lost", ALICE).to_state == "lost"
    fk.items.set_value(item.id, "amount", 1200, ALICE)
    assert fk.move(item.id, "offer", ALICE).to_state == "offer"


def test_a_required_value_cannot_be_cleared_where_it_is_required(
    fk: Flowkernel, pipeline_id: int
) -> None:
    item = fk.place(pipeline_id, "deal", 1, ALICE)
    fk.items.set_values(item.id, {"amount": 10, "note": "hi"}, ALICE)
    assert fk.items.clear_value(item.id, "amount", ALICE)  # the first stage does not need it
    fk.items.set_value(item.id, "amount", 10, ALICE)
    fk.move(item.id, "offer", ALICE)
    with pytest.raises(InvalidValue, match="requires 'amount'"):
        fk.items.clear_value(item.id, "amount", ALICE)
    assert {v.name: v.value for v in fk.items.values(item.id, ALICE)}["amount"] == "10"
    assert fk.items.clear_value(item.id, "note", ALICE)


def test_unflagging_the_column_lifts_the_requirement(fk: Flowkernel, pipeline_id: int) -> None:
    item = fk.place(pipeline_id, "deal", 1, ALICE)
    fk.pipelines.edit_column(pipeline_id, "amount", ALICE, is_required=False)
    assert fk.move(item.id, "offer", ALICE).to_state == "offer"
