"""Read-side queries: board, item history, pipelines of an object, funnel, time in stage.

Every query follows the LEO seed's "Key Queries" and is scoped to the actor: a pipeline or
item of an account the actor does not reach is reported as unknown, never as forbidden. On a
platform pipeline (no account) an actor confined to an account sees only the items of that
account (and the platform's own). A class-wide access rule that denies the actor `visible`
refuses the class's queries (`AccessDenied`) and leaves it out of lists (see `flowkernel.access`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    case,
    distinct,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.types import NullType

from flowkernel.actors import Actor
from flowkernel.definition.rules import hidden_classes
from flowkernel.errors import InvalidArgument, UnknownDefinition
from flowkernel.hookspecs import EventLogStore
from flowkernel.keys import HostKey
from flowkernel.moments import utc_moment
from flowkernel.runtime import calls as call_log
from flowkernel.runtime import history as history_reader
from flowkernel.runtime.board import BoardQueries
from flowkernel.runtime.calls import CallPage
from flowkernel.runtime.forecast import ForecastQueries
from flowkernel.runtime.scope import (
    check_limit,
    item_scope,
    object_filter,
    readable_pipeline,
    sees_every_account,
    stage_of,
)
from flowkernel.snapshots import LoggedEvent
from flowkernel.store.database import reading
from flowkernel.store.schema import UTCDateTime
from flowkernel.store.tables import (
    history,
    items,
    pipelines,
    stages,
)
from flowkernel.store.tables import method_calls as calls
from flowkernel.store.writer import Writer
from flowkernel.validation import (
    check_id,
    check_optional_text,
)


@dataclass(frozen=True, slots=True)
class StageMove:
    """A row of an item's history: the seed's from/to stage names, who moved it and when."""

    from_stage: str | None
    to_stage: str
    from_stage_id: int | None
    to_stage_id: int
    moved_by: int | None
    moved_at: datetime
    method: str | None
    is_system: bool


@dataclass(frozen=True, slots=True)
class ObjectPipeline:
    """A pipeline an object sits in, with the stage it sits in."""

    pipeline_id: int
    pipeline_name: str
    item_id: int
    stage_id: int
    stage_code: str
    current_stage: str


@dataclass(frozen=True, slots=True)
class Conversion:
    """The seed's funnel: distinct items that ever entered each stage, and their ratio.

    `rate` is `converted / entered` (None when nothing entered); it can exceed 1 when items
    were placed straight into the later stage.
    """

    pipeline_id: int
    from_stage: str
    to_stage: str
    entered: int
    converted: int
    rate: float | None


@dataclass(frozen=True, slots=True)
class StageTime:
    """Time spent in one stage: entries, exits (moves out), total time and time per entry.

    `total` includes the still-open interval of items sitting in the stage, up to `now`.
    """

    stage_id: int
    stage_code: str
    stage_name: str
    entries: int
    exits: int
    total: timedelta
    average: timedelta


class Queries(BoardQueries, ForecastQueries):
    """Read-side queries: board, item history, pipelines of an object, funnel, time in stage."""

    # --- one item ----------------------------------------------------------------------------

    def item_history(self, item_id: int, actor: Actor) -> list[StageMove]:
        """The seed's item history: from and to stage names, who moved it and when, oldest first.

        Works for dropped items too: their history is kept.
        """
        with reading(self._sessions) as session:
            steps = history_reader.read(session.connection(), item_id, actor)
        return [
            StageMove(
                from_stage=step.from_name,
                to_stage=step.to_name,
                from_stage_id=step.from_stage_id,
                to_stage_id=step.to_stage_id,
                moved_by=step.user_id,
                moved_at=step.moved_at,
                method=step.method,
                is_system=step.is_system,
            )
            for step in steps
        ]

    def calls(
        self, item_id: int, actor: Actor, *, limit: int = 100, cursor: str | None = None
    ) -> CallPage:
        """The item's method calls, newest first, `limit` at a time after `cursor` (a previous
        page's `next_cursor`): those that moved it, those that changed nothing, and the last
        call of methods that keep only that one (with its count). The history's access rules
        apply; a dropped item's calls stay readable."""
        with reading(self._sessions) as session:
            return call_log.read(session.connection(), item_id, actor, limit=limit, cursor=cursor)

    def time_in_stage(
        self, item_id: int, actor: Actor, now: datetime | None = None
    ) -> list[StageTime]:
        """Per stage the item has been in (by position): entries, exits and time spent.

        The interval the item is in now runs until `now` (default: the current time); for a
        deleted item it ends at `deleted_at`, for a dropped one at its last method call.
        """
        moment = utc_moment(now)
        with reading(self._sessions) as session:
            conn = session.connection()
            history_reader.reach(conn, item_id, actor)
            return _stage_times(conn, self._writer, history.c.flow_item_id == item_id, None, moment)

    def items_at(
        self,
        pipeline_id: int,
        state: str | int,
        when: datetime,
        actor: Actor,
        *,
        limit: int = 100,
        after: int | None = None,
    ) -> list[int]:
        """The ids of the items that were in `state` (code or id) of a pipeline or class at
        `when`, ascending, `limit` at a time after the id `after`: the history rows whose
        period holds `when`, found by the state's index. Dropped items count where they were."""
        moment = utc_moment(when, "when")
        check_limit("limit", limit)
        if after is not None:
            check_id("after", after)
        with reading(self._sessions) as session:
            conn = session.connection()
            pipeline = readable_pipeline(conn, pipeline_id, actor)
            stage_id = stage_of(conn, pipeline, state)
            query = select(history.c.flow_item_id).where(
                history.c.flow_pipeline_id == pipeline.id,
                history.c.to_stage_id == stage_id,
                history.c.moved_at <= moment,
                or_(history.c.valid_to.is_(None), history.c.valid_to > moment),
            )
            if not sees_every_account(actor) and pipeline.iam_account_id is None:
                query = query.where(
                    or_(
                        history.c.iam_account_id.is_(None),
                        history.c.iam_account_id == actor.account_id,
                    )
                )
            if after is not None:
                query = query.where(history.c.flow_item_id > after)
            found = conn.execute(query.order_by(history.c.flow_item_id).limit(limit))
            return [int(item_id) for (item_id,) in found]

    # --- objects and pipelines ---------------------------------------------------------------

    def pipelines_of(
        self, object_type: str, object_id: HostKey, actor: Actor
    ) -> list[ObjectPipeline]:
        """The seed's "pipelines of an object" (by its integer, UUID or text key): each
        pipeline it sits in and its current stage.

        Only non-deleted items in live pipelines of accounts the actor reaches and not hidden
        from it by a class-wide access rule; by pipeline id.
        """
        stmt = (
            select(
                pipelines.c.id,
                pipelines.c.name,
                items.c.id.label("item_id"),
                stages.c.id.label("stage_id"),
                stages.c.code.label("stage_code"),
                stages.c.name.label("current_stage"),
            )
            .select_from(
                items.join(pipelines, pipelines.c.id == items.c.flow_pipeline_id).join(
                    stages, stages.c.id == items.c.flow_stage_id
                )
            )
            .where(
                object_filter(object_type, object_id, "object_id"),
                items.c.deleted_at.is_(None),
                pipelines.c.deleted_at.is_(None),
            )
            .order_by(pipelines.c.id)
        )
        if not sees_every_account(actor):
            stmt = stmt.where(
                or_(items.c.iam_account_id.is_(None), items.c.iam_account_id == actor.account_id)
            )
        with reading(self._sessions) as session:
            rows = session.connection().execute(stmt).all()
            hidden = hidden_classes(session.connection(), [r.id for r in rows], actor)
        return [
            ObjectPipeline(
                pipeline_id=r.id,
                pipeline_name=r.name,
                item_id=r.item_id,
                stage_id=r.stage_id,
                stage_code=r.stage_code or f"stage_{r.stage_id}",
                current_stage=r.current_stage,
            )
            for r in rows
            if r.id not in hidden
        ]

    def conversion(
        self, pipeline_id: int, from_stage: str | int, to_stage: str | int, actor: Actor
    ) -> Conversion:
        """The seed's funnel query: distinct items that entered `from_stage` and `to_stage`.

        Stages are given by code or id. Counts come from the history, so dropped items count.
        """
        with reading(self._sessions) as session:
            conn = session.connection()
            pipeline = readable_pipeline(conn, pipeline_id, actor)
            from_id = stage_of(conn, pipeline, from_stage)
            to_id = stage_of(conn, pipeline, to_stage)
            stmt = select(
                func.count(
                    distinct(case((history.c.to_stage_id == from_id, history.c.flow_item_id)))
                ),
                func.count(
                    distinct(case((history.c.to_stage_id == to_id, history.c.flow_item_id)))
                ),
            ).where(history.c.flow_pipeline_id == pipeline_id)
            scope = item_scope(actor, pipeline.iam_account_id)
            if scope is not None:
                stmt = stmt.where(
                    history.c.flow_item_id.in_(
                        select(items.c.id).where(items.c.flow_pipeline_id == pipeline_id, scope)
                    )
                )
            entered, converted = conn.execute(stmt).one()
            codes = dict(
                conn.execute(
                    select(stages.c.id, stages.c.code).where(stages.c.id.in_([from_id, to_id]))
                ).all()
            )
        return Conversion(
            pipeline_id=pipeline_id,
            from_stage=codes.get(from_id) or f"stage_{from_id}",
            to_stage=codes.get(to_id) or f"stage_{to_id}",
            entered=entered,
            converted=converted,
            rate=converted / entered if entered else None,
        )

    def stage_times(
        self, pipeline_id: int, actor: Actor, now: datetime | None = None
    ) -> list[StageTime]:
        """Per stage of the pipeline (by position), aggregated over its items' histories.

        Stages never entered are listed with zeros. Open intervals run until `now`, as in
        `time_in_stage`.
        """
        moment = utc_moment(now)
        with reading(self._sessions) as session:
            conn = session.connection()
            pipeline = readable_pipeline(conn, pipeline_id, actor)
            measured = {
                t.stage_id: t
                for t in _stage_times(
                    conn,
                    self._writer,
                    history.c.flow_pipeline_id == pipeline_id,
                    item_scope(actor, pipeline.iam_account_id),
                    moment,
                )
            }
            stage_rows = conn.execute(
                select(stages.c.id, stages.c.code, stages.c.name)
                .where(stages.c.flow_pipeline_id == pipeline_id, stages.c.deleted_at.is_(None))
                .order_by(stages.c.position, stages.c.id)
            ).all()
        live = [
            measured.pop(
                s.id,
                StageTime(s.id, s.code or f"stage_{s.id}", s.name, 0, 0, timedelta(), timedelta()),
            )
            for s in stage_rows
        ]
        return live + list(measured.values())  # stages removed since, after the live ones

    # --- events ------------------------------------------------------------------------------

    def events(
        self,
        actor: Actor,
        *,
        event_name: str | None = None,
        item_id: int | None = None,
        limit: int = 100,
    ) -> list[LoggedEvent]:
        """Delivered automation events of the actor's account, oldest first.

        Read from the built-in event log plugin; an actor without an account sees the
        platform's events. With `item_id`, the item must be reachable by the actor. Events of
        classes a class-wide access rule hides from the actor are left out.
        """
        check_limit("limit", limit)
        check_optional_text("event_name", event_name, error=InvalidArgument)
        plugin = (
            self._plugin_manager.get_plugin("event_log")
            if self._plugin_manager is not None
            else None
        )
        if not isinstance(plugin, EventLogStore):
            raise UnknownDefinition(
                "plugin", "event_log", "this engine; open Flowkernel with a database"
            )
        if item_id is not None:
            with reading(self._sessions) as session:
                history_reader.reach(session.connection(), item_id, actor)
        found: list[LoggedEvent] = plugin.events(
            actor.account_id, event_name=event_name, item_id=item_id, limit=limit
        )
        if actor.is_system or not found:
            return found
        with reading(self._sessions) as session:
            hidden = hidden_classes(session.connection(), [e.pipeline_id for e in found], actor)
        return [e for e in found if e.pipeline_id not in hidden]


