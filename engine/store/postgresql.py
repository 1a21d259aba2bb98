"""The PostgreSQL writer: a batch's writes as one statement over arrays, one round trip each.

Loading locks the items' rows (`FOR UPDATE`, in id order, so two batches over the same items
queue instead of deadlocking). Numbers and flags travel as array literals, which PostgreSQL
parses faster than psycopg dumps lists of ints; text travels as binary text arrays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Table, extract
from sqlalchemy.dialects.postgresql import insert as postgresql_insert

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

_LOAD: Final = (
    f"SELECT {ITEM_COLUMNS} FROM {ITEM_FROM} WHERE i.id = ANY(%s::bigint[]) ORDER BY i.id"
)
_LOAD_ONE: Final = f"SELECT {ITEM_COLUMNS} FROM {ITEM_FROM} WHERE i.id = %s"
_LOADS: Final = {
    Lock.NONE: (_LOAD, _LOAD_ONE),
    Lock.WAIT: (f"{_LOAD} FOR UPDATE OF i", f"{_LOAD_ONE} FOR UPDATE OF i"),
    Lock.SKIP: (f"{_LOAD} FOR UPDATE OF i SKIP LOCKED", f"{_LOAD_ONE} FOR UPDATE OF i SKIP LOCKED"),
}
"""Loading items, by lock: many (an array of ids, in id order), and one (planned faster)."""
_FILLED: Final = (
    "SELECT flow_item_id, flow_column_id FROM flow_item_values "
    "WHERE flow_item_id = ANY(%s::bigint[]) AND value IS NOT NULL"
)
_OBJECT: Final = (
    "SELECT id FROM flow_items WHERE flow_pipeline_id = %s AND object_type = %s AND object_id = %s"
)
_WATCHERS: Final = (
    "SELECT flow_item_id, iam_user_id FROM flow_item_watchers "
    "WHERE flow_item_id = ANY(%s::bigint[]) ORDER BY flow_item_id, iam_user_id"
)
_MARK: Final = """
UPDATE flow_items AS i
   SET deleted_at = CASE WHEN u.deleted THEN %(now)s END, version = i.version + 1,
       updated_at = %(now)s
  FROM unnest(%(items)s::bigint[], %(versions)s::integer[], %(deleted)s::boolean[])
       AS u(item, version, deleted)
 WHERE i.id = u.item AND i.version = u.version
