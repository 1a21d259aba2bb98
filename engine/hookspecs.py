"""Hook specifications: everything a Flowkernel plugin can implement.

Plugin authors import `hookimpl` from here (or from `engine`) and decorate functions or
methods named like the specs below. Hooks take frozen values, never ORM rows or Sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final

import pluggy

from engine.snapshots import (
    Effect,
    EventContext,
    ExecutionResult,
    OutgoingEvent,
    WatcherNotification,
)

PROJECT: Final = "flowkernel"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

EventHandler = Callable[[EventContext], Effect | Sequence[Effect] | None]
"""A named event handler: gets the context, returns effects (or None), raises to refuse."""


@hookspec
def flowkernel_event_handlers() -> Mapping[str, EventHandler]:
    """Return the event handlers this plugin provides, by the name event rows use.

    Called once when the plugin manager is built. A class's event row names a handler
    (`change_object_state`, `station_available`, ...); when a method runs, its chain calls
    the handlers in sequence order. A handler that raises aborts the execution and rolls
    everything back.
    """
    raise NotImplementedError


@hookspec
def flowkernel_deliver_event(event: OutgoingEvent) -> None:
    """Deliver one outgoing automation event; called after the move that fired it committed.

    Delivery is at least once: raise to have the event retried later; consumers drop
    duplicates by `event.event_id`.
    """


@hookspec
def flowkernel_notify_watcher(notification: WatcherNotification) -> None:
    """Notify one watcher of an item about a move or an SLA breach, after commit.

    Raise to have the notification retried; `notification.event_id` is stable across retries.
    """


@hookspec
def flowkernel_method_executed(result: ExecutionResult) -> None:
    """Observe a method execution after its transaction committed. Must not raise."""
