"""The board: a pipeline's stages by position, each with a page of its items and its totals.

It follows the LEO seed's board query, scoped to the actor (`flowkernel.runtime.scope`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    and_,
    bindparam,
    func,
    or_,
    select,
    union_all,
)
from sqlalchemy.types import NullType

from flowkernel.actors import Actor
from flowkernel.errors import InvalidArgument
from flowkernel.previews import preview
from flowkernel.runtime.board_results import (
    ALL,
    FIRST_NUMBER_COLUMN,
    NO_ACCOUNT,
    Board,
    BoardItem,
    BoardStage,
    FirstNumberColumn,
    StagePage,
    number_column,
    parse_value,
    scope_account,
)
from flowkernel.runtime.past import past_moment
from flowkernel.runtime.past_board import past_board, past_stage_page
from flowkernel.runtime.scope import (
    QueryBase,
    check_limit,
    item_scope,
    readable_pipeline,
    stage_of,
)
from flowkernel.store.database import reading
from flowkernel.store.prepared import Db, Prepared
from flowkernel.store.tables import item_values as values_table
from flowkernel.store.tables import (
    items,
    sla_breaches,
    stage_totals,
    stages,
)
from flowkernel.store.tables import stage_value_totals as value_totals
from flowkernel.validation import (
    MAX_ID,
    MAX_INT,
    MIN_ID,
    check_int,
)


class BoardQueries(QueryBase):
    """The board, and one stage's items a page at a time."""

    def board(
        self,
        pipeline_id: int,
        actor: Actor,
        *,
        per_stage: int = 50,
        page: int = 0,
        cursor: str | None = None,
        value_column: str | FirstNumberColumn | None = FIRST_NUMBER_COLUMN,
        as_of: datetime | None = None,
    ) -> Board:
        """The seed's board: non-deleted stages by position, each with a page of its items.

        Items are the stage's non-deleted items by position, then id: page `page` of
        `per_stage` items, or the page after `cursor` (a previous board's `next_cursor`;
        stages it does not name are complete and come back empty). Counts and the sums of the
        number column `value_column` (by default the pipeline's first active number column;
        None: no sums) cover all items of each stage; they come from the per-stage totals the
        database keeps with every write (migration 0003).

        With `as_of`, the board at that past instant (`flowkernel.runtime.past`): the stages
        not deleted then, each stage's items then, latest entry first, and their counts; no
        sums, as values are not versioned.
        """
        check_limit("per_stage", per_stage)
        check_int("page", page, minimum=0, maximum=MAX_INT, error=InvalidArgument)
        if cursor is not None and page:
            raise InvalidArgument("pass either page or cursor, not both", page=page)
        after = _parse_board_cursor(cursor) if cursor is not None else None
        if as_of is not None:
            return past_board(
                self._sessions,
                self._writer,
                pipeline_id,
                actor,
                past_moment(as_of),
                per_stage,
                page,
                after,
                value_column,
            )
        with reading(self._sessions) as session:
            conn = session.connection()
            pipeline = readable_pipeline(conn, pipeline_id, actor)
            column_id, value_column = number_column(conn, pipeline_id, value_column)
            stage_rows = conn.execute(
                select(stages)
                .where(stages.c.flow_pipeline_id == pipeline_id, stages.c.deleted_at.is_(None))
                .order_by(stages.c.position, stages.c.id)
            ).all()
            totals = _stage_totals(
                conn, [s.id for s in stage_rows], column_id, _account_keys(actor, pipeline)
            )
            pages = _stage_pages(
                conn,
                [
                    (s.id, page * per_stage, after.get(s.id) if after is not None else None)
                    for s in stage_rows
                    if after is None or s.id in after  # stages the cursor leaves out are done
                ],
                column_id,
                scope_account(actor, pipeline.iam_account_id),
                per_stage,
            )
            board_stages: list[BoardStage] = []
            cursors: dict[int, str] = {}
            for s in stage_rows:
                count, value_sum = totals.get(s.id, (0, None))
                if column_id is not None and value_sum is None:
                    value_sum = Decimal(0)
                cards, more = pages.get(s.id, ([], None))
                if more is not None:
                    cursors[s.id] = more
                board_stages.append(
                    BoardStage(
                        id=s.id,
                        code=s.code or f"stage_{s.id}",
                        name=s.name,
                        position=s.position,
                        color=s.color,
                        probability=s.probability,
                        sla_days=s.sla_days,
                        is_won=s.is_won,
                        is_lost=s.is_lost,
                        count=count,
                        value_sum=value_sum,
                        weighted_value=_weighted(value_sum, s.probability),
                        items=tuple(cards),
                        next_cursor=more,
                    )
                )
        return Board(
            pipeline_id=pipeline_id,
            pipeline_name=pipeline.name,
            value_column=value_column,
            stages=tuple(board_stages),
            count=sum(s.count for s in board_stages),
            value_sum=_total(s.value_sum for s in board_stages) if column_id is not None else None,
            weighted_value=(
                _total(s.weighted_value for s in board_stages) if column_id is not None else None
            ),
            next_cursor=";".join(f"{sid}:{c}" for sid, c in cursors.items()) or None,
        )

    def stage_items(
        self,
        pipeline_id: int,
        stage: str | int,
        actor: Actor,
        *,
        limit: int = 50,
        cursor: str | None = None,
        value_column: str | FirstNumberColumn | None = FIRST_NUMBER_COLUMN,
        as_of: datetime | None = None,
    ) -> StagePage:
        """One stage's non-deleted items in board order, `limit` at a time after `cursor`.

        `cursor` is a `BoardStage.next_cursor` or a previous page's `next_cursor` (of a board
        at the same `as_of`). With `as_of`, the stage's items at that past instant, latest
        entry first, as `board(as_of=...)`.
        """
        check_limit("limit", limit)
        after = _parse_stage_cursor(cursor) if cursor is not None else None
        if as_of is not None:
            return past_stage_page(
                self._sessions,
                self._writer,
                pipeline_id,
                stage,
                actor,
                past_moment(as_of),
                limit,
                after,
                value_column,
            )
        with reading(self._sessions) as session:
            conn = session.connection()
            pipeline = readable_pipeline(conn, pipeline_id, actor)
            stage_id = stage_of(conn, pipeline, stage)
            column_id, _ = number_column(conn, pipeline_id, value_column)
            cards, more = _stage_pages(
                conn,
                [(stage_id, 0, after)],
                column_id,
                scope_account(actor, pipeline.iam_account_id),
                limit,
            )[stage_id]
        return StagePage(stage_id=stage_id, items=tuple(cards), next_cursor=more)

    # --- one item ----------------------------------------------------------------------------