def _stage_times(
    conn: Connection,
    writer: Writer,
    rows_of: ColumnElement[bool],
    scope: ColumnElement[bool] | None,
    now: datetime,
) -> list[StageTime]:
    """Entries, exits and time per stage from consecutive history rows of each item, in SQL."""
    left_at = (
        func.lead(history.c.moved_at)
        .over(partition_by=history.c.flow_item_id, order_by=(history.c.moved_at, history.c.id))
        .label("left_at")
    )
    h = (
        select(history.c.flow_item_id, history.c.to_stage_id, history.c.moved_at, left_at)
        .where(rows_of)
        .subquery("h")
    )
    last_call = (
        select(func.max(calls.c.called_at))
        .where(calls.c.flow_item_id == h.c.flow_item_id)
        .scalar_subquery()
    )
    # The open interval ends now; at deleted_at for a deleted item; at the drop for a dropped one.
    end = func.coalesce(
        h.c.left_at,
        items.c.deleted_at,
        case((items.c.id.is_(None), last_call), else_=literal(now, UTCDateTime())),
    )
    stmt = (
        select(
            h.c.to_stage_id,
            func.count(),
            func.count(h.c.left_at),
            func.sum(writer.seconds(end, h.c.moved_at), type_=NullType()),
            stages.c.code,
            stages.c.name,
            stages.c.position,
        )
        .select_from(
            h.outerjoin(items, items.c.id == h.c.flow_item_id).join(
                stages, stages.c.id == h.c.to_stage_id
            )
        )
        .group_by(h.c.to_stage_id, stages.c.code, stages.c.name, stages.c.position)
        .order_by(stages.c.position, h.c.to_stage_id)
    )
    if scope is not None:
        stmt = stmt.where(items.c.id.is_not(None), scope)
    result = []
    for stage_id, entries, exits, seconds, code, name, _position in conn.execute(stmt):
        total = timedelta(seconds=round(float(seconds or 0), 6))
        result.append(
            StageTime(
                stage_id=stage_id,
                stage_code=code or f"stage_{stage_id}",
                stage_name=name,
                entries=entries,
                exits=exits,
                total=total,
                average=total / entries if entries else timedelta(),
            )
        )
    return result
