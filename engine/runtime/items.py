"""Item operations of pipelines: custom values, checklists, assignment, ordering (and, from
`flowkernel.runtime.watching`, watchers and their inbox).

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

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pluggy
from sqlalchemy import Connection, and_, bindparam, delete, or_, select, true, update
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.access import EXECUTE, VISIBLE
from flowkernel.actors import Actor
from flowkernel.compile.compiled import CompiledClass, CompiledColumn, CompiledState
from flowkernel.definition.pipelines.specs import ChecklistItem
from flowkernel.definition.rules import hidden_classes
from flowkernel.errors import (
    ColumnInactive,
    ConcurrentUpdate,
    InvalidArgument,
    InvalidDefinition,
    InvalidValue,
    InvalidValues,
    UnknownDefinition,
)
from flowkernel.fields import FieldSpec, normalize, parse
from flowkernel.keys import HostKey
from flowkernel.previews import preview
from flowkernel.runtime.item_rows import (
    LoadedItem,
    check_user,
    load_item,
    refuse_deleted,
)
from flowkernel.runtime.runtime import Runtime
from flowkernel.runtime.scope import object_filter
from flowkernel.runtime.watching import Watching
from flowkernel.snapshots import ExecutionResult, ItemSnapshot
from flowkernel.store.database import reading
from flowkernel.store.tables import columns, item_values, items
from flowkernel.validation import check_int, check_key


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


class ItemOps(Watching):
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
        self._writer = runtime.executor.writer
        self._pm = plugin_manager

    # --- finding an object ----------------------------------------------------------------

    def find(self, object_type: str, key: HostKey, actor: Actor) -> list[ItemSnapshot]:
        """The items of the object the host keys by (`object_type`, `key`), one per class it
        sits in, by item id: those of accounts the actor reaches, in classes no class-wide
        access rule hides from it. `key` is an integer, a UUID or a text key."""
        stmt = (
            select(items.c.id, items.c.flow_pipeline_id)
            .where(object_filter(object_type, key))
            .order_by(items.c.id)
        )
        if not (actor.is_system and actor.account_id is None):
            stmt = stmt.where(
                or_(items.c.iam_account_id.is_(None), items.c.iam_account_id == actor.account_id)
            )
        with reading(self._sessions) as session:
            conn = session.connection()
            rows = conn.execute(stmt).all()
            hidden = hidden_classes(conn, [r.flow_pipeline_id for r in rows], actor)
        return [self._runtime.item(r.id, actor) for r in rows if r.flow_pipeline_id not in hidden]

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
                f"values must be a mapping of column name to value, not {preview(values)}",
                values=values,
            )
        with self._sessions.begin() as session:
            row = load_item(session, item_id, actor, lock=True, permission=EXECUTE)
            refuse_deleted(row)
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
            self._upsert(session.connection(), row.id, [(c.id, text) for c, text in prepared], now)
            return [_value(c, text, now) for c, text in prepared]

    def clear_value(self, item_id: int, column: str, actor: Actor) -> bool:
        """Remove an item's value of a column (its row is deleted); whether there was one.

        Refused while the item's stage requires the column: it was needed to get there.
        """
        with self._sessions.begin() as session:
            row = load_item(session, item_id, actor, lock=True, permission=EXECUTE)
            refuse_deleted(row)
            compiled = self._runtime.executor.current(session, row.flow_pipeline_id)
            target = _writable(compiled, column)
            stage = compiled.states_by_id.get(row.flow_stage_id)
            if stage is not None and any(r.column_id == target.id for r in stage.required):
                raise InvalidValue(
                    target.name,
                    None,
                    f"a value: stage {preview(stage.code)} requires {preview(target.name)}",
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
        with reading(self._sessions) as session:
            row = load_item(session, item_id, actor, lock=False, permission=VISIBLE)
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
        with reading(self._sessions) as session:
            row = load_item(session, item_id, actor, lock=False, permission=VISIBLE)
            compiled = self._runtime.executor.current(session, row.flow_pipeline_id)
        state = compiled.states_by_id.get(row.flow_stage_id)
        marks = row.checklist_state if isinstance(row.checklist_state, dict) else {}
        entries = state.checklist if state is not None else ()
        return [_entry(entry, marks.get(entry.key)) for entry in entries]

    def _mark(self, item_id: int, key: str, actor: Actor, *, completed: bool) -> ChecklistEntry:
        with self._sessions.begin() as session:
            row = load_item(session, item_id, actor, lock=True, permission=EXECUTE)
            refuse_deleted(row)
            compiled = self._runtime.executor.current(session, row.flow_pipeline_id)
            state = compiled.states_by_id.get(row.flow_stage_id)
            entries = state.checklist if state is not None else ()
            entry = next((e for e in entries if e.key == key), None)
            if entry is None:
                where = f"stage {preview(state.code)}" if state is not None else "the item's stage"
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
            check_user(user_id)
        with self._sessions.begin() as session:
            row = load_item(session, item_id, actor, lock=True, permission=EXECUTE)
            refuse_deleted(row)
            compiled = self._runtime.executor.current(session, row.flow_pipeline_id)
            if row.assigned_iam_user_id != user_id:
                now = datetime.now(UTC)
                _update_item(session.connection(), row, now, assigned_iam_user_id=user_id)
            return _snapshot(compiled, row, assigned_user_id=user_id)

    def reorder(self, item_id: int, position: int, actor: Actor) -> ItemSnapshot:
        """Put the item at `position` (0-based) among its stage's live items; others shift."""
        check_int("position", position, error=InvalidArgument)
        with self._sessions.begin() as session:
            first = load_item(session, item_id, actor, lock=False, permission=EXECUTE)
            refuse_deleted(first)
            conn = session.connection()
            # Lock the whole stage in id order, so concurrent reorders queue instead of deadlocking.
            # (SQLite leaves FOR UPDATE out: its transactions already hold the write lock.)
            stmt = (
                select(items.c.id, items.c.position, items.c.deleted_at)
                .where(items.c.flow_stage_id == first.flow_stage_id)
                .order_by(items.c.id)
                .with_for_update()
            )
            stage_rows = conn.execute(stmt).all()
            row = load_item(session, item_id, actor, lock=False, permission=EXECUTE)
            # not among the stage's locked rows: moved away (and maybe back) in between
            if row.id not in {r.id for r in stage_rows}:
                raise ConcurrentUpdate(row.id)
            refuse_deleted(row)
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

    # --- helpers -------------------------------------------------------------------------

    def _upsert(
        self, conn: Connection, item_id: int, rows: list[tuple[int, str]], now: datetime
    ) -> None:
        """The seed's INSERT ... ON CONFLICT (item, column) DO UPDATE SET value, updated_at."""
        stmt = self._writer.upsert(item_values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[item_values.c.flow_item_id, item_values.c.flow_column_id],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        conn.execute(
            stmt,
            [
                {
                    "flow_item_id": item_id,
                    "flow_column_id": column_id,
                    "value": text,
                    "created_at": now,
                    "updated_at": now,
                }
                for column_id, text in rows
            ],
        )


def _writable(compiled: CompiledClass, name: str) -> CompiledColumn:
    column = compiled.columns.get(name) if isinstance(name, str) else None
    if column is None:
        known = [c.name for c in compiled.columns.values() if c.is_active]
        raise UnknownDefinition("column", name, f"pipeline {preview(compiled.name)}", known)
    if not column.is_active:
        raise ColumnInactive(column.name, compiled.name)
    return column


def _update_item(conn: Connection, row: LoadedItem, now: datetime, **values: Any) -> None:
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


def _state(compiled: CompiledClass, row: LoadedItem) -> CompiledState:
    state = compiled.states_by_id.get(row.flow_stage_id)
    if state is None:
        raise InvalidDefinition(
            f"item {row.id} sits in stage {row.flow_stage_id}, which class "
            f"{preview(compiled.code)} "
            "no longer has; move it with the system actor or restore the stage",
            item_id=row.id,
        )
    return state


def _snapshot(compiled: CompiledClass, row: LoadedItem, **changes: Any) -> ItemSnapshot:
    state = _state(compiled, row)
    fields: dict[str, Any] = {
        "id": row.id,
        "class_id": compiled.id,
        "class_code": compiled.code,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "object_key": row.object_key,
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
