"""An item's method calls, newest first, a page at a time, under the history's access rules.

Every recorded call is in one of three places: a call that changed the state is a history
row (it carries its method, action and parameters); a call that changed nothing is a
call-log row (methods that log every call, the default); a method that keeps only its last
call (a device's heartbeat) has one row per item with how many calls it stands for. The
reader merges the three. A page ends at a cursor, the position of its last call, so the next
page starts right after it whatever was called meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, and_, or_, select

from flowkernel.actors import Actor
from flowkernel.errors import InvalidArgument
from flowkernel.moments import utc_moment
from flowkernel.previews import preview
from flowkernel.runtime import history as history_reader
from flowkernel.runtime.scope import check_limit
from flowkernel.store.tables import history, last_calls, stages
from flowkernel.store.tables import method_calls as calls

_MOVED: Final = 2  # ranks of the sources among calls made at one instant
_LOGGED: Final = 1
_LAST: Final = 0


@dataclass(frozen=True, slots=True)
class MethodCall:
    """One executed method: where it ran, where it led (None: nowhere), who ran it.

    `count` is 1, but for a method that keeps only its last call per item: the calls this one
    stands for.
    """

    item_id: int
    method: str | None
    action: str | None
    state: str | None
    to_state: str | None
    user_id: int | None
    is_system: bool
    params: dict[str, Any]
    called_at: datetime
    count: int


@dataclass(frozen=True, slots=True)
class CallPage:
    """A page of calls, newest first; `next_cursor` reads on (None: this is the last page)."""

    calls: tuple[MethodCall, ...]
    next_cursor: str | None


_Key = tuple[datetime, int, str]


def read(
    conn: Connection, item_id: int, actor: Actor, *, limit: int, cursor: str | None
) -> CallPage:
    """A page of the item's calls, once `history.reach` lets the actor read them."""
    check_limit("limit", limit)
    after = _parse(cursor) if cursor is not None else None
    history_reader.reach(conn, item_id, actor)
    codes = dict(conn.execute(select(stages.c.id, stages.c.code)).all())
    found: list[tuple[_Key, MethodCall]] = []
    moved = select(history).where(
        history.c.flow_item_id == item_id, history.c.method_code.is_not(None)
    )
    if after is not None:
        moved = moved.where(_before(after, _MOVED, history.c.moved_at, history.c.id))
    for r in conn.execute(
        moved.order_by(history.c.moved_at.desc(), history.c.id.desc()).limit(limit + 1)
    ):
        call = MethodCall(
            item_id, r.method_code, r.action_code, codes.get(r.from_stage_id),
            codes.get(r.to_stage_id), r.moved_by_iam_user_id, r.is_system, dict(r.params or {}),
            r.moved_at, 1,
        )  # fmt: skip
        found.append(((r.moved_at, _MOVED, f"{r.id:020d}"), call))
    logged = select(calls).where(calls.c.flow_item_id == item_id)
    if after is not None:
        logged = logged.where(_before(after, _LOGGED, calls.c.called_at, calls.c.id))
    for r in conn.execute(
        logged.order_by(calls.c.called_at.desc(), calls.c.id.desc()).limit(limit + 1)
    ):
        call = MethodCall(
            item_id, r.method_code, r.action_code, codes.get(r.from_stage_id), None,
            r.actor_iam_user_id, r.is_system, dict(r.params or {}), r.called_at, 1,
        )  # fmt: skip
        found.append(((r.called_at, _LOGGED, f"{r.id:020d}"), call))
    for r in conn.execute(select(last_calls).where(last_calls.c.flow_item_id == item_id)):
        key = (r.called_at, _LAST, r.method_code)
        if after is None or key < after:
            call = MethodCall(
                item_id, r.method_code, r.action_code, codes.get(r.from_stage_id), None,
                r.actor_iam_user_id, r.is_system, dict(r.params or {}), r.called_at,
                r.call_count,
            )  # fmt: skip
            found.append((key, call))
    found.sort(key=lambda pair: pair[0], reverse=True)
    page = found[:limit]
    more = len(found) > limit
    return CallPage(tuple(c for _, c in page), _format(page[-1][0]) if more else None)


def _before(
    after: _Key, rank: int, at: ColumnElement[Any], row_id: ColumnElement[Any]
) -> ColumnElement[bool]:
    """Rows of the source of `rank` that sort after the cursor (newest first)."""
    moment, cursor_rank, key = after
    if rank < cursor_rank:
        return at <= moment
    if rank > cursor_rank:
        return at < moment
    return or_(at < moment, and_(at == moment, row_id < int(key)))


def _format(key: _Key) -> str:
    return f"{key[0].isoformat()}|{key[1]}|{key[2]}"


def _parse(cursor: object) -> _Key:
    problem = f"cursor must be a next_cursor of a previous page, not {preview(cursor)}"
    if not isinstance(cursor, str) or cursor.count("|") != 2 or len(cursor) > 200:
        raise InvalidArgument(problem, cursor=preview(cursor))
    moment, rank, key = cursor.split("|")
    try:
        parsed = (utc_moment(datetime.fromisoformat(moment)), int(rank), key)
    except ValueError:
        raise InvalidArgument(problem, cursor=cursor) from None
    if parsed[1] not in (_LAST, _LOGGED, _MOVED) or (parsed[1] != _LAST and not key.isdigit()):
        raise InvalidArgument(problem, cursor=cursor)
    return parsed
