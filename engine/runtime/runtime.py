"""Executing methods on items: place, execute, and the read side of an item's state.

One execution is one transaction: resolve the method for the item's state, authorize the
actor, lock the item, run the handler chain through the compiled machine (guards included),
write state, history, the method-call log and outgoing events, commit, then deliver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from sqlalchemy import (
    Boolean,
    ClauseElement,
    Connection,
    Engine,
    Select,
    Update,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    null,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.access import VISIBLE, check_class
from flowkernel.actors import Actor
from flowkernel.compile.compiler import (
    ClassCache,
    CompiledClass,
    CompiledMethod,
    CompiledState,
    Run,
)
from flowkernel.definition.rules import class_rules
from flowkernel.errors import (
    AbstractClassError,
    AccessDenied,
    ChecklistIncomplete,
    ConcurrentUpdate,
    FlowkernelError,
    HandlerFailed,
    InvalidArgument,
    InvalidDefinition,
    ItemNotFound,
    MethodHidden,
    MethodNotAvailable,
    MoveNotAllowed,
    ObjectAlreadyPlaced,
    RequirementMissing,
    UnknownDefinition,
    UnknownHandler,
)
from flowkernel.hookspecs import EventHandler
from flowkernel.kinds import MOVE_PREFIX, SLA_BREACH
from flowkernel.moments import utc_moment
from flowkernel.runtime.idempotency import IdempotencyKeys, KeyedRequest, execute_once
from flowkernel.runtime.outbox import OutboxWriter
from flowkernel.snapshots import (
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
from flowkernel.store.database import database_error
from flowkernel.store.prepared import Connections, Db, Prepared, Statements, transaction
from flowkernel.store.tables import history, items, outbox, pipelines, stages, watchers
from flowkernel.store.tables import item_values as values_table
from flowkernel.store.tables import method_calls as calls
from flowkernel.validation import (
    check_item_id,
    check_key,
    check_object,
    check_optional_id,
    check_params,
)

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
    # Whether anyone watches the item, so a move without watchers skips that query.
    exists().where(watchers.c.flow_item_id == items.c.id).label("watched"),
).join(pipelines, pipelines.c.id == items.c.flow_pipeline_id)
_ACCOUNT = 5
"""Index of the account in a `_LOAD` row."""


class _Item:
    """An item row loaded for one execution."""

    __slots__ = (
        "account_id", "assigned", "checklist", "class_id", "class_version", "deleted",
        "deleted_at", "id", "last_changed", "object_id", "object_type", "position", "stage_id",
        "version", "watched",
    )  # fmt: skip

    id: int
    class_id: int
    stage_id: int
    object_type: str
    object_id: int
    account_id: int | None
    assigned: int | None
    position: int
    checklist: Any
    version: int
    deleted_at: datetime | None
    last_changed: datetime | None
    class_version: int
    deleted: bool
    watched: bool

    def __init__(self, row: Sequence[Any]) -> None:
        (
            self.id,
            self.class_id,
            self.stage_id,
            self.object_type,
            self.object_id,
            self.account_id,
            self.assigned,
            self.position,
            self.checklist,
            self.version,
            self.deleted_at,
            self.last_changed,
            self.class_version,
            watched,
        ) = row
        self.deleted = self.deleted_at is not None
        self.watched = bool(watched)

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


def _item_id() -> Any:
    return items.c.id == bindparam("item_id")


def _hot_statement(dialect: str, key: str) -> ClauseElement:
    """The hot path's statements, by key, compiled once per dialect (`store.prepared`)."""
    if key in ("load", "load_for_update"):
        stmt = _LOAD.where(items.c.id == bindparam("item_id"))
        if key == "load_for_update" and dialect == "postgresql":
            stmt = stmt.with_for_update(of=items)
        return stmt
    if key == "move":
        return _move_statement()
    if key == "move_logged":
        return _move_logged_statement()
    if key == "mark":
        return (
            update(items)
            .where(_item_id(), items.c.version == bindparam("version"))
            .values(
                version=bindparam("new_version"),
                updated_at=bindparam("now"),
                deleted_at=bindparam("deleted_at"),
            )
        )
    if key == "drop":
        return delete(items).where(_item_id())
    if key == "filled":
        return select(values_table.c.flow_column_id).where(
            values_table.c.flow_item_id == bindparam("item_id"),
            values_table.c.value.is_not(None),
        )
    if key == "watchers":
        return (
            select(watchers.c.iam_user_id)
            .where(watchers.c.flow_item_id == bindparam("item_id"))
            .order_by(watchers.c.iam_user_id)
        )
    if key == "outbox":
        return (
            insert(outbox)
            .values({column: bindparam(column) for column in OUTBOX_COLUMNS})
            .returning(outbox.c.id)
        )
    if key == "history":
        return insert(history).values(
            flow_item_id=bindparam("item_id"),
            flow_pipeline_id=bindparam("class_id"),
            from_stage_id=bindparam("from_stage_id"),
            to_stage_id=bindparam("to_stage_id"),
            moved_by_iam_user_id=bindparam("user_id"),
            moved_at=bindparam("now"),
            method_code=bindparam("method"),
            is_system=bindparam("is_system"),
        )
    if key == "call":
        return insert(calls).values(
            flow_item_id=bindparam("item_id"),
            flow_pipeline_id=bindparam("class_id"),
            iam_account_id=bindparam("account_id"),
            method_code=bindparam("method"),
            action_code=bindparam("action"),
            from_stage_id=bindparam("from_stage_id"),
            to_stage_id=bindparam("to_stage_id"),
            actor_iam_user_id=bindparam("user_id"),
            is_system=bindparam("is_system"),
            params=bindparam("params"),
            called_at=bindparam("now"),
        )
    raise KeyError(key)


