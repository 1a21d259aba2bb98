"""The SQLite writer: statements run in-process, so a batch is one statement per row.

SQLite serialises writers on the database: a transaction takes the write lock at its start
(`BEGIN IMMEDIATE`), so what a transaction loads stays as loaded until it commits and no row
lock is needed. Timestamps are stored as SQLAlchemy stores them on SQLite: UTC text with
microseconds, `2026-12-04 17:10:39.000000`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Float, Integer, Table, cast, func
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from flowkernel.kinds import CallLog
from flowkernel.store.prepared import Db
from flowkernel.store.writer import (
    ITEM_COLUMNS,
    ITEM_FROM,
    Change,
    Due,
    ItemRecord,
    Lock,
    Placement,
    Writer,
    check_count,
)


def _moment(value: datetime) -> str:
    """A timestamp as SQLite rows hold it."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _read(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _epoch(moment: Any) -> Any:
    """Seconds since 1970 of a UTC text timestamp, to the microsecond.

    Whole seconds and the fraction apart: julianday() as a double is off by tens of
    microseconds at today's dates.
    """
    return cast(func.strftime("%s", moment), Integer()) + cast(func.substr(moment, 20), Float())


def read_moment(value: str | None) -> datetime | None:
    """A stored timestamp, timezone-aware."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


_LOAD_ONE: Final = f"SELECT {ITEM_COLUMNS} FROM {ITEM_FROM} WHERE i.id = ?"
_LOAD_MANY: Final = (
    f"SELECT {ITEM_COLUMNS} FROM {ITEM_FROM} "
    "WHERE i.id IN (SELECT value FROM json_each(?)) ORDER BY i.id"
)
_FILLED: Final = (
    "SELECT flow_item_id, flow_column_id FROM flow_item_values "
    "WHERE flow_item_id IN (SELECT value FROM json_each(?)) AND value IS NOT NULL"
)
_OBJECT: Final = (
    "SELECT id FROM flow_items WHERE flow_pipeline_id = ? AND object_type = ? AND object_id = ?"
)
_WATCHERS: Final = (
    "SELECT flow_item_id, iam_user_id FROM flow_item_watchers "
    "WHERE flow_item_id IN (SELECT value FROM json_each(?)) ORDER BY flow_item_id, iam_user_id"
)
_END_OF_STAGE: Final = (
    "(SELECT coalesce(max(position) + 1, 0) FROM flow_items WHERE flow_stage_id = ?)"
)
_MOVE: Final = (
    "UPDATE flow_items SET flow_stage_id = ?, last_stage_changed_at = ?, checklist_state = NULL, "
    f"position = {_END_OF_STAGE}, version = version + 1, updated_at = ? "
    "WHERE id = ? AND version = ?"
)
_MOVE_DELETING: Final = (
    "UPDATE flow_items SET flow_stage_id = ?, last_stage_changed_at = ?, checklist_state = NULL, "
    f"position = {_END_OF_STAGE}, version = version + 1, updated_at = ?, "
    "deleted_at = CASE WHEN ? THEN coalesce(deleted_at, ?) END "
    "WHERE id = ? AND version = ?"
)
_MARK: Final = (
    "UPDATE flow_items SET deleted_at = ?, version = version + 1, updated_at = ? "
    "WHERE id = ? AND version = ?"
)
_DROP: Final = "DELETE FROM flow_items WHERE id = ?"
_CLOSE: Final = (
    "UPDATE flow_stage_history SET valid_to = ? WHERE flow_item_id = ? AND valid_to IS NULL"
)
_HISTORY: Final = (
    "INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, from_stage_id, to_stage_id, "
    "moved_by_iam_user_id, moved_at, method_code, is_system, action_code, params, "
    "iam_account_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_CALL: Final = (
    "INSERT INTO fk_method_calls (flow_item_id, flow_pipeline_id, iam_account_id, method_code, "
    "action_code, from_stage_id, to_stage_id, actor_iam_user_id, is_system, params, called_at) "
    "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)"
)
_LAST_CALL: Final = (
    "INSERT INTO fk_method_last_calls (flow_item_id, method_code, flow_pipeline_id, action_code, "
    "from_stage_id, iam_account_id, actor_iam_user_id, is_system, params, called_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (flow_item_id, method_code) DO UPDATE SET "
    "flow_pipeline_id = excluded.flow_pipeline_id, action_code = excluded.action_code, "
    "from_stage_id = excluded.from_stage_id, iam_account_id = excluded.iam_account_id, "
    "actor_iam_user_id = excluded.actor_iam_user_id, is_system = excluded.is_system, "
    "params = excluded.params, called_at = excluded.called_at, "
    "call_count = fk_method_last_calls.call_count + 1"
)
_DUE: Final = (
    "SELECT flow_item_id, flow_pipeline_id, flow_stage_id, due_at FROM flow_sla_due "
    "WHERE due_at <= ? AND (? IS NULL OR flow_pipeline_id = ?) "
    "AND flow_item_id NOT IN (SELECT value FROM json_each(?)) "
    "ORDER BY due_at, flow_item_id LIMIT ?"
)
_DUE_PLAN: Final = "EXPLAIN QUERY PLAN " + _DUE
_UNQUEUE: Final = "DELETE FROM flow_sla_due WHERE flow_item_id IN (SELECT value FROM json_each(?))"
_BREACHED: Final = (
    "INSERT INTO flow_sla_breaches (flow_item_id, breached_at) VALUES (?, ?) "
    "ON CONFLICT (flow_item_id) DO UPDATE SET breached_at = excluded.breached_at"
)
_OUTBOX: Final = (
    "INSERT INTO fk_outbox (event_id, kind, event_name, trigger, flow_pipeline_id, flow_item_id, "
    "flow_automation_id, iam_account_id, recipient_iam_user_id, payload, available_at, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
_PLACE: Final = (
    "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, object_id, "
    "object_key, iam_account_id, iam_user_id, assigned_iam_user_id, position, "
    "last_stage_changed_at, deleted_at, created_at, updated_at) "
    f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, {_END_OF_STAGE}, ?, ?, ?, ?) RETURNING id, position"
)


class SqliteWriter(Writer):
    """SQLite: `BEGIN IMMEDIATE` (a deferred `BEGIN` for reads), JSON arrays of ids,
    `executemany` for batches."""

    dialect = "sqlite"

    def seconds(self, end: Any, start: Any) -> Any:
        return _epoch(end) - _epoch(start)

    def upsert(self, table: Table) -> Any:
        return sqlite_insert(table)

    def begin(self, db: Db) -> None:
        db.run_sql("BEGIN IMMEDIATE", ())

    def begin_reading(self, db: Db) -> None:
        db.run_sql("BEGIN", ())  # deferred: reads WAL's last commit, takes no write lock

    def load(self, db: Db, ids: Sequence[int], *, lock: Lock) -> dict[int, ItemRecord]:
        # the transaction holds the database's write lock from its start: nothing to lock
        if len(ids) == 1:
            rows = db.run_sql(_LOAD_ONE, (ids[0],)).fetchall()
        else:
            rows = db.run_sql(_LOAD_MANY, (json.dumps(list(ids)),)).fetchall()
        return {row[0]: ItemRecord(row, read_moment(row[11])) for row in rows}

    def filled(self, db: Db, ids: Sequence[int]) -> dict[int, set[int]]:
        found: dict[int, set[int]] = {}
        for item_id, column_id in db.run_sql(_FILLED, (json.dumps(list(ids)),)):
            found.setdefault(item_id, set()).add(column_id)
        return found

    def class_version(self, db: Db, class_id: int) -> int | None:
        row = db.run_sql("SELECT version FROM flow_pipelines WHERE id = ?", (class_id,)).fetchone()
        return None if row is None else int(row[0])

    def find_object(self, db: Db, class_id: int, object_type: str, object_id: int) -> int | None:
        row = db.run_sql(_OBJECT, (class_id, object_type, object_id)).fetchone()
        return None if row is None else int(row[0])

    def watchers(self, db: Db, ids: Sequence[int]) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        for item_id, user_id in db.run_sql(_WATCHERS, (json.dumps(list(ids)),)):
            found.setdefault(item_id, []).append(user_id)
        return found

    def apply(
        self, db: Db, changes: Sequence[Change], user_id: int | None, is_system: bool, now: datetime
    ) -> None:
        """One statement per row and kind of write, in order."""
        at = _moment(now)
        marks = [c for c in changes if c.marks]
        if marks:
            self._mark(db, marks, at)
        drops = [c.item.id for c in changes if c.dropped]
        if drops:  # the state held until now, the engine's moment
            db.run_many(_CLOSE, [(at, i) for i in drops])
            db.run_many(_DROP, [(i,) for i in drops])
        moves = [c for c in changes if c.moved]
        if moves:
            self._move(db, moves, at)
        history = [c for c in changes if c.to_stage is not None]
        if history:
            self._history(db, history, user_id, is_system, at)
            gone = [c.item.id for c in history if c.dropped]  # changed state, then dropped
            if gone:
                db.run_many(_CLOSE, [(at, i) for i in gone])
        calls = [c for c in changes if c.to_stage is None and c.log == CallLog.ALL]
        if calls:
            self._calls(db, calls, user_id, is_system, at)
        last = [c for c in changes if c.to_stage is None and c.log == CallLog.LAST]
        if last:
            self._last_calls(db, last, user_id, is_system, at)

    def _mark(self, db: Db, changes: Sequence[Change], at: str) -> None:
        rows = [(at if c.deleted else None, at, c.item.id, c.item.version) for c in changes]
        check_count(changes, db.run_many(_MARK, rows))

    def _move(self, db: Db, changes: Sequence[Change], at: str) -> None:
        plain = [c for c in changes if not c.deleted and not c.item.deleted]
        deleting = [c for c in changes if c.deleted or c.item.deleted]
        written = 0
        if plain:
            rows: list[tuple[Any, ...]] = [
                (c.to_stage, at, c.to_stage, at, c.item.id, c.item.version) for c in plain
            ]
            written += db.run_many(_MOVE, rows)
        if deleting:
            rows = [
                (c.to_stage, at, c.to_stage, at, c.deleted, at, c.item.id, c.item.version)
                for c in deleting
            ]
            written += db.run_many(_MOVE_DELETING, rows)
        check_count(changes, written)

    def _history(
        self, db: Db, changes: Sequence[Change], user_id: int | None, is_system: bool, at: str
    ) -> None:
        rows = [
            (
                c.item.id,
                c.item.class_id,
                c.item.stage_id,
                c.to_stage,
                user_id,
                at,
                c.method,
                is_system,
                c.action,
                c.params,
                c.item.account_id,
            )
            for c in changes
        ]
        db.run_many(_HISTORY, rows)

    def _calls(
        self, db: Db, changes: Sequence[Change], user_id: int | None, is_system: bool, at: str
    ) -> None:
        rows = [
            (
                c.item.id,
                c.item.class_id,
                c.item.account_id,
                c.method,
                c.action,
                c.item.stage_id,
                user_id,
                is_system,
                c.params,
                at,
            )
            for c in changes
        ]
        db.run_many(_CALL, rows)

    def _last_calls(
        self, db: Db, changes: Sequence[Change], user_id: int | None, is_system: bool, at: str
    ) -> None:
        rows = [
            (
                c.item.id,
                c.method,
                c.item.class_id,
                c.action,
                c.item.stage_id,
                c.item.account_id,
                user_id,
                is_system,
                c.params,
                at,
            )
            for c in changes
        ]
        db.run_many(_LAST_CALL, rows)

    def due(
        self,
        db: Db,
        moment: datetime,
        pipeline_id: int | None,
        excluded: Sequence[int],
        take: int,
    ) -> list[Due]:
        params = (_moment(moment), pipeline_id, pipeline_id, json.dumps(list(excluded)), take)
        return [
            Due(row[0], row[1], row[2], _read(row[3]))
            for row in db.run_sql(_DUE, params).fetchall()
        ]

    def due_plan(self, db: Db, moment: datetime, pipeline_id: int | None) -> list[str]:
        params = (_moment(moment), pipeline_id, pipeline_id, "[]", 1)
        return [str(row[-1]) for row in db.run_sql(_DUE_PLAN, params)]

    def claim_due(self, db: Db, ids: Sequence[int], moment: datetime) -> None:
        if not ids:
            return
        db.run_sql(_UNQUEUE, (json.dumps(list(ids)),))
        at = _moment(moment)
        db.run_many(_BREACHED, [(i, at) for i in ids])

    def outbox(self, db: Db, rows: Sequence[Mapping[str, Any]], now: datetime) -> list[int]:
        at = _moment(now)
        ids: list[int] = []
        for r in rows:
            cursor = db.run_sql(
                _OUTBOX,
                (
                    r["event_id"],
                    r["kind"],
                    r["event_name"],
                    r["trigger"],
                    r["flow_pipeline_id"],
                    r["flow_item_id"],
                    r["flow_automation_id"],
                    r["iam_account_id"],
                    r["recipient_iam_user_id"],
                    json.dumps(r["payload"]),
                    at,
                    at,
                ),
            )
            ids.append(cursor.fetchone()[0])
        return ids

    def place(self, db: Db, placement: Placement, now: datetime) -> tuple[int, int]:
        p, at = placement, _moment(now)
        item_id, position = db.run_sql(
            _PLACE,
            (
                p.class_id,
                p.stage_id,
                p.object_type,
                p.object_id,
                p.object_key,
                p.account_id,
                p.user_id,
                p.assigned_user_id,
                p.stage_id,
                at,
                at if p.deleted else None,
                at,
                at,
            ),
        ).fetchone()
        db.run_sql(
            _HISTORY,
            (
                item_id,
                p.class_id,
                None,
                p.stage_id,
                p.user_id,
                at,
                p.method,
                p.is_system,
                p.action,
                p.params,
                p.account_id,
            ),
        )
        return item_id, position