"""
_DROP: Final = "DELETE FROM flow_items WHERE id = ANY(%s::bigint[])"
_CLOSE: Final = (
    "UPDATE flow_stage_history SET valid_to = %s "
    "WHERE flow_item_id = ANY(%s::bigint[]) AND valid_to IS NULL"
)

# Every write of a transaction's executions but soft deletes and drops, in one statement: the
# moves, into the end of each target stage in request order (after the stage's last position
# when the statement starts); a history row per state change; a call-log row, or the item's
# last call replaced, per call that changed none, as its method logs them. Methods and actions
# are indexes into the `names` array. The count of moved rows checks the versions. A last call
# already kept is replaced by a plain UPDATE (the new row version stays on its page, with room
# kept there by migration 0010, and the key's index is not touched), a first one inserted; ON
# CONFLICT stays for a first call another transaction inserted meanwhile. A batch runs each item
# once, so no key comes twice.
_WRITE: Final = """
WITH m AS (
    SELECT *
      FROM unnest(%(items)s::bigint[], %(versions)s::integer[], %(targets)s::bigint[],
                  %(keep)s::boolean[], %(deleted)s::boolean[])
           WITH ORDINALITY AS m(item, version, target, keep, deleted, n)
), ends AS (
    SELECT t.stage,
           (SELECT max(position) FROM flow_items WHERE flow_stage_id = t.stage) AS top
      FROM (SELECT DISTINCT target FROM m) AS t(stage)
), placed AS (
    SELECT m.*,
           coalesce(ends.top, -1) + row_number() OVER (PARTITION BY m.target ORDER BY m.n) AS pos
      FROM m JOIN ends ON ends.stage = m.target
), moved AS (
    UPDATE flow_items AS i
       SET flow_stage_id = p.target, last_stage_changed_at = %(now)s, checklist_state = NULL,
           position = p.pos, version = i.version + 1, updated_at = %(now)s,
           deleted_at = CASE WHEN p.keep THEN i.deleted_at WHEN p.deleted THEN %(now)s END
      FROM placed AS p
     WHERE i.id = p.item AND i.version = p.version
    RETURNING i.id
), u AS (
    SELECT *
      FROM unnest(%(logged)s::bigint[], %(classes)s::bigint[], %(accounts)s::bigint[],
                  %(methods)s::integer[], %(actions)s::integer[], %(sources)s::bigint[],
                  %(changed)s::bigint[], %(logs)s::smallint[], %(params)b::text[])
           WITH ORDINALITY AS u(item, class, account, method, action, source, target, log,
                                params, n)
), history AS (
    INSERT INTO flow_stage_history
           (flow_item_id, flow_pipeline_id, from_stage_id, to_stage_id, moved_by_iam_user_id,
            moved_at, method_code, is_system, action_code, params, iam_account_id)
    SELECT u.item, u.class, u.source, u.target, %(user_id)s, %(now)s,
           (%(names)b::text[])[u.method], %(is_system)s, (%(names)b::text[])[u.action],
           CAST(u.params AS jsonb), u.account
      FROM u WHERE u.target IS NOT NULL ORDER BY u.n
), calls AS (
    INSERT INTO fk_method_calls
           (flow_item_id, flow_pipeline_id, iam_account_id, method_code, action_code,
            from_stage_id, to_stage_id, actor_iam_user_id, is_system, params, called_at)
    SELECT u.item, u.class, u.account, (%(names)b::text[])[u.method],
           (%(names)b::text[])[u.action], u.source, NULL, %(user_id)s, %(is_system)s,
           CAST(u.params AS jsonb), %(now)s
      FROM u WHERE u.target IS NULL AND u.log = 0 ORDER BY u.n
), kept AS (
    SELECT u.item, (%(names)b::text[])[u.method] AS method, u.class,
           (%(names)b::text[])[u.action] AS action, u.source, u.account,
           CAST(u.params AS jsonb) AS params
      FROM u WHERE u.target IS NULL AND u.log = 1
), replaced AS (
    UPDATE fk_method_last_calls AS l
       SET flow_pipeline_id = k.class, action_code = k.action, from_stage_id = k.source,
           iam_account_id = k.account, actor_iam_user_id = %(user_id)s,
           is_system = %(is_system)s, params = k.params, called_at = %(now)s,
           call_count = l.call_count + 1
      FROM kept AS k
     WHERE l.flow_item_id = k.item AND l.method_code = k.method
    RETURNING l.flow_item_id
), last AS (
    INSERT INTO fk_method_last_calls AS l
           (flow_item_id, method_code, flow_pipeline_id, action_code, from_stage_id,
            iam_account_id, actor_iam_user_id, is_system, params, called_at)
    SELECT k.item, k.method, k.class, k.action, k.source, k.account, %(user_id)s,
           %(is_system)s, k.params, %(now)s
      FROM kept AS k
     WHERE k.item NOT IN (SELECT flow_item_id FROM replaced)
     ORDER BY k.item
        ON CONFLICT (flow_item_id, method_code) DO UPDATE
       SET flow_pipeline_id = excluded.flow_pipeline_id, action_code = excluded.action_code,
           from_stage_id = excluded.from_stage_id, iam_account_id = excluded.iam_account_id,
           actor_iam_user_id = excluded.actor_iam_user_id, is_system = excluded.is_system,
           params = excluded.params, called_at = excluded.called_at,
           call_count = l.call_count + 1
)
SELECT count(*) FROM moved
"""

_DUE: Final = """
SELECT flow_item_id, flow_pipeline_id, flow_stage_id, due_at FROM flow_sla_due
 WHERE due_at <= %(moment)s AND (%(pipeline)s::bigint IS NULL OR flow_pipeline_id = %(pipeline)s)
   AND flow_item_id <> ALL(%(excluded)s::bigint[])
 ORDER BY due_at, flow_item_id
 LIMIT %(take)s
   FOR UPDATE SKIP LOCKED
"""
_DUE_PLAN: Final = "EXPLAIN " + _DUE
_CLAIM: Final = """
WITH gone AS (DELETE FROM flow_sla_due WHERE flow_item_id = ANY(%(ids)s::bigint[]))
INSERT INTO flow_sla_breaches AS b (flow_item_id, breached_at)
SELECT i, %(moment)s FROM unnest(%(ids)s::bigint[]) AS t(i) ORDER BY i
    ON CONFLICT (flow_item_id) DO UPDATE SET breached_at = excluded.breached_at
