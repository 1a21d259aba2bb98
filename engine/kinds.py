"""The closed sets of the model: each an Enum whose values are the strings stored and shown."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class StateType(StrEnum):
    """The four fixed state types of the Apostol kernel."""

    CREATED = "created"
    ENABLED = "enabled"
    DISABLED = "disabled"
    DELETED = "deleted"


class Movement(StrEnum):
    """How items of a class move: freely between stages (a pipeline) or by transitions."""

    FREE = "free"
    EXPLICIT = "explicit"


class Permission(StrEnum):
    """What an access rule grants or denies."""

    EXECUTE = "execute"
    VISIBLE = "visible"


class RuleEffect(StrEnum):
    """Whether an access rule allows or denies; deny wins."""

    ALLOW = "allow"
    DENY = "deny"


class SubjectKind(StrEnum):
    """Whom an access rule speaks about: one user (or `*`, everyone) or a group."""

    USER = "user"
    GROUP = "group"


class OnError(StrEnum):
    """What a batch does with a refused item: refuse the whole batch, or skip the item."""

    ABORT = "abort"
    SKIP = "skip"


class Trigger(StrEnum):
    """When an automation fires (the LEO seed's triggers)."""

    STAGE_ENTERED = "stage_entered"
    STAGE_EXITED = "stage_exited"
    ITEM_CREATED = "item_created"
    SLA_BREACHED = "sla_breached"


class OutboxKind(StrEnum):
    """What an outbox row carries: an automation event or a watcher notification."""

    AUTOMATION = "automation"
    NOTIFICATION = "notification"


class CallLog(StrEnum):
    """Which calls of a method that changes no state the method-call log keeps."""

    ALL = "all"
    LAST = "last"
    NONE = "none"


class ClassRule(StrEnum):
    """A whole-class rule, checked when a definition is written."""

    NO_START = "no_start"
    """Items have nowhere to start: no create transition and no state of type created."""
    UNREACHABLE = "unreachable_state"
    """No chain of transitions leads from where items start to the state."""
    TRAP = "trap_state"
    """An item in the state (created or enabled) can never leave it."""


MOVE_PREFIX: Final = "move_to_"
"""A pipeline's move into stage S is the method `move_to_<S>`."""
SLA_BREACH: Final = "sla_breach"
"""The hidden action the SLA scan fires when an item overstays its stage."""

STATE_TYPES: Final = tuple(t.value for t in StateType)
"""The state types in their fixed order, as strings."""
MOVEMENTS: Final = tuple(m.value for m in Movement)
"""The movement modes, as strings."""
TRIGGERS: Final = tuple(t.value for t in Trigger)
"""The automation triggers, as strings."""
GLOBAL_TARGETS: Final = {
    "create": StateType.CREATED.value,
    "enable": StateType.ENABLED.value,
    "disable": StateType.DISABLED.value,
    "delete": StateType.DELETED.value,
    "restore": StateType.CREATED.value,
}
"""The seed's DefaultTransition: the state type a global method of each action leads to from
any state; open, edit, save, update and drop lead nowhere."""
