"""Hook specifications: everything a Flowkernel plugin can implement.

Plugin authors import `hookimpl` from here (or from `flowkernel`) and decorate functions or
methods named like the specs below. Hooks take frozen values, never ORM rows or Sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Final, Protocol, runtime_checkable

import pluggy

from flowkernel.snapshots import (
    Effect,
    EventContext,
    ExecutionResult,
    InboxEntry,
    LoggedEvent,
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


# --- the stores of the built-in plugins ---------------------------------------------------------


@runtime_checkable
class InboxStore(Protocol):
    """What the plugin registered as `inbox` offers: the watchers' stored notifications."""

    def entries(
        self,
        user_id: int,
        *,
        accounts: Collection[int | None] | None,
        unread_only: bool = False,
        limit: int = 100,
    ) -> list[InboxEntry]:
        """The user's notifications about items of `accounts` (None for a platform item; every
        account when `accounts` is None), newest first."""
        ...

    def mark_read(
        self,
        user_id: int,
        entry_ids: list[int] | None = None,
        *,
        accounts: Collection[int | None] | None,
    ) -> int:
        """Mark the user's entries of `accounts` (all of them when `entry_ids` is None) read;
        how many changed."""
        ...


@runtime_checkable
class EventLogStore(Protocol):
    """What the plugin registered as `event_log` offers: the delivered automation events."""

    def events(
        self,
        account_id: int | None,
        *,
        event_name: str | None = None,
        item_id: int | None = None,
        limit: int = 100,
    ) -> list[LoggedEvent]:
        """Logged events of an account (None: the platform's), oldest first."""
        ...
