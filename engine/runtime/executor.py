"""The executor: every execution of a method, single or in a batch, runs through `run`.

One transaction: load the items (locked), take the time, decide each request once per class
version, state and method (`decision`), run each item's handler chain through the compiled
machine (guards included), then write the moves, history, call log and outgoing events in a
few statements (`flowkernel.store.writer`). A single execution is a batch of one. After the
commit, `after_commit` tells observers and delivers the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.actors import Actor
from flowkernel.compile.cache import ClassCache
from flowkernel.compile.compiled import MEMO_LIMIT, CompiledClass, CompiledState
from flowkernel.errors import (
    ConcurrentUpdate,
    FlowkernelError,
    HandlerFailed,
    ItemNotFound,
    UnknownDefinition,
    UnknownHandler,
)
from flowkernel.hookspecs import EventHandler
from flowkernel.kinds import MOVE_PREFIX, SLA_BREACH, CallLog, StateType
from flowkernel.previews import preview
from flowkernel.runtime.decision import Decision, decide, guard_obstacles
from flowkernel.runtime.outbox import MOVED, SLA_BREACHED, event_rows
from flowkernel.snapshots import (
    ChangeState,
    DropItem,
    EventContext,
    ExecutionResult,
    ItemSnapshot,
    Restore,
    SoftDelete,
)
from flowkernel.store.database import database_error, reading
from flowkernel.store.prepared import Db
from flowkernel.store.tables import pipelines
from flowkernel.store.writer import Change, ItemRecord, Lock, Writer

_T = TypeVar("_T")
AfterCommit = Callable[[Sequence[int], Sequence[ExecutionResult]], None]
"""What runs after a commit: the outbox rows to deliver and the results to report."""

_UNSET: Any = object()

RELOCATE_CHUNK = 1000
"""Items moved per statement when a definition change relocates them."""

ATTEMPTS = 5
"""How often a transaction starts again to compile a class version it met first."""


@dataclass(frozen=True, slots=True)
class Request:
    """One execution asked for: a method code (an action's when `by_action`), or a move into
    the stage `stage_id`, with the handlers' parameters."""

    item_id: int
    method: str
    by_action: bool = False
    stage_id: int | None = None
    params: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused before it wrote anything: the typed error, and the decision's reason
    code when the decision refused it (None when a handler or the item itself did)."""

    item_id: int
    error: FlowkernelError
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Executed:
    """What one run did: an outcome per request in order, the outbox rows written (all, and by
    item)."""

    outcomes: tuple[ExecutionResult | Refusal, ...]
    outbox_ids: tuple[int, ...]
    outbox_of: Mapping[int, tuple[int, ...]]

    @property
    def results(self) -> list[ExecutionResult]:
        """The executions that ran, in request order."""
        return [o for o in self.outcomes if isinstance(o, ExecutionResult)]


class Stale(Exception):
    """A class version must be compiled first; the transaction starts again."""

    def __init__(self, class_id: int) -> None:
        super().__init__(class_id)
        self.class_id = class_id


class Executor:
    """Runs requests in transactions: the one write path of method executions."""

    def __init__(
        self,
        writer: Writer,
        cache: ClassCache,
        sessions: sessionmaker[Session],
        handlers: Callable[[], Mapping[str, EventHandler]],
        after_commit: AfterCommit,
    ) -> None:
        self.writer = writer
        self.cache = cache
        self.sessions = sessions
        self._handlers = handlers
        self.after_commit = after_commit

    # --- transactions and classes ----------------------------------------------------------

    def transact(self, work: Callable[[Db], _T], *, reads: bool = False) -> _T:
        """Run `work` in one transaction; a class version met for the first time is compiled
        between attempts. A connection that broke or could not be opened raises a
        `DatabaseError`. `reads`: `work` only reads, and need not wait for writers."""
        engine = self.writer.engine
        for _attempt in range(ATTEMPTS):
            try:
                with self.writer.transaction(reads=reads) as db:
                    return work(db)
            except Stale as stale:  # rolled back before any handler ran
                with reading(self.sessions) as session:
                    self.cache.compile(session, stale.class_id)
            except Exception as exc:  # only a failed connection is turned into another error
                typed = database_error(exc, engine)
                if typed is None:
                    raise
                raise typed from exc
        raise ConcurrentUpdate(0)  # the class changed under every attempt

    def compiled(self, class_id: int, version: int) -> CompiledClass:
        """The compiled class at `version`, or `Stale` to compile it first."""
        found = self.cache.get(class_id, version)
        if found is None:
            raise Stale(class_id)
        return found

    def current(self, session: Session, class_id: int) -> CompiledClass:
        """The compiled current version of a class, read through `session`."""
        version = session.execute(
            select(pipelines.c.version).where(pipelines.c.id == class_id)
        ).scalar_one()
        return self.cache.compile(session, class_id, version)

    def mark(self, db: Db, item_id: int, deleted: bool, actor: Actor, now: datetime) -> None:
        """Set or clear an item's deletion mark, in `db`'s transaction."""
        item = self.writer.load(db, [item_id], lock=Lock.WAIT)[item_id]
        change = Change(item, "", "", None, False, deleted, False, CallLog.NONE, None)
        self.writer.apply(db, [change], actor.user_id, actor.is_system, now)

    def relocate(
        self,
        session: Session,
        item_ids: Sequence[int],
        stage_id: int,
        actor: Actor,
        method: str,
        on_progress: Callable[[int], None] | None = None,
    ) -> datetime:
        """Move items into the stage `stage_id`, in `session`'s transaction and in the order
        given, each to the end of the stage with a history row under `method`; the time of
        the moves.

        A definition change moves them (a removed stage's items): no method, guard, handler or
        automation applies, and deleted items keep their mark. `on_progress` is called with the
        number moved so far after each chunk.
        """
        db = Db.of(session.connection())
        now: datetime | None = None
        for start in range(0, len(item_ids), RELOCATE_CHUNK):
            chunk = item_ids[start : start + RELOCATE_CHUNK]
            loaded = self.writer.load(db, chunk, lock=Lock.WAIT)
            if now is None:
                now = datetime.now(UTC)  # after the rows are locked: history never runs backwards
            changes = [
                Change(item, method, None, stage_id, True, item.deleted, False, CallLog.NONE, None)
                for item in (loaded[i] for i in chunk)
            ]
            self.writer.apply(db, changes, actor.user_id, actor.is_system, now)
            if on_progress is not None:
                on_progress(start + len(chunk))
        return now if now is not None else datetime.now(UTC)

    # --- running ---------------------------------------------------------------------------

    def execute(self, requests: Sequence[Request], actor: Actor, *, skip: bool = False) -> Executed:
        """Run `requests` in one transaction, then deliver; see `run`."""
        executed = self.transact(lambda db: self.run(db, requests, actor, skip=skip))
        self.after_commit(executed.outbox_ids, executed.results)
        return executed

    def run(
        self,
        db: Db,
        requests: Sequence[Request],
        actor: Actor,
        *,
        skip: bool = False,
        lock: Lock = Lock.WAIT,
    ) -> Executed:
        """Execute `requests` in `db`'s transaction, in order.

        Without `skip` the first refusal (in request order) is raised and the caller's
        transaction must roll back; with it, refused requests are reported as `Refusal`s and
        write nothing. With `lock=Lock.SKIP` an item another transaction holds is left alone
        and reported as not found.
        """
        items = self.writer.load(db, [r.item_id for r in requests], lock=lock)
        now = datetime.now(UTC)  # after the rows are locked: history never runs backwards
        plan = self._plan(requests, items, actor)
        guarded = [s[1].id for s in plan if not isinstance(s, Refusal) and _needs_values(s[3])]
        filled = self.writer.filled(db, guarded) if guarded else {}
        outcomes: list[ExecutionResult | Refusal] = []
        changes: list[Change] = []
        texts: dict[int, str | None] = {}  # parameters as JSON, once per mapping
        fired: list[tuple[Change, ItemSnapshot, CompiledClass, CompiledState, CompiledState]] = []
        for step in plan:
            if isinstance(step, Refusal):
                if not skip:
                    raise step.error
                outcomes.append(step)
                continue
            request, item, compiled, decision = step
            params = request.params
            text = texts.get(id(params), _UNSET) if params else None
            if text is _UNSET:
                text = texts[id(params)] = json.dumps(dict(params or {}))
            try:
                change, result, snapshot, new = self._run_one(
                    request, item, compiled, decision, actor, filled.get(item.id, ()), now, text
                )
            except FlowkernelError as exc:
                if not skip:
                    raise
                outcomes.append(Refusal(item.id, exc))
                continue
            changes.append(change)
            outcomes.append(result)
            if result.changed or result.action == SLA_BREACH:
                assert decision.state is not None
                fired.append((change, snapshot, compiled, decision.state, new))
        if changes:
            self.writer.apply(db, changes, actor.user_id, actor.is_system, now)
        outbox_ids, outbox_of = self._outbox(db, fired, actor, now)
        return Executed(tuple(outcomes), tuple(outbox_ids), outbox_of)

    def _plan(
        self, requests: Sequence[Request], items: Mapping[int, ItemRecord], actor: Actor
    ) -> list[Refusal | tuple[Request, ItemRecord, CompiledClass, Decision]]:
        """Every request's item, class and decision, or its refusal; decided once per class
        version, state, deletion mark, method and actor."""
        plan: list[Refusal | tuple[Request, ItemRecord, CompiledClass, Decision]] = []
        for request in requests:
            item = items.get(request.item_id)
            if item is None or not actor.reaches(item.account_id):
                plan.append(Refusal(request.item_id, ItemNotFound(request.item_id)))
                continue
            compiled = self.compiled(item.class_id, item.class_version)
            asked = request.method
            if request.stage_id is not None:
                asked = MOVE_PREFIX + _stage(compiled, request.stage_id).code
            decided = compiled.decided  # kept with the class version
            key = (item.stage_id, item.deleted, asked, request.by_action, actor)
            decision = decided.get(key)
            if decision is None:
                decision = decide(
                    compiled,
                    item.id,
                    item.stage_id,
                    item.deleted,
                    asked,
                    actor,
                    by_action=request.by_action,
                )
                if not decision.obstacles and len(decided) < MEMO_LIMIT:
                    decided[key] = decision  # a refusal names its item: not shared
            if decision.obstacles:
                first = decision.obstacles[0]
                plan.append(Refusal(item.id, first.error, first.code))
                continue
            plan.append((request, item, compiled, decision))
        return plan

    def _run_one(
        self,
        request: Request,
        item: ItemRecord,
        compiled: CompiledClass,
        decision: Decision,
        actor: Actor,
        filled: Collection[int],
        now: datetime,
        params_json: str | None,
    ) -> tuple[Change, ExecutionResult, ItemSnapshot, CompiledState]:
        """Run one item's handler chain and say what it changes (`params_json`: the request's
        parameters as JSON text)."""
        state, method, target = decision.state, decision.method, decision.target
        assert state is not None and method is not None
        snapshot = ItemSnapshot(
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
        params = dict(request.params) if request.params else {}
        context = EventContext(snapshot, method.info(), state.code, method.target, actor, params)
        current, deleted, dropped = state, item.deleted, False
        for name in method.chain:
            for effect in self.call(name, context):
                if isinstance(effect, ChangeState):
                    if target is not None and current is state:
                        current = self._transition(compiled, decision, item, filled)
                elif isinstance(effect, DropItem):
                    dropped = True
                elif isinstance(effect, SoftDelete):
                    deleted = True
                elif isinstance(effect, Restore):
                    deleted = False
        changed = current is not state
        if changed:
            deleted = current.state_type == StateType.DELETED or (
                deleted and state.state_type != StateType.DELETED
            )
        change = Change(
            item=item,
            method=method.code,
            action=method.action,
            to_stage=current.id if changed else None,
            moved=changed and not dropped,
            deleted=deleted,
            dropped=dropped,
            log=method.log,
            params=params_json,
        )
        result = ExecutionResult(
            item_id=item.id,
            class_code=compiled.code,
            method=method.code,
            action=method.action,
            from_state=state.code,
            to_state=current.code,
            changed=changed,
            dropped=dropped,
            actor=actor,
            executed_at=now,
            handlers=method.chain,
        )
        return change, result, snapshot, current

    def _transition(
        self, compiled: CompiledClass, decision: Decision, item: ItemRecord, filled: Collection[int]
    ) -> CompiledState:
        """The state the machine's transition leads to; a guarded one checks the item."""
        state, method = decision.state, decision.method
        assert state is not None and method is not None
        guard: Callable[[str], None] | None = None
        if decision.guarded:
            obstacles = guard_obstacles(decision, item.checklist_state, filled)

            def guard(_target: str) -> None:
                if obstacles:
                    raise obstacles[0].error

        return compiled.states[compiled.transition(state.code, method.code, guard)]

    def call(self, name: str, context: EventContext) -> list[object]:
        """Run the handler `name`; its effects as a list. A handler that raises anything but a
        typed error fails the execution as `HandlerFailed`."""
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
        if isinstance(out, ChangeState | DropItem | SoftDelete | Restore):
            return [out]
        return list(out)

    def _outbox(
        self,
        db: Db,
        fired: Sequence[tuple[Change, ItemSnapshot, CompiledClass, CompiledState, CompiledState]],
        actor: Actor,
        now: datetime,
    ) -> tuple[list[int], dict[int, tuple[int, ...]]]:
        """The automation events and watcher notifications of moves and SLA breaches."""
        firing = [f for f in fired if f[0].item.watched or f[2].automations]
        if not firing:
            return [], {}
        watched = [f[0].item.id for f in firing if f[0].item.watched]
        users = self.writer.watchers(db, watched) if watched else {}
        rows: list[dict[str, Any]] = []
        owners: list[int] = []
        for change, snapshot, compiled, old, new in firing:
            kind = MOVED if change.to_stage is not None else SLA_BREACHED
            written = event_rows(
                compiled, snapshot, actor, now, kind, old, new, users.get(change.item.id, ())
            )
            rows.extend(written)
            owners.extend([change.item.id] * len(written))
        if not rows:
            return [], {}
        ids = self.writer.outbox(db, rows, now)
        by_item: dict[int, list[int]] = {}
        for owner, outbox_id in zip(owners, ids, strict=True):
            by_item.setdefault(owner, []).append(outbox_id)
        return ids, {k: tuple(v) for k, v in by_item.items()}


def _stage(compiled: CompiledClass, stage_id: int) -> CompiledState:
    target = compiled.states_by_id.get(stage_id)
    if target is None:
        raise UnknownDefinition(
            "stage",
            stage_id,
            f"pipeline {preview(compiled.name)}",
            [str(s.id) for s in compiled.ordered_states],
        )
    return target


def _needs_values(decision: Decision) -> bool:
    return decision.guarded and decision.target is not None and bool(decision.target.required)