"""

# One execution's writes, as plain statements.
_HISTORY_COLUMNS: Final = """
INSERT INTO flow_stage_history
       (flow_item_id, flow_pipeline_id, from_stage_id, to_stage_id, moved_by_iam_user_id,
        moved_at, method_code, is_system, action_code, params, iam_account_id)"""
_MOVE_ONE: Final = f"""
WITH moved AS (
    UPDATE flow_items
       SET flow_stage_id = %(target)s, last_stage_changed_at = %(now)s, checklist_state = NULL,
           position = (SELECT coalesce(max(position) + 1, 0) FROM flow_items
                        WHERE flow_stage_id = %(target)s),
           version = version + 1, updated_at = %(now)s,
           deleted_at = CASE WHEN %(keep)s THEN deleted_at WHEN %(deleted)s THEN %(now)s END
     WHERE id = %(item)s AND version = %(version)s
    RETURNING id
)
{_HISTORY_COLUMNS}
SELECT id, %(class)s, %(source)s, %(target)s, %(user_id)s, %(now)s, %(method)s, %(is_system)s,
       %(action)s, CAST(%(params)s AS jsonb), %(account)s
  FROM moved
"""
_HISTORY_ONE: Final = f"""{_HISTORY_COLUMNS}
VALUES (%(item)s, %(class)s, %(source)s, %(target)s, %(user_id)s, %(now)s, %(method)s,
        %(is_system)s, %(action)s, CAST(%(params)s AS jsonb), %(account)s)
"""
_CALL_ONE: Final = """
INSERT INTO fk_method_calls
       (flow_item_id, flow_pipeline_id, iam_account_id, method_code, action_code, from_stage_id,
        to_stage_id, actor_iam_user_id, is_system, params, called_at)
VALUES (%(item)s, %(class)s, %(account)s, %(method)s, %(action)s, %(source)s, NULL,
        %(user_id)s, %(is_system)s, CAST(%(params)s AS jsonb), %(now)s)
"""
_LAST_CALL_ONE: Final = """
WITH replaced AS (
    UPDATE fk_method_last_calls AS l
       SET flow_pipeline_id = %(class)s, action_code = %(action)s, from_stage_id = %(source)s,
           iam_account_id = %(account)s, actor_iam_user_id = %(user_id)s,
           is_system = %(is_system)s, params = CAST(%(params)s AS jsonb), called_at = %(now)s,
           call_count = l.call_count + 1
     WHERE l.flow_item_id = %(item)s AND l.method_code = %(method)s
    RETURNING l.flow_item_id
)
INSERT INTO fk_method_last_calls AS l
       (flow_item_id, method_code, flow_pipeline_id, action_code, from_stage_id, iam_account_id,
        actor_iam_user_id, is_system, params, called_at)
SELECT %(item)s, %(method)s, %(class)s, %(action)s, %(source)s, %(account)s, %(user_id)s,
       %(is_system)s, CAST(%(params)s AS jsonb), %(now)s
 WHERE NOT EXISTS (SELECT 1 FROM replaced)
    ON CONFLICT (flow_item_id, method_code) DO UPDATE
   SET flow_pipeline_id = excluded.flow_pipeline_id, action_code = excluded.action_code,
       from_stage_id = excluded.from_stage_id, iam_account_id = excluded.iam_account_id,
       actor_iam_user_id = excluded.actor_iam_user_id, is_system = excluded.is_system,
       params = excluded.params, called_at = excluded.called_at,
       call_count = l.call_count + 1
"""
"""An execution's last call: replaced as in `_WRITE`, else inserted."""

_OUTBOX: Final = """
INSERT INTO fk_outbox
       (event_id, kind, event_name, trigger, flow_pipeline_id, flow_item_id,
        flow_automation_id, iam_account_id, recipient_iam_user_id, payload, available_at,
        created_at)
SELECT r.event_id, r.kind, r.event_name, r.trigger, r.flow_pipeline_id, r.flow_item_id,
       r.flow_automation_id, r.iam_account_id, r.recipient_iam_user_id, r.payload, %(now)s,
       %(now)s
  FROM ROWS FROM (
           jsonb_to_recordset(CAST(%(rows)s AS JSONB))
           AS (event_id text, kind text, event_name text, trigger text,
               flow_pipeline_id bigint, flow_item_id bigint, flow_automation_id bigint,
               iam_account_id bigint, recipient_iam_user_id bigint, payload jsonb)
       ) WITH ORDINALITY AS r(event_id, kind, event_name, trigger, flow_pipeline_id,
                               flow_item_id, flow_automation_id, iam_account_id,
                               recipient_iam_user_id, payload, n)
 ORDER BY r.n
RETURNING id
"""
_OUTBOX_COLUMNS: Final = (
    "event_id", "kind", "event_name", "trigger", "flow_pipeline_id", "flow_item_id",
    "flow_automation_id", "iam_account_id", "recipient_iam_user_id", "payload",
)  # fmt: skip

