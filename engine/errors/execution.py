"""Errors of operations on items: refused, not found, conflicting, invalid input or token."""

from __future__ import annotations

from collections.abc import Sequence

from flowkernel.errors.base import ExecutionError, FlowkernelError
from flowkernel.previews import preview


class InvalidArgument(ExecutionError):
    """An argument of a call is malformed (wrong type, empty, out of range)."""

    code = "invalid_argument"

    def __init__(self, message: str, **attrs: object) -> None:
        for key, value in attrs.items():
            setattr(self, key, value)
        super().__init__(message)


class ItemNotFound(ExecutionError):
    """No item with that id (in the actor's account)."""

    code = "item_not_found"

    def __init__(self, item_id: object) -> None:
        self.item_id = item_id
        super().__init__(f"no item {preview(item_id)}; check the id and the account")


class ObjectAlreadyPlaced(ExecutionError):
    """An object occupies one state per class."""

    code = "object_already_placed"

    def __init__(
        self, class_code: str, object_type: str, object_id: int | str, item_id: int
    ) -> None:
        self.class_code = class_code
        self.object_type = object_type
        self.object_id = object_id
        self.item_id = item_id
        super().__init__(
            f"{object_type} {object_id} is already in class {preview(class_code)} as item "
            f"{item_id}; "
            "execute a method on that item instead"
        )


class WrongObjectType(ExecutionError):
    """A class that declares the type of its objects holds objects of that type only."""

    code = "wrong_object_type"

    def __init__(self, class_code: str, expected: str, given: str) -> None:
        self.class_code = class_code
        self.expected = expected
        self.object_type = given
        super().__init__(
            f"class {preview(class_code)} holds {preview(expected)} objects, not "
            f"{preview(given)}; place a {expected} or use a class for {given} objects"
        )


class MethodNotAvailable(ExecutionError):
    """The method does not exist in the item's current state, or would do nothing there.

    `applies_in` names the states where it runs, `path` the methods that lead there (both
    empty when unknown)."""

    code = "method_not_available"

    def __init__(
        self,
        method: str,
        state: str,
        available: Sequence[str],
        hint: str = "",
        *,
        applies_in: Sequence[str] = (),
        path: Sequence[str] = (),
    ) -> None:
        self.method = method
        self.state = state
        self.available = tuple(available)
        self.applies_in = tuple(applies_in)
        self.path = tuple(path)
        listed = ", ".join(self.available) or "none"
        tail = f"; {hint}" if hint else ""
        super().__init__(
            f"method {preview(method)} is not available in state {preview(state)}; available "
            f"there: "
            f"{listed}{tail}"
        )


class ItemNotDeleted(ExecutionError):
    """Drop (and a pipeline's restore) runs on deleted items only; `path` names the methods
    that delete the item (empty when none the caller may run does)."""

    code = "item_not_deleted"

    def __init__(
        self, item_id: int, state: str, method: str = "drop", path: Sequence[str] = ("delete",)
    ) -> None:
        self.item_id = item_id
        self.state = state
        self.method = method
        self.path = tuple(path)
        step = (
            f"run {', then '.join(self.path)} first"
            if self.path
            else "no method you may run deletes it"
        )
        super().__init__(
            f"item {item_id} is in state {preview(state)}, not deleted; {preview(method)} runs "
            f"on deleted items only: {step}"
        )


class AccessDenied(ExecutionError):
    """The actor may not see or run this method, or reach this account."""

    code = "access_denied"

    def __init__(self, message: str, **attrs: object) -> None:
        for key, value in attrs.items():
            setattr(self, key, value)
        super().__init__(message)


class MethodHidden(MethodNotAvailable, AccessDenied):
    """A user ran a method hidden from them: hidden for the system actor, or by an access rule.

    Both a `MethodNotAvailable` (the method is not offered to this actor; the code stays
    `method_not_available`) and an `AccessDenied`.
    """

    def __init__(self, method: str, state: str, available: Sequence[str], reason: str) -> None:
        self.method = method
        self.state = state
        self.available = tuple(available)
        self.reason = reason
        self.applies_in: tuple[str, ...] = ()
        self.path: tuple[str, ...] = ()
        listed = ", ".join(self.available) or "none"
        FlowkernelError.__init__(
            self,
            f"method {preview(method)} is not available in state {preview(state)}: it is "
            f"{reason}, for the "
            f"system actor or a user or group an access rule allows; available there: {listed}",
        )


class ConcurrentUpdate(ExecutionError):
    """Another transaction changed the item first; retrying is safe."""

    code = "concurrent_update"

    def __init__(self, item_id: int) -> None:
        self.item_id = item_id
        super().__init__(f"item {item_id} was changed by another transaction; retry the call")


