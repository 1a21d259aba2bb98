"""Executing methods on items: place, execute, and the read side of an item's state.

One execution is one transaction: resolve the method for the item's state, authorize the
actor, lock the item, run the handler chain through the compiled machine (guards included),
write state, history, the method-call log and outgoing events, commit, then deliver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from engine.actors import Actor
from engine.compiler import (
    MOVE_PREFIX,
    SLA_BREACH,
    ClassCache,
    CompiledClass,
    CompiledMethod,
    CompiledState,
    Run,
)
from engine.errors import (
    AbstractClassError,
    AccessDenied,
    ChecklistIncomplete,
    ConcurrentUpdate,
    FlowkernelError,
    HandlerFailed,
    InvalidArgument,
    InvalidDefinition,
    ItemNotFound,
    MethodNotAvailable,
    MoveNotAllowed,
    ObjectAlreadyPlaced,
    RequirementMissing,
    UnknownDefinition,
    UnknownHandler,
)
from engine.hookspecs import EventHandler
from engine.outbox import OutboxWriter
from engine.snapshots import (
    ChangeState,
    DropItem,
    EventContext,
    ExecutionResult,
    HistoryEntry,
    ItemSnapshot,
    MethodInfo,
    Restore,
    SoftDelete,
)
from engine.tables import history, items, pipelines, stages
from engine.tables import item_values as values_table
from engine.tables import method_calls as calls

_LOAD = select(
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
    pipelines.c.version.label("class_version"),
).join(pipelines, pipelines.c.id == items.c.flow_pipeline_id)


class _Item:
    """An item row loaded for one execution."""

    __slots__ = (
        "account_id", "assigned", "checklist", "class_id", "class_version", "deleted", "id",
        "last_changed", "object_id", "object_type", "position", "stage_id", "version",
    )  # fmt: skip

    def __init__(self, row: Any) -> None:
        self.id: int = row.id
        self.class_id: int = row.flow_pipeline_id
        self.stage_id: int = row.flow_stage_id
        self.object_type: str = row.object_type
        self.object_id: int = row.object_id
        self.account_id: int | None = row.iam_account_id
        self.assigned: int | None = row.assigned_iam_user_id
        self.position: int = row.position
        self.checklist: Any = row.checklist_state
        self.version: int = row.version
        self.deleted: bool = row.deleted_at is not None
        self.last_changed: datetime | None = row.last_stage_changed_at
        self.class_version: int = row.class_version

    def snapshot(self, compiled: CompiledClass, state: CompiledState) -> ItemSnapshot:
        return ItemSnapshot(
            id=self.id,
            class_id=self.class_id,
            class_code=compiled.code,
            object_type=self.object_type,
            object_id=self.object_id,
            account_id=self.account_id,
            state=state.code,
            state_id=state.id,
            state_type=state.state_type,
            assigned_user_id=self.assigned,
            position=self.position,
            deleted=self.deleted,
            last_state_changed_at=self.last_changed,
        )


def open_checklist_items(state: CompiledState, checklist_state: Any) -> list[tuple[str, str]]:
    """Required checklist entries of `state` not completed in `checklist_state`."""
    done = checklist_state if isinstance(checklist_state, dict) else {}
    return [
        (entry.key, entry.label)
        for entry in state.checklist
        if entry.required
        and not (isinstance(done.get(entry.key), dict) and done[entry.key].get("completed"))
    ]


def missing_required(conn: Connection, item_id: int, state: CompiledState) -> list[tuple[str, str]]:
    """The seed's requirement check: required columns of `state` without a value on the item."""
    if not state.required:
        return []
    filled = set(
        conn.execute(
            select(values_table.c.flow_column_id).where(
                values_table.c.flow_item_id == item_id,
                values_table.c.flow_column_id.in_([r.column_id for r in state.required]),
                values_table.c.value.is_not(None),
            )
        ).scalars()
    )
    return [(r.name, r.label) for r in state.required if r.column_id not in filled]


