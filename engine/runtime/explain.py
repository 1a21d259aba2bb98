"""Why a method (or a move to a stage) can or cannot run on an item right now.

`Explainer.explain` walks the checks the runtime makes when it executes a method, in the same
order and with the same rules, but reads only: it takes no lock and writes nothing. Where the
runtime stops at the first refusal, an explanation lists every obstacle that applies now, so
one answer tells everything that has to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.access import VISIBLE, check_class
from flowkernel.actors import Actor
from flowkernel.compile.compiler import (
    CompiledClass,
    CompiledMethod,
    CompiledState,
)
from flowkernel.errors import InvalidArgument, ItemNotFound, UnknownDefinition
from flowkernel.kinds import MOVE_PREFIX, SLA_BREACH
from flowkernel.runtime.runtime import Runtime, missing_required, open_checklist_items
from flowkernel.store.tables import items, pipelines
from flowkernel.validation import check_item_id

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

_LOAD = select(
    items.c.id,
    items.c.flow_pipeline_id,
    items.c.flow_stage_id,
    items.c.iam_account_id,
    items.c.checklist_state,
    items.c.deleted_at,
    pipelines.c.version.label("class_version"),
).join(pipelines, pipelines.c.id == items.c.flow_pipeline_id)


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
                f"{name!r} cannot run on item {self.item_id} now "
                f"({count} reason{'s' if count != 1 else ''})"
            )
        if self.target is None:
            change = f"keeps it in {self.state!r}"
        elif self.target == self.state:
            change = f"re-enters {self.state!r}"
        else:
            change = f"moves it from {self.state!r} to {self.target!r}"
        handlers = ", ".join(self.chain) if self.chain else "no handlers"
        fired = f"; fires {', '.join(self.events)}" if self.events else ""
        return f"{name!r} can run on item {self.item_id}: {change} through {handlers}{fired}"


class Explainer:
    """Answers why a method can or cannot run on an item, without changing anything."""

    def __init__(self, sessions: sessionmaker[Session], runtime: Runtime) -> None:
        self._sessions = sessions
        self._runtime = runtime

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
                f"{method_or_stage!r}",
                method_or_stage=method_or_stage,
            )
        with self._sessions.begin() as session:
            row = session.execute(_LOAD.where(items.c.id == item_id)).first()
            if row is None or not actor.reaches(row.iam_account_id):
                raise ItemNotFound(item_id)
            compiled = self._runtime.compiled(session, row.flow_pipeline_id)
            check_class(compiled.access, actor, VISIBLE, f"class {compiled.code!r}")
            return _Check(session.connection(), compiled, row, actor).run(method_or_stage)


class _Check:
    """One explanation, read inside one transaction."""

    def __init__(self, conn: Connection, compiled: CompiledClass, row: Any, actor: Actor) -> None:
        self.conn = conn
        self.compiled = compiled
        self.row = row
        self.actor = actor
        self.deleted = row.deleted_at is not None
        self.state: CompiledState | None = compiled.states_by_id.get(row.flow_stage_id)
        self.reasons: list[Reason] = []

    def run(self, asked: str | int) -> Explanation:
        if self.state is None:
            self.fail(
                STATE_GONE,
                f"item {self.row.id} sits in stage {self.row.flow_stage_id}, which class "
                f"{self.compiled.code!r} no longer has; move it with the system actor or "
                "restore the stage",
            )
            return self.answer(str(asked), None)
        method = self.resolve(asked, self.state)
        if method is None:
            return self.answer(str(asked), None)
        self.check_deleted(method)
        self.check_access(method)
        self.check_restriction(method, self.state)
        if method.target is not None:
            self.check_guards(self.compiled.states[method.target], self.state)
        self.check_drop(method)
        return self.answer(str(asked), method)

    # --- which method ------------------------------------------------------------------------

    def resolve(self, asked: str | int, state: CompiledState) -> CompiledMethod | None:
        compiled = self.compiled
        if isinstance(asked, int) and not isinstance(asked, bool):
            target = compiled.states_by_id.get(asked)
            if target is None:
                raise UnknownDefinition(
                    "stage",
                    asked,
                    f"class {compiled.code!r}",
                    [str(s.id) for s in compiled.ordered_states],
                )
            return self.method_to(target, state)
        if not isinstance(asked, str):
            raise UnknownDefinition("method or state", asked, f"class {compiled.code!r}")
        having = [s for s, methods in compiled.methods.items() if asked in methods]
        if compiled.is_pipeline and asked == MOVE_PREFIX + state.code:
            return self.method_to(state, state)
        if having:
            found = compiled.method(state.code, asked)
            if found is None:
                self.fail(
                    WRONG_STATE,
                    f"method {asked!r} is not available in state {state.code!r}; states that "
                    f"have it: {', '.join(having)}: move the item to one of them first",
                    having,
                )
            return found
        if compiled.create is not None and asked == compiled.create.code:
            self.fail(
                WRONG_STATE,
                f"{asked!r} places new objects into class {compiled.code!r} and runs on no "
                "item; place an object instead",
            )
            return None
        if asked in compiled.states:
            return self.method_to(compiled.states[asked], state)
        known = sorted({code for methods in compiled.methods.values() for code in methods})
        raise UnknownDefinition(
            "method or state",
            asked,
            f"class {compiled.code!r}",
            [*known, *(s.code for s in compiled.ordered_states)],
        )

    def method_to(self, target: CompiledState, state: CompiledState) -> CompiledMethod | None:
        """The method of `state` leading to `target` the actor can best use, if any."""
        if target.code == state.code:
            self.fail(
                SAME_STATE,
                f"item {self.row.id} already is in {state.code!r}; pick another state",
                (state.code,),
            )
            return None
        if self.compiled.is_pipeline:
            return self.compiled.method(state.code, MOVE_PREFIX + target.code)
        leading = [
            m for m in self.compiled.methods.get(state.code, {}).values() if m.target == target.code
        ]
        if not leading:
            elsewhere = [
                f"{m.code} (from {s})"
                for s, methods in self.compiled.methods.items()
                for m in methods.values()
                if m.target == target.code and s != state.code
            ]
            hint = f"; methods leading there: {', '.join(elsewhere)}" if elsewhere else ""
            self.fail(
                NO_TRANSITION,
                f"no method of state {state.code!r} leads to {target.code!r}{hint}",
                tuple(elsewhere),
            )
            return None
        runnable = [
            m
            for m in leading
            if self.compiled.allowed(self.actor, m, "execute")
            and (self.actor.is_system or self.compiled.allowed(self.actor, m, "visible"))
        ]
        return (runnable or leading)[0]

    # --- the runtime's checks ----------------------------------------------------------------

    def check_deleted(self, method: CompiledMethod) -> None:
        if self.deleted and method.action not in ("restore", "drop", SLA_BREACH):
            self.fail(
                ITEM_DELETED,
                f"item {self.row.id} is deleted; only restore and drop run on it: restore it first",
            )

    def check_access(self, method: CompiledMethod) -> None:
        compiled, actor = self.compiled, self.actor
        if actor.is_system:
            return
        visible = compiled.allowed(actor, method, "visible")
        executable = compiled.allowed(actor, method, "execute")
        if not visible and not executable:
            why = "it is hidden" if not method.visible else "an access rule hides it"
            self.fail(
                HIDDEN,
                f"method {method.code!r} is not shown to {_who(actor)}: {why}; it runs as the "
                "system actor, or ask for an access rule that allows this user or a group",
            )
        elif not executable:
            denied = [
                rule
                for rule in compiled.access
                if rule.effect == "deny" and rule.matches(actor, method.code, "execute")
            ]
            if denied:
                rule = denied[0]
                why = f"an access rule denies {rule.subject_kind} {rule.subject!r}"
            else:
                why = "it is hidden and no access rule allows this actor to execute it"
            self.fail(
                NOT_PERMITTED,
                f"{_who(actor)} may not execute {method.code!r}: {why}; ask for an access "
                "rule that allows it",
            )

    def check_restriction(self, method: CompiledMethod, state: CompiledState) -> None:
        if method.restriction is None or self.actor.is_system:
            return
        allowed = [
            m.target
            for m in self.compiled.methods.get(state.code, {}).values()
            if m.action == "move" and m.restriction is None and m.target is not None
        ]
        rule = {
            "allowed_moves": f"the pipeline allows only listed moves out of {state.code!r}",
            "no_moving_back": "the pipeline does not let items move back",
            "no_skipping_forward": "the pipeline does not let items skip stages forward",
        }.get(method.restriction, f"the pipeline rule {method.restriction!r} refuses it")
        targets = ", ".join(allowed) or "none"
        self.fail(
            MOVE_RESTRICTED,
            f"moving from {state.code!r} to {method.target!r} is refused: {rule}; allowed "
            f"from here: {targets} (the system actor may move anywhere)",
            tuple(allowed),
        )

    def check_guards(self, target: CompiledState, state: CompiledState) -> None:
        missing = missing_required(self.conn, self.row.id, target)
        if missing:
            names = ", ".join(f"{name} ({label})" for name, label in missing)
            self.fail(
                MISSING_FIELDS,
                f"stage {target.code!r} needs values in {names}: set them first",
                tuple(name for name, _ in missing),
            )
        if not target.is_lost:
            open_items = open_checklist_items(state, self.row.checklist_state)
            if open_items:
                names = ", ".join(f"{key} ({label})" for key, label in open_items)
                self.fail(
                    OPEN_CHECKLIST,
                    f"stage {state.code!r} has open checklist items {names}: complete them first",
                    tuple(key for key, _ in open_items),
                )

    def check_drop(self, method: CompiledMethod) -> None:
        if method.action == "drop" and not self.deleted and "drop_object" in method.chain:
            self.fail(
                NOT_DELETED,
                f"item {self.row.id} is not deleted; execute delete before drop",
            )

    # --- the answer --------------------------------------------------------------------------

    def fail(self, code: str, message: str, subjects: Any = ()) -> None:
        self.reasons.append(Reason(code, message, tuple(str(s) for s in subjects)))

    def answer(self, asked: str, method: CompiledMethod | None) -> Explanation:
        state = self.state
        target = method.target if method is not None else None
        events: tuple[str, ...] = ()
        if method is not None and state is not None and target not in (None, state.code):
            new = self.compiled.states[target] if target is not None else None
            events = tuple(
                a.event_name
                for a in self.compiled.automations
                if new is not None
                and (
                    (a.trigger == "stage_entered" and a.stage_id in (None, new.id))
                    or (a.trigger == "stage_exited" and a.stage_id in (None, state.id))
                )
            )
        return Explanation(
            item_id=self.row.id,
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


def _who(actor: Actor) -> str:
    return f"user {actor.user_id}" if actor.user_id is not None else "this actor"
