"""Whole-class rules kept by every authoring write.

A class may be built a call at a time, so a class under construction may still break a
whole-class rule (its new state not reached yet). What no write may do is break a rule that held
before it: make a state unreachable or a trap, or leave items nowhere to start. The guard of one
transaction records the problems of each class the writes touch before the first of them, and
checks them again before the commit; a state added in the same transaction is under construction.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence

from sqlalchemy.orm import Session

from flowkernel.errors import DefinitionError, DefinitionWarning, InvalidDefinition
from flowkernel.kinds import ClassRule
from flowkernel.snapshots import DefinitionProblem

Problems = Callable[[Session, int], Sequence[DefinitionProblem]]
"""The whole-class problems of a class, read in a session (the compiler's, handed in)."""


class Guard:
    """The classes one transaction's writes touch, with the problems each had before them."""

    def __init__(self, problems: Problems, *, strict_states: bool) -> None:
        self._problems = problems
        self._strict = strict_states
        self._before: dict[int, frozenset[tuple[str, int | None]] | None] = {}
        self._new_states: set[int] = set()

    def watch(self, session: Session, class_ids: Iterable[int]) -> None:
        """Record the problems of `class_ids` before the first write of this transaction."""
        for class_id in class_ids:
            if class_id in self._before:
                continue
            try:
                found = self._problems(session, class_id)
            except DefinitionError:
                self._before[class_id] = None  # it does not compile as it is: nothing to keep
            else:
                self._before[class_id] = frozenset(_key(p) for p in found)

    def added_state(self, state_id: int) -> None:
        """A state this transaction adds: rules about it are not yet due."""
        self._new_states.add(state_id)

    def verify(self, session: Session) -> None:
        """Refuse the transaction if its writes broke a rule that held before them."""
        broken: list[DefinitionProblem] = []
        for class_id, before in self._before.items():
            if before is None:
                continue
            broken.extend(
                p
                for p in self._problems(session, class_id)
                if _key(p) not in before and p.state_id not in self._new_states
            )
        errors = sort_out(broken, strict_states=self._strict)
        if errors:
            raise InvalidDefinition(
                "this change breaks a whole-class rule that held before it: "
                + "; ".join(p.message for p in errors),
                class_code=errors[0].class_code,
                problems=[
                    {"class": p.class_code, "rule": p.rule, "state": p.state, "message": p.message}
                    for p in errors
                ],
            )


def sort_out(found: Sequence[DefinitionProblem], *, strict_states: bool) -> list[DefinitionProblem]:
    """The problems that refuse the definition; when none does, a warning for each other one.

    A trap state is a `DefinitionWarning` unless `strict_states` (as python-statemachine's
    `strict_states`); every other broken rule refuses the definition."""
    errors = [p for p in found if strict_states or p.rule != ClassRule.TRAP]
    if not errors:
        for problem in found:
            warnings.warn(problem.message, DefinitionWarning, stacklevel=3)
    return errors


def _key(problem: DefinitionProblem) -> tuple[str, int | None]:
    return (problem.rule, problem.state_id)
