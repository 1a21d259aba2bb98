"""Batch execution: one method on many items in one transaction, with an outcome per item.

Device gateways report hundreds of stations at once (Apostol takes an array per request for
the same reason). The work is set-based where it can be:

- one SELECT loads every item, locked on PostgreSQL in id order so that two batches over
  overlapping items queue instead of deadlocking;
- items are grouped by class version, state and method, and each group is resolved and
  authorized once (hidden methods, access rules, movement rules and tenancy still apply to
  every item);
- each item's handler chain runs with its own snapshot, as in a single execution; when a
  group's guards cannot depend on the item (no required columns in the target, no required
  checklist entry in the state) the machine is fired once for the group, otherwise once per
  item with the required values of all items read up front in one query;
- state changes, history rows, call-log rows and outbox rows are then written with one
  statement each (arrays unnested on PostgreSQL, executemany on SQLite).

Handlers see no database, so a refused item has written nothing when it is refused. With
`on_error="abort"` (the default) the first refusal in request order is raised and the whole
batch rolls back; with `"skip"` the refused items are reported and the others commit.

Items moved in a batch are placed after the last item their stage held when the batch began,
in request order.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    ClauseElement,
    ColumnElement,
    String,
    any_,
    bindparam,
    case,
    cast,
    func,
    insert,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session

from flowkernel.actors import Actor
from flowkernel.compile.compiler import (
    CompiledClass,
    CompiledMethod,
    CompiledState,
    Run,
)
from flowkernel.errors import (
    ChecklistIncomplete,
    ConcurrentUpdate,
    FlowkernelError,
    InvalidArgument,
    ItemNotFound,
    RequirementMissing,
)
from flowkernel.kinds import SLA_BREACH
from flowkernel.runtime.runtime import _LOAD, Runtime, _Item, open_checklist_items, write_outbox
from flowkernel.snapshots import (
    ChangeState,
    DropItem,
    EventContext,
    ExecutionResult,
    ItemSnapshot,
    MethodInfo,
    Restore,
    SoftDelete,
)
from flowkernel.store.prepared import Db, Statements
from flowkernel.store.tables import item_values, items, method_calls, stages, watchers
from flowkernel.validation import check_item_id, check_params

ABORT: Final = "abort"
SKIP: Final = "skip"
ON_ERROR: Final = (ABORT, SKIP)
MAX_BATCH: Final = 10_000
"""The most items one call takes; split larger sets into several calls."""


@dataclass(frozen=True, slots=True)
class BatchFailure:
    """An item a batch left unchanged, with the typed error that refused it."""

    item_id: int
    error: FlowkernelError

    @property
    def code(self) -> str:
        """The error's stable code, e.g. `method_not_available`."""
        return self.error.code

    @property
    def message(self) -> str:
        """What was wrong and what to do."""
        return self.error.message


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One outcome per requested item, in request order."""

    outcomes: tuple[ExecutionResult | BatchFailure, ...]

    @property
    def results(self) -> tuple[ExecutionResult, ...]:
        """The executions that committed, in request order."""
        return tuple(o for o in self.outcomes if isinstance(o, ExecutionResult))

    @property
    def failures(self) -> tuple[BatchFailure, ...]:
        """The items that were refused and skipped, in request order."""
        return tuple(o for o in self.outcomes if isinstance(o, BatchFailure))

    @property
    def ok(self) -> bool:
        """Whether every item executed."""
        return not any(isinstance(o, BatchFailure) for o in self.outcomes)


def execute_batch(
    runtime: Runtime,
    item_ids: Sequence[int],
    method: str | Sequence[str],
    actor: Actor,
    *,
    params: Mapping[str, Any] | None = None,
    by_action: bool = False,
    on_error: str = ABORT,
) -> BatchResult:
    """Execute `method` (or one method per item) on every item in one transaction."""
    ids, methods = _check(item_ids, method, params, by_action, on_error)
    if not ids:
        return BatchResult(())
    skip = on_error == SKIP
    outcomes, outbox_ids = runtime.transact(
        lambda db, session: _Batch(runtime, db, session, actor, params, by_action, skip).run(
            ids, methods
        )
    )
    runtime.after_commit(outbox_ids, [o for o in outcomes if isinstance(o, ExecutionResult)])
    return BatchResult(tuple(outcomes))


def _check(
    item_ids: object, method: object, params: object, by_action: object, on_error: object
) -> tuple[list[int], list[str]]:
    if isinstance(item_ids, str | bytes) or not isinstance(item_ids, Sequence):
        raise InvalidArgument(
            f"item_ids must be a list of item ids, not {item_ids!r}", item_ids=item_ids
        )
    ids = [check_item_id(item_id) for item_id in item_ids]
    if len(ids) > MAX_BATCH:
        raise InvalidArgument(
            f"a batch takes at most {MAX_BATCH} items, not {len(ids)}; split it into several",
            count=len(ids),
        )
    if len(set(ids)) != len(ids):
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise InvalidArgument(
            f"items {twice} appear more than once; a batch runs each item once, so send "
            "later methods in a later batch",
            item_ids=twice,
        )
    if isinstance(method, str):
        methods = [method] * len(ids)
    elif isinstance(method, Sequence) and all(isinstance(m, str) for m in method):
        methods = list(method)
        if len(methods) != len(ids):
            raise InvalidArgument(
                f"{len(methods)} methods for {len(ids)} items; pass one method for all items "
                "or one per item",
                methods=len(methods),
                items=len(ids),
            )
    else:
        raise InvalidArgument(
            f"method must be a method code or a list of codes, one per item, not {method!r}",
            method=method,
        )
    check_params(params)
    if not isinstance(by_action, bool):
        raise InvalidArgument(f"by_action must be True or False, not {by_action!r}")
    if on_error not in ON_ERROR:
        raise InvalidArgument(
            f"on_error must be one of {ON_ERROR}, not {on_error!r}", on_error=on_error
        )
    return ids, methods


class _Group:
    """Items of one class version and state running one method: resolved once."""

    __slots__ = ("compiled", "dest", "error", "found", "guarded", "info", "state")

    def __init__(self) -> None:
        self.compiled: CompiledClass
        self.state: CompiledState
        self.found: CompiledMethod
        self.info: MethodInfo
        self.error: FlowkernelError | None = None
        # whether a guard may depend on the item (required columns or checklist entries)
        self.guarded = True
        # the machine's answer for the whole group, once fired, when nothing is guarded
        self.dest: CompiledState | None = None


class _Done:
    """One item that executed: what to write for it."""

    __slots__ = ("dropped", "group", "item", "kind", "new_deleted", "new_state", "snapshot")

    def __init__(
        self,
        item: _Item,
        group: _Group,
        snapshot: ItemSnapshot,
        new_state: CompiledState,
        new_deleted: bool,
        dropped: bool,
        kind: str | None,
    ) -> None:
        self.item = item
        self.group = group
        self.snapshot = snapshot
        self.new_state = new_state
        self.new_deleted = new_deleted
        self.dropped = dropped
        self.kind = kind


class _Batch:
    def __init__(
        self,
        runtime: Runtime,
        db: Db,
        session: Session | None,
        actor: Actor,
        params: Mapping[str, Any] | None,
        by_action: bool,
        skip: bool,
        item_params: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> None:
        self.runtime = runtime
        self.db = db
        self.session = session
        self.actor = actor
        self.params = params
        # per-item parameters (the SLA scan's due times) instead of `params`, by item id
        self.item_params = item_params
        self.by_action = by_action
        self.skip = skip
        self.postgresql = db.dialect.name == "postgresql"
        statements = runtime._batch_statements
        if statements is None:
            name = db.dialect.name
            statements = runtime._batch_statements = Statements(
                db.dialect, lambda key: _statement(name, key)
            )
        self.sql = statements
        self.now = datetime.now(UTC)
        self.filled: dict[int, set[int]] = {}
        self.outbox_of: dict[int, list[int]] = {}  # outbox ids written, by item

    # --- reading and executing -----------------------------------------------------------

    def run(
        self, ids: list[int], methods: list[str], loaded: Mapping[int, _Item] | None = None
    ) -> tuple[list[ExecutionResult | BatchFailure], list[int]]:
        """Execute; `loaded` holds the items when the caller has loaded (and locked) them."""
        if loaded is None:
            load = self.sql["load"]
            cursor = load.run(self.db, {"ids": self._ids(ids)})
            loaded = {row[0]: _Item(row) for row in load.rows(cursor)}
        # first every item's group (resolved once per group), then the handlers, in request
        # order: with "abort" the first refusal in request order is the one raised
        plan: list[tuple[int, _Item, _Group] | FlowkernelError] = []
        groups: dict[tuple[int, int, int, bool, str], _Group] = {}
        needs_values: list[int] = []
        for item_id, method in zip(ids, methods, strict=True):
            item = loaded.get(item_id)
            if item is None or not self.actor.reaches(item.account_id):
                plan.append(ItemNotFound(item_id))
                continue
            key = (item.class_id, item.class_version, item.stage_id, item.deleted, method)
            group = groups.get(key)
            if group is None:
                group = groups[key] = self._group(item, method)
            if group.error is not None:
                plan.append(group.error)
                continue
            target = group.found.target
            if group.guarded and target is not None and group.compiled.states[target].required:
                needs_values.append(item_id)
            plan.append((item_id, item, group))
        if needs_values:
            values = self.sql["filled"]
            cursor = values.run(self.db, {"ids": self._ids(needs_values)})
            for item_id, column_id in values.rows(cursor):
                self.filled.setdefault(item_id, set()).add(column_id)
        outcomes: list[ExecutionResult | BatchFailure] = []
        done: list[_Done] = []
        for item_id, step in zip(ids, plan, strict=True):
            if isinstance(step, FlowkernelError):
                if not self.skip:
                    raise step
                outcomes.append(BatchFailure(item_id, step))
                continue
            try:
                executed = self._execute(step[1], step[2])
            except FlowkernelError as exc:
                if not self.skip:
                    raise
                outcomes.append(BatchFailure(item_id, exc))
                continue
            done.append(executed)
            outcomes.append(self._result(executed))
        return outcomes, self._write(done)

    def _ids(self, ids: Sequence[int]) -> Any:
        return list(ids) if self.postgresql else json.dumps(list(ids))

    def _group(self, item: _Item, method: str) -> _Group:
        group = _Group()
        runtime = self.runtime
        try:
            group.compiled = compiled = runtime._compiled_for(
                self.session, item.class_id, item.class_version
            )
            group.state = state = runtime._state(compiled, item)
            group.found = found = runtime._resolve(
                compiled, state, item.deleted, method, self.actor, self.by_action
            )
        except FlowkernelError as exc:
            group.error = exc
            return group
        group.info = found.info()
        if found.target is not None:
            target = compiled.states[found.target]
            checklist = not target.is_lost and any(entry.required for entry in state.checklist)
            group.guarded = bool(target.required) or checklist
        return group

    def _execute(self, item: _Item, group: _Group) -> _Done:
        compiled, state, found = group.compiled, group.state, group.found
        snapshot = item.snapshot(compiled, state)
        context = EventContext(
            item=snapshot,
            method=group.info,
            from_state=state.code,
            to_state=found.target,
            actor=self.actor,
            params=dict(self._params(item.id) or {}),
        )
        current = state
        deleted = item.deleted
        dropped = False
        call = self.runtime._call
        for name in found.chain:
            for effect in call(name, context):
                if isinstance(effect, ChangeState):
                    if found.target is not None and current is state:
                        current = self._fire(item, group)
                elif isinstance(effect, DropItem):
                    dropped = True
                elif isinstance(effect, SoftDelete):
                    deleted = True
                elif isinstance(effect, Restore):
                    deleted = False
        changed = current is not state
        if changed:
            deleted = current.state_type == "deleted" or (deleted and state.state_type != "deleted")
        kind = None
        if changed:
            kind = "moved"
        elif found.action == SLA_BREACH:
            kind = "sla_breached"
        return _Done(item, group, snapshot, current, deleted, dropped, kind)

    def _params(self, item_id: int) -> Mapping[str, Any] | None:
        if self.item_params is not None:
            return self.item_params.get(item_id)
        return self.params

    def _fire(self, item: _Item, group: _Group) -> CompiledState:
        """The machine's transition for the item: fired once per group when nothing is guarded,
        else once per item with the item's own guards."""
        compiled, state = group.compiled, group.state
        if not group.guarded:
            if group.dest is None:
                run = Run(state.code, _no_guard)
                compiled.fire(run, group.found.code)
                group.dest = compiled.states[run.state]
            return group.dest
        filled = self.filled.get(item.id, set())

        def guard(code: str) -> None:
            target = compiled.states[code]
            missing = [(r.name, r.label) for r in target.required if r.column_id not in filled]
            if missing:
                raise RequirementMissing(target.code, missing)
            if not target.is_lost:
                open_items = open_checklist_items(state, item.checklist)
                if open_items:
                    raise ChecklistIncomplete(state.code, open_items)

        run = Run(state.code, guard)
        compiled.fire(run, group.found.code)
        return compiled.states[run.state]

    def _result(self, done: _Done) -> ExecutionResult:
        group = done.group
        return ExecutionResult(
            item_id=done.item.id,
            class_code=group.compiled.code,
            method=group.found.code,
            action=group.found.action,
            from_state=group.state.code,
            to_state=done.new_state.code,
            changed=done.new_state is not group.state,
            dropped=done.dropped,
            actor=self.actor,
            executed_at=self.now,
            handlers=group.found.chain,
        )

    # --- writing -------------------------------------------------------------------------

    def _write(self, done: list[_Done]) -> list[int]:
        if not done:
            return []
        db, now, hot = self.db, self.now, self.runtime._hot
        drops = [d.item.id for d in done if d.dropped]
        marks = [
            d
            for d in done
            if not d.dropped and d.new_state is d.group.state and d.new_deleted != d.item.deleted
        ]
        if drops:
            hot["drop"].run_many(db, ({"item_id": i} for i in drops))
        if marks:
            changed = hot["mark"].run_many(
                db,
                (
                    {
                        "item_id": d.item.id,
                        "version": d.item.version,
                        "new_version": d.item.version + 1,
                        "now": now,
                        "deleted_at": now if d.new_deleted else None,
                    }
                    for d in marks
                ),
            )
            if changed != len(marks):
                raise ConcurrentUpdate(marks[0].item.id)
        if self.postgresql:
            self._write_postgresql(done)
        else:
            self._write_sqlite(done)
        return self._outbox(done)

    def _write_postgresql(self, done: list[_Done]) -> None:
        """Moves, history and call log in one statement over unnested arrays."""
        names: dict[str, int] = {}
        actions: list[str] = []
        methods: list[int] = []
        for d in done:
            index = names.get(d.group.found.code)
            if index is None:
                index = names[d.group.found.code] = len(names) + 1
                actions.append(d.group.found.action)
            methods.append(index)
        targets = [d.new_state.id if d.new_state is not d.group.state else None for d in done]
        moving = [t is not None and not d.dropped for d, t in zip(done, targets, strict=True)]
        cursor = self.db.run_sql(
            _PG_WRITE if self.item_params is None else _PG_WRITE_ITEM_PARAMS,
            {
                "items": _ints([d.item.id for d in done]),
                "classes": _ints([d.item.class_id for d in done]),
                "accounts": _ints_or_null([d.item.account_id for d in done]),
                "versions": _ints([d.item.version for d in done]),
                "methods": _ints(methods),
                "sources": _ints([d.group.state.id for d in done]),
                "targets": _ints_or_null(targets),
                "moving": _bools(moving),
                "keep": _bools([d.new_deleted and d.item.deleted for d in done]),
                "deleted": _bools([d.new_deleted for d in done]),
                "names": list(names),
                "actions": actions,
                "now": self.now,
                "user_id": self.actor.user_id,
                "is_system": self.actor.is_system,
                "params": _json(self.params) if self.item_params is None else None,
                "item_params": (
                    None
                    if self.item_params is None
                    else [_json(self.item_params.get(d.item.id)) for d in done]
                ),
            },
        )
        row = cursor.fetchone()
        if row is None or row[0] != sum(moving):
            raise ConcurrentUpdate(next(d.item.id for d, m in zip(done, moving, strict=True) if m))

    def _write_sqlite(self, done: list[_Done]) -> None:
        """Moves, history and call log with executemany (SQLite runs them in-process)."""
        db, now, actor, hot = self.db, self.now, self.actor, self.runtime._hot
        moves = [d for d in done if not d.dropped and d.new_state is not d.group.state]
        if moves:
            targets = sorted({d.new_state.id for d in moves})
            top = self.sql["ends"]
            ends: dict[int, int] = {
                stage: (-1 if last is None else int(last))
                for stage, last in top.rows(top.run(db, {"ids": self._ids(targets)}))
            }
            rows = []
            for d in moves:
                position = ends.get(d.new_state.id, -1) + 1
                ends[d.new_state.id] = position
                rows.append(
                    {
                        "item_id": d.item.id,
                        "version": d.item.version,
                        "new_version": d.item.version + 1,
                        "stage_id": d.new_state.id,
                        "position": position,
                        "now": now,
                        "keep_deleted": d.new_deleted and d.item.deleted,
                        "deleted_at": now if d.new_deleted else None,
                    }
                )
            if self.sql["move"].run_many(db, rows) != len(moves):
                raise ConcurrentUpdate(moves[0].item.id)
        history_rows = [d for d in done if d.new_state is not d.group.state]
        if history_rows:
            hot["history"].run_many(
                db,
                (
                    {
                        "item_id": d.item.id,
                        "class_id": d.group.compiled.id,
                        "from_stage_id": d.group.state.id,
                        "to_stage_id": d.new_state.id,
                        "user_id": actor.user_id,
                        "now": now,
                        "method": d.group.found.code,
                        "is_system": actor.is_system,
                    }
                    for d in history_rows
                ),
            )
        # the parameters as JSON text, serialized once per batch (or once per item)
        shared = _json(self.params) if self.item_params is None else None
        self.sql["call_json"].run_many(
            db,
            (
                {
                    "item_id": d.item.id,
                    "class_id": d.item.class_id,
                    "account_id": d.item.account_id,
                    "method": d.group.found.code,
                    "action": d.group.found.action,
                    "from_stage_id": d.group.state.id,
                    "to_stage_id": d.new_state.id if d.new_state is not d.group.state else None,
                    "user_id": actor.user_id,
                    "is_system": actor.is_system,
                    "params": shared
                    if self.item_params is None
                    else _json(self.item_params.get(d.item.id)),
                    "now": now,
                }
                for d in done
            ),
        )

    def _outbox(self, done: list[_Done]) -> list[int]:
        """Automation events and watcher notifications of every item (one INSERT on
        PostgreSQL), in item order."""
        firing = [
            d
            for d in done
            if d.kind is not None and (d.item.watched or d.group.compiled.automations)
        ]
        if not firing:
            return []
        users: dict[int, list[int]] = {}
        watched = [d.item.id for d in firing if d.item.watched]
        if watched:
            who = self.sql["watchers"]
            for item_id, user in who.rows(who.run(self.db, {"ids": self._ids(watched)})):
                users.setdefault(item_id, []).append(user)
        writer = self.runtime._outbox
        rows: list[dict[str, Any]] = []
        owners: list[int] = []
        for d in firing:
            assert d.kind is not None
            written = writer.rows(
                d.group.compiled,
                d.snapshot,
                self.actor,
                self.now,
                d.kind,
                d.group.state,
                d.new_state,
                users.get(d.item.id, ()),
            )
            rows.extend(written)
            owners.extend([d.item.id] * len(written))
        if not rows:
            return []
        if self.postgresql:
            document = json.dumps(
                [{k: v for k, v in row.items() if k not in _NOW_COLUMNS} for row in rows]
            )
            cursor = self.db.run_sql(_PG_OUTBOX, {"rows": document, "now": self.now})
            ids = [r[0] for r in cursor.fetchall()]
        else:
            ids = write_outbox(self.db, self.runtime._hot["outbox"], rows)
        for owner, outbox_id in zip(owners, ids, strict=True):
            self.outbox_of.setdefault(owner, []).append(outbox_id)
        return ids


