"""Global transitions and whether a global method does anything in a state.

The seed's DefaultTransition gives the global methods of create, enable, disable, delete and
restore a transition from any state. A state's own transition for the method wins; else a
global transition the author wrote (state NULL) names the target; else the target is the first
state, by position, of the action's state type. A global transition into the state type the
item is already in moves nothing; a global method that does nothing in a state is not
offered there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from flowkernel.compile.compiled import CompiledState
from flowkernel.kinds import GLOBAL_TARGETS, StateType

STATE_CHANGE: Final = "change_object_state"
"""The handler that takes a method's transition."""
ON_DELETED_STATE: Final = ("restore", "drop")
"""The global methods offered in a deleted state."""


def first_of_types(states: Mapping[str, CompiledState]) -> dict[str, str]:
    """The first state of each state type, by position."""
    first: dict[str, str] = {}
    for state in sorted(states.values(), key=lambda s: (s.position, s.id)):
        first.setdefault(state.state_type, state.code)
    return first


def global_target(
    state: CompiledState,
    action: str,
    written: str | None,
    first: Mapping[str, str],
    states: Mapping[str, CompiledState],
) -> str | None:
    """Where a global method leads from `state` with no transition of the state's own:
    `written`, the global transition the author wrote, or DefaultTransition's; None when that
    stays within the state's type."""
    target = written
    if target is None and action in GLOBAL_TARGETS:
        target = first.get(GLOBAL_TARGETS[action])
    if target is None or states[target].state_type == state.state_type:
        return None
    return target


def offered(
    state: CompiledState, action: str, target: str | None, chain: Sequence[str], standard: bool
) -> bool:
    """Whether a global method is offered in `state`. In a deleted state only restore and drop
    are, and drop only there (a deleted item is restored before anything else runs on it).
    Elsewhere a custom action always is (a no-transition action runs its events), and a
    `standard` one when it moves the item or its chain runs a handler besides the state change."""
    if state.state_type == StateType.DELETED and action not in ON_DELETED_STATE:
        return False
    if action == "drop":
        return state.state_type == StateType.DELETED
    if not standard:
        return True
    return target is not None or any(handler != STATE_CHANGE for handler in chain)
