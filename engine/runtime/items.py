"""Item operations of pipelines: custom values, checklists, assignment, ordering, watchers.

Decisions:
- Values are validated and normalised by `flowkernel.fields` and written with the seed's upsert
  (insert, or update `value` and `updated_at`). Writing a value changes nothing else: not the
  item's `updated_at` or `version`, not the class version.
- Clearing a value deletes its `flow_item_values` row. The seed's requirement check treats a
  missing row and a NULL value alike, and the read query shows both as "no value".
- An inactive column keeps its stored values but is refused for writes (`ColumnInactive`) and
  left out of `values()`, as in the seed's read query.
- A soft-deleted item refuses value, checklist, assignment, position and watch writes
  (`ItemDeleted`); reads and `unwatch` still work.
- Checklist state uses the seed's shape, `{key: {"completed", "completed_by", "completed_at"}}`.
  Completing a completed entry (or reopening an open one) writes nothing and keeps the first
  completion. Checklist and assignment writes bump the item's `version` and `updated_at`, since
  the move guards read the checklist.
- `reorder` renumbers the stage's live items densely 0..n-1; deleted items of the stage follow
  them, so every item of a stage keeps a distinct position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pluggy
from sqlalchemy import Connection, and_, bindparam, delete, insert, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.access import EXECUTE, VISIBLE, check_class
from flowkernel.actors import Actor
from flowkernel.compile.compiled import CompiledClass, CompiledColumn, CompiledState
from flowkernel.definition.pipelines.specs import ChecklistItem
from flowkernel.definition.rules import class_rules
from flowkernel.errors import (
    AccessDenied,
    ColumnInactive,
    ConcurrentUpdate,
    InvalidArgument,
    InvalidDefinition,
    InvalidValue,
    InvalidValues,
    ItemDeleted,
    ItemNotFound,
    UnknownDefinition,
)
from flowkernel.fields import FieldSpec, normalize, parse
from flowkernel.hookspecs import InboxStore
from flowkernel.runtime.runtime import Runtime
from flowkernel.snapshots import ExecutionResult, InboxEntry, ItemSnapshot
from flowkernel.store.tables import columns, item_values, items, watchers
from flowkernel.store.tables import inbox as inbox_table
from flowkernel.validation import check_bool, check_id, check_int, check_item_id, check_key

MAX_INBOX = 10_000
"""The most inbox entries one call hands out."""

_ITEM = select(
    items.c.id,
    items.c.flow_pipeline_id,
    items.c.flow_stage_id,
    items.c.object_type,
    items.c.object_id,
    items.c.iam_account_id,
    items.c.assigned_iam_user_id,
    items.c.position,
    items.c.checklist_state,
    items.c.version,
    items.c.deleted_at,
    items.c.last_stage_changed_at,
)


@dataclass(frozen=True, slots=True)
class _Loaded:
    """An item row as loaded for one operation."""

    id: int
    flow_pipeline_id: int
    flow_stage_id: int
    object_type: str
    object_id: int
    iam_account_id: int | None
    assigned_iam_user_id: int | None
    position: int
    checklist_state: Any
    version: int
    deleted_at: datetime | None
    last_stage_changed_at: datetime | None


@dataclass(frozen=True, slots=True)
class ItemValue:
    """One active custom column of an item's pipeline with the item's value (None: no value).

    `parsed` is the value as `flowkernel.fields.parse` reads it; `valid` is False when stored text
    no longer fits the column (written by other means, or the column changed), and then
    `parsed` is None.
    """

    column_id: int
    name: str
    label: str
    field_type: str
    position: int
    is_required: bool
    value: str | None
    parsed: Any
    valid: bool
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class ChecklistEntry:
    """One checklist entry of the item's current stage and whether the item completed it."""

    key: str
    label: str
    required: bool
    completed: bool
    completed_by: int | None
    completed_at: datetime | None