class Runtime:
    """Places items into classes and executes methods on them."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        cache: ClassCache,
        handlers: Callable[[], Mapping[str, EventHandler]],
        outbox: OutboxWriter,
        after_commit: Callable[[Sequence[int], Sequence[ExecutionResult]], None],
    ) -> None:
        self._sessions = sessions
        self._cache = cache
        self._handlers = handlers
        self._outbox = outbox
        self.after_commit = after_commit

    # --- helpers -------------------------------------------------------------------------

    def compiled(self, session: Session, class_id: int) -> CompiledClass:
        """The compiled current version of a class."""
        version = session.execute(
            select(pipelines.c.version).where(pipelines.c.id == class_id)
        ).scalar_one()
        return self._cache.get(session, class_id, version)

    def _load(self, session: Session, item_id: int, actor: Actor, *, lock: bool) -> _Item:
        stmt = _LOAD.where(items.c.id == item_id)
        if lock and session.bind is not None and session.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update(of=items)
        row = session.execute(stmt).first()
        if row is None or not actor.reaches(row.iam_account_id):
            raise ItemNotFound(item_id)
        return _Item(row)

    def _state(self, compiled: CompiledClass, item: _Item) -> CompiledState:
        state = compiled.states_by_id.get(item.stage_id)
        if state is None:
            raise InvalidDefinition(
                f"item {item.id} sits in stage {item.stage_id}, which class {compiled.code!r} "
                "no longer has; move it with the system actor or restore the stage",
                item_id=item.id,
            )
        return state

    def visible_methods(
        self, compiled: CompiledClass, state: str, actor: Actor, deleted: bool = False
    ) -> list[CompiledMethod]:
        """Methods of `state` the actor may see, by sequence."""
        return [
            m
            for m in compiled.methods.get(state, {}).values()
            if compiled.allowed(actor, m, "visible")
            and (actor.is_system or m.restriction is None)
            and (not deleted or m.action in ("restore", "drop"))
        ]

    def _resolve(
        self,
        compiled: CompiledClass,
        state: CompiledState,
        item: _Item,
        method: str,
        actor: Actor,
        by_action: bool,
    ) -> CompiledMethod:
        found = (
            compiled.method_for_action(state.code, method)
            if by_action
            else compiled.method(state.code, method)
        )
        if (
            found is not None
            and item.deleted
            and found.action not in ("restore", "drop", SLA_BREACH)
        ):
            found = None
        if found is None or not (
            actor.is_system
            or compiled.allowed(actor, found, "visible")
            or compiled.allowed(actor, found, "execute")
        ):
            available = [
                m.code for m in self.visible_methods(compiled, state.code, actor, item.deleted)
            ]
            label = f"{state.code} (deleted)" if item.deleted else state.code
            raise MethodNotAvailable(method, label, available)
        if not compiled.allowed(actor, found, "execute"):
            who = "the system actor" if not found.visible else "this actor"
            raise AccessDenied(
                f"method {found.code!r} of class {compiled.code!r} may be executed only by {who}; "
                "ask for an access rule that allows it",
                method=found.code,
                user_id=actor.user_id,
            )
        if found.restriction is not None and not actor.is_system:
            raise MoveNotAllowed(state.code, found.target or "?", found.restriction)
        return found

    # --- place ---------------------------------------------------------------------------

    def place(
        self,
        class_id: int,
        object_type: str,
        object_id: int,
        actor: Actor,
        *,
        account_id: int | None = None,
        state: str | None = None,
        assigned_user_id: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> ItemSnapshot:
        """Place an object into a class by running its global create method."""
        _check_object(object_type, object_id)
        account = account_id if account_id is not None else actor.account_id
        if not actor.reaches(account):
            raise AccessDenied(
                f"actor of account {actor.account_id} cannot place items into account {account}",
                account_id=account,
            )
        outbox_ids: list[int] = []
        with self._sessions.begin() as session:
            compiled = self.compiled(session, class_id)
            if not actor.reaches(compiled.account_id):
                raise ItemNotFound(f"class {compiled.code}")
            if compiled.is_abstract:
                raise AbstractClassError(compiled.code)
            if compiled.is_template:
                raise InvalidArgument(
                    f"pipeline {compiled.name!r} is a template and holds no items; "
                    "clone it into the account and place items into the clone",
                    class_code=compiled.code,
                )
            create = compiled.create
            if create is None or create.target is None:
                raise InvalidDefinition(
                    f"class {compiled.code!r} has no create transition and no state of type "
                    "created; add one before placing items",
                    class_code=compiled.code,
                )
            if not compiled.allowed(actor, create, "execute"):
                raise AccessDenied(
                    f"this actor may not create items in class {compiled.code!r}",
                    method=create.code,
                )
            target = compiled.state(state) if state is not None else compiled.state(create.target)
            if state is not None and not compiled.is_pipeline and not actor.is_system:
                raise AccessDenied(
                    "only the system actor may place an item of a kernel class into a chosen state",
                    state=state,
                )
            conn = session.connection()
            existing = conn.execute(
                select(items.c.id).where(
                    items.c.flow_pipeline_id == compiled.id,
                    items.c.object_type == object_type,
                    items.c.object_id == object_id,
                )
            ).scalar()
            if existing is not None:
                raise ObjectAlreadyPlaced(compiled.code, object_type, object_id, existing)
            if target.required:
                raise RequirementMissing(target.code, [(r.name, r.label) for r in target.required])
            now = datetime.now(UTC)
            position = _next_position(conn, target.id)
            try:
                item_id = conn.execute(
                    insert(items)
                    .values(
                        flow_pipeline_id=compiled.id,
                        flow_stage_id=target.id,
                        object_type=object_type,
                        object_id=object_id,
                        iam_account_id=account,
                        iam_user_id=actor.user_id,
                        assigned_iam_user_id=assigned_user_id,
                        position=position,
                        last_stage_changed_at=now,
                        deleted_at=now if target.state_type == "deleted" else None,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(items.c.id)
                ).scalar_one()
            except IntegrityError as exc:
                raise ObjectAlreadyPlaced(compiled.code, object_type, object_id, -1) from exc
            conn.execute(
                insert(history).values(
                    flow_item_id=item_id,
                    flow_pipeline_id=compiled.id,
                    from_stage_id=None,
                    to_stage_id=target.id,
                    moved_by_iam_user_id=actor.user_id,
                    moved_at=now,
                    method_code=create.code,
                    is_system=actor.is_system,
                )
            )
            item = ItemSnapshot(
                id=item_id,
                class_id=compiled.id,
                class_code=compiled.code,
                object_type=object_type,
                object_id=object_id,
                account_id=account,
                state=target.code,
                state_id=target.id,
                state_type=target.state_type,
                assigned_user_id=assigned_user_id,
                position=position,
                deleted=target.state_type == "deleted",
                last_state_changed_at=now,
            )
            context = EventContext(
                item=item,
                method=create.info(),
                from_state="",
                to_state=target.code,
                actor=actor,
                params=dict(params or {}),
            )
            for name in create.chain:
                self._call(name, context)
            _log_call(conn, item, create, None, target.id, actor, params, now)
            outbox_ids = self._outbox.record(
                conn, compiled, item, actor, now, "item_created", None, target
            )
        self.after_commit(outbox_ids, ())
        return item

    # --- execute -------------------------------------------------------------------------

    def execute(
        self,
        item_id: int,
        method: str,
        actor: Actor,
        *,
        params: Mapping[str, Any] | None = None,
        by_action: bool = False,
    ) -> ExecutionResult:
        """Execute a method (or the first method of an action) on an item."""
        with self._sessions.begin() as session:
            result, outbox_ids = self.execute_in(session, item_id, method, actor, params, by_action)
        self.after_commit(outbox_ids, (result,))
        return result

    def move(self, item_id: int, stage: str | int, actor: Actor) -> ExecutionResult:
        """Move an item to a stage (by code or id) by executing `move_to_<code>`."""
        if isinstance(stage, int) and not isinstance(stage, bool):
            with self._sessions.begin() as session:
                item = self._load(session, item_id, actor, lock=False)
                compiled = self._cache.get(session, item.class_id, item.class_version)
                target = compiled.states_by_id.get(stage)
                if target is None:
                    raise UnknownDefinition(
                        "stage",
                        stage,
                        f"pipeline {compiled.name!r}",
                        [str(s.id) for s in compiled.ordered_states],
                    )
                stage = target.code
        return self.execute(item_id, MOVE_PREFIX + str(stage), actor)

    def _call(self, name: str, context: EventContext) -> list[object]:
        handler = self._handlers().get(name)
        if handler is None:
            raise UnknownHandler(name, list(self._handlers()))
        try:
            out = handler(context)
        except FlowkernelError:
            raise
        except Exception as exc:
            raise HandlerFailed(name, context.method.code, context.item.id, exc) from exc
        if out is None:
            return []
        if isinstance(out, (ChangeState, DropItem, SoftDelete, Restore)):
            return [out]
        return list(out)

    def execute_in(
        self,
        session: Session,
        item_id: int,
        method: str,
        actor: Actor,
        params: Mapping[str, Any] | None,
        by_action: bool,
    ) -> tuple[ExecutionResult, list[int]]:
        """Execute inside the caller's transaction; returns the result and the outbox ids written.

        The caller commits, then passes both to `after_commit`.
        """
        item = self._load(session, item_id, actor, lock=True)
        compiled = self._cache.get(session, item.class_id, item.class_version)
        state = self._state(compiled, item)
        found = self._resolve(compiled, state, item, method, actor, by_action)
        conn = session.connection()
        snapshot = item.snapshot(compiled, state)
        context = EventContext(
            item=snapshot,
            method=found.info(),
            from_state=state.code,
            to_state=found.target,
            actor=actor,
            params=dict(params or {}),
        )

        def guard(target: str) -> None:
            self._guard(conn, compiled, item, state, compiled.states[target])

        run = Run(state.code, guard)
        deleted = item.deleted
        dropped = False
        for name in found.chain:
            for effect in self._call(name, context):
                if isinstance(effect, ChangeState):
                    if found.target is not None and run.state == state.code:
                        compiled.fire(run, found.code)
                elif isinstance(effect, DropItem):
                    dropped = True
                elif isinstance(effect, SoftDelete):
                    deleted = True
                elif isinstance(effect, Restore):
                    deleted = False
        new_state = compiled.states[run.state]
        changed = new_state.code != state.code
        now = datetime.now(UTC)
        if dropped:
            conn.execute(delete(items).where(items.c.id == item.id))
        elif changed or deleted != item.deleted:
            if changed:
                deleted = new_state.state_type == "deleted" or (
                    deleted and state.state_type != "deleted"
                )
            stmt = (
                update(items)
                .where(items.c.id == item.id, items.c.version == item.version)
                .values(
                    version=item.version + 1,
                    updated_at=now,
                    deleted_at=(now if not item.deleted else items.c.deleted_at)
                    if deleted
                    else None,
                )
            )
            if changed:
                stmt = stmt.values(
                    flow_stage_id=new_state.id,
                    last_stage_changed_at=now,
                    checklist_state=None,
                    position=_end_of_stage(new_state.id),
                )
            if conn.execute(stmt).rowcount != 1:
                raise ConcurrentUpdate(item.id)
        if changed:
            conn.execute(
                insert(history).values(
                    flow_item_id=item.id,
                    flow_pipeline_id=compiled.id,
                    from_stage_id=state.id,
                    to_stage_id=new_state.id,
                    moved_by_iam_user_id=actor.user_id,
                    moved_at=now,
                    method_code=found.code,
                    is_system=actor.is_system,
                )
            )
        _log_call(
            conn, snapshot, found, state.id, new_state.id if changed else None, actor, params, now
        )
        outbox_ids: list[int] = []
        if changed:
            outbox_ids = self._outbox.record(
                conn, compiled, snapshot, actor, now, "moved", state, new_state
            )
        elif found.action == SLA_BREACH:
            outbox_ids = self._outbox.record(
                conn, compiled, snapshot, actor, now, "sla_breached", state, state
            )
        result = ExecutionResult(
            item_id=item.id,
            class_code=compiled.code,
            method=found.code,
            action=found.action,
            from_state=state.code,
            to_state=new_state.code,
            changed=changed,
            dropped=dropped,
            actor=actor,
            executed_at=now,
            handlers=found.chain,
        )
        return result, outbox_ids

    def _guard(
        self,
        conn: Connection,
        compiled: CompiledClass,
        item: _Item,
        current: CompiledState,
        target: CompiledState,
    ) -> None:
        missing = missing_required(conn, item.id, target)
        if missing:
            raise RequirementMissing(target.code, missing)
        if not target.is_lost:
            open_items = open_checklist_items(current, item.checklist)
            if open_items:
                raise ChecklistIncomplete(current.code, open_items)

    # --- read side -----------------------------------------------------------------------

    def item(self, item_id: int, actor: Actor) -> ItemSnapshot:
        """The item's current state and state type."""
        with self._sessions.begin() as session:
            item = self._load(session, item_id, actor, lock=False)
            compiled = self._cache.get(session, item.class_id, item.class_version)
            return item.snapshot(compiled, self._state(compiled, item))

    def methods(self, item_id: int, actor: Actor) -> list[MethodInfo]:
        """The methods `actor` may run on the item now, by sequence."""
        with self._sessions.begin() as session:
            item = self._load(session, item_id, actor, lock=False)
            compiled = self._cache.get(session, item.class_id, item.class_version)
            state = self._state(compiled, item)
            return [
                m.info()
                for m in self.visible_methods(compiled, state.code, actor, item.deleted)
                if compiled.allowed(actor, m, "execute")
            ]

    def history(self, item_id: int, actor: Actor) -> list[HistoryEntry]:
        """The item's state history, oldest first (also after the item was dropped)."""
        with self._sessions.begin() as session:
            conn = session.connection()
            first = conn.execute(
                select(history.c.flow_pipeline_id).where(history.c.flow_item_id == item_id).limit(1)
            ).scalar()
            if first is None:
                raise ItemNotFound(item_id)
            account = conn.execute(
                select(items.c.iam_account_id).where(items.c.id == item_id)
            ).first()
            if account is None:  # dropped: the account of its last call
                account = conn.execute(
                    select(calls.c.iam_account_id)
                    .where(calls.c.flow_item_id == item_id)
                    .order_by(calls.c.id.desc())
                    .limit(1)
                ).first()
            if account is None or not actor.reaches(account[0]):
                raise ItemNotFound(item_id)
            return _history(conn, item_id)

    def state_at(self, item_id: int, when: datetime, actor: Actor) -> str | None:
        """The item's state at `when`, from its history (None before it was placed)."""
        entries = self.history(item_id, actor)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        state: str | None = None
        for entry in entries:
            if entry.moved_at <= when:
                state = entry.to_state
            else:
                break
        return state