_PLACE: Final = """
WITH placed AS (
    INSERT INTO flow_items
           (flow_pipeline_id, flow_stage_id, object_type, object_id, object_key, iam_account_id,
            iam_user_id, assigned_iam_user_id, position, last_stage_changed_at, deleted_at,
            created_at, updated_at)
    VALUES (%(class_id)s, %(stage_id)s, %(object_type)s, %(object_id)s, %(object_key)s,
            %(account_id)s, %(user_id)s, %(assigned)s,
            (SELECT coalesce(max(position) + 1, 0) FROM flow_items
              WHERE flow_stage_id = %(stage_id)s),
            %(now)s, %(deleted_at)s, %(now)s, %(now)s)
    RETURNING id, position
), history AS (
    INSERT INTO flow_stage_history
           (flow_item_id, flow_pipeline_id, from_stage_id, to_stage_id, moved_by_iam_user_id,
            moved_at, method_code, is_system, action_code, params, iam_account_id)
    SELECT id, %(class_id)s, NULL, %(stage_id)s, %(user_id)s, %(now)s, %(method)s,
           %(is_system)s, %(action)s, CAST(%(params)s AS jsonb), %(account_id)s
      FROM placed
)
SELECT id, position FROM placed
"""

_LOGS: Final = {CallLog.ALL: 0, CallLog.LAST: 1, CallLog.NONE: 2}


def _ints(values: Sequence[int | None]) -> str:
    """An array literal: `{1,NULL,3}`."""
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def _bools(values: Sequence[bool]) -> str:
    return "{" + ",".join(["t" if v else "f" for v in values]) + "}"


