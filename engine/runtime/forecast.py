"""Forecasts and velocity of a pipeline at an instant, and the same figures one period before.

At instant T, with the period P (a week, a month or a quarter) and the window W = (T - P, T]:

- **Weighted pipeline value**: the open items at T (on the board then, in a stage that is
  neither won nor lost), by the period of their expected close date (a date column the admin
  names; items without one have none), with their value (a number column) and that value times
  their stage's probability / 100. Values and close dates are the items' current ones.
- **Conversion per stage**: of the items that entered the stage during W, how many reached a
  stage further along (a later position, or a won stage) later in W.
- **Time in stage**: p50 and p90 of the periods in the stage that ended during W, in days
  (nearest rank: each is one of the measured durations).
- **Idle items** (Pipedrive's "rotting"): items in the stage at T with no move and no logged
  method call for more than the stage's number of days.
- **Previous period**: the same figures at T - P (the same day of the previous week, month or
  quarter), with its own window.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from flowkernel.actors import Actor
from flowkernel.errors import InvalidArgument, UnknownDefinition
from flowkernel.previews import preview
from flowkernel.runtime.board_results import (
    FIRST_NUMBER_COLUMN,
    FirstNumberColumn,
    number_column,
    parse_value,
    scope_account,
)
from flowkernel.runtime.past import in_scope, past_moment
from flowkernel.runtime.scope import QueryBase, readable_pipeline
from flowkernel.store.database import reading
from flowkernel.store.tables import columns, history, items, last_calls, stages
from flowkernel.store.tables import dropped_items as dropped
from flowkernel.store.tables import item_values as values_table
from flowkernel.store.tables import method_calls as calls


class Period(Enum):
    """The length of a forecast's period: its close-date buckets and its flow window."""

    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"


@dataclass(frozen=True, slots=True)
class PeriodValue:
    """Open items expected to close in one period (`period` None: no close date)."""

    period: str | None
    start: date | None
    count: int
    value: Decimal
    weighted_value: Decimal


@dataclass(frozen=True, slots=True)
class StageFigures:
    """One stage's figures over the window: items in it at the instant, entries, how many of
    them went further, time in stage, idle items (None when no idle threshold applies)."""

    stage_id: int
    code: str
    name: str
    probability: int | None
    is_won: bool
    is_lost: bool
    in_stage: int
    entered: int
    advanced: int
    conversion: float | None
    p50_days: float | None
    p90_days: float | None
    idle: int | None
    idle_days: int | None


@dataclass(frozen=True, slots=True)
class Forecast:
    """A pipeline's forecast at `as_of`; `previous` is the same at the previous period's point."""

    pipeline_id: int
    as_of: datetime
    period: str
    window_start: datetime
    window_end: datetime
    value_column: str | None
    close_column: str | None
    open_count: int
    open_value: Decimal | None
    weighted_value: Decimal | None
    by_period: tuple[PeriodValue, ...]
    stages: tuple[StageFigures, ...]
    previous: Forecast | None


class ForecastQueries(QueryBase):
    """`forecast`."""

    def forecast(
        self,
        pipeline_id: int,
        actor: Actor,
        *,
        close_column: str | None = None,
        period: Period | str = Period.MONTH,
        value_column: str | FirstNumberColumn | None = FIRST_NUMBER_COLUMN,
        idle_days: int | Mapping[str, int] | None = None,
        as_of: datetime | None = None,
    ) -> Forecast:
        """The pipeline's forecast at `as_of` (default: now) and at the same point of the
        previous period, as the module says. `idle_days` is one number of days for every open
        stage, or days by stage code; None counts no idle items."""
        length = _period(period)
        moment = past_moment(datetime.now(UTC) if as_of is None else as_of)
        try:
            _back(_back(moment, length), length)  # where the previous period's window starts
        except (ValueError, OverflowError):
            raise InvalidArgument(
                f"as_of {moment.isoformat()} is too early: the period before it has no start",
                as_of=moment.isoformat(),
            ) from None
        with reading(self._sessions) as session:
            conn = session.connection()
            pipeline = readable_pipeline(conn, pipeline_id, actor)
            value_id, value_name = number_column(conn, pipeline_id, value_column)
            close_id = _date_column(conn, pipeline_id, close_column)
            stage_rows = conn.execute(
                select(stages)
                .where(stages.c.flow_pipeline_id == pipeline_id, stages.c.deleted_at.is_(None))
                .order_by(stages.c.position, stages.c.id)
            ).all()
            thresholds = _idle_days(idle_days, stage_rows)
            account = scope_account(actor, pipeline.iam_account_id)
            scope = None if isinstance(account, tuple) else in_scope(account)
            figures = [
                _figures(
                    conn,
                    pipeline_id,
                    stage_rows,
                    at,
                    length,
                    (value_id, value_name),
                    (close_id, close_column),
                    thresholds,
                    scope,
                )
                for at in (moment, _back(moment, length))
            ]
        current, previous = figures
        return replace(current, previous=previous)