def _history(conn: Connection, item_id: int) -> list[HistoryEntry]:
    rows = conn.execute(
        select(history, stages.c.code.label("to_code"))
        .join(stages, stages.c.id == history.c.to_stage_id)
        .where(history.c.flow_item_id == item_id)
        .order_by(history.c.moved_at, history.c.id)
    ).all()
    codes = {r.to_stage_id: r.to_code or f"stage_{r.to_stage_id}" for r in rows}
    missing = {r.from_stage_id for r in rows if r.from_stage_id and r.from_stage_id not in codes}
    if missing:
        for sid, code in conn.execute(
            select(stages.c.id, stages.c.code).where(stages.c.id.in_(missing))
        ):
            codes[sid] = code or f"stage_{sid}"
    return [
        HistoryEntry(
            id=r.id,
            item_id=r.flow_item_id,
            from_state=codes.get(r.from_stage_id) if r.from_stage_id else None,
            to_state=codes[r.to_stage_id],
            method=r.method_code,
            user_id=r.moved_by_iam_user_id,
            is_system=r.is_system,
            moved_at=r.moved_at,
        )
        for r in rows
    ]


def _end_of_stage(stage_id: int) -> Any:
    """The position after the last item of a stage, as a subquery of the move's UPDATE."""
    return (
        select(func.coalesce(func.max(items.c.position) + 1, 0))
        .where(items.c.flow_stage_id == stage_id)
        .scalar_subquery()
    )


