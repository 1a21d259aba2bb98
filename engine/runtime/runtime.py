"""The runtime's calls on items: place, execute (by method, action or stage), read an item,
the methods it offers, its history. Each is a thin entry over the executor, the decision and
the history reader."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowkernel.access import VISIBLE, check_class
from flowkernel.actors import Actor
from flowkernel.compile.compiled import CompiledClass
from flowkernel.errors import InvalidArgument, ItemNotFound
from flowkernel.keys import HostKey
from flowkernel.kinds import MOVE_PREFIX, Permission
from flowkernel.moments import utc_moment
from flowkernel.previews import preview
from flowkernel.runtime import history, placement
from flowkernel.runtime.decision import state_of, visible_methods
from flowkernel.runtime.executor import Executor, Request
from flowkernel.runtime.idempotency import IdempotencyKeys, KeyedRequest, execute_once
from flowkernel.snapshots import ExecutionResult, HistoryEntry, ItemSnapshot, MethodInfo
from flowkernel.store.database import reading
from flowkernel.store.prepared import Db
from flowkernel.store.writer import ItemRecord, Lock
from flowkernel.validation import check_item_id, check_key, check_params


class Runtime:
    """Places items into classes, executes methods on them, reads them back."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._keys = IdempotencyKeys(executor.writer)

    # --- writing -------------------------------------------------------------------------

    def place(
        self,
        class_id: int,
        object_type: str,
        object_id: HostKey,
        actor: Actor,
        **options: Any,
    ) -> ItemSnapshot:
        """Place an object into a class (see `flowkernel.runtime.placement`)."""
        return placement.place(self.executor, class_id, object_type, object_id, actor, **options)

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
        """Execute a method (or the first method of an action) on an item; with an
        `idempotency_key` it runs once per key and actor (`flowkernel.runtime.idempotency`)."""
        item_id = check_item_id(item_id)
        if type(method) is not str:
            check_key("method", method, error=InvalidArgument)
        checked = check_params(params)
        request = Request(item_id, method, by_action=by_action, params=checked)
        return self._one(request, actor, idempotency_key)

    def move(
        self, item_id: int, stage: str | int, actor: Actor, *, idempotency_key: str | None = None
    ) -> ExecutionResult:
        """Move an item to a stage (by code or id) by executing `move_to_<code>`."""
        item_id = check_item_id(item_id)
        if isinstance(stage, bool) or not isinstance(stage, int | str):
            raise InvalidArgument(
                f"a stage is named by its code or id, not {preview(stage)}", stage=stage
            )
        if isinstance(stage, int):
            request = Request(item_id, MOVE_PREFIX, stage_id=stage)
            return self._one(request, actor, idempotency_key)
        return self.execute(item_id, MOVE_PREFIX + stage, actor, idempotency_key=idempotency_key)

    def _one(self, request: Request, actor: Actor, key: str | None) -> ExecutionResult:
        """One execution: a batch of one, under its idempotency key when there is one."""
        if key is None:
            (result,) = self.executor.execute([request], actor).results
            return result
        keyed = KeyedRequest.of(
            key,
            actor,
            request.item_id,
            request.method,
            request.params,
            request.by_action,
            request.stage_id,
        )
        return execute_once(
            self._keys, keyed, self.executor, lambda db: self.executor.run(db, [request], actor)
        )

    # --- reading -------------------------------------------------------------------------

    def item(self, item_id: int, actor: Actor) -> ItemSnapshot:
        """The item's current state and state type."""
        item, compiled = self._read(item_id, actor)
        state = state_of(compiled, item.id, item.stage_id)
        return ItemSnapshot(
            id=item.id,
            class_id=item.class_id,
            class_code=compiled.code,
            object_type=item.object_type,
            object_id=item.object_id,
            account_id=item.account_id,
            state=state.code,
            state_id=state.id,
            state_type=state.state_type,
            assigned_user_id=item.assigned,
            position=item.position,
            deleted=item.deleted,
            last_state_changed_at=item.last_changed,
            object_key=item.object_key,
        )

    def methods(self, item_id: int, actor: Actor) -> list[MethodInfo]:
        """The methods `actor` may run on the item now, by sequence."""
        item, compiled = self._read(item_id, actor)
        state = state_of(compiled, item.id, item.stage_id)
        return [
            m.info()
            for m in visible_methods(compiled, state.code, actor, item.deleted)
            if compiled.allowed(actor, m, Permission.EXECUTE)
        ]

    def _read(self, item_id: int, actor: Actor) -> tuple[ItemRecord, CompiledClass]:
        """The item (`ItemNotFound` out of the actor's reach) and its compiled class, read
        without locks; a class-wide rule may hide the class (`AccessDenied`)."""
        check_item_id(item_id)
        executor = self.executor

        def read(db: Db) -> tuple[ItemRecord, CompiledClass]:
            item = executor.writer.load(db, [item_id], lock=Lock.NONE).get(item_id)
            if item is None or not actor.reaches(item.account_id):
                raise ItemNotFound(item_id)
            return item, executor.compiled(item.class_id, item.class_version)

        item, compiled = executor.transact(read, reads=True)
        if compiled.access:
            check_class(compiled.access, actor, VISIBLE, f"class {preview(compiled.code)}")
        return item, compiled

    def history(self, item_id: int, actor: Actor) -> list[HistoryEntry]:
        """The item's state history, oldest first (also after the item was dropped)."""
        with reading(self.executor.sessions) as session:
            return [step.entry() for step in history.read(session.connection(), item_id, actor)]

    def state_at(self, item_id: int, when: datetime, actor: Actor) -> str | None:
        """The item's state at `when`, from its history's periods (None before it was placed
        or after it was dropped)."""
        moment = utc_moment(when, "when")
        with reading(self.executor.sessions) as session:
            return history.state_at(session.connection(), item_id, moment, actor)

    def compiled(self, class_id: int) -> CompiledClass:
        """The compiled current version of a class."""
        with reading(self.executor.sessions) as session:
            return self.executor.current(session, class_id)