def _move_statement() -> Update:
    """Move the item to the end of stage `stage_id`, if it is still at `version`."""
    return (
        update(items)
        .where(_item_id(), items.c.version == bindparam("version"))
        .values(
            flow_stage_id=bindparam("stage_id"),
            last_stage_changed_at=bindparam("now"),
            checklist_state=null(),
            position=_end_of_stage(bindparam("stage_id")),
            version=bindparam("new_version"),
            updated_at=bindparam("now"),
            deleted_at=case(
                (bindparam("keep_deleted", type_=Boolean()), items.c.deleted_at),
                else_=bindparam("deleted_at", type_=items.c.deleted_at.type),
            ),
        )
    )


def _typed(name: str, column: Any) -> Any:
    return bindparam(name, type_=column.type)


def _move_logged_statement() -> Select[Any]:
    """The move, its history row and its call-log row in one statement (for PostgreSQL, one
    round trip): the inserts read the UPDATE's RETURNING, so a version mismatch writes
    nothing; selects how many rows moved."""
    moved = _move_statement().returning(items.c.id).cte("moved")
    logged = (
        insert(history)
        .from_select(
            [
                history.c.flow_item_id,
                history.c.flow_pipeline_id,
                history.c.from_stage_id,
                history.c.to_stage_id,
                history.c.moved_by_iam_user_id,
                history.c.moved_at,
                history.c.method_code,
                history.c.is_system,
            ],
            select(
                moved.c.id,
                _typed("class_id", history.c.flow_pipeline_id),
                _typed("from_stage_id", history.c.from_stage_id),
                _typed("to_stage_id", history.c.to_stage_id),
                _typed("user_id", history.c.moved_by_iam_user_id),
                _typed("now", history.c.moved_at),
                _typed("method", history.c.method_code),
                _typed("is_system", history.c.is_system),
            ),
        )
        .cte("logged")
    )
    called = (
        insert(calls)
        .from_select(
            [
                calls.c.flow_item_id,
                calls.c.flow_pipeline_id,
                calls.c.iam_account_id,
                calls.c.method_code,
                calls.c.action_code,
                calls.c.from_stage_id,
                calls.c.to_stage_id,
                calls.c.actor_iam_user_id,
                calls.c.is_system,
                calls.c.params,
                calls.c.called_at,
            ],
            select(
                moved.c.id,
                _typed("class_id", calls.c.flow_pipeline_id),
                _typed("account_id", calls.c.iam_account_id),
                _typed("method", calls.c.method_code),
                _typed("action", calls.c.action_code),
                _typed("from_stage_id", calls.c.from_stage_id),
                _typed("to_stage_id", calls.c.to_stage_id),
                _typed("user_id", calls.c.actor_iam_user_id),
                _typed("is_system", calls.c.is_system),
                _typed("params", calls.c.params),
                _typed("now", calls.c.called_at),
            ),
        )
        .cte("called")
    )
    return select(func.count()).select_from(moved).add_cte(logged, called)


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