def _number(raw: object) -> Decimal | None:
    """A number as the driver returns it (Decimal on PostgreSQL, int or float on SQLite)."""
    if raw is None:
        return None
    return raw if isinstance(raw, Decimal) else Decimal(str(raw))


def _weighted(value: Decimal | None, probability: int | None) -> Decimal | None:
    if value is None or probability is None:
        return None
    return value * probability / 100


def _total(parts: Any) -> Decimal:
    return sum((p for p in parts if p is not None), Decimal(0))


def _account_keys(actor: Actor, pipeline: Any) -> list[int] | None:
    """The `account_key`s of the stage totals the actor sees (None: all), as `item_scope`."""
    if item_scope(actor, pipeline.iam_account_id) is None:
        return None
    return [NO_ACCOUNT] if actor.account_id is None else [NO_ACCOUNT, actor.account_id]


def _stage_totals(
    conn: Connection,
    stage_ids: Sequence[int],
    column_id: int | None,
    accounts: Sequence[int] | None,
) -> Mapping[int, tuple[int, Decimal | None]]:
    """Item count and value sum per stage, from the totals the triggers of migration 0003
    keep (a few rows per stage, whatever the number of items)."""
    if not stage_ids:
        return {}
    counts = select(stage_totals.c.flow_stage_id, func.sum(stage_totals.c.item_count)).where(
        stage_totals.c.flow_stage_id.in_(list(stage_ids))
    )
    if accounts is not None:
        counts = counts.where(stage_totals.c.account_key.in_(list(accounts)))
    found: dict[int, tuple[int, Decimal | None]] = {
        int(stage): (int(count), None)
        for stage, count in conn.execute(counts.group_by(stage_totals.c.flow_stage_id))
    }
    if column_id is None:
        return found
    # NullType: take the driver's number as is (no float-to-Decimal rescaling on SQLite).
    sums = select(
        value_totals.c.flow_stage_id,
        func.sum(value_totals.c.value_sum, type_=NullType()),
    ).where(
        value_totals.c.flow_stage_id.in_(list(stage_ids)),
        value_totals.c.flow_column_id == column_id,
    )
    if accounts is not None:
        sums = sums.where(value_totals.c.account_key.in_(list(accounts)))
    for stage, total in conn.execute(sums.group_by(value_totals.c.flow_stage_id)):
        count = found.get(int(stage), (0, None))[0]
        found[int(stage)] = (count, _number(total))
    return found


