"""What the board queries return: the board, its stages and cards, a page of one stage; and
the board's choice of value column."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from sqlalchemy import Connection, select

from flowkernel.actors import Actor
from flowkernel.errors import InvalidArgument, UnknownDefinition
from flowkernel.previews import preview
from flowkernel.runtime.scope import item_scope
from flowkernel.store.tables import columns

NO_ACCOUNT = -1
"""The `account_key` of the stage totals of items without an account (migration 0003)."""


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardItem:
    """A card on the board: the seed's board columns plus SLA times and the value column."""

    id: int
    object_type: str
    object_id: int
    assigned_user_id: int | None
    position: int
    last_stage_changed_at: datetime | None
    sla_due_at: datetime | None
    sla_breached_at: datetime | None
    value: Decimal | None


@dataclass(frozen=True, slots=True)
class BoardStage:
    """One column of the board: the stage, its page of items and its totals.

    `count` and the sums cover every non-deleted item of the stage, not just this page.
    `weighted_value` is `value_sum * probability / 100` (None without a probability).
    `next_cursor` continues this stage with `stage_items`; None when the page is the last.
    """

    id: int
    code: str
    name: str
    position: int
    color: str | None
    probability: int | None
    sla_days: int | None
    is_won: bool
    is_lost: bool
    count: int
    value_sum: Decimal | None
    weighted_value: Decimal | None
    items: tuple[BoardItem, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Board:
    """A pipeline's board: stages in position order with their items and totals.

    `next_cursor` continues every stage that has more items (pass it as `cursor=`); None
    when every stage is complete.
    """

    pipeline_id: int
    pipeline_name: str
    value_column: str | None
    stages: tuple[BoardStage, ...]
    count: int
    value_sum: Decimal | None
    weighted_value: Decimal | None
    next_cursor: str | None
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class StagePage:
    """One page of a single stage's items, in board order."""

    stage_id: int
    items: tuple[BoardItem, ...]
    next_cursor: str | None


class FirstNumberColumn:
    """The default `value_column` of the board: the pipeline's first active number column
    (by position), or none when it has none."""

    def __repr__(self) -> str:
        return "FIRST_NUMBER_COLUMN"


FIRST_NUMBER_COLUMN: Final = FirstNumberColumn()
"""Sum the pipeline's first active number column: the board's default everywhere."""


def number_column(
    conn: Connection, pipeline_id: int, name: str | FirstNumberColumn | None
) -> tuple[int | None, str | None]:
    """The id and name of the pipeline's number column `name` (None for no column)."""
    if name is None:
        return None, None
    if isinstance(name, FirstNumberColumn):
        first = conn.execute(
            select(columns.c.id, columns.c.name)
            .where(
                columns.c.flow_pipeline_id == pipeline_id,
                columns.c.deleted_at.is_(None),
                columns.c.is_active.is_(True),
                columns.c.field_type == "number",
            )
            .order_by(columns.c.position, columns.c.id)
            .limit(1)
        ).first()
        return (None, None) if first is None else (int(first[0]), str(first[1]))
    if not isinstance(name, str):
        raise InvalidArgument(
            f"value_column must be a column name or None, not {preview(name)}", value_column=name
        )
    rows = conn.execute(
        select(columns.c.id, columns.c.name, columns.c.field_type).where(
            columns.c.flow_pipeline_id == pipeline_id, columns.c.deleted_at.is_(None)
        )
    ).all()
    for column_id, column_name, field_type in rows:
        if column_name == name:
            if field_type != "number":
                raise InvalidArgument(
                    f"column {preview(name)} is a {field_type} column; sums need a number column",
                    value_column=name,
                )
            return int(column_id), name
    raise UnknownDefinition(
        "column", name, f"pipeline {pipeline_id}", sorted(str(r.name) for r in rows)
    )


ALL: Final = ("all",)
"""The scope of an actor who sees every item of the pipeline."""


def scope_account(actor: Actor, pipeline_account: int | None) -> tuple[str] | int | None:
    """`ALL`, or the account whose items (and those of no account) the actor sees, as
    `item_scope` says."""
    return ALL if item_scope(actor, pipeline_account) is None else actor.account_id


def parse_value(raw: str | None) -> Decimal | None:
    """A stored value of a number column as a Decimal (None when empty)."""
    if raw is None or raw == "":
        return None
    return Decimal(raw)
