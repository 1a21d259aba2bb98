"""The one decision: may this actor run this method on this item now, and what would it do?

`decide` answers for an item's class version, state and deletion mark, which is all a refusal
before the handlers can depend on; `guard_obstacles` adds what the item's own values and
checklist say about entering the target. Each `Obstacle` carries the reason code an
explanation shows and the typed error an execution raises: `execute` raises the first one,
`explain` lists them all (`every=True`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from flowkernel.actors import Actor
from flowkernel.compile.compiled import CompiledClass, CompiledMethod, CompiledState
from flowkernel.errors import (
    AccessDenied,
    ChecklistIncomplete,
    FlowkernelError,
    InvalidDefinition,
    ItemNotDeleted,
    MethodHidden,
    MethodNotAvailable,
    MoveNotAllowed,
    RequirementMissing,
)
from flowkernel.kinds import SLA_BREACH, Permission, RuleEffect, StateType
from flowkernel.previews import preview

ITEM_DELETED: Final = "item_deleted"
"""The item is soft-deleted: only restore and drop run on it."""
WRONG_STATE: Final = "wrong_state"
"""The method does not exist in the item's current state."""
NO_TRANSITION: Final = "no_transition"
"""No method of the current state leads to the asked state."""
SAME_STATE: Final = "same_state"
"""The item already is in the asked state."""
STATE_GONE: Final = "state_gone"
"""The item sits in a stage its class no longer has."""
HIDDEN: Final = "hidden"
"""The method is hidden from the actor (runs for the system actor or by access rule)."""
NOT_PERMITTED: Final = "not_permitted"
"""An access rule (or the lack of one) keeps the actor from executing the method."""
MOVE_RESTRICTED: Final = "move_restricted"
"""The pipeline's movement rules refuse this move for users."""
MISSING_FIELDS: Final = "missing_fields"
"""Required columns of the target stage have no value on the item."""
OPEN_CHECKLIST: Final = "open_checklist"
"""Required checklist entries of the current stage are still open."""
NOT_DELETED: Final = "not_deleted"
"""Drop removes only deleted items."""

REASON_CODES: Final = (
    ITEM_DELETED,
    WRONG_STATE,
    NO_TRANSITION,
    SAME_STATE,
    STATE_GONE,
    HIDDEN,
    NOT_PERMITTED,
    MOVE_RESTRICTED,
    MISSING_FIELDS,
    OPEN_CHECKLIST,
    NOT_DELETED,
)

ON_DELETED: Final = ("restore", "drop", SLA_BREACH)
"""The actions that run on a soft-deleted item."""

_RULES: Final = {
    "allowed_moves": "the pipeline allows only listed moves out of {state!r}",
    "no_moving_back": "the pipeline does not let items move back",
    "no_skipping_forward": "the pipeline does not let items skip stages forward",
}


@dataclass(frozen=True, slots=True)
class Obstacle:
    """One reason a method cannot run now: its code (`REASON_CODES`), what an explanation says
    of it (naming the next step), the error an execution raises for it, and what it is about
    (states, columns, checklist keys, stages)."""

    code: str
    message: str
    error: FlowkernelError
    subjects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """What running `method` on an item in `state` does, or why it cannot.

    `target` is the state its transition leads to (None: it changes no state); `obstacles`
    are the refusals that stand before its handlers run, `guarded` whether entering the
    target depends on the item's values or checklist (see `guard_obstacles`).
    """

    state: CompiledState | None
    method: CompiledMethod | None
    target: CompiledState | None
    obstacles: tuple[Obstacle, ...]
    guarded: bool


def visible_methods(
    compiled: CompiledClass, state: str, actor: Actor, deleted: bool = False
) -> list[CompiledMethod]:
    """The methods of `state` the actor may see, by sequence; on a pipeline, restore and drop
    only for deleted items."""
    return [
        m
        for m in compiled.methods.get(state, {}).values()
        if compiled.allowed(actor, m, Permission.VISIBLE)
        and (actor.is_system or m.restriction is None)
        and (m.action in ON_DELETED if deleted else not _needs_deleted(compiled, m))
    ]


def _needs_deleted(compiled: CompiledClass, method: CompiledMethod) -> bool:
    """Whether the method runs on deleted items only: a pipeline's restore, and drop."""
    return method.action == "drop" or (compiled.is_pipeline and method.action == "restore")


def path_to(
    compiled: CompiledClass, start: str, goals: Collection[str], actor: Actor
) -> tuple[str, ...] | None:
    """The fewest methods the actor may run that lead from `start` into one of `goals`
    (empty when `start` is one), or None when none lead there."""
    if start in goals:
        return ()
    came: dict[str, tuple[str, str]] = {start: ("", "")}
    queue = [start]
    for current in queue:
        for method in visible_methods(compiled, current, actor):
            target = method.target
            if target is None or target in came:
                continue
            came[target] = (current, method.code)
            if target in goals:
                steps: list[str] = []
                while target != start:
                    target, code = came[target]
                    steps.append(code)
                return tuple(reversed(steps))
            queue.append(target)
    return None