def _next_position(conn: Connection, stage_id: int) -> int:
    top = conn.execute(
        select(func.max(items.c.position)).where(items.c.flow_stage_id == stage_id)
    ).scalar()
    return 0 if top is None else int(top) + 1


def _log_call(
    conn: Connection,
    item: ItemSnapshot,
    method: CompiledMethod,
    from_stage: int | None,
    to_stage: int | None,
    actor: Actor,
    params: Mapping[str, Any] | None,
    now: datetime,
) -> None:
    conn.execute(
        insert(calls).values(
            flow_item_id=item.id,
            flow_pipeline_id=item.class_id,
            iam_account_id=item.account_id,
            method_code=method.code,
            action_code=method.action,
            from_stage_id=from_stage,
            to_stage_id=to_stage,
            actor_iam_user_id=actor.user_id,
            is_system=actor.is_system,
            params=dict(params) if params else None,
            called_at=now,
        )
    )


def _check_object(object_type: object, object_id: object) -> None:
    if not isinstance(object_type, str) or not object_type or len(object_type) > 128:
        raise InvalidArgument(
            f"object_type must be a non-empty string of at most 128 characters, "
            f"not {object_type!r}",
            object_type=object_type,
        )
    if (
        isinstance(object_id, bool)
        or not isinstance(object_id, int)
        or not (-(2**63) <= object_id < 2**63)
    ):
        raise InvalidArgument(
            f"object_id must be a 64-bit integer, not {object_id!r}", object_id=object_id
        )
