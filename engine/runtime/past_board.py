"""The board and one stage's page at a past instant; `flowkernel.runtime.past` says how
they are found."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, or_, select
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.actors import Actor
from flowkernel.runtime import past
from flowkernel.runtime.board_results import (
    Board,
    BoardItem,
    BoardStage,
    FirstNumberColumn,
    StagePage,
    number_column,
    scope_account,
)
from flowkernel.runtime.scope import readable_pipeline, stage_of
from flowkernel.store.database import reading
from flowkernel.store.tables import stages
from flowkernel.store.writer import Writer

T = TypeVar("T")


def past_board(
    sessions: sessionmaker[Session],
    writer: Writer,
    pipeline_id: int,
    actor: Actor,
    moment: datetime,
    per_stage: int,
    page: int,
    after: dict[int, tuple[int, int]] | None,
    value_column: str | FirstNumberColumn | None,
) -> Board:
    """The board at `moment`, as `BoardQueries.board(as_of=moment)` describes it."""

    def build(conn: Connection, pipeline: Any, counted: datetime) -> Board:
        column_id, column = number_column(conn, pipeline_id, value_column)
        stage_rows = conn.execute(
            select(stages)
            .where(
                stages.c.flow_pipeline_id == pipeline_id,
                or_(stages.c.deleted_at.is_(None), stages.c.deleted_at > moment),
            )
            .order_by(stages.c.position, stages.c.id)
        ).all()
        stage_rows = _existing(stage_rows, moment)
        account = scope_account(actor, pipeline.iam_account_id)
        ids = [s.id for s in stage_rows]
        counts = past.stage_counts(conn, pipeline_id, ids, moment, account, counted)
        pages = past_pages(
            conn,
            pipeline_id,
            {s.id: s.sla_days for s in stage_rows},
            [
                (s.id, page * per_stage, after.get(s.id) if after is not None else None)
                for s in stage_rows
                if after is None or s.id in after  # stages the cursor leaves out are done
            ],
            moment,
            account,
            column_id,
            per_stage,
        )
        board_stages = [
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
                count=counts.get(s.id, 0),
                value_sum=None,
                weighted_value=None,
                items=tuple(pages.get(s.id, ([], None))[0]),
                next_cursor=pages.get(s.id, ([], None))[1],
            )
            for s in stage_rows
        ]
        cursors = [f"{s.id}:{s.next_cursor}" for s in board_stages if s.next_cursor is not None]
        return Board(
            pipeline_id=pipeline_id,
            pipeline_name=pipeline.name,
            value_column=column,
            stages=tuple(board_stages),
            count=sum(s.count for s in board_stages),
            value_sum=None,
            weighted_value=None,
            next_cursor=";".join(cursors) or None,
            as_of=moment,
        )

    return counted_read(sessions, writer, pipeline_id, actor, moment, build)


def _existing(stage_rows: Sequence[Any], moment: datetime) -> list[Any]:
    """The stages of a past board: of two of one code (one removed since, one added since),
    the one that existed at `moment`."""
    then = {s.code for s in stage_rows if s.created_at <= moment}
    return [s for s in stage_rows if s.created_at <= moment or s.code not in then]


def past_stage_page(
    sessions: sessionmaker[Session],
    writer: Writer,
    pipeline_id: int,
    stage: str | int,
    actor: Actor,
    moment: datetime,
    limit: int,
    after: tuple[int, int] | None,
    value_column: str | FirstNumberColumn | None,
) -> StagePage:
    """A page of one stage at `moment`, as `BoardQueries.stage_items(as_of=moment)` says."""

    def build(conn: Connection, pipeline: Any, _counted: datetime) -> StagePage:
        stage_id = stage_of(conn, pipeline, stage, at=moment)
        column_id, _ = number_column(conn, pipeline_id, value_column)
        sla_days = conn.execute(select(stages.c.sla_days).where(stages.c.id == stage_id)).scalar()
        account = scope_account(actor, pipeline.iam_account_id)
        cards, more = past_pages(
            conn,
            pipeline_id,
            {stage_id: sla_days},
            [(stage_id, 0, after)],
            moment,
            account,
            column_id,
            limit,
        )[stage_id]
        return StagePage(stage_id=stage_id, items=tuple(cards), next_cursor=more)

    return counted_read(sessions, writer, pipeline_id, actor, moment, build)


def counted_read(
    sessions: sessionmaker[Session],
    writer: Writer,
    pipeline_id: int,
    actor: Actor,
    moment: datetime,
    build: Callable[[Connection, Any, datetime], T],
) -> T:
    """`build(conn, pipeline, counted_to)` in a reading transaction, once the pipeline's
    settled hours up to `moment` are counted (counting them first if they are not)."""
    now = datetime.now(UTC)
    for attempt in range(2):
        with reading(sessions) as session:
            conn = session.connection()
            pipeline = readable_pipeline(conn, pipeline_id, actor)
            counted = past.counted_to(conn, pipeline_id)
            if attempt or counted >= min(moment, now - past.SETTLED) - past.HOUR:
                return build(conn, pipeline, counted)
        past.count_hours(sessions, writer, pipeline_id, now)
    raise AssertionError("unreachable")


def past_pages(
    conn: Connection,
    pipeline_id: int,
    sla_days: dict[int, int | None],
    pages: Sequence[tuple[int, int, tuple[int, int] | None]],
    moment: datetime,
    account: tuple[str] | int | None,
    column_id: int | None,
    limit: int,
) -> dict[int, tuple[list[BoardItem], str | None]]:
    """A page of cards at `moment` of each stage of `pages` (stage id, offset, cursor
    position), and the cursor after it if more follow; `sla_days` by stage id."""
    found = past.stage_cards(conn, pipeline_id, pages, moment, account, column_id, limit + 1)
    result: dict[int, tuple[list[BoardItem], str | None]] = {}
    for (stage_id, offset, after), days in ((p, sla_days.get(p[0])) for p in pages):
        first = after[0] if after is not None else offset  # the rank of the page's first card
        rows = found[stage_id]
        cards = []
        for k, card in enumerate(rows[:limit]):
            due = card.entered_at + timedelta(days=days) if days is not None else None
            cards.append(
                BoardItem(
                    id=card.item_id,
                    object_type=card.object_type,
                    object_id=card.object_id,
                    assigned_user_id=card.assigned_user_id,
                    position=first + k,
                    last_stage_changed_at=card.entered_at,
                    sla_due_at=due,
                    sla_breached_at=due if due is not None and due <= moment else None,
                    value=card.value,
                )
            )
        more = past.card_cursor(first + limit, rows[limit - 1]) if len(rows) > limit else None
        result[stage_id] = (cards, more)
    return result