def where_hint(
    compiled: CompiledClass, start: str, goals: Collection[str], actor: Actor
) -> tuple[str, tuple[str, ...]]:
    """A hint naming the states a method runs in and the methods that lead there, with that
    path (empty when no method the actor may run leads there)."""
    places = ", ".join(goals)
    path = path_to(compiled, start, goals, actor)
    if path is None:
        return f"it runs in {places}, which no method you may run leads to from here", ()
    return f"it runs in {places}: run {', then '.join(path)} first", path


def decide(
    compiled: CompiledClass,
    item_id: int,
    stage_id: int,
    deleted: bool,
    asked: str,
    actor: Actor,
    *,
    by_action: bool = False,
    every: bool = False,
) -> Decision:
    """Decide `asked` (a method code, or an action's when `by_action`) on the item.

    Without `every` it stops at the first obstacle, as an execution does.
    """
    state = compiled.states_by_id.get(stage_id)
    if state is None:
        error = _gone(compiled, item_id, stage_id)
        return Decision(None, None, None, (Obstacle(STATE_GONE, error.message, error),), False)
    method = (
        compiled.method_for_action(state.code, asked)
        if by_action
        else compiled.method(state.code, asked)
    )
    obstacles: list[Obstacle] = []
    label = f"{state.code} (deleted)" if deleted else state.code
    if method is None:
        obstacles.append(_not_here(compiled, state, asked, label, actor, deleted))
        return Decision(state, None, None, tuple(obstacles), False)
    target = compiled.states[method.target] if method.target is not None else None
    checks = (_deleted, _access, _restriction, _drop)
    for check in checks:
        found = check(compiled, state, method, deleted, label, item_id, actor)
        if found is not None:
            obstacles.append(found)
            if not every:
                break
    guarded = target is not None and (
        bool(target.required)
        or (not target.is_lost and any(entry.required for entry in state.checklist))
    )
    return Decision(state, method, target, tuple(obstacles), guarded)


def state_of(compiled: CompiledClass, item_id: int, stage_id: int) -> CompiledState:
    """The item's state; `InvalidDefinition` when its stage left the class."""
    state = compiled.states_by_id.get(stage_id)
    if state is None:
        raise _gone(compiled, item_id, stage_id)
    return state


def _gone(compiled: CompiledClass, item_id: int, stage_id: int) -> InvalidDefinition:
    return InvalidDefinition(
        f"item {item_id} sits in stage {stage_id}, which class {preview(compiled.code)} no "
        f"longer has; "
        "move it with the system actor or restore the stage",
        item_id=item_id,
    )


def guard_obstacles(
    decision: Decision,
    checklist_state: Any,
    filled: Collection[int],
    *,
    every: bool = False,
) -> tuple[Obstacle, ...]:
    """What keeps the item from entering the decision's target: required columns without a
    value (`filled` holds the item's columns that have one), then the current state's open
    required checklist entries (not when the target is the lost stage)."""
    state, target = decision.state, decision.target
    if state is None or target is None or not decision.guarded:
        return ()
    obstacles: list[Obstacle] = []
    missing = [(r.name, r.label) for r in target.required if r.column_id not in filled]
    if missing:
        names = ", ".join(f"{name} ({label})" for name, label in missing)
        obstacles.append(
            Obstacle(
                MISSING_FIELDS,
                f"stage {preview(target.code)} needs values in {names}: set them first",
                RequirementMissing(target.code, missing),
                tuple(name for name, _ in missing),
            )
        )
        if not every:
            return tuple(obstacles)
    if not target.is_lost:
        open_items = open_checklist_items(state, checklist_state)
        if open_items:
            names = ", ".join(f"{key} ({label})" for key, label in open_items)
            obstacles.append(
                Obstacle(
                    OPEN_CHECKLIST,
                    f"stage {preview(state.code)} has open checklist items {names}: complete "
                    f"them first",
                    ChecklistIncomplete(state.code, open_items),
                    tuple(key for key, _ in open_items),
                )
            )
    return tuple(obstacles)


def open_checklist_items(state: CompiledState, checklist_state: Any) -> list[tuple[str, str]]:
    """Required checklist entries of `state` not completed in `checklist_state`."""
    done: Mapping[str, Any] = checklist_state if isinstance(checklist_state, dict) else {}
    return [
        (entry.key, entry.label)
        for entry in state.checklist
        if entry.required
        and not (isinstance(done.get(entry.key), dict) and done[entry.key].get("completed"))
    ]


# --- the checks, in the order an execution meets them ------------------------------------


def _available(
    compiled: CompiledClass, state: CompiledState, actor: Actor, deleted: bool
) -> list[str]:
    return [m.code for m in visible_methods(compiled, state.code, actor, deleted)]


