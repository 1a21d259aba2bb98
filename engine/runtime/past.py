"""Boards at a past instant, from the history's periods.

An item was on a stage's board at instant T when a history period of it in that stage holds T
(`moved_at <= T < valid_to`, or still open) and it was not deleted at T (its deletion mark is
later than T, or it has none). A stage's count at T is its count at the end of the latest
counted hour at or before T (`flow_stage_hour_counts`) plus the entries and minus the exits of
the history since, less the items deleted by T: a few index lookups however long the history.
Hours are counted from the history when a past board first needs them, once they are closed
(`SETTLED` after their end). Item values are not versioned, so a past board has no value sums;
its cards carry their items' values as they are now. A dropped item is on the boards of while it
was there, from what its drop left (`flow_dropped_items`, migration 0012); one dropped before
that revision counts until its drop, without a card.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Connection, Dialect, and_, bindparam, func, or_, select, union_all
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.errors import InvalidArgument
from flowkernel.moments import utc_moment
from flowkernel.runtime.board_results import NO_ACCOUNT, parse_value
from flowkernel.store.prepared import Db, Prepared
from flowkernel.store.schema import UTCDateTime
from flowkernel.store.tables import (
    dropped_items,
    history,
    items,
    stage_count_marks,
    stage_hour_counts,
    stages,
)
from flowkernel.store.tables import item_values as values_table
from flowkernel.store.writer import Writer

HOUR: Final = timedelta(hours=1)
SETTLED: Final = timedelta(hours=1)
"""How long after its end an hour is counted: no move written later is dated inside it."""

ALL_ACCOUNTS: Final = -2
"""The `account_key` of a stage's count over every account."""

_NEVER: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PastCard:
    """An item on a stage's board at a past instant: the period it was in, its item's row."""

    period_id: int
    item_id: int
    object_type: str
    object_id: int
    assigned_user_id: int | None
    entered_at: datetime
    value: Decimal | None


def past_moment(value: object) -> datetime:
    """`value` as a UTC instant no later than now; `InvalidArgument` otherwise."""
    moment = utc_moment(value, "as_of")  # type: ignore[arg-type]
    if moment > datetime.now(UTC):
        raise InvalidArgument(
            f"as_of {moment.isoformat()} is in the future: a board is known up to now",
            as_of=moment.isoformat(),
        )
    return moment


def hour_end(moment: datetime) -> datetime:
    """The end of the hour `moment` falls in, `(end - 1 hour, end]`."""
    floor = moment.replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + HOUR


def count_hours(
    sessions: sessionmaker[Session], writer: Writer, pipeline_id: int, now: datetime
) -> None:
    """Write the pipeline's hourly stage counts up to the last settled hour, if not yet done."""
    target = (now - SETTLED).replace(minute=0, second=0, microsecond=0)
    with sessions.begin() as session:
        conn = session.connection()
        marked = conn.execute(
            select(stage_count_marks.c.counted_to).where(
                stage_count_marks.c.flow_pipeline_id == pipeline_id
            )
        ).scalar()
    if marked is not None and marked >= target:
        return
    with sessions.begin() as session:
        conn = session.connection()
        # The mark row first: it is the lock two boards counting the same hours queue on.
        conn.execute(
            writer.upsert(stage_count_marks)
            .values(flow_pipeline_id=pipeline_id, counted_to=_NEVER)
            .on_conflict_do_nothing()
        )
        counted_to = conn.execute(
            select(stage_count_marks.c.counted_to)
            .where(stage_count_marks.c.flow_pipeline_id == pipeline_id)
            .with_for_update()
        ).scalar_one()
        if counted_to >= target:
            return
        _count(conn, pipeline_id, counted_to, target)
        conn.execute(
            stage_count_marks.update()
            .where(stage_count_marks.c.flow_pipeline_id == pipeline_id)
            .values(counted_to=target)
        )