class PostgresqlWriter(Writer):
    """PostgreSQL: row locks at load, arrays unnested, one statement per kind of write."""

    dialect = "postgresql"

    def seconds(self, end: Any, start: Any) -> Any:
        return extract("epoch", end - start)

    def upsert(self, table: Table) -> Any:
        return postgresql_insert(table)

    def load(self, db: Db, ids: Sequence[int], *, lock: Lock) -> dict[int, ItemRecord]:
        many, one = _LOADS[lock]
        if len(ids) == 1:
            rows = db.run_sql(one, (ids[0],)).fetchall()
        else:
            rows = db.run_sql(many, (_ints(ids),)).fetchall()
        return {row[0]: ItemRecord(row, row[11]) for row in rows}

    def filled(self, db: Db, ids: Sequence[int]) -> dict[int, set[int]]:
        found: dict[int, set[int]] = {}
        for item_id, column_id in db.run_sql(_FILLED, (_ints(ids),)):
            found.setdefault(item_id, set()).add(column_id)
        return found

    def class_version(self, db: Db, class_id: int) -> int | None:
        row = db.run_sql("SELECT version FROM flow_pipelines WHERE id = %s", (class_id,)).fetchone()
        return None if row is None else int(row[0])

    def find_object(self, db: Db, class_id: int, object_type: str, object_id: int) -> int | None:
        row = db.run_sql(_OBJECT, (class_id, object_type, object_id)).fetchone()
        return None if row is None else int(row[0])

    def watchers(self, db: Db, ids: Sequence[int]) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        for item_id, user_id in db.run_sql(_WATCHERS, (_ints(ids),)):
            found.setdefault(item_id, []).append(user_id)
        return found

    def _mark(self, db: Db, changes: Sequence[Change], now: datetime) -> None:
        cursor = db.run_sql(
            _MARK,
            {
                "items": _ints([c.item.id for c in changes]),
                "versions": _ints([c.item.version for c in changes]),
                "deleted": _bools([c.deleted for c in changes]),
                "now": now,
            },
        )
        check_count(changes, cursor.rowcount)

    def _drop(self, db: Db, ids: Sequence[int], now: datetime) -> None:
        db.run_sql(_CLOSE, (now, _ints(ids)))  # the state held until now, the engine's moment
        db.run_sql(_DROP, (_ints(ids),))

    def apply(
        self, db: Db, changes: Sequence[Change], user_id: int | None, is_system: bool, now: datetime
    ) -> None:
        """Soft deletes and drops, then moves and logs in one statement (`_WRITE`)."""
        marks = [c for c in changes if c.marks]
        if marks:
            self._mark(db, marks, now)
        drops = [c.item.id for c in changes if c.dropped]
        if drops:
            self._drop(db, drops, now)
        moves = [c for c in changes if c.moved]
        logged = [c for c in changes if c.logged]
        if not moves and not logged:
            return
        last = [c.item.id for c in changes if c.dropped and c.to_stage is not None]
        if len(logged) == 1 and moves in ([], logged):
            self._one(db, logged[0], user_id, is_system, now)
        else:
            self._many(db, moves, logged, user_id, is_system, now)
        if last:  # changed state, then dropped: that state held for no time
            db.run_sql(_CLOSE, (now, _ints(last)))

    def _many(
        self,
        db: Db,
        moves: Sequence[Change],
        logged: Sequence[Change],
        user_id: int | None,
        is_system: bool,
        now: datetime,
    ) -> None:
        """Every move and log of a transaction in one statement (`_WRITE`)."""
        names: dict[str, int] = {}

        def index(name: str) -> int:
            found = names.get(name)
            if found is None:
                found = names[name] = len(names) + 1
            return found

        cursor = db.run_sql(
            _WRITE,
            {
                "items": _ints([c.item.id for c in moves]),
                "versions": _ints([c.item.version for c in moves]),
                "targets": _ints([c.to_stage for c in moves]),
                "keep": _bools([c.deleted and c.item.deleted for c in moves]),
                "deleted": _bools([c.deleted for c in moves]),
                "logged": _ints([c.item.id for c in logged]),
                "classes": _ints([c.item.class_id for c in logged]),
                "accounts": _ints([c.item.account_id for c in logged]),
                "methods": _ints([index(c.method) for c in logged]),
                "actions": _ints([None if c.action is None else index(c.action) for c in logged]),
                "sources": _ints([c.item.stage_id for c in logged]),
                "changed": _ints([c.to_stage for c in logged]),
                "logs": _ints([_LOGS[c.log] for c in logged]),
                "params": [c.params for c in logged],
                "names": list(names),
                "user_id": user_id,
                "is_system": is_system,
                "now": now,
            },
        )
        check_count(moves, cursor.fetchone()[0])

    def _one(
        self, db: Db, change: Change, user_id: int | None, is_system: bool, now: datetime
    ) -> None:
        """One execution's writes in one plain statement: planned in a fraction of the time
        the statement over arrays takes, which a single execution would pay for nothing."""
        item = change.item
        values = {
            "item": item.id,
            "class": item.class_id,
            "account": item.account_id,
            "version": item.version,
            "method": change.method,
            "action": change.action,
            "source": item.stage_id,
            "target": change.to_stage,
            "params": change.params,
            "user_id": user_id,
            "is_system": is_system,
            "now": now,
        }
        if change.moved:
            values["keep"] = change.deleted and item.deleted
            values["deleted"] = change.deleted
            cursor = db.run_sql(_MOVE_ONE, values)
            check_count([change], cursor.rowcount)
        elif change.to_stage is not None:  # changed state, then dropped: the history row
            db.run_sql(_HISTORY_ONE, values)
        elif change.log == CallLog.ALL:
            db.run_sql(_CALL_ONE, values)
        else:
            db.run_sql(_LAST_CALL_ONE, values)

    def due(
        self,
        db: Db,
        moment: datetime,
        pipeline_id: int | None,
        excluded: Sequence[int],
        take: int,
    ) -> list[Due]:
        params = {
            "moment": moment,
            "pipeline": pipeline_id,
            "excluded": _ints(excluded),
            "take": take,
        }
        return [Due(*row) for row in db.run_sql(_DUE, params).fetchall()]

    def due_plan(self, db: Db, moment: datetime, pipeline_id: int | None) -> list[str]:
        params = {"moment": moment, "pipeline": pipeline_id, "excluded": "{}", "take": 1}
        return [str(row[0]) for row in db.run_sql(_DUE_PLAN, params)]

    def claim_due(self, db: Db, ids: Sequence[int], moment: datetime) -> None:
        if ids:
            db.run_sql(_CLAIM, {"ids": _ints(ids), "moment": moment})

    def outbox(self, db: Db, rows: Sequence[Mapping[str, Any]], now: datetime) -> list[int]:
        document = json.dumps([{k: r[k] for k in _OUTBOX_COLUMNS} for r in rows])
        cursor = db.run_sql(_OUTBOX, {"rows": document, "now": now})
        return [r[0] for r in cursor.fetchall()]

    def place(self, db: Db, placement: Placement, now: datetime) -> tuple[int, int]:
        p = placement
        row = db.run_sql(
            _PLACE,
            {
                "class_id": p.class_id,
                "stage_id": p.stage_id,
                "object_type": p.object_type,
                "object_id": p.object_id,
                "object_key": p.object_key,
                "account_id": p.account_id,
                "user_id": p.user_id,
                "assigned": p.assigned_user_id,
                "deleted_at": now if p.deleted else None,
                "now": now,
                "method": p.method,
                "is_system": p.is_system,
                "action": p.action,
                "params": p.params,
            },
        ).fetchone()
        return row[0], row[1]
