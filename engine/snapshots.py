"""Frozen values crossing module and plugin boundaries: never ORM rows, never Sessions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowkernel.actors import Actor


@dataclass(frozen=True, slots=True)
class ItemSnapshot:
    """An item as stored: which object sits in which state of which class.

    `object_key` is the host's UUID or text key (`object_id` then holds its digest), None for
    an integer key; `key` is the host's key either way."""

    id: int
    class_id: int
    class_code: str
    object_type: str
    object_id: int
    account_id: int | None
    state: str
    state_id: int
    state_type: str
    assigned_user_id: int | None
    position: int
    deleted: bool
    last_state_changed_at: datetime | None
    object_key: str | None = None

    @property
    def key(self) -> int | str:
        """The host's key of the object: its integer id, or its UUID or text key."""
        return self.object_id if self.object_key is None else self.object_key


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """A method as the actor sees it in the item's current state."""

    code: str
    action: str
    label: str
    visible: bool
    sequence: int
    target: str | None
    is_global: bool


@dataclass(frozen=True, slots=True)
class EventContext:
    """What an event handler receives while a method executes."""

    item: ItemSnapshot
    method: MethodInfo
    from_state: str
    to_state: str | None
    actor: Actor
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChangeState:
    """Handler effect: take the method's transition (the seed's ChangeObjectState)."""


@dataclass(frozen=True, slots=True)
class DropItem:
    """Handler effect: remove the item from its class (history is kept)."""


@dataclass(frozen=True, slots=True)
class SoftDelete:
    """Handler effect: mark the item deleted without changing its state."""


@dataclass(frozen=True, slots=True)
class Restore:
    """Handler effect: clear the item's deleted mark."""


Effect = ChangeState | DropItem | SoftDelete | Restore


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """The outcome of one executed method."""

    item_id: int
    class_code: str
    method: str
    action: str
    from_state: str
    to_state: str
    changed: bool
    dropped: bool
    actor: Actor
    executed_at: datetime
    handlers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One row of an item's state history: the state it entered, and the period that state
    held, from `moved_at` to `valid_to` (None while it holds)."""

    id: int
    item_id: int
    from_state: str | None
    to_state: str
    method: str | None
    user_id: int | None
    is_system: bool
    moved_at: datetime
    valid_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An automation's event, delivered after the change that fired it committed."""

    event_id: str
    event_name: str
    trigger: str
    pipeline_id: int
    item_id: int
    account_id: int | None
    automation_id: int | None
    payload: Mapping[str, Any]
    attempt: int


@dataclass(frozen=True, slots=True)
class WatcherNotification:
    """A notice to one watcher of an item about a move or an SLA breach."""

    event_id: str
    user_id: int
    account_id: int | None
    item_id: int
    pipeline_id: int
    trigger: str
    message: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event as the log keeps it."""

    event_id: str
    event_name: str
    trigger: str
    pipeline_id: int
    item_id: int
    account_id: int | None
    payload: dict[str, Any]
    logged_at: datetime


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One notification in a user's inbox."""

    id: int
    event_id: str
    user_id: int
    item_id: int
    trigger: str
    message: str
    payload: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class DefinitionProblem:
    """A whole-class rule a class breaks, at one of its states or (state None) at the class."""

    class_code: str
    rule: str
    state: str | None
    state_id: int | None
    message: str
