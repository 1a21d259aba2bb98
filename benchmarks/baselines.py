"""The baselines: the same work without Flowkernel.

- raw: the seed's SQL issued straight through the driver (sqlite3 or psycopg), one commit per
  operation; it knows what a client would send (the item's current stage) and nothing else.
- hand-rolled: what a team writes without an engine: SQLAlchemy ORM rows, a `transitions`
  machine built for each loaded row, an ORM history (or call-log) row, one commit per move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event, exists, select
from sqlalchemy.orm import sessionmaker
from transitions import Machine

from flowkernel.store.schema import (
    AutomationRow,
    ColumnRow,
    ItemRow,
    ItemValueRow,
    MethodCallRow,
    StageHistoryRow,
    StageRequiredColumnRow,
)

from .scratch import Scratch

# --- the seed's statements for a move (LEO flow seed, "Lifecycle" and "Automations") ---------

REQUIREMENT_CHECK = """
SELECT fc.name, fc.label
FROM flow_stage_required_columns fsr
JOIN flow_columns fc ON fc.id = fsr.flow_column_id
WHERE fsr.flow_stage_id = {target}
AND NOT EXISTS (
SELECT 1 FROM flow_item_values
WHERE flow_item_id = {item}
AND flow_column_id = fsr.flow_column_id
AND value IS NOT NULL
)"""

UPDATE_ITEM = """
UPDATE flow_items
SET flow_stage_id = {new},
last_stage_changed_at = NOW(),
checklist_state = NULL,
updated_at = NOW()
WHERE id = {item}"""

APPEND_HISTORY = """
INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, from_stage_id, to_stage_id,
moved_by_iam_user_id)
VALUES ({item}, {pipeline}, {old}, {new}, {user})"""

MATCH_AUTOMATIONS = """
SELECT event_name, payload_template
FROM flow_automations
WHERE flow_pipeline_id = {pipeline}
AND is_active = true
AND deleted_at IS NULL
AND trigger IN ('stage_entered', 'stage_exited')
AND (flow_stage_id IS NULL
OR (trigger = 'stage_entered' AND flow_stage_id = {new})
OR (trigger = 'stage_exited' AND flow_stage_id = {old}))"""

# The seed's SLA query (PostgreSQL interval arithmetic; SQLite gets the same with julianday).
SEED_SLA_PG = """
SELECT fi.id, fi.object_type, fi.object_id, fs.name AS stage, fs.sla_days,
NOW() - fi.last_stage_changed_at AS time_in_stage
FROM flow_items fi
JOIN flow_stages fs ON fs.id = fi.flow_stage_id
WHERE fs.sla_days IS NOT NULL
AND fs.is_won = false
AND fs.is_lost = false
AND fi.flow_pipeline_id = %(pipeline)s
AND fi.deleted_at IS NULL
AND (NOW() - fi.last_stage_changed_at) > (fs.sla_days || ' days')::interval"""

SEED_SLA_SQLITE = """
SELECT fi.id, fi.object_type, fi.object_id, fs.name AS stage, fs.sla_days,
julianday('now') - julianday(fi.last_stage_changed_at) AS time_in_stage
FROM flow_items fi
JOIN flow_stages fs ON fs.id = fi.flow_stage_id
WHERE fs.sla_days IS NOT NULL
AND fs.is_won = 0
AND fs.is_lost = 0
AND fi.flow_pipeline_id = :pipeline
AND fi.deleted_at IS NULL
AND julianday('now') - julianday(fi.last_stage_changed_at) > fs.sla_days"""

# The seed's board query; its first page is the first `limit` rows.
SEED_BOARD = """
SELECT fs.name AS stage, fs.position, fi.id, fi.object_type, fi.object_id,
fi.assigned_iam_user_id, fi.last_stage_changed_at
FROM flow_stages fs
LEFT JOIN flow_items fi
ON fi.flow_stage_id = fs.id AND fi.deleted_at IS NULL
WHERE fs.flow_pipeline_id = {pipeline}
AND fs.deleted_at IS NULL
ORDER BY fs.position, fi.position
LIMIT {limit}"""

# The writes of a batch of hidden-method calls, as set-based SQL written by hand: the state
# changes, a history row per change, a call-log row per call.
BATCH_WRITES_PG = """
WITH u AS (
    SELECT * FROM unnest(%(items)s::bigint[], %(methods)s::text[], %(sources)s::bigint[],
                         %(targets)s::bigint[]) AS u(item, method, source, target)
), moved AS (
    UPDATE flow_items AS i
       SET flow_stage_id = u.target, last_stage_changed_at = NOW(), checklist_state = NULL,
           version = i.version + 1, updated_at = NOW()
      FROM u
     WHERE i.id = u.item AND u.target IS NOT NULL
), history AS (
    INSERT INTO flow_stage_history
           (flow_item_id, flow_pipeline_id, from_stage_id, to_stage_id, method_code, is_system,
            action_code, params)
    SELECT u.item, %(pipeline)s, u.source, u.target, u.method, true, u.method,
           %(params)s::jsonb
      FROM u
     WHERE u.target IS NOT NULL
)
INSERT INTO fk_method_calls
       (flow_item_id, flow_pipeline_id, method_code, action_code, from_stage_id, to_stage_id,
        is_system, params, called_at)