def _stage_pages(
    conn: Connection,
    pages: Sequence[tuple[int, int, tuple[int, int] | None]],
    column_id: int | None,
    account: tuple[str] | int | None,
    limit: int,
) -> dict[int, tuple[list[BoardItem], str | None]]:
    """A page of each stage of `pages` (stage id, offset, cursor position) in one statement:
    its items by position, then id, and the cursor after them if more follow. `account`
    is `_scope_account`'s."""
    if not pages:
        return {}
    scoped = account is not ALL
    by_cursor = pages[0][2] is not None
    if any((after is not None) != by_cursor for _stage, _offset, after in pages):
        return {  # all pages by cursor or all by offset in one statement: here, one by one
            k: v
            for entry in pages
            for k, v in _stage_pages(conn, [entry], column_id, account, limit).items()
        }
    stmt = _pages_statement(conn.dialect, len(pages), by_cursor, column_id is not None, scoped)
    values: dict[str, Any] = {"limit": limit + 1, "column_id": column_id, "account": account}
    for k, (stage_id, offset, after) in enumerate(pages):
        values[f"stage_{k}"] = stage_id
        values[f"offset_{k}"] = offset
        if after is not None:
            values[f"position_{k}"], values[f"last_{k}"] = after
    db = Db.of(conn)
    found: dict[int, list[Any]] = {stage_id: [] for stage_id, _offset, _after in pages}
    for row in stmt.rows(stmt.run(db, values)):
        found[row[0]].append(row)
    result: dict[int, tuple[list[BoardItem], str | None]] = {}
    for stage_id, rows in found.items():
        rows.sort(key=lambda r: (r[5], r[1]))
        cards = [
            BoardItem(
                id=r[1],
                object_type=r[2],
                object_id=r[3],
                assigned_user_id=r[4],
                position=r[5],
                last_stage_changed_at=r[6],
                sla_due_at=r[7],
                sla_breached_at=r[8],
                value=parse_value(r[9]) if column_id is not None else None,
            )
            for r in rows[:limit]
        ]
        more = f"{cards[-1].position}:{cards[-1].id}" if len(rows) > limit else None
        result[stage_id] = (cards, more)
    return result


_PAGES: dict[tuple[str, str, int, bool, bool, bool], Prepared] = {}
"""`_pages_statement`'s statements, compiled once per dialect, driver and shape."""


def _pages_statement(
    dialect: Dialect, stages_: int, by_cursor: bool, with_value: bool, scoped: bool
) -> Prepared:
    """The board's pages of `stages_` stages in one statement, every value a bind parameter
    (`stage_K`, `offset_K` or `position_K` and `last_K`, `limit`, `column_id`, `account`):
    each stage's page is a subquery with its own ORDER BY and LIMIT, all in one UNION ALL."""
    key = (dialect.name, dialect.driver, stages_, by_cursor, with_value, scoped)
    prepared = _PAGES.get(key)
    if prepared is not None:
        return prepared
    measures: list[Any] = [
        items.c.flow_stage_id,
        items.c.id,
        items.c.object_type,
        items.c.object_id,
        items.c.assigned_iam_user_id,
        items.c.position,
        items.c.last_stage_changed_at,
        items.c.sla_due_at,
        select(sla_breaches.c.breached_at)
        .where(sla_breaches.c.flow_item_id == items.c.id)
        .scalar_subquery(),
    ]
    source: Any = items
    if with_value:
        source = items.outerjoin(
            values_table,
            and_(
                values_table.c.flow_item_id == items.c.id,
                values_table.c.flow_column_id == bindparam("column_id"),
            ),
        )
        measures.append(values_table.c.value)
    selects = []
    for k in range(stages_):
        stmt = (
            select(*measures)
            .select_from(source)
            .where(items.c.flow_stage_id == bindparam(f"stage_{k}"), items.c.deleted_at.is_(None))
            .order_by(items.c.position, items.c.id)
            .limit(bindparam("limit"))  # one more than the page: whether another follows
        )
        if scoped:
            stmt = stmt.where(
                or_(
                    items.c.iam_account_id.is_(None),
                    items.c.iam_account_id == bindparam("account"),
                )
            )
        if by_cursor:
            position: Any = bindparam(f"position_{k}")
            stmt = stmt.where(
                items.c.position >= position,
                or_(items.c.position > position, items.c.id > bindparam(f"last_{k}")),
            )
        else:
            stmt = stmt.offset(bindparam(f"offset_{k}"))
        selects.append(stmt)
    query: Any = (
        selects[0] if stages_ == 1 else union_all(*(select(*q.subquery().c) for q in selects))
    )
    if len(_PAGES) > 1000:  # boards of many sizes: start again
        _PAGES.clear()
    prepared = _PAGES[key] = Prepared(query, dialect)
    return prepared


def _parse_stage_cursor(cursor: object) -> tuple[int, int]:
    try:
        assert isinstance(cursor, str) and len(cursor) <= 100
        position, last_id = (int(part) for part in cursor.split(":"))
        assert MIN_ID <= position <= MAX_ID and MIN_ID <= last_id <= MAX_ID
        return position, last_id
    except (AssertionError, ValueError):
        raise InvalidArgument(
            f"cursor {preview(cursor)} is not a cursor this query handed out", cursor=cursor
        ) from None


def _parse_board_cursor(cursor: object) -> dict[int, tuple[int, int]]:
    try:
        assert isinstance(cursor, str) and cursor
        parsed: dict[int, tuple[int, int]] = {}
        for part in cursor.split(";"):
            stage_id, rest = part.split(":", 1)
            parsed[int(stage_id)] = _parse_stage_cursor(rest)
        return parsed
    except (AssertionError, ValueError, InvalidArgument):
        raise InvalidArgument(
            f"cursor {preview(cursor)} is not a board cursor this query handed out", cursor=cursor
        ) from None
