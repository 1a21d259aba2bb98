"""Response bodies of the class endpoints: a class with its states, methods, transitions,
events and access rules, the whole-class rules it breaks, and the plans of applied documents."""

from __future__ import annotations

from pydantic import Field

from flowkernel.documents.applying import Plan
from flowkernel.http.bodies import Out


class ClassOut(Out):
    """A class header."""

    id: int
    code: str
    label: str
    parent: str | None
    is_abstract: bool
    account_id: int | None
    movement: str
    version: int


class StateOut(Out):
    """A state of a class."""

    id: int
    code: str
    label: str
    state_type: str
    position: int


class MethodDefOut(Out):
    """A method of a class: an action bound to a state (None: global)."""

    id: int
    state: str | None
    action: str
    code: str
    label: str
    sequence: int
    visible: bool


class TransitionOut(Out):
    """(state or any state, method) -> new state."""

    id: int
    state: str | None
    method: str
    new_state: str


class ProblemOut(Out):
    """A whole-class rule the class breaks, at a state or (state null) at the class."""

    rule: str = Field(description="no_start, unreachable_state or trap_state (a warning)")
    state: str | None
    message: str


class EventOut(Out):
    """An entry of the class's chain for an action: a handler, or the parent's chain."""

    id: int
    action: str
    handler: str | None
    is_parent: bool
    label: str
    sequence: int
    enabled: bool


class AccessRuleOut(Out):
    """Allow or deny a user or group to execute or see a method (None: every method)."""

    id: int
    method: str | None
    subject_kind: str
    subject: str
    permission: str
    effect: str


class ClassDetailOut(ClassOut):
    """A class with its own states, methods, transitions, events and access rules."""

    states: list[StateOut]
    methods: list[MethodDefOut]
    transitions: list[TransitionOut]
    events: list[EventOut]
    access_rules: list[AccessRuleOut]


class ChangeOut(Out):
    """One step of a plan: `op` add, change or remove; `items` the items it affects (null for
    an addition); `refused` what still uses a state the plan would remove or retype."""

    kind: str
    key: str
    op: str
    detail: str
    items: int | None
    refused: str | None


class PlanOut(Out):
    """What applying one class document does (or, as a dry run, would do)."""

    kind: str
    code: str
    created: bool
    unchanged: bool
    changes: list[ChangeOut]

    @classmethod
    def of(cls, plan: Plan) -> PlanOut:
        return cls.model_validate(plan)