SELECT u.item, %(pipeline)s, u.method, u.method, u.source, NULL, true, %(params)s::jsonb, NOW()
  FROM u
 WHERE u.target IS NULL"""

BATCH_MOVE_SQLITE = """
UPDATE flow_items SET flow_stage_id = ?, last_stage_changed_at = NOW(), checklist_state = NULL,
version = version + 1, updated_at = NOW() WHERE id = ?"""

BATCH_HISTORY_SQLITE = """
INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, from_stage_id, to_stage_id,
method_code, is_system, action_code, params) VALUES (?, ?, ?, ?, ?, 1, ?, ?)"""

BATCH_CALLS_SQLITE = """
INSERT INTO fk_method_calls (flow_item_id, flow_pipeline_id, method_code, action_code,
from_stage_id, to_stage_id, is_system, params, called_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, NOW())"""


def _placeholders(kind: str, sql: str, names: Sequence[str]) -> str:
    """The seed's `:name` parameters in the driver's own style."""
    style = "%({})s" if kind == "postgresql" else ":{}"
    return sql.format(**{name: style.format(name) for name in names})


class Raw:
    """The seed's SQL straight through the driver, one commit per operation."""

    def __init__(self, scratch: Scratch) -> None:
        self.kind = scratch.kind
        self.conn = scratch.driver()
        names = ("target", "item", "new", "old", "pipeline", "user", "limit")
        self.requirement = _placeholders(self.kind, REQUIREMENT_CHECK, names)
        self.update = _placeholders(self.kind, UPDATE_ITEM, names)
        self.history = _placeholders(self.kind, APPEND_HISTORY, names)
        self.automations = _placeholders(self.kind, MATCH_AUTOMATIONS, names)
        self.board_sql = _placeholders(self.kind, SEED_BOARD, names)
        arg = "%({})s" if self.kind == "postgresql" else ":{}"
        self.method_lookup = (
            "SELECT m.code FROM flow_items i JOIN fk_methods m "
            "ON m.class_id = i.flow_pipeline_id "
            "AND (m.state_id = i.flow_stage_id OR m.state_id IS NULL) "
            f"WHERE i.id = {arg.format('item')} AND m.code = {arg.format('method')}"
        )
        self.log_call = (
            "INSERT INTO fk_method_calls (flow_item_id, flow_pipeline_id, iam_account_id, "
            "method_code, action_code, from_stage_id, actor_iam_user_id, is_system, params, "
            "called_at) VALUES ("
            + ", ".join(
                arg.format(n)
                for n in ("item", "pipeline", "account", "method", "method", "stage", "user")
            )
            + (
                ", true, %(params)s::jsonb, NOW())"
                if self.kind == "postgresql"
                else ", 1, :params, NOW())"
            )
        )

    def close(self) -> None:
        self.conn.close()

    def move(self, item: int, pipeline: int, old: int, new: int, user: int) -> None:
        """The seed's move: requirement check, update, history, automation match; commit."""
        values = {"target": new, "item": item, "new": new, "old": old, "pipeline": pipeline}
        cur = self.conn.cursor()
        cur.execute(self.requirement, {"target": new, "item": item})
        if cur.fetchall():
            raise RuntimeError("requirement missing")
        cur.execute(self.update, {"new": new, "item": item})
        cur.execute(self.history, {**values, "user": user})
        cur.execute(self.automations, {"pipeline": pipeline, "new": new, "old": old})
        cur.fetchall()
        self.conn.commit()

    def heartbeat(self, item: int, pipeline: int, stage: int, account: int | None) -> None:
        """Resolve the method for the item's state, log the call; commit."""
        cur = self.conn.cursor()
        cur.execute(self.method_lookup, {"item": item, "method": "heartbeat"})
        if cur.fetchone() is None:
            raise RuntimeError("no heartbeat in this state")
        cur.execute(
            self.log_call,
            {
                "item": item,
                "pipeline": pipeline,
                "account": account,
                "method": "heartbeat",
                "stage": stage,
                "user": None,
                "params": '{"status": "ok"}',
            },
        )
        self.conn.commit()

    def batch_update(self, ids: Sequence[int]) -> None:
        """One UPDATE of all the rows, as a raw batch would; commit."""
        cur = self.conn.cursor()
        if self.kind == "postgresql":
            cur.execute("UPDATE flow_items SET updated_at = NOW() WHERE id = ANY(%s)", (list(ids),))
        else:
            marks = ", ".join("?" * len(ids))
            cur.execute(f"UPDATE flow_items SET updated_at = NOW() WHERE id IN ({marks})", ids)
        self.conn.commit()

    def batch_writes(
        self, pipeline: int, calls: Sequence[tuple[int, str, int, int | None]]
    ) -> None:
        """The writes a batch makes, without reading, locking or handlers: one state change and
        one history row per `(item, method, stage, new stage)` with a new stage, one call-log
        row per call without one; commit. One statement over arrays on PostgreSQL, executemany
        on SQLite."""
        cur = self.conn.cursor()
        if self.kind == "postgresql":
            items, methods, sources, targets = (list(column) for column in zip(*calls, strict=True))
            cur.execute(
                BATCH_WRITES_PG,
                {
                    "pipeline": pipeline,
                    "items": items,
                    "methods": methods,
                    "sources": sources,
                    "targets": targets,
                    "params": '{"status": "ok"}',
                },
            )
        else:
            moves = [(new, item) for item, _m, _old, new in calls if new is not None]
            cur.executemany(BATCH_MOVE_SQLITE, moves)
            cur.executemany(
                BATCH_HISTORY_SQLITE,
                [
                    (item, pipeline, old, new, m, m, '{"status": "ok"}')
                    for item, m, old, new in calls
                    if new is not None
                ],
            )
            cur.executemany(
                BATCH_CALLS_SQLITE,
                [
                    (item, pipeline, m, m, old, None, '{"status": "ok"}')
                    for item, m, old, new in calls
                    if new is None
                ],
            )
        self.conn.commit()

    def sla_query(self, pipeline: int) -> int:
        """The seed's SLA query; how many breached items it found."""
        cur = self.conn.cursor()
        cur.execute(
            SEED_SLA_PG if self.kind == "postgresql" else SEED_SLA_SQLITE, {"pipeline": pipeline}
        )
        found = len(cur.fetchall())
        self.conn.commit()
        return found

    def board(self, pipeline: int, limit: int) -> int:
        """The seed's board query, its first `limit` rows."""
        cur = self.conn.cursor()
        cur.execute(self.board_sql, {"pipeline": pipeline, "limit": limit})
        found = len(cur.fetchall())
        self.conn.commit()
        return found


