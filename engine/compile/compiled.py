"""Compiled classes: a class version as immutable values and its `transitions` machine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from transitions import Machine

from flowkernel.access import AccessRule
from flowkernel.actors import Actor
from flowkernel.definition.codes import RESERVED_METHOD_CODES
from flowkernel.definition.pipelines.specs import ChecklistItem
from flowkernel.errors import UnknownDefinition
from flowkernel.kinds import CallLog, Movement, RuleEffect
from flowkernel.previews import preview
from flowkernel.snapshots import MethodInfo

MEMO_LIMIT: Final = 10_000
"""The most transitions one compiled class remembers."""


@dataclass(frozen=True, slots=True)
class RequiredColumn:
    """A column that must hold a value before an item enters a stage."""

    column_id: int
    name: str
    label: str


@dataclass(frozen=True, slots=True)
class CompiledState:
    """A state (stage) of a compiled class."""

    id: int
    code: str
    label: str
    state_type: str
    position: int
    is_won: bool
    is_lost: bool
    sla_days: int | None
    probability: int | None
    color: str | None
    checklist: tuple[ChecklistItem, ...]
    required: tuple[RequiredColumn, ...]


@dataclass(frozen=True, slots=True)
class CompiledMethod:
    """A method as resolved for one state: its target and its handler chain."""

    code: str
    action: str
    label: str
    visible: bool
    sequence: int
    target: str | None
    chain: tuple[str, ...]
    is_global: bool
    restriction: str | None = None
    log: CallLog = CallLog.ALL

    details: MethodInfo | None = field(default=None, repr=False, compare=False)

    def info(self) -> MethodInfo:
        """The method as a plain value for hooks and callers (made once)."""
        found = self.details
        if found is None:
            found = MethodInfo(
                code=self.code,
                action=self.action,
                label=self.label,
                visible=self.visible,
                sequence=self.sequence,
                target=self.target,
                is_global=self.is_global,
            )
            object.__setattr__(self, "details", found)
        return found


@dataclass(frozen=True, slots=True)
class CompiledAutomation:
    """An active automation of a pipeline."""

    id: int
    trigger: str
    stage_id: int | None
    event_name: str
    payload_template: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CompiledColumn:
    """A custom column of a pipeline."""

    id: int
    name: str
    label: str
    field_type: str
    options: tuple[str, ...]
    is_required: bool
    is_active: bool
    position: int


class Run:
    """The throwaway model a machine fires on: the current state and the guard to call."""

    __slots__ = ("guard", "state")

    def __init__(self, state: str, guard: Callable[[str], None]) -> None:
        self.state = state
        self.guard = guard


assert set(Run.__slots__) <= RESERVED_METHOD_CODES, "a Run attribute must be a reserved code"


def guard_condition(event: Any) -> bool:
    """The condition of every guarded machine transition: the model's guard, which raises to
    refuse."""
    event.model.guard(event.transition.dest)
    return True


@dataclass(frozen=True)
class CompiledClass:
    """Everything needed to execute methods on items of one class version, in memory."""

    id: int
    code: str
    name: str
    version: int
    account_id: int | None
    object_type: str | None
    is_abstract: bool
    is_template: bool
    movement: str
    lineage: tuple[int, ...]
    states: Mapping[str, CompiledState]
    states_by_id: Mapping[int, CompiledState]
    methods: Mapping[str, Mapping[str, CompiledMethod]]
    create: CompiledMethod | None
    access: tuple[AccessRule, ...]
    automations: tuple[CompiledAutomation, ...]
    columns: Mapping[str, CompiledColumn]
    machine: Machine = field(repr=False, compare=False)
    idle: frozenset[str] = frozenset()
    """Methods the class defines that do nothing in any of its states (offered nowhere)."""
    # unguarded transitions the machine answered: (state, method) -> state
    fired: dict[tuple[str, str], str] = field(default_factory=dict, repr=False, compare=False)
    # decisions that found no obstacle, by (stage id, deleted, method, by action, actor)
    decided: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_pipeline(self) -> bool:
        """Whether stages move freely (a LEO pipeline) rather than by explicit transitions."""
        return self.movement == Movement.FREE

    @property
    def ordered_states(self) -> list[CompiledState]:
        """States in position order."""
        return sorted(self.states.values(), key=lambda s: (s.position, s.id))

    def state(self, code: str) -> CompiledState:
        """The state with this code, or a typed error listing the known ones."""
        try:
            return self.states[code]
        except KeyError:
            raise UnknownDefinition(
                "state", code, f"class {preview(self.code)}", list(self.states)
            ) from None

    def method(self, state: str, code: str) -> CompiledMethod | None:
        """The method `code` available in `state`, if any."""
        return self.methods.get(state, {}).get(code)

    def method_for_action(self, state: str, action: str) -> CompiledMethod | None:
        """The first method (by sequence) of `action` available in `state`, if any."""
        for method in self.methods.get(state, {}).values():
            if method.action == action:
                return method
        return None

    def allowed(self, actor: Actor, method: CompiledMethod, permission: str) -> bool:
        """Whether `actor` may `permission` ("execute" or "visible") `method`; deny wins."""
        if actor.is_system:
            return True
        granted = False
        for rule in self.access:
            if rule.matches(actor, method.code, permission):
                if rule.effect == RuleEffect.DENY:
                    return False
                granted = True
        return granted or method.visible

    def transition(self, state: str, method: str, guard: Callable[[str], None] | None) -> str:
        """The state the machine's transition for `method` leads to from `state`.

        `guard` is called with the target before the machine takes it and raises to refuse;
        without one the answer is the same for every item, so it is remembered.
        """
        if guard is None:
            found = self.fired.get((state, method))
            if found is None:
                run = Run(state, _no_guard)
                self.machine.events[method].trigger(run)
                if len(self.fired) < MEMO_LIMIT:
                    self.fired[(state, method)] = run.state
                found = run.state
            return found
        run = Run(state, guard)
        self.machine.events[method].trigger(run)
        return run.state


def _no_guard(target: str) -> None:
    """The guard of a transition that has nothing to check."""
