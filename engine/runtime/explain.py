"""Why a method (or a move to a state) can or cannot run on an item right now.

An explanation asks the one decision (`flowkernel.runtime.decision`) for every obstacle at
once, reading only: it takes no lock and writes nothing. Each reason is the refusal's own:
its code and the message of the error an execution would raise. A state asked for (a state
code, or a stage id) is the method of the current state that leads there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from flowkernel.access import VISIBLE, check_class
from flowkernel.actors import Actor
from flowkernel.compile.compiled import CompiledClass, CompiledMethod, CompiledState
from flowkernel.errors import InvalidArgument, ItemNotFound, UnknownDefinition
from flowkernel.kinds import MOVE_PREFIX, Permission, Trigger
from flowkernel.previews import preview
from flowkernel.runtime.decision import (
    HIDDEN,
    ITEM_DELETED,
    MISSING_FIELDS,
    MOVE_RESTRICTED,
    NO_TRANSITION,
    NOT_DELETED,
    NOT_PERMITTED,
    OPEN_CHECKLIST,
    REASON_CODES,
    SAME_STATE,
    STATE_GONE,
    WRONG_STATE,
    Decision,
    decide,
    guard_obstacles,
)
from flowkernel.runtime.executor import Executor
from flowkernel.store.database import reading
from flowkernel.store.tables import item_values, items, pipelines
from flowkernel.validation import check_item_id


@dataclass(frozen=True, slots=True)
class Reason:
    """One obstacle: a code from `REASON_CODES` and a message naming the next step.

    `subjects` lists what the reason is about: the states that have the method, the missing
    columns, the open checklist keys, the stages a move may go to.
    """

    code: str
    message: str
    subjects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Explanation:
    """Whether `method` can run on the item now, and what it would do.

    `target` is the state the method leads to (None: it changes no state), `chain` the event
    handlers it runs, `events` the automation events a move would fire. `method` is None when
    the asked state cannot be reached by any method of the current state.
    """

    item_id: int
    class_code: str
    state: str | None
    asked: str
    method: str | None
    possible: bool
    reasons: tuple[Reason, ...]
    target: str | None
    chain: tuple[str, ...]
    events: tuple[str, ...]

    @property
    def summary(self) -> str:
        """One sentence: what would happen, or how many obstacles stand in the way."""
        name = self.method or self.asked
        if not self.possible:
            count = len(self.reasons)
            return (
                f"{preview(name)} cannot run on item {self.item_id} now "
                f"({count} reason{'s' if count != 1 else ''})"
            )
        if self.target is None:
            change = f"keeps it in {preview(self.state)}"
        elif self.target == self.state:
            change = f"re-enters {preview(self.state)}"
        else:
            change = f"moves it from {preview(self.state)} to {preview(self.target)}"
        handlers = ", ".join(self.chain) if self.chain else "no handlers"
        fired = f"; fires {', '.join(self.events)}" if self.events else ""
        return f"{preview(name)} can run on item {self.item_id}: {change} through {handlers}{fired}"


class Explainer:
    """Answers why a method can or cannot run on an item, without changing anything."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def explain(self, item_id: int, method_or_stage: str | int, actor: Actor) -> Explanation:
        """Explain `method_or_stage` on the item for `actor`.

        A method code is taken as it is; a state code (or a stage id) asks for the method of
        the current state that leads there (`move_to_<code>` on a pipeline). An item the actor
        does not reach is `ItemNotFound`; a name that is neither a method nor a state of the
        item's class is `UnknownDefinition`.
        """
        check_item_id(item_id)
        if isinstance(method_or_stage, bool) or not isinstance(method_or_stage, str | int):
            raise InvalidArgument(
                f"method_or_stage must be a method or state code, or a stage id, not "
                f"{preview(method_or_stage)}",
                method_or_stage=method_or_stage,
            )
        with reading(self._executor.sessions) as session:
            row = session.execute(
                select(
                    items.c.flow_pipeline_id,
                    items.c.flow_stage_id,
                    items.c.iam_account_id,
                    items.c.checklist_state,
                    items.c.deleted_at,
                    pipelines.c.version,
                )
                .join(pipelines, pipelines.c.id == items.c.flow_pipeline_id)
                .where(items.c.id == item_id)
            ).first()
            if row is None or not actor.reaches(row.iam_account_id):
                raise ItemNotFound(item_id)
            compiled = self._executor.cache.compile(session, row.flow_pipeline_id, row.version)
            check_class(compiled.access, actor, VISIBLE, f"class {preview(compiled.code)}")
            case = _Case(session, compiled, item_id, row, actor)
            return case.explain(method_or_stage)