# --- hand-rolled -----------------------------------------------------------------------------


def handrolled_engine(scratch: Scratch) -> Engine:
    """A plain engine as a team would create it, with the same SQLite settings as Flowkernel's."""
    engine = create_engine(scratch.url)
    if scratch.kind == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

    return engine


class HandRolled:
    """ORM rows, a `transitions` machine per loaded row, ORM history rows, commit per move."""

    def __init__(self, engine: Engine, stages: Mapping[str, int]) -> None:
        self.sessions = sessionmaker(engine)
        self.stages = dict(stages)  # code -> id, cached once as a team would
        self.codes = {sid: code for code, sid in stages.items()}

    def move(self, item_id: int, target: str, user: int) -> None:
        with self.sessions.begin() as session:
            item = session.get(ItemRow, item_id)
            assert item is not None
            machine = Machine(
                model=item,
                states=list(self.stages),
                transitions=[
                    {"trigger": f"move_to_{code}", "source": "*", "dest": code}
                    for code in self.stages
                ],
                initial=self.codes[item.flow_stage_id],
                auto_transitions=False,
            )
            new_id = self.stages[target]
            missing = session.execute(
                select(ColumnRow.name)
                .join(StageRequiredColumnRow, StageRequiredColumnRow.flow_column_id == ColumnRow.id)
                .where(
                    StageRequiredColumnRow.flow_stage_id == new_id,
                    ~exists().where(
                        ItemValueRow.flow_item_id == item_id,
                        ItemValueRow.flow_column_id == ColumnRow.id,
                        ItemValueRow.value.is_not(None),
                    ),
                )
            ).all()
            if missing:
                raise RuntimeError("requirement missing")
            old_id = item.flow_stage_id
            getattr(item, f"move_to_{target}")()
            now = datetime.now(UTC)
            model: Any = item  # the machine added `state` and the triggers to the row
            item.flow_stage_id = self.stages[model.state]
            item.last_stage_changed_at = now
            item.checklist_state = None
            item.updated_at = now
            session.add(
                StageHistoryRow(
                    flow_item_id=item.id,
                    flow_pipeline_id=item.flow_pipeline_id,
                    from_stage_id=old_id,
                    to_stage_id=new_id,
                    moved_by_iam_user_id=user,
                    moved_at=now,
                    method_code=f"move_to_{target}",
                )
            )
            session.execute(
                select(AutomationRow.event_name, AutomationRow.payload_template).where(
                    AutomationRow.flow_pipeline_id == item.flow_pipeline_id,
                    AutomationRow.is_active.is_(True),
                    AutomationRow.deleted_at.is_(None),
                    AutomationRow.trigger.in_(("stage_entered", "stage_exited")),
                )
            ).all()
            del machine

    def heartbeat(self, item_id: int, transitions: Sequence[tuple[str, str, str | None]]) -> None:
        """The station machine per loaded row; heartbeat is an internal transition."""
        with self.sessions.begin() as session:
            item = session.get(ItemRow, item_id)
            assert item is not None
            machine = Machine(
                model=item,
                states=list(self.stages),
                transitions=[
                    {"trigger": trigger, "source": source, "dest": dest}
                    for source, trigger, dest in transitions
                ],
                initial=self.codes[item.flow_stage_id],
                auto_transitions=False,
            )
            model: Any = item  # the machine added its triggers to the row
            model.heartbeat()
            session.add(
                MethodCallRow(
                    flow_item_id=item.id,
                    flow_pipeline_id=item.flow_pipeline_id,
                    iam_account_id=item.iam_account_id,
                    method_code="heartbeat",
                    action_code="heartbeat",
                    from_stage_id=item.flow_stage_id,
                    is_system=True,
                    params={"status": "ok"},
                    called_at=datetime.now(UTC),
                )
            )
            del machine