def _period(value: Period | str) -> Period:
    if isinstance(value, Period):
        return value
    for period in Period:
        if isinstance(value, str) and value == period.value:
            return period
    raise InvalidArgument(
        f"period must be one of week, month, quarter, not {preview(value)}", period=value
    )


def _back(moment: datetime, length: Period) -> datetime:
    """The same point of the previous period: a week, a month or three months before (the
    day clamped to the month's last)."""
    if length is Period.WEEK:
        return moment - timedelta(days=7)
    months = 1 if length is Period.MONTH else 3
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    last = (date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1) - timedelta(days=1)).day
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last))


def _bucket(day: date, length: Period) -> tuple[str, date]:
    """The period a close date falls in: its label and first day."""
    if length is Period.WEEK:
        year, week, weekday = day.isocalendar()
        return f"{year}-W{week:02d}", day - timedelta(days=weekday - 1)
    if length is Period.MONTH:
        return f"{day.year}-{day.month:02d}", day.replace(day=1)
    quarter = (day.month - 1) // 3 + 1
    return f"{day.year}-Q{quarter}", date(day.year, 3 * quarter - 2, 1)


def _date_column(conn: Connection, pipeline_id: int, name: str | None) -> int | None:
    if name is None:
        return None
    rows = conn.execute(
        select(columns.c.id, columns.c.name, columns.c.field_type).where(
            columns.c.flow_pipeline_id == pipeline_id, columns.c.deleted_at.is_(None)
        )
    ).all()
    for column_id, column_name, field_type in rows:
        if column_name == name:
            if field_type != "date":
                raise InvalidArgument(
                    f"column {preview(name)} is a {field_type} column; close dates need a "
                    "date column",
                    close_column=name,
                )
            return int(column_id)
    raise UnknownDefinition(
        "column", name, f"pipeline {pipeline_id}", sorted(str(r.name) for r in rows)
    )


def _idle_days(given: int | Mapping[str, int] | None, stage_rows: Any) -> dict[int, int]:
    """Idle thresholds by stage id: one number for every open stage, or by stage code."""
    if given is None:
        return {}
    open_ids = {s.id: s.code or f"stage_{s.id}" for s in stage_rows if not (s.is_won or s.is_lost)}
    if isinstance(given, int) and not isinstance(given, bool):
        _check_days(given)
        return dict.fromkeys(open_ids, given)
    if not isinstance(given, Mapping):
        raise InvalidArgument(
            f"idle_days must be a number of days or days by stage code, not {preview(given)}",
            idle_days=given,
        )
    by_code = {code: stage_id for stage_id, code in open_ids.items()}
    found: dict[int, int] = {}
    for code, days in given.items():
        if code not in by_code:
            raise InvalidArgument(
                f"idle_days names {preview(code)}, which is not an open stage of the pipeline; "
                f"open stages: {', '.join(sorted(by_code))}",
                idle_days=code,
            )
        _check_days(days)
        found[by_code[code]] = days
    return found


def _check_days(days: object) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 36_500:
        raise InvalidArgument(
            f"idle_days must be whole days from 0 to 36500, not {preview(days)}",
            idle_days=days,
        )