class _Case:
    """One explanation, read inside one transaction."""

    def __init__(
        self, session: Session, compiled: CompiledClass, item_id: int, row: object, actor: Actor
    ) -> None:
        self.session = session
        self.compiled = compiled
        self.item_id = item_id
        self.stage_id: int = row.flow_stage_id  # type: ignore[attr-defined]
        self.checklist: object = row.checklist_state  # type: ignore[attr-defined]
        self.deleted = row.deleted_at is not None  # type: ignore[attr-defined]
        self.actor = actor
        self.state = compiled.states_by_id.get(self.stage_id)
        self.reasons: list[Reason] = []

    def explain(self, asked: str | int) -> Explanation:
        state = self.state
        if state is None:  # the decision says why, whatever was asked
            return self.answer(str(asked), self.decide(str(asked)))
        code = self.method_for(asked, state)
        if code is None:
            return self.answer(str(asked), None)
        return self.answer(str(asked), self.decide(code))

    def method_for(self, asked: str | int, state: CompiledState) -> str | None:
        """The method code `asked` stands for; None (with a reason) when there is none."""
        compiled = self.compiled
        if isinstance(asked, int):
            target = compiled.states_by_id.get(asked)
            if target is None:
                raise UnknownDefinition(
                    "stage",
                    asked,
                    f"class {preview(compiled.code)}",
                    [str(s.id) for s in compiled.ordered_states],
                )
            return self.method_to(target, state)
        if compiled.is_pipeline and asked == MOVE_PREFIX + state.code:
            return self.method_to(state, state)
        known_methods = {code for methods in compiled.methods.values() for code in methods}
        known_methods |= compiled.idle
        if asked in known_methods or (
            compiled.create is not None and asked == compiled.create.code
        ):
            return asked
        if asked in compiled.states:
            return self.method_to(compiled.states[asked], state)
        raise UnknownDefinition(
            "method or state",
            asked,
            f"class {preview(compiled.code)}",
            [*sorted(known_methods), *(s.code for s in compiled.ordered_states)],
        )

    def method_to(self, target: CompiledState, state: CompiledState) -> str | None:
        """The method of `state` leading to `target` the actor can best use, if any."""
        if target.code == state.code:
            self.reasons.append(
                Reason(
                    SAME_STATE,
                    f"item {self.item_id} already is in {preview(state.code)}; pick another state",
                    (state.code,),
                )
            )
            return None
        if self.compiled.is_pipeline:
            return MOVE_PREFIX + target.code
        methods = self.compiled.methods
        leading = [m for m in methods.get(state.code, {}).values() if m.target == target.code]
        if not leading:
            elsewhere = [
                f"{m.code} (from {s})"
                for s, available in methods.items()
                for m in available.values()
                if m.target == target.code and s != state.code
            ]
            hint = f"; methods leading there: {', '.join(elsewhere)}" if elsewhere else ""
            self.reasons.append(
                Reason(
                    NO_TRANSITION,
                    f"no method of state {preview(state.code)} leads to "
                    f"{preview(target.code)}{hint}",
                    tuple(elsewhere),
                )
            )
            return None
        return (_runnable(self.compiled, self.actor, leading) or leading)[0].code

    def decide(self, code: str) -> Decision:
        decision = decide(
            self.compiled, self.item_id, self.stage_id, self.deleted, code, self.actor, every=True
        )
        obstacles = list(decision.obstacles)
        if decision.target is not None and decision.state is not None:
            filled = self.filled(decision.target)
            full = Decision(decision.state, decision.method, decision.target, (), True)
            guards = guard_obstacles(full, self.checklist, filled, every=True)
            # entering the target is checked before the drop's own rule, as executions meet them
            drop = [o for o in obstacles if o.code == NOT_DELETED]
            obstacles = [o for o in obstacles if o.code != NOT_DELETED] + [*guards, *drop]
        for obstacle in obstacles:
            self.reasons.append(Reason(obstacle.code, obstacle.message, obstacle.subjects))
        return decision

    def filled(self, target: CompiledState) -> set[int]:
        if not target.required:
            return set()
        return set(
            self.session.execute(
                select(item_values.c.flow_column_id).where(
                    item_values.c.flow_item_id == self.item_id,
                    item_values.c.flow_column_id.in_([r.column_id for r in target.required]),
                    item_values.c.value.is_not(None),
                )
            ).scalars()
        )

    def answer(self, asked: str, decision: Decision | None) -> Explanation:
        state = self.state
        method = decision.method if decision is not None else None
        target = method.target if method is not None else None
        events: tuple[str, ...] = ()
        if method is not None and state is not None and target not in (None, state.code):
            new = self.compiled.states[target] if target is not None else None
            events = tuple(
                a.event_name
                for a in self.compiled.automations
                if new is not None
                and (
                    (a.trigger == Trigger.STAGE_ENTERED and a.stage_id in (None, new.id))
                    or (a.trigger == Trigger.STAGE_EXITED and a.stage_id in (None, state.id))
                )
            )
        return Explanation(
            item_id=self.item_id,
            class_code=self.compiled.code,
            state=state.code if state is not None else None,
            asked=asked,
            method=method.code if method is not None else None,
            possible=method is not None and not self.reasons,
            reasons=tuple(self.reasons),
            target=target,
            chain=method.chain if method is not None else (),
            events=events,
        )


def _runnable(
    compiled: CompiledClass, actor: Actor, methods: list[CompiledMethod]
) -> list[CompiledMethod]:
    """Of `methods`, those the actor may execute."""
    return [
        m
        for m in methods
        if compiled.allowed(actor, m, Permission.EXECUTE)
        and (actor.is_system or compiled.allowed(actor, m, Permission.VISIBLE))
    ]


__all__ = [
    "HIDDEN",
    "ITEM_DELETED",
    "MISSING_FIELDS",
    "MOVE_RESTRICTED",
    "NOT_DELETED",
    "NOT_PERMITTED",
    "NO_TRANSITION",
    "OPEN_CHECKLIST",
    "REASON_CODES",
    "SAME_STATE",
    "STATE_GONE",
    "WRONG_STATE",
    "Explainer",
    "Explanation",
    "Reason",
]
