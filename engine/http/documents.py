"""The class and pipeline documents as JSON Schemas, for the OpenAPI document.

The documents are checked by their loaders (`flowkernel.documents`), which report every problem
at its path as `invalid_document` (400), over HTTP as in the library and the command line. The
models here describe the same keys and types for clients and tools; a test holds them to the
loaders' key lists.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StateType = Literal["created", "enabled", "disabled", "deleted"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionDoc(_Doc):
    """A custom action of the class."""

    code: str
    label: str | None = None


class StateDoc(_Doc):
    """A state, of one of the four state types."""

    code: str
    type: StateType
    label: str | None = None
    position: int | None = None


class MethodDoc(_Doc):
    """A method: an action in a state (no state: a global method)."""

    code: str | None = Field(None, description="default: the action's code")
    action: str
    state: str | None = None
    label: str | None = None
    sequence: int | None = None
    visible: bool = True
    call_log: Literal["all", "last", "none"] = "all"


class TransitionDoc(_Doc):
    """Where a method leads from a state (no state: from any state)."""

    state: str | None = None
    method: str
    to: str


class EventDoc(_Doc):
    """A handler run when an action executes, or `parent: true` for the parent's chain."""

    action: str
    handler: str | None = None
    parent: bool = False
    label: str | None = None
    sequence: int | None = None
    enabled: bool = True


class AccessDoc(_Doc):
    """Allow or deny a user (by id) or a group to execute or see a method (or all)."""

    method: str | None = None
    subject_kind: Literal["user", "group"] = "user"
    subject: str | int
    permission: Literal["execute", "visible"] = "execute"
    effect: Literal["allow", "deny"] = "allow"


class ClassDoc(_Doc):
    """A class document (docs/class-documents.md)."""

    class_: str = Field(alias="class")
    label: str | None = None
    parent: str | None = None
    abstract: bool = False
    movement: Literal["explicit", "free"] = "explicit"
    object_type: str | None = None
    actions: list[ActionDoc] = []
    states: list[StateDoc] = []
    methods: list[MethodDoc] = []
    transitions: list[TransitionDoc] = []
    events: list[EventDoc] = []
    access: list[AccessDoc] = []


class ChecklistDoc(_Doc):
    """An entry of a stage's checklist."""

    key: str
    label: str
    required: bool = False


class StageDoc(_Doc):
    """A stage, in board order."""

    name: str
    code: str | None = None
    color: str | None = None
    probability: int | None = Field(None, ge=0, le=100)
    sla_days: int | None = Field(None, ge=1)
    is_won: bool = False
    is_lost: bool = False
    checklist: list[ChecklistDoc] = []
    requires: list[str] = Field([], description="columns that must hold a value to enter")


class ColumnDoc(_Doc):
    """A typed custom column."""

    name: str
    label: str | None = None
    field_type: Literal["text", "number", "date", "boolean", "select", "multi_select", "json"] = (
        "text"
    )
    options: list[str] | None = None
    is_required: bool = False
    is_active: bool = True


class MovementDoc(_Doc):
    """Which moves between stages are allowed."""

    allow_backward: bool | None = None
    allow_skip_forward: bool | None = None
    allowed_moves: list[tuple[str | int, str | int]] | None = Field(
        None, description="the only moves allowed, as [from, to] stage pairs"
    )


class AutomationDoc(_Doc):
    """An event emitted on a trigger, optionally for one stage."""

    trigger: Literal["stage_entered", "stage_exited", "item_created", "sla_breached"]
    event_name: str
    stage: str | None = None
    name: str | None = None
    payload_template: dict[str, Any] | None = None
    is_active: bool = True


class PipelineDoc(_Doc):
    """A pipeline document (docs/cli.md, "Pipeline documents")."""

    name: str
    code: str | None = None
    description: str | None = None
    object_type: str | None = None
    is_template: bool = False
    is_system: bool = False
    movement: MovementDoc | None = None
    stages: list[StageDoc] = []
    columns: list[ColumnDoc] = []
    automations: list[AutomationDoc] = []


def request_body(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    """The `openapi_extra` of a route whose JSON body `model` describes (inlined, no refs)."""
    schema = model.model_json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema), "example": example}},
        }
    }
