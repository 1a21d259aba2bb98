"""`Flowkernel`: a database, a plugin manager, the compiled-class cache, and the APIs on them."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pluggy
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.actors import Actor
from flowkernel.compile.cache import ClassCache
from flowkernel.compile.compiled import CompiledClass
from flowkernel.compile.soundness import class_problems
from flowkernel.definition.classes import Definitions
from flowkernel.definition.pipelines.admin import PipelineAdmin
from flowkernel.hookspecs import EventHandler
from flowkernel.keys import HostKey
from flowkernel.plugin_manager import collect_handlers, get_plugin_manager, load_plugin
from flowkernel.runtime.batch import BatchResult, execute_batch
from flowkernel.runtime.executor import Executor
from flowkernel.runtime.explain import Explainer, Explanation
from flowkernel.runtime.items import ItemOps
from flowkernel.runtime.queries import Queries
from flowkernel.runtime.runtime import Runtime
from flowkernel.runtime.sla import SlaScanner
from flowkernel.snapshots import ExecutionResult, HistoryEntry, ItemSnapshot, MethodInfo
from flowkernel.store import database
from flowkernel.store.delivery import Delivery, DeliveryReport
from flowkernel.store.writer import writer_for

log = logging.getLogger("flowkernel")


class Flowkernel:
    """The engine: open it on a database URL, migrate, define classes, run methods.

    `database_url` defaults to `FLOWKERNEL_DATABASE_URL`, else the SQLite file `flowkernel.db`.
    Extra `plugins` (objects, or module paths as `"package.module"` or `"module:attribute"`)
    are registered after the built-in ones and the installed entry points.
    With `deliver_events` (the default) outgoing events are delivered right after each commit;
    otherwise they wait for `deliver_events()` or the `flowkernel events deliver` worker.
    A failed delivery is retried after `delivery_backoff * 2 ** (attempt - 1)` and is dead after
    `delivery_attempts` attempts; a worker holds claimed events for `delivery_lease`.
    A definition write that leaves items nowhere to start or a state unreachable is refused;
    one that leaves a trap state (active, with no way out) warns, or with `strict_states` is
    refused too (`fk.definitions.problems(code)` lists what a class breaks).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        plugins: Sequence[object | str] = (),
        entry_points: bool = True,
        deliver_events: bool = True,
        delivery_attempts: int = 8,
        delivery_backoff: timedelta | float = timedelta(seconds=2),
        delivery_lease: timedelta | float = timedelta(seconds=60),
        engine: Engine | None = None,
        strict_states: bool = False,
    ) -> None:
        self.engine = engine if engine is not None else database.open_engine(database_url)
        self._schema = database.SchemaGuard(self.engine)
        self.sessions: sessionmaker[Session] = sessionmaker(
            self.engine, expire_on_commit=False, autoflush=False
        )
        self.plugin_manager: pluggy.PluginManager = get_plugin_manager(
            self.engine, entry_points=entry_points
        )
        for plugin in plugins:
            if isinstance(plugin, str):
                self.plugin_manager.register(load_plugin(plugin), name=plugin)
            else:
                self.plugin_manager.register(plugin)
        self._handlers = collect_handlers(self.plugin_manager)
        self.cache = ClassCache()
        self.definitions = Definitions(
            self.sessions,
            lambda: self._handlers.keys(),
            class_problems,
            strict_states=strict_states,
        )
        self.delivery = Delivery(
            self.engine,
            self.plugin_manager,
            max_attempts=delivery_attempts,
            backoff=delivery_backoff,
            lease=delivery_lease,
        )
        self._deliver_inline = deliver_events
        self.executor = Executor(
            writer_for(self.engine),
            self.cache,
            self.sessions,
            lambda: self._handlers,
            self._after_commit,
        )
        self.runtime = Runtime(self.executor)
        self.pipelines = PipelineAdmin(self.sessions, self.executor.relocate)
        self.items = ItemOps(self.sessions, self.runtime, self.plugin_manager)
        self.queries = Queries(self.sessions, self.executor.writer, self.plugin_manager)
        self.sla = SlaScanner(self.executor)

    # --- setup ---------------------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the database to `revision` (the newest by default).

        Until the database is at the newest revision, every other call raises
        `DatabaseNotMigrated`.
        """
        with self._schema.migrating():
            database.upgrade(self.engine, revision)

    def register_plugin(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin after start-up; its handlers become usable at once."""
        self.plugin_manager.register(plugin, name=name)
        self._handlers = collect_handlers(self.plugin_manager)

    @property
    def handlers(self) -> Mapping[str, EventHandler]:
        """Every named event handler the registered plugins provide."""
        return self._handlers

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Flowkernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- runtime -------------------------------------------------------------------------

    def place(
        self,
        class_code: str | int,
        object_type: str,
        object_id: HostKey,
        actor: Actor,
        *,
        state: str | None = None,
        account_id: int | None = None,
        assigned_user_id: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> ItemSnapshot:
        """Place an object into a class: the global create method runs and the item lands.

        `object_id` is the host's key: a 64-bit integer, a UUID or a short text key."""
        info = self.definitions.get_class(
            class_code,
            account_id if account_id is not None else actor.account_id,
            any_account=actor.reaches(-1),  # the platform's system actor reaches every account
        )
        return self.runtime.place(
            info.id,
            object_type,
            object_id,
            actor,
            account_id=account_id,
            state=state,
            assigned_user_id=assigned_user_id,
            params=params,
        )

    def execute(
        self,
        item_id: int,
        method: str,
        actor: Actor,
        *,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> ExecutionResult:
        """Execute a method by code on an item.

        With `idempotency_key` (at most 255 characters), a repeat of the same request by the
        same actor returns the first result and changes nothing; the key on another request
        raises `IdempotencyKeyReused`.
        """
        return self.runtime.execute(
            item_id, method, actor, params=params, idempotency_key=idempotency_key
        )

    def execute_action(
        self,
        item_id: int,
        action: str,
        actor: Actor,
        *,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> ExecutionResult:
        """Execute the first method (by sequence) of an action on an item (`idempotency_key`
        as for `execute`)."""
        return self.runtime.execute(
            item_id,
            action,
            actor,
            params=params,
            by_action=True,
            idempotency_key=idempotency_key,
        )

    def execute_batch(
        self,
        item_ids: Sequence[int],
        method: str | Sequence[str],
        actor: Actor,
        *,
        params: Mapping[str, Any] | None = None,
        by_action: bool = False,
        on_error: str = "abort",
    ) -> BatchResult:
        """Execute a method (or one per item) on many items in one transaction.

        `on_error="abort"` raises the first refusal and changes nothing; `"skip"` reports
        refused items as `BatchFailure` outcomes and commits the others.
        """
        return execute_batch(
            self.executor,
            item_ids,
            method,
            actor,
            params=params,
            by_action=by_action,
            on_error=on_error,
        )

    def move(
        self,
        item_id: int,
        stage: str | int,
        actor: Actor,
        *,
        idempotency_key: str | None = None,
    ) -> ExecutionResult:
        """Move a pipeline item to a stage (by code or id) through its move method
        (`idempotency_key` as for `execute`)."""
        return self.runtime.move(item_id, stage, actor, idempotency_key=idempotency_key)

    def item(self, item_id: int, actor: Actor) -> ItemSnapshot:
        """An item's current state and state type."""
        return self.runtime.item(item_id, actor)

    def methods(self, item_id: int, actor: Actor) -> list[MethodInfo]:
        """The methods the actor may run on the item now, by sequence."""
        return self.runtime.methods(item_id, actor)

    def history(self, item_id: int, actor: Actor) -> list[HistoryEntry]:
        """An item's state history, oldest first."""
        return self.runtime.history(item_id, actor)

    def state_at(self, item_id: int, when: datetime, actor: Actor) -> str | None:
        """An item's state at a moment of its history."""
        return self.runtime.state_at(item_id, when, actor)

    def explain(self, item_id: int, method_or_stage: str | int, actor: Actor) -> Explanation:
        """Why a method (or a move to a state) can or cannot run on the item now; reads only."""
        return Explainer(self.executor).explain(item_id, method_or_stage, actor)

    def compiled(self, class_code: str | int, account_id: int | None = None) -> CompiledClass:
        """The compiled current version of a class: platform introspection, any account's by id."""
        info = self.definitions.get_class(class_code, account_id, any_account=True)
        return self.runtime.compiled(info.id)

    # --- events --------------------------------------------------------------------------

    def deliver_events(self, limit: int = 500) -> DeliveryReport:
        """Deliver pending outgoing events and watcher notifications now."""
        return self.delivery.deliver(limit=limit)

    def _after_commit(self, outbox_ids: Sequence[int], results: Sequence[ExecutionResult]) -> None:
        observe = self.plugin_manager.hook.flowkernel_method_executed
        # nobody observes: spare a batch of thousands of results a hook call each
        for result in results if observe.get_hookimpls() else ():
            try:
                self.plugin_manager.hook.flowkernel_method_executed(result=result)
            except Exception:
                # The execution committed; an observer's failure must not look like its failure.
                log.exception("flowkernel_method_executed observer failed for %s", result)
        if outbox_ids and self._deliver_inline:
            self.delivery.after_commit(outbox_ids)