def _not_here(
    compiled: CompiledClass,
    state: CompiledState,
    asked: str,
    label: str,
    actor: Actor,
    deleted: bool,
) -> Obstacle:
    available = _available(compiled, state, actor, deleted)
    if compiled.create is not None and asked == compiled.create.code:
        hint = (
            f"{preview(asked)} places new objects into class {preview(compiled.code)} and runs "
            f"on no item; "
            "place an object instead"
        )
        return Obstacle(WRONG_STATE, hint, MethodNotAvailable(asked, label, available, hint))
    having = [s for s, methods in compiled.methods.items() if asked in methods]
    if not having:
        idle = (
            f"{preview(asked)} does nothing in any state of class {preview(compiled.code)}: it "
            "has no transition and no handler besides the state change; give it one"
            if asked in compiled.idle
            else ""
        )
        error = MethodNotAvailable(asked, label, available, idle)
        return Obstacle(WRONG_STATE, error.message, error)
    runnable = [
        s
        for s in having
        if actor.is_system
        or (
            compiled.methods[s][asked].restriction is None
            and compiled.allowed(actor, compiled.methods[s][asked], Permission.EXECUTE)
        )
    ]
    if runnable:
        hint, path = where_hint(compiled, state.code, runnable, actor)
    else:
        hint, path = (
            f"it runs in {', '.join(having)}, for the system actor or a user an access rule allows",
            (),
        )
    error = MethodNotAvailable(asked, label, available, hint, applies_in=having, path=path)
    message = f"method {preview(asked)} is not available in state {preview(state.code)}; {hint}"
    return Obstacle(WRONG_STATE, message, error, tuple(having))


def _deleted(
    compiled: CompiledClass,
    state: CompiledState,
    method: CompiledMethod,
    deleted: bool,
    label: str,
    item_id: int,
    actor: Actor,
) -> Obstacle | None:
    if not deleted or method.action in ON_DELETED:
        return None
    if not compiled.is_pipeline and not method.is_global:
        return None  # the author bound it to the deleted state
    available = _available(compiled, state, actor, deleted)
    hint = f"item {item_id} is deleted; only restore and drop run on it: restore it first"
    error = MethodNotAvailable(method.code, label, available, hint)
    return Obstacle(ITEM_DELETED, hint, error)


def _access(
    compiled: CompiledClass,
    state: CompiledState,
    method: CompiledMethod,
    deleted: bool,
    label: str,
    item_id: int,
    actor: Actor,
) -> Obstacle | None:
    if actor.is_system:
        return None
    visible = compiled.allowed(actor, method, Permission.VISIBLE)
    executable = compiled.allowed(actor, method, Permission.EXECUTE)
    if not visible and not executable:
        reason = "hidden" if not method.visible else "hidden from this actor by an access rule"
        why = "it is hidden" if not method.visible else "an access rule hides it"
        available = _available(compiled, state, actor, deleted)
        message = (
            f"method {preview(method.code)} is not shown to {_who(actor)}: {why}; it runs as the "
            "system actor, or ask for an access rule that allows this user or a group"
        )
        return Obstacle(HIDDEN, message, MethodHidden(method.code, label, available, reason))
    if executable:
        return None
    denied = [
        rule
        for rule in compiled.access
        if rule.effect == RuleEffect.DENY and rule.matches(actor, method.code, Permission.EXECUTE)
    ]
    if denied:
        why = f"an access rule denies {denied[0].subject_kind} {preview(denied[0].subject)}"
    else:
        why = "it is hidden and no access rule allows this actor to execute it"
    message = (
        f"{_who(actor)} may not execute {preview(method.code)}: {why}; ask for an access rule that "
        "allows it"
    )
    error = AccessDenied(
        f"{_who(actor)} may not execute {preview(method.code)} of class "
        f"{preview(compiled.code)}: {why}; ask "
        "for an access rule that allows it",
        method=method.code,
        user_id=actor.user_id,
    )
    return Obstacle(NOT_PERMITTED, message, error)


def _restriction(
    compiled: CompiledClass,
    state: CompiledState,
    method: CompiledMethod,
    deleted: bool,
    label: str,
    item_id: int,
    actor: Actor,
) -> Obstacle | None:
    if method.restriction is None or actor.is_system:
        return None
    allowed = [
        m.target
        for m in compiled.methods.get(state.code, {}).values()
        if m.action == "move" and m.restriction is None and m.target is not None
    ]
    rule = _RULES.get(method.restriction, "the pipeline rule {rule!r} refuses it").format(
        state=state.code, rule=method.restriction
    )
    error = MoveNotAllowed(state.code, method.target or "?", method.restriction, rule, allowed)
    return Obstacle(MOVE_RESTRICTED, error.message, error, tuple(allowed))


def _drop(
    compiled: CompiledClass,
    state: CompiledState,
    method: CompiledMethod,
    deleted: bool,
    label: str,
    item_id: int,
    actor: Actor,
) -> Obstacle | None:
    if deleted or not _needs_deleted(compiled, method):
        return None
    if compiled.is_pipeline:
        path: tuple[str, ...] | None = ("delete",)
    else:
        goals = [s.code for s in compiled.ordered_states if s.state_type == StateType.DELETED]
        path = path_to(compiled, state.code, goals, actor)
    error = ItemNotDeleted(item_id, state.code, method.code, path or ())
    return Obstacle(NOT_DELETED, error.message, error)


def _who(actor: Actor) -> str:
    return f"user {actor.user_id}" if actor.user_id is not None else "this actor"
