"""Errors of definitions: classes, states, methods, transitions, handlers, documents."""

from __future__ import annotations

from collections.abc import Sequence

from flowkernel.errors.base import DefinitionError, FlowkernelError
from flowkernel.previews import preview


class UnknownDefinition(DefinitionError):
    """A class, state, action, method, stage or column that does not exist."""

    code = "unknown_definition"

    def __init__(self, kind: str, key: object, scope: str = "", known: Sequence[str] = ()) -> None:
        self.kind = kind
        self.key = key
        self.known = tuple(known)
        where = f" in {scope}" if scope else ""
        hint = f"; known: {', '.join(self.known)}" if self.known else ""
        super().__init__(f"unknown {kind} {preview(key)}{where}{hint}")


class DuplicateCode(DefinitionError):
    """A code that must be unique is used twice."""

    code = "duplicate_code"

    def __init__(self, kind: str, key: str, scope: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {preview(key)} already exists in {scope}; choose another code")


class ForeignReference(DefinitionError):
    """A definition refers to a state or method of another class."""

    code = "foreign_reference"

    def __init__(self, kind: str, key: str, owner: str, expected: str) -> None:
        self.kind = kind
        self.key = key
        self.owner = owner
        self.expected = expected
        super().__init__(
            f"{kind} {preview(key)} belongs to class {preview(owner)}, not {preview(expected)}; "
            f"use a {kind} of {preview(expected)}"
        )


class DuplicateTransition(DefinitionError):
    """A method already has a target from this state."""

    code = "duplicate_transition"

    def __init__(self, state: str | None, method: str, existing: str) -> None:
        self.state = state
        self.method = method
        self.existing = existing
        src = state or "any state"
        super().__init__(
            f"method {preview(method)} from {src} already leads to {preview(existing)}; "
            "a method has at most one target per state: edit or delete that transition"
        )


class UnknownHandler(DefinitionError):
    """An event names a handler that no registered plugin provides."""

    code = "unknown_handler"

    def __init__(self, handler: str, known: Sequence[str]) -> None:
        self.handler = handler
        self.known = tuple(sorted(known))
        super().__init__(
            f"no plugin provides the handler {preview(handler)}; register a plugin that does "
            f"(known handlers: {', '.join(self.known)})"
        )


class AbstractClassError(DefinitionError):
    """An abstract class cannot hold items."""

    code = "abstract_class"

    def __init__(self, class_code: str, items: int = 0) -> None:
        self.class_code = class_code
        self.items = items
        if items:
            msg = (
                f"class {preview(class_code)} holds {items} item(s) and cannot become abstract; "
                "move or drop them first"
            )
        else:
            msg = (
                f"class {preview(class_code)} is abstract and holds no items; place into a subclass"
            )
        super().__init__(msg)


class InvalidDefinition(DefinitionError):
    """A definition breaks a rule other than the ones above."""

    code = "invalid_definition"

    def __init__(self, message: str, **attrs: object) -> None:
        for key, value in attrs.items():
            setattr(self, key, value)
        super().__init__(message)


class DefinitionInUse(DefinitionError):
    """A definition cannot be removed while something still uses it."""

    code = "definition_in_use"

    def __init__(self, kind: str, key: str, users: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {preview(key)} is still used by {users}; remove those first")


class DefinitionWarning(UserWarning):
    """A definition that is accepted but is likely a mistake, such as a trap state.

    `Flowkernel(strict_states=True)` refuses such definitions with `InvalidDefinition` instead.
    """


class InvalidDocument(DefinitionError):
    """A class document has an unknown key, a value of the wrong type or a dangling reference."""

    code = "invalid_document"

    def __init__(self, path: str, problem: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        self.path = path
        self.problem = problem
        self.problems = tuple(problems) or ((path, problem),)
        more = len(self.problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        super().__init__(f"{path or 'document'}: {problem}{tail}")


class StageNotEmpty(DefinitionInUse):
    """A stage that still holds items cannot be removed without a stage to move them to."""

    code = "stage_not_empty"

    def __init__(self, stage: str, count: int, item_ids: Sequence[int]) -> None:
        self.kind = "stage"
        self.key = stage
        self.stage = stage
        self.count = count
        self.item_ids = tuple(item_ids)
        # The message differs from DefinitionInUse's: the next step is a target, not a removal.
        FlowkernelError.__init__(
            self,
            f"stage {preview(stage)} holds {count} item(s); name a target stage to move them to "
            "while removing it (a dry run lists them)",
        )