# Array literals for the write: PostgreSQL parses `{1,2,3}` text faster than psycopg dumps a
# list of Python ints, and a batch passes ten arrays of up to 10,000 elements.


def _ints(values: list[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _ints_or_null(values: list[int | None]) -> str:
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def _bools(values: list[bool]) -> str:
    return "{" + ",".join(["t" if v else "f" for v in values]) + "}"


def _json(params: Mapping[str, Any] | None) -> str | None:
    return json.dumps(dict(params)) if params else None


def _no_guard(target: str) -> None:
    """The guard of a group whose target has no requirement to check."""


# --- statements ------------------------------------------------------------------------------


def _in_ids(column: Any, dialect: str) -> ColumnElement[bool]:
    """`column` is one of the ids of bind parameter `ids`: an array on PostgreSQL, JSON text
    on SQLite (read with `json_each`), so one statement serves every batch size."""
    if dialect == "postgresql":
        return column == any_(bindparam("ids", type_=ARRAY(BigInteger())))  # type: ignore[no-any-return]
    listed = func.json_each(bindparam("ids", type_=String())).table_valued("value")
    return column.in_(select(listed.c.value))  # type: ignore[no-any-return]


def _statement(dialect: str, key: str) -> ClauseElement:
    """The batch's statements, by key; compiled once per dialect (`flowkernel.store.prepared`)."""
    if key == "load":
        stmt = _LOAD.where(_in_ids(items.c.id, dialect)).order_by(items.c.id)
        if dialect == "postgresql":
            stmt = stmt.with_for_update(of=items)
        return stmt
    if key == "filled":
        return select(item_values.c.flow_item_id, item_values.c.flow_column_id).where(
            _in_ids(item_values.c.flow_item_id, dialect), item_values.c.value.is_not(None)
        )
    if key == "ends":  # the last position of each stage, from the end of its index
        targets = select(stages.c.id).where(_in_ids(stages.c.id, dialect)).subquery("t")
        last = (
            select(func.max(items.c.position))
            .where(items.c.flow_stage_id == targets.c.id)
            .scalar_subquery()
        )
        return select(targets.c.id, last)
    if key == "watchers":
        return (
            select(watchers.c.flow_item_id, watchers.c.iam_user_id)
            .where(_in_ids(watchers.c.flow_item_id, dialect))
            .order_by(watchers.c.flow_item_id, watchers.c.iam_user_id)
        )
    if key == "call_json":  # the call log with its parameters given as JSON text
        return insert(method_calls).values(
            flow_item_id=bindparam("item_id"),
            flow_pipeline_id=bindparam("class_id"),
            iam_account_id=bindparam("account_id"),
            method_code=bindparam("method"),
            action_code=bindparam("action"),
            from_stage_id=bindparam("from_stage_id"),
            to_stage_id=bindparam("to_stage_id"),
            actor_iam_user_id=bindparam("user_id"),
            is_system=bindparam("is_system"),
            params=(
                cast(bindparam("params", type_=String()), JSONB)
                if dialect == "postgresql"
                else bindparam("params", type_=String())
            ),
            called_at=bindparam("now"),
        )
    if key == "move":
        return (
            update(items)
            .where(items.c.id == bindparam("item_id"), items.c.version == bindparam("version"))
            .values(
                flow_stage_id=bindparam("stage_id"),
                last_stage_changed_at=bindparam("now"),
                checklist_state=null(),
                position=bindparam("position"),
                version=bindparam("new_version"),
                updated_at=bindparam("now"),
                deleted_at=case(
                    (bindparam("keep_deleted", type_=Boolean()), items.c.deleted_at),
                    else_=bindparam("deleted_at", type_=items.c.deleted_at.type),
                ),
            )
        )
    raise KeyError(key)


# PostgreSQL: the whole batch's writes in one statement over unnested arrays (numbers and
# flags as array literals, see `_ints`; text as binary `%b` lists). Positions: after the
# stage's last item when the batch began, in request order. The count of moved rows checks
# versions.
_PG_WRITE: Final = """
WITH u AS (
    SELECT *
      FROM unnest(%(items)s::bigint[], %(classes)s::bigint[], %(accounts)s::bigint[],
                  %(versions)s::integer[], %(methods)s::integer[], %(sources)s::bigint[],
                  %(targets)s::bigint[], %(moving)s::boolean[], %(keep)s::boolean[],
                  %(deleted)s::boolean[])
           WITH ORDINALITY
           AS u(item, class, account, version, method, source, target, moving, keep, deleted, n)
), ends AS (
    SELECT t.stage,
           (SELECT max(position) FROM flow_items WHERE flow_stage_id = t.stage) AS top
      FROM (SELECT DISTINCT target FROM u WHERE moving) AS t(stage)
), placed AS (
    SELECT u.item, u.version, u.target, u.keep, u.deleted,
           coalesce(ends.top, -1) + row_number() OVER (PARTITION BY u.target ORDER BY u.n) AS pos
      FROM u LEFT JOIN ends ON ends.stage = u.target
     WHERE u.moving
), moved AS (
    UPDATE flow_items AS i
       SET flow_stage_id = p.target,
           last_stage_changed_at = %(now)s,
           checklist_state = NULL,
           position = p.pos,
           version = i.version + 1,
           updated_at = %(now)s,
           deleted_at = CASE WHEN p.keep THEN i.deleted_at WHEN p.deleted THEN %(now)s END
      FROM placed AS p
     WHERE i.id = p.item AND i.version = p.version
    RETURNING i.id
), history AS (
    INSERT INTO flow_stage_history
           (flow_item_id, flow_pipeline_id, from_stage_id, to_stage_id, moved_by_iam_user_id,
            moved_at, method_code, is_system)
    SELECT u.item, u.class, u.source, u.target, %(user_id)s, %(now)s,
           (%(names)b::text[])[u.method], %(is_system)s
      FROM u
     WHERE u.target IS NOT NULL
     ORDER BY u.n
), calls AS (
    INSERT INTO fk_method_calls
           (flow_item_id, flow_pipeline_id, iam_account_id, method_code, action_code,
            from_stage_id, to_stage_id, actor_iam_user_id, is_system, params, called_at)
    SELECT u.item, u.class, u.account, (%(names)b::text[])[u.method],
           (%(actions)b::text[])[u.method], u.source, u.target, %(user_id)s, %(is_system)s,
           CAST(%(params)s AS JSONB), %(now)s
      FROM u
     ORDER BY u.n
)
SELECT count(*) FROM moved
"""

# The same with one JSON text of parameters per item (the SLA scan's due times).
_PG_WRITE_ITEM_PARAMS: Final = (
    _PG_WRITE.replace("%(deleted)s::boolean[])", "%(deleted)s::boolean[], %(item_params)b::text[])")
    .replace("keep, deleted, n)", "keep, deleted, params, n)")
    .replace("CAST(%(params)s AS JSONB)", "CAST(u.params AS JSONB)")
)

_NOW_COLUMNS: Final = ("available_at", "created_at")
"""Outbox columns that take the batch's moment (bound once, not per row)."""

_PG_OUTBOX: Final = """
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