def _figures(
    conn: Connection,
    pipeline_id: int,
    stage_rows: Any,
    moment: datetime,
    length: Period,
    value: tuple[int | None, str | None],
    close: tuple[int | None, str | None],
    thresholds: dict[int, int],
    scope: Any,
) -> Forecast:
    """The forecast's figures at `moment`, without a previous one."""
    start = _back(moment, length)
    by_id = {s.id: s for s in stage_rows}
    # the items on the board at the instant, with the period they were in
    holding = (  # a dropped item (no row) counts where it was; its value is gone
        select(history.c.flow_item_id, history.c.to_stage_id, history.c.moved_at)
        .join(items, items.c.id == history.c.flow_item_id, isouter=True)
        .join(dropped, dropped.c.flow_item_id == history.c.flow_item_id, isouter=True)
        .where(
            history.c.flow_pipeline_id == pipeline_id,
            history.c.moved_at <= moment,
            or_(history.c.valid_to.is_(None), history.c.valid_to > moment),
            or_(items.c.deleted_at.is_(None), items.c.deleted_at > moment),
            or_(dropped.c.deleted_at.is_(None), dropped.c.deleted_at > moment),
        )
    )
    present = conn.execute(holding if scope is None else holding.where(scope)).all()
    open_items = {
        r.flow_item_id: r.to_stage_id
        for r in present
        if r.to_stage_id in by_id
        and not (by_id[r.to_stage_id].is_won or by_id[r.to_stage_id].is_lost)
    }
    values = _values(conn, list(open_items), value[0])
    closes = _values(conn, list(open_items), close[0])
    buckets: dict[tuple[str, date] | None, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    for item_id, stage_id in open_items.items():
        raw_close = closes.get(item_id)
        key = _bucket(date.fromisoformat(raw_close), length) if raw_close else None
        amount = parse_value(values.get(item_id)) or Decimal(0)
        probability = by_id[stage_id].probability
        totals = buckets[key]
        totals[0] += 1
        totals[1] += amount
        totals[2] += amount * probability / 100 if probability is not None else Decimal(0)
    by_period = tuple(
        PeriodValue(
            period=None if key is None else key[0],
            start=None if key is None else key[1],
            count=int(t[0]),
            value=t[1],
            weighted_value=t[2],
        )
        for key, t in sorted(buckets.items(), key=_bucket_order)
    )
    stage_figures = _stage_figures(
        conn, pipeline_id, stage_rows, present, start, moment, thresholds, scope
    )
    with_value = value[0] is not None
    return Forecast(
        pipeline_id=pipeline_id,
        as_of=moment,
        period=length.value,
        window_start=start,
        window_end=moment,
        value_column=value[1],
        close_column=close[1],
        open_count=len(open_items),
        open_value=sum((p.value for p in by_period), Decimal(0)) if with_value else None,
        weighted_value=(
            sum((p.weighted_value for p in by_period), Decimal(0)) if with_value else None
        ),
        by_period=by_period,
        stages=stage_figures,
        previous=None,
    )


def _bucket_order(entry: tuple[tuple[str, date] | None, Any]) -> tuple[bool, date]:
    """Periods by their first day; no close date last."""
    return entry[0] is None, date.min if entry[0] is None else entry[0][1]


def _values(conn: Connection, item_ids: list[int], column_id: int | None) -> dict[int, str]:
    if column_id is None or not item_ids:
        return {}
    found: dict[int, str] = {}
    for start in range(0, len(item_ids), 1000):
        rows = conn.execute(
            select(values_table.c.flow_item_id, values_table.c.value).where(
                values_table.c.flow_column_id == column_id,
                values_table.c.flow_item_id.in_(item_ids[start : start + 1000]),
            )
        )
        found.update({int(i): v for i, v in rows if v not in (None, "")})
    return found


def _stage_figures(
    conn: Connection,
    pipeline_id: int,
    stage_rows: Any,
    present: Any,
    start: datetime,
    moment: datetime,
    thresholds: dict[int, int],
    scope: Any,
) -> tuple[StageFigures, ...]:
    """Entries, advances, time in stage and idle items per stage over `(start, moment]`."""
    # further along: a later position, or the won stage; never the lost one
    rank = {s.id: (1 << 30 if s.is_won else -1 if s.is_lost else s.position) for s in stage_rows}
    moves = (
        select(
            history.c.flow_item_id, history.c.to_stage_id, history.c.moved_at, history.c.valid_to
        )
        .where(
            history.c.flow_pipeline_id == pipeline_id,
            or_(
                and_(history.c.moved_at > start, history.c.moved_at <= moment),
                and_(history.c.valid_to > start, history.c.valid_to <= moment),
            ),
        )
        .order_by(history.c.flow_item_id, history.c.moved_at, history.c.id)
    )
    rows = conn.execute(moves if scope is None else moves.where(scope)).all()
    entered: dict[int, set[int]] = defaultdict(set)
    advanced: dict[int, set[int]] = defaultdict(set)
    durations: dict[int, list[float]] = defaultdict(list)
    by_item: dict[int, list[Any]] = defaultdict(list)
    for r in rows:
        by_item[r.flow_item_id].append(r)
        if r.valid_to is not None and start < r.valid_to <= moment:
            durations[r.to_stage_id].append((r.valid_to - r.moved_at).total_seconds() / 86400)
    for item_rows in by_item.values():
        for k, r in enumerate(item_rows):
            if not start < r.moved_at <= moment:
                continue
            entered[r.to_stage_id].add(r.flow_item_id)
            here = rank.get(r.to_stage_id)
            if here is not None and any(
                start < later.moved_at <= moment and rank.get(later.to_stage_id, -1) > here
                for later in item_rows[k + 1 :]
            ):
                advanced[r.to_stage_id].add(r.flow_item_id)
    idle = _idle(conn, present, moment, thresholds)
    in_stage: dict[int, int] = defaultdict(int)
    for r in present:
        in_stage[r.to_stage_id] += 1
    return tuple(
        StageFigures(
            stage_id=s.id,
            code=s.code or f"stage_{s.id}",
            name=s.name,
            probability=s.probability,
            is_won=s.is_won,
            is_lost=s.is_lost,
            in_stage=in_stage[s.id],
            entered=len(entered[s.id]),
            advanced=len(advanced[s.id]),
            conversion=(len(advanced[s.id]) / len(entered[s.id]) if entered[s.id] else None),
            p50_days=_rank(durations[s.id], 0.5),
            p90_days=_rank(durations[s.id], 0.9),
            idle=idle.get(s.id, 0) if s.id in thresholds else None,
            idle_days=thresholds.get(s.id),
        )
        for s in stage_rows
    )


def _rank(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile: the smallest value with `share` of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(math.ceil(share * len(ordered)), 1) - 1], 6)


def _idle(
    conn: Connection, present: Any, moment: datetime, thresholds: dict[int, int]
) -> dict[int, int]:
    """Per stage, the items in it at `moment` with no move and no logged call for longer than
    its threshold."""
    watched = {r.flow_item_id: r for r in present if r.to_stage_id in thresholds}
    if not watched:
        return {}
    last_call: dict[int, datetime] = {}
    ids = list(watched)
    for table in (calls, last_calls):  # every call kept, and the last call of the others
        for begin in range(0, len(ids), 1000):
            found = conn.execute(
                select(table.c.flow_item_id, func.max(table.c.called_at))
                .where(
                    table.c.flow_item_id.in_(ids[begin : begin + 1000]),
                    table.c.called_at <= moment,
                )
                .group_by(table.c.flow_item_id)
            )
            for item_id, at in found:
                last_call[int(item_id)] = max(at, last_call.get(int(item_id), at))
    counts: dict[int, int] = defaultdict(int)
    for item_id, r in watched.items():
        active = max(r.moved_at, last_call.get(item_id, r.moved_at))
        if moment - active > timedelta(days=thresholds[r.to_stage_id]):
            counts[r.to_stage_id] += 1
    return counts
