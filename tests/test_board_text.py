"""The terminal board fits any width without leaving a value out: it cuts the text before a
value, then writes the value short, and says that it did."""

from __future__ import annotations

from decimal import Decimal

import pytest

from flowkernel.runtime.board_results import Board, BoardItem, BoardStage
from flowkernel.views.board import render_board, short_number


def _board(values: list[str]) -> Board:
    items = tuple(
        BoardItem(
            id=n + 1,
            object_type="crm_opportunity",
            object_id=1_000_000 + n,
            assigned_user_id=7,
            position=n,
            last_stage_changed_at=None,
            sla_due_at=None,
            sla_breached_at=None,
            value=Decimal(value),
        )
        for n, value in enumerate(values)
    )
    total = sum((i.value or Decimal(0) for i in items), Decimal(0))
    stage = BoardStage(
        id=1, code="lead", name="Lead", position=0, color=None, probability=None, sla_days=None,
        is_won=False, is_lost=False, count=len(items), value_sum=total, weighted_value=None,
        items=items, next_cursor=None,
    )  # fmt: skip
    return Board(
        pipeline_id=1, pipeline_name="Sales", value_column="amount", stages=(stage,),
        count=len(items), value_sum=total, weighted_value=None, next_cursor=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "short"),
    [("85000", "85k"), ("1250000", "1.3M"), ("-4200", "-4.2k"), ("7.25", "7.3"), ("12", "12")],
)
def test_short_numbers(value: str, short: str) -> None:
    assert short_number(Decimal(value)) == short


def test_every_value_shows_at_every_width() -> None:
    board = _board(["1200", "85000", "1250000.75"])
    wide = render_board(board, 120)
    assert "shortened" not in wide
    for shown in ("1,200", "85,000", "1,250,000.75", "@7"):
        assert shown in wide
    for width in (24, 16, 12):
        text = render_board(board, width, min_column=8)
        lines = text.splitlines()
        assert all(len(line) <= width for line in lines), (width, text)
        cards = [line for line in lines if line.startswith("#")]
        assert len(cards) == 3, (width, text)  # every card, each with its value at the end
        for card, full, short in zip(
            cards, ("1,200", "85,000", "1,250,000.75"), ("1.2k~", "85k~", "1.3M~"), strict=True
        ):
            assert card.endswith((full, short)), (width, card)
        assert "~ shortened" in text, (width, text)