class ItemOps:
    """Item operations of pipelines: custom values, checklists, assignment, ordering, watchers.

    Every call checks that the actor reaches the item's account (else `ItemNotFound`), and
    every write is one transaction.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        runtime: Runtime,
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        self._sessions = sessions
        self._runtime = runtime
        self._pm = plugin_manager

    # --- custom values -------------------------------------------------------------------

    def set_value(self, item_id: int, column: str, value: object, actor: Actor) -> ItemValue:
        """Validate, normalise and store one custom column value of an item."""
        check_key("column", column, error=InvalidArgument)
        return self.set_values(item_id, {column: value}, actor)[0]

    def set_values(
        self, item_id: int, values: Mapping[str, object], actor: Actor
    ) -> list[ItemValue]:
        """Store several values at once: all are validated before any is written, and every
        refused value is reported (`InvalidValues` when there are several)."""
        if not isinstance(values, Mapping):
            raise InvalidArgument(
                f"values must be a mapping of column name to value, not {values!r}",
                values=values,
            )
        with self._sessions.begin() as session:
            row = self._load(session, item_id, actor, lock=True, permission=EXECUTE)
            _refuse_deleted(row)
            compiled = self._runtime.executor.current(session, row.flow_pipeline_id)
            prepared: list[tuple[CompiledColumn, str]] = []
            refused: list[InvalidValue] = []
            for name, value in values.items():
                column = _writable(compiled, name)
                try:
                    prepared.append((column, normalize(column, value)))
                except InvalidValue as exc:
                    refused.append(exc)
            if refused:
                raise refused[0] if len(refused) == 1 else InvalidValues(refused)
            if not prepared:
                return []
            now = datetime.now(UTC)
            _upsert(session.connection(), row.id, [(c.id, text) for c, text in prepared], now)
            return [_value(c, text, now) for c, text in prepared]

    def clear_value(self, item_id: int, column: str, actor: Actor) -> bool:
        """Remove an item's value of a column (its row is deleted); whether there was one.

        Refused while the item's stage requires the column: it was needed to get there.
        """
        with self._sessions.begin() as session:
            row = self._load(session, item_id, actor, lock=True, permission=EXECUTE)
            _refuse_deleted(row)
            compiled = self._runtime.executor.current(session, row.flow_pipeline_id)
            target = _writable(compiled, column)
            stage = compiled.states_by_id.get(row.flow_stage_id)
            if stage is not None and any(r.column_id == target.id for r in stage.required):
                raise InvalidValue(
                    target.name, None, f"a value: stage {stage.code!r} requires {target.name!r}"
                )
            removed = session.connection().execute(
                delete(item_values).where(
                    item_values.c.flow_item_id == row.id,
                    item_values.c.flow_column_id == target.id,
                )
            )
            return removed.rowcount > 0

    def values(self, item_id: int, actor: Actor) -> list[ItemValue]:
        """The seed's read query: active columns of the item's pipeline by position, with values."""
        with self._sessions.begin() as session:
            row = self._load(session, item_id, actor, lock=False, permission=VISIBLE)
            rows = (
                session.connection()
                .execute(
                    select(
                        columns.c.id,
                        columns.c.name,
                        columns.c.label,
                        columns.c.field_type,
                        columns.c.options,
                        columns.c.position,
                        columns.c.is_required,
                        item_values.c.value,
                        item_values.c.updated_at,
                    )
                    .select_from(
                        columns.outerjoin(
                            item_values,
                            and_(
                                item_values.c.flow_column_id == columns.c.id,
                                item_values.c.flow_item_id == row.id,
                            ),
                        )
                    )
                    .where(
                        columns.c.flow_pipeline_id == row.flow_pipeline_id,
                        columns.c.is_active == true(),
                        columns.c.deleted_at.is_(None),
                    )
                    .order_by(columns.c.position, columns.c.id)
                )
                .all()
            )
        result = []
        for r in rows:
            spec = FieldSpec(r.name, r.field_type, _options(r.options))
            parsed, valid = _read(spec, r.value)
            result.append(
                ItemValue(
                    column_id=r.id,
                    name=r.name,
                    label=r.label,
                    field_type=r.field_type,
                    position=r.position,
                    is_required=r.is_required,
                    value=r.value,
                    parsed=parsed,
                    valid=valid,
                    updated_at=r.updated_at if r.value is not None else None,
                )
            )
        return result

    # --- checklists ----------------------------------------------------------------------

    def complete_checklist_item(self, item_id: int, key: str, actor: Actor) -> ChecklistEntry:
        """Mark a checklist entry of the item's current stage completed by the actor."""
        return self._mark(item_id, key, actor, completed=True)

    def reopen_checklist_item(self, item_id: int, key: str, actor: Actor) -> ChecklistEntry:
        """Mark a checklist entry of the item's current stage open again."""
        return self._mark(item_id, key, actor, completed=False)

    def checklist(self, item_id: int, actor: Actor) -> list[ChecklistEntry]:
        """The current stage's checklist, in definition order, with the item's completion."""
        with self._sessions.begin() as session:
            row = self._load(session, item_id, actor, lock=False, permission=VISIBLE)
            compiled = self._runtime.executor.current(session, row.flow_pipeline_id)
        state = compiled.states_by_id.get(row.flow_stage_id)
        marks = row.checklist_state if isinstance(row.checklist_state, dict) else {}
        entries = state.checklist if state is not None else ()
        return [_entry(entry, marks.get(entry.key)) for entry in entries]

    def _mark(self, item_id: int, key: str, actor: Actor, *, completed: bool) -> ChecklistEntry:
        with self._sessions.begin() as session:
            row = self._load(session, item_id, actor, lock=True, permission=EXECUTE)
            _refuse_deleted(row)
            compiled = self._runtime.executor.current(session, row.flow_pipeline_id)
            state = compiled.states_by_id.get(row.flow_stage_id)
            entries = state.checklist if state is not None else ()
            entry = next((e for e in entries if e.key == key), None)
            if entry is None:
                where = f"stage {state.code!r}" if state is not None else "the item's stage"
                raise UnknownDefinition("checklist item", key, where, [e.key for e in entries])
            marks = dict(row.checklist_state) if isinstance(row.checklist_state, dict) else {}
            if _entry(entry, marks.get(key)).completed == completed:
                return _entry(entry, marks.get(key))
            now = datetime.now(UTC)
            marks[key] = {
                "completed": completed,
                "completed_by": actor.user_id if completed else None,
                "completed_at": now.strftime("%Y-%m-%dT%H:%M:%SZ") if completed else None,
            }
            _update_item(session.connection(), row, now, checklist_state=marks)
            return _entry(entry, marks[key])

    # --- assignment and board order ------------------------------------------------------

    def assign(self, item_id: int, user_id: int | None, actor: Actor) -> ItemSnapshot:
        """Assign the item to a user, or unassign it with None."""
        if user_id is not None:
            _check_user(user_id)
        with self._sessions.begin() as session:
            row = self._load(session, item_id, actor, lock=True, permission=EXECUTE)
            _refuse_deleted(row)
            compiled = self._runtime.executor.current(session, row.flow_pipeline_id)
            if row.assigned_iam_user_id != user_id:
                now = datetime.now(UTC)
                _update_item(session.connection(), row, now, assigned_iam_user_id=user_id)
            return _snapshot(compiled, row, assigned_user_id=user_id)

    def reorder(self, item_id: int, position: int, actor: Actor) -> ItemSnapshot:
        """Put the item at `position` (0-based) among its stage's live items; others shift."""
        check_int("position", position, error=InvalidArgument)
        with self._sessions.begin() as session:
            first = self._load(session, item_id, actor, lock=False, permission=EXECUTE)
            _refuse_deleted(first)
            conn = session.connection()
            # Lock the whole stage in id order, so concurrent reorders queue instead of deadlocking.
            stmt = (
                select(items.c.id, items.c.position, items.c.deleted_at)
                .where(items.c.flow_stage_id == first.flow_stage_id)
                .order_by(items.c.id)
            )
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            stage_rows = conn.execute(stmt).all()
            row = self._load(session, item_id, actor, lock=False, permission=EXECUTE)
            # not among the stage's locked rows: moved away (and maybe back) in between
            if row.id not in {r.id for r in stage_rows}:
                raise ConcurrentUpdate(row.id)
            _refuse_deleted(row)
            ordered = sorted(stage_rows, key=lambda r: (r.position, r.id))
            live = [r.id for r in ordered if r.deleted_at is None]
            if not 0 <= position < len(live):
                raise InvalidArgument(
                    f"position {position} is outside its stage's board: use 0 to {len(live) - 1}",
                    position=position,
                    size=len(live),
                )
            live.remove(row.id)
            live.insert(position, row.id)
            order = live + [r.id for r in ordered if r.deleted_at is not None]
            current = {r.id: r.position for r in stage_rows}
            changes = [
                {"item": rid, "pos": index}
                for index, rid in enumerate(order)
                if current[rid] != index
            ]
            if changes:
                conn.execute(
                    update(items)
                    .where(items.c.id == bindparam("item"))
                    .values(position=bindparam("pos")),
                    changes,
                )
            compiled = self._runtime.executor.current(session, row.flow_pipeline_id)
            return _snapshot(compiled, row, position=position)

    # --- lifecycle -----------------------------------------------------------------------

    def delete(self, item_id: int, actor: Actor) -> ExecutionResult:
        """Soft-delete the item (it keeps its stage, leaves the board): the delete method."""
        return self._runtime.execute(item_id, "delete", actor, by_action=True)

    def restore(self, item_id: int, actor: Actor) -> ExecutionResult:
        """Clear the item's deleted mark: the restore method."""
        return self._runtime.execute(item_id, "restore", actor, by_action=True)

    def drop(self, item_id: int, actor: Actor) -> ExecutionResult:
        """Remove a deleted item for good (its history stays): the drop method."""
        return self._runtime.execute(item_id, "drop", actor, by_action=True)

    # --- watchers ------------------------------------------------------------------------

    def watch(self, item_id: int, user_id: int, actor: Actor) -> bool:
        """Make a user watch the item; whether they were not watching it yet."""
        _check_user(user_id)
        with self._sessions.begin() as session:
            row = self._load(session, item_id, actor, lock=False, permission=EXECUTE)
            _refuse_deleted(row)
            conn = session.connection()
            values = {"flow_item_id": row.id, "iam_user_id": user_id}
            if conn.dialect.name in ("postgresql", "sqlite"):
                dialect_insert = (
                    postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
                )
                stmt = (
                    dialect_insert(watchers)
                    .values(**values)
                    .on_conflict_do_nothing()
                    .returning(watchers.c.id)
                )
                return conn.execute(stmt).first() is not None
            if conn.execute(
                select(watchers.c.id).where(
                    watchers.c.flow_item_id == row.id, watchers.c.iam_user_id == user_id
                )
            ).first():
                return False
            conn.execute(insert(watchers).values(**values))
            return True

    def unwatch(self, item_id: int, user_id: int, actor: Actor) -> bool:
        """Stop a user watching the item; whether they were watching it."""
        _check_user(user_id)
        with self._sessions.begin() as session:
            row = self._load(session, item_id, actor, lock=False, permission=EXECUTE)
            removed = session.connection().execute(
                delete(watchers).where(
                    watchers.c.flow_item_id == row.id, watchers.c.iam_user_id == user_id
                )
            )
            return removed.rowcount > 0

    def watchers(self, item_id: int, actor: Actor) -> list[int]:
        """The users watching the item, by id."""
        with self._sessions.begin() as session:
            row = self._load(session, item_id, actor, lock=False, permission=VISIBLE)
            return list(
                session.connection()
                .execute(
                    select(watchers.c.iam_user_id)
                    .where(watchers.c.flow_item_id == row.id)
                    .order_by(watchers.c.iam_user_id)
                )
                .scalars()
            )

    # --- the watchers' inbox -------------------------------------------------------------

    def inbox(
        self, user_id: int, actor: Actor, *, unread_only: bool = False, limit: int = 100
    ) -> list[InboxEntry]:
        """A user's watcher notifications, newest first; only their own unless system actor."""
        _check_user(user_id)
        check_bool("unread_only", unread_only, error=InvalidArgument)
        check_int("limit", limit, minimum=1, maximum=MAX_INBOX, error=InvalidArgument)
        plugin = self._inbox_for(user_id, actor)
        entries = plugin.entries(user_id, unread_only=unread_only, limit=limit)
        allowed = self._reachable_entries(actor, [e.id for e in entries])
        return [e for e in entries if allowed is None or e.id in allowed]

    def mark_read(self, user_id: int, actor: Actor, entry_ids: Sequence[int] | None = None) -> int:
        """Mark a user's notifications read (all when `entry_ids` is None); how many changed."""
        _check_user(user_id)
        if entry_ids is not None:
            if isinstance(entry_ids, str | bytes) or not isinstance(entry_ids, Sequence):
                raise InvalidArgument(
                    f"entry_ids must be a list of inbox entry ids or None, not {entry_ids!r}",
                    entry_ids=entry_ids,
                )
            for entry_id in entry_ids:
                check_id("entry_ids", entry_id)
        plugin = self._inbox_for(user_id, actor)
        ids = None if entry_ids is None else list(entry_ids)
        if actor.is_system and actor.account_id is not None:
            if ids is None:
                ids = [e.id for e in plugin.entries(user_id, unread_only=True, limit=1_000_000)]
            reachable = self._reachable_entries(actor, ids)
            ids = [i for i in ids if reachable is None or i in reachable]
        return plugin.mark_read(user_id, ids)

    def _inbox_for(self, user_id: int, actor: Actor) -> InboxStore:
        if not actor.is_system and actor.user_id != user_id:
            raise AccessDenied(
                f"user {actor.user_id} may read only their own inbox, not user {user_id}'s",
                user_id=user_id,
            )
        plugin = self._pm.get_plugin("inbox") if self._pm is not None else None
        if not isinstance(plugin, InboxStore):
            known = [name for name, _ in self._pm.list_name_plugin()] if self._pm else []
            raise UnknownDefinition("plugin", "inbox", "the plugin manager", known)
        return plugin

    def _reachable_entries(self, actor: Actor, ids: list[int]) -> set[int] | None:
        """Of `ids`, the entries about accounts the actor reaches (None: every entry)."""
        if not (actor.is_system and actor.account_id is not None):
            return None
        if not ids:
            return set()
        with self._sessions.begin() as session:
            return set(
                session.connection()
                .execute(
                    select(inbox_table.c.id).where(
                        inbox_table.c.id.in_(ids),
                        or_(
                            inbox_table.c.iam_account_id == actor.account_id,
                            inbox_table.c.iam_account_id.is_(None),
                        ),
                    )
                )
                .scalars()
            )

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    def _load(
        session: Session, item_id: int, actor: Actor, *, lock: bool, permission: str
    ) -> _Loaded:
        """The item, if the actor reaches its account (else `ItemNotFound`) and no class-wide
        access rule denies the actor `permission` (else `AccessDenied`)."""
        check_item_id(item_id)
        stmt = _ITEM.where(items.c.id == item_id)
        if lock and session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        conn = session.connection()
        row = conn.execute(stmt).first()
        if row is None or not actor.reaches(row.iam_account_id):
            raise ItemNotFound(item_id)
        if not actor.is_system:
            rules = class_rules(conn, row.flow_pipeline_id)
            check_class(rules, actor, permission, f"pipeline {row.flow_pipeline_id}")
        return _Loaded(**row._mapping)