_T = TypeVar("_T")


def _no_guard(target: str) -> None:
    """The guard of a transition whose target has nothing to check."""


class _Stale(Exception):
    """A class must be compiled first; internal to `Runtime.transact`."""

    def __init__(self, class_id: int) -> None:
        super().__init__(class_id)
        self.class_id = class_id


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
        bind = sessions.kw.get("bind")
        if not isinstance(bind, Engine):
            raise TypeError("the runtime's sessionmaker must be bound to an Engine")
        self._engine: Engine = bind
        self._connections = Connections(bind)
        self._cache = cache
        self._handlers = handlers
        self._outbox = outbox
        self.after_commit = after_commit
        # the last compiled class seen per class id, so a hit needs no Session
        self._recent: dict[int, CompiledClass] = {}
        self._statements: Statements | None = None
        self._batch_statements: Statements | None = None  # flowkernel.runtime.batch's
        # unguarded transitions the machine answered: (class, version, state, method) -> state
        self._fired: dict[tuple[int, int, str, str], str] = {}
        self._idempotency: IdempotencyKeys | None = None  # prepared at the first keyed call

    # --- helpers -------------------------------------------------------------------------

    @property
    def _hot(self) -> Statements:
        """The hot path's prepared statements for this database."""
        statements = self._statements
        if statements is None:
            name = self._engine.dialect.name
            statements = self._statements = Statements(
                self._engine.dialect, lambda key: _hot_statement(name, key)
            )
        return statements

    def _compiled_for(self, session: Session | None, class_id: int, version: int) -> CompiledClass:
        """The compiled class at `version`, compiled through `session` on a miss.

        Without a session a miss raises `_Stale`: `transact` then runs the work again in a
        transaction that has one (on SQLite another connection could not even read while
        this one holds the write lock).
        """
        compiled = self._recent.get(class_id)
        if compiled is None or compiled.version != version:
            if session is None:
                raise _Stale(class_id)
            compiled = self._cache.get(session, class_id, version)
            self._recent[class_id] = compiled
        return compiled

    def transact(self, work: Callable[[Db, Session | None], _T]) -> _T:
        """Run `work` in one transaction, on a bare pooled connection while the compiled
        classes it needs are cached, else again with a Session to compile them.

        A connection that broke or could not be opened raises a `DatabaseError`.
        """
        try:
            try:
                with transaction(self._connections) as db:
                    return work(db, None)
            except _Stale:
                pass  # rolled back before any handler ran or anything was written
            with (
                self._engine.connect() as conn,
                conn.begin(),
                Session(bind=conn, autoflush=False) as session,
            ):
                return work(Db.of(conn), session)
        except Exception as exc:  # only a failed connection is turned into another error
            typed = database_error(exc, self._engine)
            if typed is None:
                raise
            raise typed from exc

    def _fetch(self, db: Db, item_id: int, actor: Actor, *, lock: bool) -> _Item:
        """Load the item (locked on PostgreSQL when `lock`), or ItemNotFound out of reach."""
        check_item_id(item_id)
        load = self._hot["load_for_update" if lock else "load"]
        row = load.row(load.run(db, {"item_id": item_id}))
        if row is None or not actor.reaches(row[_ACCOUNT]):
            raise ItemNotFound(item_id)
        return _Item(row)

    def compiled(self, session: Session, class_id: int) -> CompiledClass:
        """The compiled current version of a class."""
        version = session.execute(
            select(pipelines.c.version).where(pipelines.c.id == class_id)
        ).scalar_one()
        return self._cache.get(session, class_id, version)

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
        deleted: bool,
        method: str,
        actor: Actor,
        by_action: bool,
    ) -> CompiledMethod:
        """The method to run, after the visibility, access and movement checks."""
        found = (
            compiled.method_for_action(state.code, method)
            if by_action
            else compiled.method(state.code, method)
        )
        if found is not None and deleted and found.action not in ("restore", "drop", SLA_BREACH):
            found = None
        if found is None or not (
            actor.is_system
            or compiled.allowed(actor, found, "visible")
            or compiled.allowed(actor, found, "execute")
        ):
            available = [m.code for m in self.visible_methods(compiled, state.code, actor, deleted)]
            label = f"{state.code} (deleted)" if deleted else state.code
            if found is None:
                raise MethodNotAvailable(method, label, available)
            reason = "hidden" if not found.visible else "hidden from this actor by an access rule"
            raise MethodHidden(found.code, label, available, reason)
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
        check_object(object_type, object_id)
        check_optional_id("account_id", account_id)
        check_optional_id("assigned_user_id", assigned_user_id)
        if state is not None:
            check_key("state", state, error=InvalidArgument)
        params = check_params(params)
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
            if compiled.account_id is not None:  # an account's class holds that account's items
                if account is None:
                    account = compiled.account_id
                elif account != compiled.account_id:
                    raise InvalidArgument(
                        f"class {compiled.code!r} belongs to account {compiled.account_id}; "
                        f"its items cannot belong to account {account}",
                        class_code=compiled.code,
                        account_id=account,
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
                    f"this actor may not create items in class {compiled.code!r}; ask for an "
                    "access rule that allows it",
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
        idempotency_key: str | None = None,
    ) -> ExecutionResult:
        """Execute a method (or the first method of an action) on an item.

        With `idempotency_key` it runs once per key and actor (`flowkernel.runtime.idempotency`).
        """
        item_id = check_item_id(item_id)
        if type(method) is not str:
            check_key("method", method, error=InvalidArgument)
        params = check_params(params)
        if idempotency_key is not None:
            return self._execute_once(
                idempotency_key, item_id, method, actor, params, by_action, None
            )
        result, outbox_ids = self.transact(
            lambda db, session: self._execute(
                db, session, item_id, method, actor, params, by_action
            )
        )
        self.after_commit(outbox_ids, (result,))
        return result

    def move(
        self, item_id: int, stage: str | int, actor: Actor, *, idempotency_key: str | None = None
    ) -> ExecutionResult:
        """Move an item to a stage (by code or id) by executing `move_to_<code>`."""
        item_id = check_item_id(item_id)
        if isinstance(stage, bool) or not isinstance(stage, int | str):
            raise InvalidArgument(f"a stage is named by its code or id, not {stage!r}", stage=stage)
        if isinstance(stage, int):
            if idempotency_key is not None:
                return self._execute_once(
                    idempotency_key, item_id, MOVE_PREFIX, actor, None, False, stage
                )
            result, outbox_ids = self.transact(
                lambda db, session: self._execute(
                    db, session, item_id, MOVE_PREFIX, actor, None, False, stage_id=stage
                )
            )
            self.after_commit(outbox_ids, (result,))
            return result
        return self.execute(
            item_id, MOVE_PREFIX + str(stage), actor, idempotency_key=idempotency_key
        )

    def _execute_once(
        self,
        key: str,
        item_id: int,
        method: str,
        actor: Actor,
        params: Mapping[str, Any] | None,
        by_action: bool,
        stage_id: int | None,
    ) -> ExecutionResult:
        """`_execute` under an idempotency key."""
        request = KeyedRequest.of(key, actor, item_id, method, params, by_action, stage_id)
        keys = self._idempotency
        if keys is None:
            keys = self._idempotency = IdempotencyKeys(self._engine.dialect)
        return execute_once(
            keys,
            request,
            self.transact,
            lambda db, session: self._execute(
                db, session, item_id, method, actor, params, by_action, stage_id=stage_id
            ),
            self.after_commit,
        )

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
        db = Db.of(session.connection())
        return self._execute(db, session, item_id, method, actor, params, by_action)

    def _execute(
        self,
        db: Db,
        session: Session | None,
        item_id: int,
        method: str,
        actor: Actor,
        params: Mapping[str, Any] | None,
        by_action: bool,
        *,
        stage_id: int | None = None,
    ) -> tuple[ExecutionResult, list[int]]:
        """One execution in `db`'s transaction; `stage_id` moves to that stage instead.

        Statements run prepared on the driver (see `flowkernel.store.prepared`); what the compiled
        class already knows costs no query: the requirement check runs only for a target
        with required columns, the outbox only for a class with automations or an item
        with watchers.
        """
        hot = self._hot
        item = self._fetch(db, item_id, actor, lock=True)
        compiled = self._compiled_for(session, item.class_id, item.class_version)
        state = self._state(compiled, item)
        if stage_id is not None:
            target = compiled.states_by_id.get(stage_id)
            if target is None:
                raise UnknownDefinition(
                    "stage",
                    stage_id,
                    f"pipeline {compiled.name!r}",
                    [str(s.id) for s in compiled.ordered_states],
                )
            method = MOVE_PREFIX + target.code
        found = self._resolve(compiled, state, item.deleted, method, actor, by_action)
        snapshot = item.snapshot(compiled, state)
        context = EventContext(
            item=snapshot,
            method=found.info(),
            from_state=state.code,
            to_state=found.target,
            actor=actor,
            params=dict(params) if params else {},
        )

        current = state.code
        deleted = item.deleted
        dropped = False
        for name in found.chain:
            for effect in self._call(name, context):
                if isinstance(effect, ChangeState):
                    if found.target is not None and current == state.code:
                        current = self._transition(db, compiled, item, state, found)
                elif isinstance(effect, DropItem):
                    dropped = True
                elif isinstance(effect, SoftDelete):
                    deleted = True
                elif isinstance(effect, Restore):
                    deleted = False
        new_state = compiled.states[current] if current != state.code else state
        changed = new_state is not state
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "item_id": item.id,
            "class_id": item.class_id,
            "account_id": item.account_id,
            "method": found.code,
            "action": found.action,
            "from_stage_id": state.id,
            "to_stage_id": new_state.id if changed else None,
            "user_id": actor.user_id,
            "is_system": actor.is_system,
            "params": dict(params) if params else None,
            "now": now,
            "version": item.version,
            "new_version": item.version + 1,
        }
        if changed and not dropped:
            deleted = new_state.state_type == "deleted" or (
                deleted and state.state_type != "deleted"
            )
            values["stage_id"] = new_state.id
            values["keep_deleted"] = deleted and item.deleted
            values["deleted_at"] = now if deleted else None
            if db.dialect.name == "postgresql":
                # one round trip: the history and call-log rows are written only if it moved
                move = hot["move_logged"]
                moved = move.row(move.run(db, values))
                if moved is None or moved[0] != 1:
                    raise ConcurrentUpdate(item.id)
            else:
                if hot["move"].run(db, values).rowcount != 1:
                    raise ConcurrentUpdate(item.id)
                hot["history"].run(db, values)
                hot["call"].run(db, values)
        else:
            if dropped:
                hot["drop"].run(db, values)
            elif deleted != item.deleted:
                values["deleted_at"] = now if deleted else None
                if hot["mark"].run(db, values).rowcount != 1:
                    raise ConcurrentUpdate(item.id)
            if changed:  # one handler changed the state, another dropped the item
                hot["history"].run(db, values)
            hot["call"].run(db, values)
        outbox_ids: list[int] = []
        kind = "moved" if changed else "sla_breached" if found.action == SLA_BREACH else None
        if kind is not None and (item.watched or compiled.automations):
            users: list[int] = []
            if item.watched:
                watching = hot["watchers"]
                users = [r[0] for r in watching.rows(watching.run(db, {"item_id": item.id}))]
            rows = self._outbox.rows(compiled, snapshot, actor, now, kind, state, new_state, users)
            outbox_ids = write_outbox(db, hot["outbox"], rows)
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

    def _transition(
        self,
        db: Db,
        compiled: CompiledClass,
        item: _Item,
        state: CompiledState,
        found: CompiledMethod,
    ) -> str:
        """The state the machine's transition for `found` leads to, guards included.

        When no guard can depend on the item (the target requires no column, the state
        requires no checklist entry), the machine's answer for (state, method) is the same
        for every item: it is fired once per class version and remembered.
        """
        target = compiled.states[found.target or ""]
        if not target.required and (
            target.is_lost or not any(entry.required for entry in state.checklist)
        ):
            key = (compiled.id, compiled.version, state.code, found.code)
            dest = self._fired.get(key)
            if dest is None:
                run = Run(state.code, _no_guard)
                compiled.fire(run, found.code)
                if len(self._fired) > 10_000:  # old class versions: forget them all
                    self._fired.clear()
                dest = self._fired[key] = run.state
            return dest

        def guard(code: str) -> None:
            self._guard(db, item, state, compiled.states[code])

        run = Run(state.code, guard)
        compiled.fire(run, found.code)
        return run.state

    def _guard(self, db: Db, item: _Item, current: CompiledState, target: CompiledState) -> None:
        if target.required:
            values = self._hot["filled"]
            filled = {r[0] for r in values.rows(values.run(db, {"item_id": item.id}))}
            missing = [(r.name, r.label) for r in target.required if r.column_id not in filled]
        else:
            missing = []
        if missing:
            raise RequirementMissing(target.code, missing)
        if not target.is_lost:
            open_items = open_checklist_items(current, item.checklist)
            if open_items:
                raise ChecklistIncomplete(current.code, open_items)

    # --- read side -----------------------------------------------------------------------

    def item(self, item_id: int, actor: Actor) -> ItemSnapshot:
        """The item's current state and state type."""
        item, compiled = self.transact(lambda db, session: self._read(db, session, item_id, actor))
        return item.snapshot(compiled, self._state(compiled, item))

    def methods(self, item_id: int, actor: Actor) -> list[MethodInfo]:
        """The methods `actor` may run on the item now, by sequence."""
        item, compiled = self.transact(lambda db, session: self._read(db, session, item_id, actor))
        state = self._state(compiled, item)
        return [
            m.info()
            for m in self.visible_methods(compiled, state.code, actor, item.deleted)
            if compiled.allowed(actor, m, "execute")
        ]

    def _read(
        self, db: Db, session: Session | None, item_id: int, actor: Actor
    ) -> tuple[_Item, CompiledClass]:
        item = self._fetch(db, item_id, actor, lock=False)
        compiled = self._compiled_for(session, item.class_id, item.class_version)
        if compiled.access:
            check_class(compiled.access, actor, VISIBLE, f"class {compiled.code!r}")
        return item, compiled

    def history(self, item_id: int, actor: Actor) -> list[HistoryEntry]:
        """The item's state history, oldest first (also after the item was dropped)."""
        check_item_id(item_id)
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
            if not actor.is_system:
                check_class(class_rules(conn, first), actor, VISIBLE, f"class {first}")
            return _history(conn, item_id)

    def state_at(self, item_id: int, when: datetime, actor: Actor) -> str | None:
        """The item's state at `when`, from its history (None before it was placed)."""
        when = utc_moment(when, "when")
        entries = self.history(item_id, actor)
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


OUTBOX_COLUMNS: Final = (
    "event_id", "kind", "event_name", "trigger", "flow_pipeline_id", "flow_item_id",
    "flow_automation_id", "iam_account_id", "recipient_iam_user_id", "payload", "available_at",
    "created_at",
)  # fmt: skip
"""The columns of the rows `OutboxWriter.rows` builds."""


def write_outbox(db: Db, insert_row: Prepared, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert outbox rows one by one (a change fires few), in order; their ids."""
    ids: list[int] = []
    for row in rows:
        written = insert_row.row(insert_row.run(db, row))
        assert written is not None
        ids.append(written[0])
    return ids


def _end_of_stage(stage_id: Any) -> Any:
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
