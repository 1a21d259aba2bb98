"""Whole-class rules of a compiled class: items have somewhere to start and every state is in play.

A kernel class (explicit movement) is sound when its items have somewhere to start (a create
transition or a state of type created), every state can be reached from there by the class's
transitions, and every active state (of type created or enabled) has a way out: a transition to
another state, or a drop. Closed (disabled) and deleted states may end an item's life. A
pipeline's items may be placed into any stage and move by its movement rules, so it needs only a
stage. An abstract class holds no items and is not checked.
"""

from __future__ import annotations

from collections import deque

from sqlalchemy.orm import Session

from flowkernel.compile.compiled import CompiledClass, CompiledState
from flowkernel.compile.compiler import compile_class
from flowkernel.kinds import ClassRule, StateType
from flowkernel.previews import preview
from flowkernel.snapshots import DefinitionProblem

ACTIVE_TYPES = frozenset({StateType.CREATED, StateType.ENABLED})
"""State types an item must be able to leave."""


def problems(compiled: CompiledClass) -> tuple[DefinitionProblem, ...]:
    """Every whole-class rule `compiled` breaks, in state order; empty when it is sound."""
    if compiled.is_abstract:
        return ()
    if compiled.is_pipeline:
        if compiled.states:
            return ()
        return (_problem(compiled, ClassRule.NO_START, None, "has no stage; add one"),)
    start = compiled.create.target if compiled.create is not None else None
    if start is None:
        return (
            _problem(
                compiled,
                ClassRule.NO_START,
                None,
                "has no create transition and no state of type created: its items have "
                "nowhere to start; add a state of type created",
            ),
        )
    found: list[DefinitionProblem] = []
    reached = _reachable(compiled, start)
    for state in compiled.ordered_states:
        if state.code not in reached:
            found.append(
                _problem(
                    compiled,
                    ClassRule.UNREACHABLE,
                    state,
                    f"cannot be reached from {preview(start)}, where items start; add a transition "
                    "into it",
                )
            )
        if state.state_type in ACTIVE_TYPES and not _has_exit(compiled, state.code):
            found.append(
                _problem(
                    compiled,
                    ClassRule.TRAP,
                    state,
                    f"is of type {state.state_type} and has no transition out: its items could "
                    "never leave it; add a transition out, or make it a disabled or deleted state",
                )
            )
    return tuple(found)


def class_problems(session: Session, class_id: int) -> tuple[DefinitionProblem, ...]:
    """The problems of class `class_id` as `session` sees it (uncommitted writes included)."""
    return problems(compile_class(session, class_id))


def _problem(
    compiled: CompiledClass, rule: ClassRule, state: CompiledState | None, text: str
) -> DefinitionProblem:
    owner = (
        f"pipeline {preview(compiled.name)}"
        if compiled.is_pipeline
        else f"class {preview(compiled.code)}"
    )
    where = f"state {preview(state.code)} of {owner}" if state else owner
    return DefinitionProblem(
        class_code=compiled.code,
        rule=rule.value,
        state=state.code if state else None,
        state_id=state.id if state else None,
        message=f"{where} {text}",
    )


def _reachable(compiled: CompiledClass, start: str) -> set[str]:
    reached = {start}
    queue = deque([start])
    while queue:
        for method in compiled.methods.get(queue.popleft(), {}).values():
            target = method.target
            if target is not None and target not in reached and target in compiled.states:
                reached.add(target)
                queue.append(target)
    return reached


def _has_exit(compiled: CompiledClass, state: str) -> bool:
    return any(
        (method.target is not None and method.target != state) or method.action == "drop"
        for method in compiled.methods.get(state, {}).values()
    )
