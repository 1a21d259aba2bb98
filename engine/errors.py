"""Typed errors: one base, definition errors apart from runtime errors.

Every error carries structured attributes and a message that names the values
involved and the next step.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowkernel.previews import preview


class FlowkernelError(Exception):
    """Base of every error Flowkernel raises on purpose."""

    code: str = "flowkernel_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, object]:
        """Structured attributes of the error, for APIs and logs."""
        return {k: v for k, v in vars(self).items() if k != "message" and not k.startswith("_")}


# --- definition errors -------------------------------------------------------------------


class DefinitionError(FlowkernelError):
    """A class, pipeline or document is not a valid definition."""

    code = "definition_error"


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


# --- runtime errors ----------------------------------------------------------------------


class ExecutionError(FlowkernelError):
    """An operation on items was refused; nothing was changed."""

    code = "execution_error"


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

    def __init__(self, class_code: str, object_type: str, object_id: int, item_id: int) -> None:
        self.class_code = class_code
        self.object_type = object_type
        self.object_id = object_id
        self.item_id = item_id
        super().__init__(
            f"{object_type} {object_id} is already in class {preview(class_code)} as item "
            f"{item_id}; "
            "execute a method on that item instead"
        )


class MethodNotAvailable(ExecutionError):
    """The method does not exist in the item's current state."""

    code = "method_not_available"

    def __init__(self, method: str, state: str, available: Sequence[str], hint: str = "") -> None:
        self.method = method
        self.state = state
        self.available = tuple(available)
        listed = ", ".join(self.available) or "none"
        tail = f"; {hint}" if hint else ""
        super().__init__(
            f"method {preview(method)} is not available in state {preview(state)}; available "
            f"there: "
            f"{listed}{tail}"
        )


class ItemNotDeleted(ExecutionError):
    """Drop removes only items that were deleted first."""

    code = "item_not_deleted"

    def __init__(self, item_id: int, state: str) -> None:
        self.item_id = item_id
        self.state = state
        super().__init__(
            f"item {item_id} is in state {preview(state)}, not deleted; execute delete before drop"
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


# --- class documents ---------------------------------------------------------------------


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


# --- database errors ---------------------------------------------------------------------


class DatabaseError(FlowkernelError):
    """The database cannot be used as it is: unreachable, or not at this version's schema."""

    code = "database_error"


class DatabaseUnreachable(DatabaseError):
    """No connection to the database could be opened."""

    code = "database_unreachable"

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        if url.startswith("sqlite"):
            step = "check the file's path and its folder"
        elif "does not exist" in cause and "database" in cause:
            step = f"create the database (createdb {url.rsplit('/', 1)[-1].split('?')[0]})"
        else:
            step = "start the server"
        super().__init__(
            f"cannot connect to {url}: {cause}; {step}, or pass another "
            "--database-url / FLOWKERNEL_DATABASE_URL"
        )


class DatabaseNotMigrated(DatabaseError):
    """The database schema is not at the revision this version of Flowkernel needs."""

    code = "database_not_migrated"

    def __init__(self, url: str, current: str | None, head: str | None) -> None:
        self.url = url
        self.current = current
        self.head = head
        at = f"at revision {preview(current)}" if current else "not migrated"
        super().__init__(
            f"database {url} is {at}, this version needs {preview(head)}; run `flowkernel db "
            f"upgrade`"
        )


class DatabaseConnectionLost(DatabaseError):
    """The connection to the database broke while an operation ran; the pool reconnects."""

    code = "database_connection_lost"

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        super().__init__(
            f"lost the connection to {url} during the operation: {cause}; it was rolled back "
            "unless the connection broke while committing, so retry it with the same "
            "idempotency key, or read the item first"
        )


# --- pipeline administration ---------------------------------------------------------------


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


# --- item operations ---------------------------------------------------------------------


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


# --- diagrams ------------------------------------------------------------------------------


class GraphvizUnavailable(FlowkernelError):
    """SVG output needs Graphviz's `dot` program, which is missing or failed."""

    code = "graphviz_unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"cannot draw SVG: {reason}; install Graphviz (apt-get install graphviz) "
            "or use --format dot|mermaid"
        )


# --- event delivery ------------------------------------------------------------------------


class EventNotFound(ExecutionError):
    """No dead event with that id (among those the actor reaches)."""

    code = "event_not_found"

    def __init__(self, event_ids: Sequence[str]) -> None:
        self.event_ids = tuple(event_ids)
        super().__init__(
            f"no dead event with id {', '.join(map(repr, self.event_ids))}; "
            "list them with dead_letters()"
        )


class DeliveryFailed(FlowkernelError):
    """A delivery plugin could not hand an event over; the outbox retries it later."""

    code = "delivery_failed"

    def __init__(self, target: str, event_id: str, reason: str) -> None:
        self.target = target
        self.event_id = event_id
        self.reason = reason
        super().__init__(f"event {event_id} not delivered to {target}: {reason}; retried later")


# --- API tokens ----------------------------------------------------------------------------


class InvalidToken(ExecutionError):
    """An API token is missing, malformed, unknown or revoked; nothing was done."""

    code = "invalid_token"

    def __init__(self, reason: str, message: str, **attrs: object) -> None:
        self.reason = reason
        for key, value in attrs.items():
            setattr(self, key, value)
        super().__init__(message)