def _count(conn: Connection, pipeline_id: int, start: datetime, end: datetime) -> None:
    """Add the counts of the hours in `(start, end]` from the history's entries and exits."""
    changes: dict[tuple[int, int], dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    entries = select(history.c.to_stage_id, history.c.iam_account_id, history.c.moved_at).where(
        history.c.flow_pipeline_id == pipeline_id,
        history.c.moved_at > start,
        history.c.moved_at <= end,
    )
    exits = select(history.c.to_stage_id, history.c.iam_account_id, history.c.valid_to).where(
        history.c.flow_pipeline_id == pipeline_id,
        history.c.valid_to > start,
        history.c.valid_to <= end,
    )
    for query, step in ((entries, 1), (exits, -1)):
        for stage_id, account, at in conn.execute(query):
            hour = hour_end(at)
            changes[stage_id, NO_ACCOUNT if account is None else account][hour] += step
            changes[stage_id, ALL_ACCOUNTS][hour] += step
    if not changes:
        return
    latest = (
        select(
            stage_hour_counts.c.flow_stage_id,
            stage_hour_counts.c.account_key,
            func.max(stage_hour_counts.c.hour_end).label("hour_end"),
        )
        .where(stage_hour_counts.c.flow_stage_id.in_({stage for stage, _key in changes}))
        .group_by(stage_hour_counts.c.flow_stage_id, stage_hour_counts.c.account_key)
        .subquery()
    )
    last_rows = select(
        stage_hour_counts.c.flow_stage_id,
        stage_hour_counts.c.account_key,
        stage_hour_counts.c.item_count,
    ).where(
        latest.c.flow_stage_id == stage_hour_counts.c.flow_stage_id,
        latest.c.account_key == stage_hour_counts.c.account_key,
        latest.c.hour_end == stage_hour_counts.c.hour_end,
    )
    counts: dict[tuple[int, int], int] = {
        (stage, key): count for stage, key, count in conn.execute(last_rows)
    }
    rows: list[dict[str, Any]] = []
    for (stage, key), by_hour in changes.items():
        count = counts.get((stage, key), 0)
        for hour in sorted(by_hour):
            if by_hour[hour]:
                count += by_hour[hour]
                rows.append(
                    {
                        "flow_stage_id": stage,
                        "account_key": key,
                        "hour_end": hour,
                        "item_count": count,
                    }
                )
    if rows:
        conn.execute(stage_hour_counts.insert(), rows)


def counted_to(conn: Connection, pipeline_id: int) -> datetime:
    """The end of the pipeline's last counted hour."""
    found = conn.execute(
        select(stage_count_marks.c.counted_to).where(
            stage_count_marks.c.flow_pipeline_id == pipeline_id
        )
    ).scalar()
    return _NEVER if found is None else found


def stage_counts(
    conn: Connection,
    pipeline_id: int,
    stage_ids: Sequence[int],
    moment: datetime,
    account: int | tuple[str] | None,
    counted: datetime,
) -> dict[int, int]:
    """Each stage's number of items at `moment`, in one statement; `account` is the actor's
    scope (`("all",)` for every item, else the account whose items and those of none it
    sees), `counted` the end of the pipeline's last counted hour."""
    if not stage_ids:
        return {}
    scoped = not isinstance(account, tuple)
    keys = 1 if not scoped or account is None else 2
    stmt = _counts_statement(conn.dialect, len(stage_ids), keys, scoped)
    values: dict[str, Any] = {
        "pipeline": pipeline_id,
        "moment": moment,
        "checkpoint": min(counted, moment.replace(minute=0, second=0, microsecond=0)),
        "account": account,
        "key_0": ALL_ACCOUNTS if not scoped else NO_ACCOUNT,
        "key_1": account,
    }
    values.update({f"stage_{k}": stage_id for k, stage_id in enumerate(stage_ids)})
    found: dict[int, int] = dict.fromkeys(stage_ids, 0)
    for stage_id, count in stmt.rows(stmt.run(Db.of(conn), values)):
        found[int(stage_id)] += int(count)
    return found


_STATEMENTS: dict[tuple[Any, ...], Prepared] = {}
"""The past board's statements, compiled once per dialect, driver and shape."""


def _prepared(key: tuple[Any, ...], dialect: Dialect, build: Callable[[], Any]) -> Prepared:
    found = _STATEMENTS.get(key)
    if found is None:
        if len(_STATEMENTS) > 1000:  # boards of many sizes: start again
            _STATEMENTS.clear()
        found = _STATEMENTS[key] = Prepared(build(), dialect)
    return found


def _counts_statement(dialect: Dialect, size: int, keys: int, scoped: bool) -> Prepared:
    """The counts of `size` stages (`stage_K`) at `moment`: the counted hour at `checkpoint`
    (per account key `key_K`), the entries and exits since, the items deleted by then."""

    def build() -> Any:
        ids: list[Any] = [bindparam(f"stage_{k}") for k in range(size)]
        moment, checkpoint = (
            bindparam("moment", type_=UTCDateTime()),
            bindparam("checkpoint", type_=UTCDateTime()),
        )
        scope = (
            or_(
                history.c.iam_account_id.is_(None), history.c.iam_account_id == bindparam("account")
            )
            if scoped
            else None
        )
        parts: list[Any] = [
            select(
                stages.c.id,
                func.coalesce(
                    select(stage_hour_counts.c.item_count)
                    .where(
                        stage_hour_counts.c.flow_stage_id == stages.c.id,
                        stage_hour_counts.c.account_key == bindparam(f"key_{key}"),
                        stage_hour_counts.c.hour_end <= checkpoint,
                    )
                    .order_by(stage_hour_counts.c.hour_end.desc())
                    .limit(1)
                    .scalar_subquery(),
                    0,
                ),
            ).where(stages.c.id.in_(ids))
            for key in range(keys)
        ]
        for sign, at in ((1, history.c.moved_at), (-1, history.c.valid_to)):
            moves = (  # entries into and exits from each stage since the checkpoint
                select(history.c.to_stage_id, sign * func.count())
                .where(
                    history.c.flow_pipeline_id == bindparam("pipeline"),
                    history.c.to_stage_id.in_(ids),
                    at > checkpoint,
                    at <= moment,
                )
                .group_by(history.c.to_stage_id)
            )
            parts.append(moves if scope is None else moves.where(scope))
        deleted = (  # items deleted by then, in the stage they were in
            select(history.c.to_stage_id, -func.count())
            .select_from(items.join(history, history.c.flow_item_id == items.c.id))
            .where(
                items.c.flow_pipeline_id == bindparam("pipeline"),
                items.c.deleted_at.is_not(None),
                items.c.deleted_at <= moment,
                _holds(moment),
                history.c.to_stage_id.in_(ids),
            )
            .group_by(history.c.to_stage_id)
        )
        parts.append(deleted if scope is None else deleted.where(scope))
        dropped_then = (  # items dropped since, deleted by then, in the stage they were in
            select(history.c.to_stage_id, -func.count())
            .select_from(
                dropped_items.join(history, history.c.flow_item_id == dropped_items.c.flow_item_id)
            )
            .where(
                dropped_items.c.flow_pipeline_id == bindparam("pipeline"),
                dropped_items.c.deleted_at <= moment,
                _holds(moment),
                history.c.to_stage_id.in_(ids),
            )
            .group_by(history.c.to_stage_id)
        )
        parts.append(dropped_then if scope is None else dropped_then.where(scope))
        return union_all(*parts)

    return _prepared(("counts", dialect.name, dialect.driver, size, keys, scoped), dialect, build)


def in_scope(account: Any) -> Any:
    """The history rows of `account` and of no account."""
    return or_(history.c.iam_account_id.is_(None), history.c.iam_account_id == account)


def _holds(moment: Any) -> Any:
    """The history periods that hold `moment`."""
    return and_(
        history.c.moved_at <= moment,
        or_(history.c.valid_to.is_(None), history.c.valid_to > moment),
    )


def stage_cards(
    conn: Connection,
    pipeline_id: int,
    pages: Sequence[tuple[int, int, tuple[int, int] | None]],
    moment: datetime,
    account: int | tuple[str] | None,
    column_id: int | None,
    limit: int,
) -> dict[int, list[PastCard]]:
    """Up to `limit` cards at `moment` of each stage of `pages` (stage id, offset, cursor
    position), latest entry first, from the offset or after the period the cursor names (the
    rank of the next card, the period's id): one statement for every stage."""
    if not pages:
        return {}
    by_cursor = pages[0][2] is not None
    if any((after is not None) != by_cursor for _stage, _offset, after in pages):
        return {  # all pages by cursor or all by offset in one statement: here, one by one
            k: v
            for page in pages
            for k, v in stage_cards(
                conn, pipeline_id, [page], moment, account, column_id, limit
            ).items()
        }
    scoped = not isinstance(account, tuple)
    stmt = _cards_statement(conn.dialect, len(pages), by_cursor, column_id is not None, scoped)
    values: dict[str, Any] = {
        "pipeline": pipeline_id,
        "moment": moment,
        "account": account,
        "column_id": column_id,
        "limit": limit,
    }
    for k, (stage_id, offset, after) in enumerate(pages):
        values[f"stage_{k}"] = stage_id
        values[f"offset_{k}"] = offset
        if after is not None:
            values[f"last_{k}"] = after[1]
    found: dict[int, list[PastCard]] = {stage_id: [] for stage_id, _offset, _after in pages}
    for r in stmt.rows(stmt.run(Db.of(conn), values)):
        found[int(r[0])].append(
            PastCard(
                period_id=int(r[1]),
                item_id=int(r[2]),
                object_type=str(r[3]),
                object_id=int(r[4]),
                assigned_user_id=r[5],
                entered_at=r[6],
                value=parse_value(r[7]) if column_id is not None else None,
            )
        )
    for cards in found.values():
        cards.sort(key=lambda c: (c.entered_at, c.period_id), reverse=True)
    return found


def _cards_statement(
    dialect: Dialect, size: int, by_cursor: bool, with_value: bool, scoped: bool
) -> Prepared:
    """The cards of `size` stages at `moment`, each stage's page a subquery with its own
    ORDER BY and LIMIT, all in one UNION ALL (as the present board's)."""

    def build() -> Any:
        moment = bindparam("moment", type_=UTCDateTime())
        named = history.alias("named")
        measures: list[Any] = [
            history.c.to_stage_id,
            history.c.id,
            history.c.flow_item_id,
            func.coalesce(items.c.object_type, dropped_items.c.object_type),
            func.coalesce(items.c.object_id, dropped_items.c.object_id),
            func.coalesce(items.c.assigned_iam_user_id, dropped_items.c.assigned_iam_user_id),
            history.c.moved_at,
        ]
        # the item's row, or what it left when it was dropped since
        source: Any = history.outerjoin(items, items.c.id == history.c.flow_item_id).outerjoin(
            dropped_items, dropped_items.c.flow_item_id == history.c.flow_item_id
        )
        if with_value:
            source = source.outerjoin(
                values_table,
                and_(
                    values_table.c.flow_item_id == items.c.id,
                    values_table.c.flow_column_id == bindparam("column_id"),
                ),
            )
            measures.append(values_table.c.value)
        selects = []
        for k in range(size):
            query = (
                select(*measures)
                .select_from(source)
                .where(
                    history.c.flow_pipeline_id == bindparam("pipeline"),
                    history.c.to_stage_id == bindparam(f"stage_{k}"),
                    _holds(moment),
                    or_(
                        and_(
                            items.c.id.is_not(None),
                            or_(items.c.deleted_at.is_(None), items.c.deleted_at > moment),
                        ),
                        and_(
                            dropped_items.c.flow_item_id.is_not(None),
                            or_(
                                dropped_items.c.deleted_at.is_(None),
                                dropped_items.c.deleted_at > moment,
                            ),
                        ),
                    ),
                )
                .order_by(history.c.moved_at.desc(), history.c.id.desc())
                .limit(bindparam("limit"))
            )
            if scoped:
                query = query.where(in_scope(bindparam("account")))
            if by_cursor:  # after the period the cursor names, as stored (text on SQLite)
                entered = (
                    select(named.c.moved_at)
                    .where(named.c.id == bindparam(f"last_{k}"))
                    .scalar_subquery()
                )
                query = query.where(
                    or_(
                        history.c.moved_at < entered,
                        and_(history.c.moved_at == entered, history.c.id < bindparam(f"last_{k}")),
                    )
                )
            else:
                query = query.offset(bindparam(f"offset_{k}"))
            selects.append(query)
        return selects[0] if size == 1 else union_all(*(select(*q.subquery().c) for q in selects))

    key = ("cards", dialect.name, dialect.driver, size, by_cursor, with_value, scoped)
    return _prepared(key, dialect, build)


def card_cursor(rank: int, card: PastCard) -> str:
    """The cursor after `card`: the rank of the card after it, and its period."""
    return f"{rank}:{card.period_id}"