class IdempotencyKeyReused(ExecutionError):
    """An idempotency key already served another request of the same actor."""

    code = "idempotency_key_reused"

    def __init__(self, key: str, item_id: int, method: str) -> None:
        self.key = key
        self.item_id = item_id
        self.method = method
        super().__init__(
            f"idempotency key {preview(key)} already served another request ({preview(method)} "
            f"on item "
            f"{item_id}); a retry must repeat the first request exactly, a new request needs a "
            "new key"
        )


class HandlerFailed(ExecutionError):
    """An event handler raised; the execution was rolled back."""

    code = "handler_failed"

    def __init__(self, handler: str, method: str, item_id: int, cause: BaseException) -> None:
        self.handler = handler
        self.method = method
        self.item_id = item_id
        self.cause = repr(cause)
        super().__init__(
            f"handler {preview(handler)} failed while executing {preview(method)} on item "
            f"{item_id}: "
            f"{cause!r}; nothing was changed"
        )


class InvalidValue(ExecutionError):
    """A custom column value does not match the column's field type."""

    code = "invalid_value"

    def __init__(self, column: str, value: object, expected: str) -> None:
        self.column = column
        self.value = value
        self.expected = expected
        super().__init__(f"column {preview(column)} refuses {preview(value)}: expected {expected}")


class InvalidValues(InvalidValue):
    """Several custom column values refused at once; `column`, `value` and `expected` are
    the first's, `refused` lists them all in the order given."""

    def __init__(self, refused: Sequence[InvalidValue]) -> None:
        first = refused[0]
        self.column, self.value, self.expected = first.column, first.value, first.expected
        self.refused = tuple(
            {"column": e.column, "value": e.value, "expected": e.expected} for e in refused
        )
        FlowkernelError.__init__(self, "; ".join(e.message for e in refused))


class RequirementMissing(ExecutionError):
    """Required columns have no value for the target stage."""

    code = "stage_requirement_missing"

    def __init__(self, stage: str, missing: Sequence[tuple[str, str]]) -> None:
        self.stage = stage
        self.missing = tuple(missing)
        names = ", ".join(f"{name} ({label})" for name, label in self.missing)
        super().__init__(f"cannot enter stage {preview(stage)}: fill {names} first")


class ChecklistIncomplete(ExecutionError):
    """Required checklist items of the current stage are still open."""

    code = "checklist_incomplete"

    def __init__(self, stage: str, open_items: Sequence[tuple[str, str]]) -> None:
        self.stage = stage
        self.open_items = tuple(open_items)
        names = ", ".join(f"{key} ({label})" for key, label in self.open_items)
        super().__init__(f"cannot leave stage {preview(stage)}: complete {names} first")


class MoveNotAllowed(ExecutionError):
    """The pipeline's movement rules refuse this move."""

    code = "move_not_allowed"

    def __init__(
        self, from_stage: str, to_stage: str, rule: str, reason: str, allowed: Sequence[str]
    ) -> None:
        self.from_stage = from_stage
        self.to_stage = to_stage
        self.rule = rule
        self.allowed = tuple(allowed)
        targets = ", ".join(self.allowed) or "none"
        super().__init__(
            f"moving from {preview(from_stage)} to {preview(to_stage)} is refused: {reason}; "
            f"allowed from "
            f"here: {targets} (the system actor may move anywhere)"
        )


class ItemDeleted(ExecutionError):
    """The item is soft-deleted; its values, checklist, assignment and position are frozen."""

    code = "item_deleted"

    def __init__(self, item_id: int) -> None:
        self.item_id = item_id
        super().__init__(f"item {item_id} is deleted; restore it before changing it")


class ColumnInactive(ExecutionError):
    """An inactive column keeps its stored values but takes no writes."""

    code = "column_inactive"

    def __init__(self, column: str, pipeline: str) -> None:
        self.column = column
        self.pipeline = pipeline
        super().__init__(
            f"column {preview(column)} of pipeline {preview(pipeline)} is inactive; "
            "activate it before writing values"
        )


class EventNotFound(ExecutionError):
    """No dead event with that id (among those the actor reaches)."""

    code = "event_not_found"

    def __init__(self, event_ids: Sequence[str]) -> None:
        self.event_ids = tuple(event_ids)
        super().__init__(
            f"no dead event with id {', '.join(map(repr, self.event_ids))}; "
            "list them with dead_letters()"
        )


class InvalidToken(ExecutionError):
    """An API token is missing, malformed, unknown or revoked; nothing was done."""

    code = "invalid_token"

    def __init__(self, reason: str, message: str, **attrs: object) -> None:
        self.reason = reason
        for key, value in attrs.items():
            setattr(self, key, value)
        super().__init__(message)