def _refuse_deleted(row: _Loaded) -> None:
    if row.deleted_at is not None:
        raise ItemDeleted(row.id)


def _writable(compiled: CompiledClass, name: str) -> CompiledColumn:
    column = compiled.columns.get(name) if isinstance(name, str) else None
    if column is None:
        known = [c.name for c in compiled.columns.values() if c.is_active]
        raise UnknownDefinition("column", name, f"pipeline {compiled.name!r}", known)
    if not column.is_active:
        raise ColumnInactive(column.name, compiled.name)
    return column


def _upsert(conn: Connection, item_id: int, rows: list[tuple[int, str]], now: datetime) -> None:
    """The seed's INSERT ... ON CONFLICT (item, column) DO UPDATE SET value, updated_at."""
    params = [
        {
            "flow_item_id": item_id,
            "flow_column_id": column_id,
            "value": text,
            "created_at": now,
            "updated_at": now,
        }
        for column_id, text in rows
    ]
    if conn.dialect.name in ("postgresql", "sqlite"):
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = dialect_insert(item_values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[item_values.c.flow_item_id, item_values.c.flow_column_id],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        conn.execute(stmt, params)
        return
    for param in params:  # other databases: update, else insert (the item row is locked)
        changed = conn.execute(
            update(item_values)
            .where(
                item_values.c.flow_item_id == item_id,
                item_values.c.flow_column_id == param["flow_column_id"],
            )
            .values(value=param["value"], updated_at=now)
        )
        if changed.rowcount == 0:
            conn.execute(insert(item_values).values(**param))


def _update_item(conn: Connection, row: _Loaded, now: datetime, **values: Any) -> None:
    done = conn.execute(
        update(items)
        .where(items.c.id == row.id, items.c.version == row.version)
        .values(version=row.version + 1, updated_at=now, **values)
    )
    if done.rowcount != 1:
        raise ConcurrentUpdate(row.id)


def _value(column: CompiledColumn, text: str, now: datetime) -> ItemValue:
    return ItemValue(
        column_id=column.id,
        name=column.name,
        label=column.label,
        field_type=column.field_type,
        position=column.position,
        is_required=column.is_required,
        value=text,
        parsed=parse(column, text),
        valid=True,
        updated_at=now,
    )


def _read(spec: FieldSpec, text: str | None) -> tuple[Any, bool]:
    if text is None:
        return None, True
    try:
        return parse(spec, text), True
    except (InvalidValue, UnknownDefinition):
        return None, False


def _options(raw: object) -> tuple[str, ...]:
    return tuple(str(o) for o in raw) if isinstance(raw, list) else ()


def _entry(entry: ChecklistItem, mark: object) -> ChecklistEntry:
    mark = mark if isinstance(mark, dict) else {}
    completed = bool(mark.get("completed"))
    by = mark.get("completed_by")
    return ChecklistEntry(
        key=entry.key,
        label=entry.label,
        required=entry.required,
        completed=completed,
        completed_by=by if completed and isinstance(by, int) else None,
        completed_at=_timestamp(mark.get("completed_at")) if completed else None,
    )


def _timestamp(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _check_user(user_id: object) -> None:
    check_id("user_id", user_id)


def _state(compiled: CompiledClass, row: _Loaded) -> CompiledState:
    state = compiled.states_by_id.get(row.flow_stage_id)
    if state is None:
        raise InvalidDefinition(
            f"item {row.id} sits in stage {row.flow_stage_id}, which class {compiled.code!r} "
            "no longer has; move it with the system actor or restore the stage",
            item_id=row.id,
        )
    return state


def _snapshot(compiled: CompiledClass, row: _Loaded, **changes: Any) -> ItemSnapshot:
    state = _state(compiled, row)
    fields: dict[str, Any] = {
        "id": row.id,
        "class_id": compiled.id,
        "class_code": compiled.code,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "account_id": row.iam_account_id,
        "state": state.code,
        "state_id": state.id,
        "state_type": state.state_type,
        "assigned_user_id": row.assigned_iam_user_id,
        "position": row.position,
        "deleted": row.deleted_at is not None,
        "last_state_changed_at": row.last_stage_changed_at,
    }
    fields.update(changes)
    return ItemSnapshot(**fields)
