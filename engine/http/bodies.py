"""Request and response bodies of the HTTP API, as Pydantic models for a precise OpenAPI.

Response models are built from the engine's frozen values (`ItemOut.model_validate(snapshot)`),
or by an `of` constructor where the shape differs (pairs as objects, durations in seconds).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowkernel.actors import Actor
from flowkernel.definition.pipelines.admin import PipelineInfo
from flowkernel.runtime.batch import MAX_BATCH
from flowkernel.runtime.queries import StageTime
from flowkernel.snapshots import ExecutionResult

MAX_ID: Final = 2**63 - 1

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
"""A database id: a positive 64-bit integer."""
Code = Annotated[str, Field(min_length=1, max_length=128)]
"""A code of a class, state, method, action, stage or column."""
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255)]
"""A caller's key that makes a retried request run once."""


def ref(text: str) -> str | int:
    """A code, or an id when the text is a number (as the command line reads references)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else text


class In(BaseModel):
    """A request body: values of the JSON types the fields name (no "5" for 5, no "yes" for
    true), and no keys but the fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Out(BaseModel):
    """A response body read from an engine value's attributes."""

    model_config = ConfigDict(from_attributes=True)


# --- errors ------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    """What was refused: a stable code, a message naming the next step, structured details."""

    code: str = Field(examples=["stage_requirement_missing"])
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorOut


# --- actors ------------------------------------------------------------------------------


class ActorOut(BaseModel):
    """Who a request acts as."""

    user_id: int | None
    account_id: int | None
    groups: list[str]
    is_system: bool

    @classmethod
    def of(cls, actor: Actor) -> ActorOut:
        return cls(
            user_id=actor.user_id,
            account_id=actor.account_id,
            groups=sorted(actor.groups),
            is_system=actor.is_system,
        )


class HealthOut(BaseModel):
    """The server runs and reaches its database."""

    status: Literal["ok"]


# --- items -------------------------------------------------------------------------------


class PlaceIn(In):
    """Place an object into a class (or pipeline): its global create method runs."""

    class_ref: Code | Id = Field(alias="class", description="class or pipeline code, or its id")
    object_type: Code
    object_id: (
        Annotated[int, Field(ge=-(2**63), le=MAX_ID)]
        | Annotated[str, Field(min_length=1, max_length=128)]
    ) = Field(description="the host's key: a 64-bit integer, a UUID or a short text key")
    state: Code | None = Field(None, description="the state to land in (default: create's)")
    account_id: Id | None = Field(None, description="default: the token's account")
    assigned_user_id: Id | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class ItemOut(Out):
    """An item: which object sits in which state of which class."""

    id: int
    class_id: int
    class_code: str
    object_type: str
    object_id: int
    object_key: str | None = Field(
        description="the host's UUID or text key (object_id then holds its digest); null for "
        "an integer key"
    )
    account_id: int | None
    state: str
    state_id: int
    state_type: str
    assigned_user_id: int | None
    position: int
    deleted: bool
    last_state_changed_at: datetime | None


class MethodOut(Out):
    """A method the token's actor may run on the item now."""

    code: str
    action: str
    label: str
    visible: bool
    sequence: int
    target: str | None
    is_global: bool


class ExecuteIn(In):
    """Parameters of an execution, handed to the event handlers."""

    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: Annotated[
        IdempotencyKey | None,
        Field(description="as the Idempotency-Key header; pass one or the other"),
    ] = None


class MoveIn(In):
    """Move a pipeline item to a stage, by code or id."""

    stage: Code | Id
    idempotency_key: Annotated[
        IdempotencyKey | None,
        Field(description="as the Idempotency-Key header; pass one or the other"),
    ] = None


class ExecutionOut(BaseModel):
    """The outcome of one executed method."""

    item_id: int
    class_code: str
    method: str
    action: str
    from_state: str
    to_state: str
    changed: bool
    dropped: bool
    executed_at: datetime
    handlers: list[str]

    @classmethod
    def of(cls, result: ExecutionResult) -> ExecutionOut:
        # built without validation: the engine's values have the declared types already
        return cls.model_construct(
            item_id=result.item_id,
            class_code=result.class_code,
            method=result.method,
            action=result.action,
            from_state=result.from_state,
            to_state=result.to_state,
            changed=result.changed,
            dropped=result.dropped,
            executed_at=result.executed_at,
            handlers=list(result.handlers),
        )


class ReasonOut(Out):
    """One obstacle of an explanation."""

    code: str
    message: str
    subjects: list[str]


class ExplanationOut(Out):
    """Whether a method (or a move to a state) can run on the item now, and what it would do."""

    item_id: int
    class_code: str
    state: str | None
    asked: str
    method: str | None
    possible: bool
    summary: str
    reasons: list[ReasonOut]
    target: str | None
    chain: list[str]
    events: list[str]


class HistoryOut(Out):
    """One row of an item's state history: the state entered at `moved_at`, which held until
    `valid_to` (null while it holds)."""

    id: int
    item_id: int
    from_state: str | None
    to_state: str
    method: str | None
    user_id: int | None
    is_system: bool
    moved_at: datetime
    valid_to: datetime | None


class StateAtOut(Out):
    """The state an item was in at `at` (null: not placed yet, or dropped by then)."""

    item_id: int
    at: datetime
    state: str | None


class CallOut(Out):
    """One executed method: the state it ran in, where it led (null: nowhere), who ran it;
    `count` > 1 for the last call of a method that keeps only that one."""

    item_id: int
    method: str | None
    action: str | None
    state: str | None
    to_state: str | None
    user_id: int | None
    is_system: bool
    params: dict[str, Any]
    called_at: datetime
    count: int


class CallPageOut(Out):
    """A page of an item's calls, newest first; `next_cursor` reads on (null: the last page)."""

    calls: list[CallOut]
    next_cursor: str | None


class ValueOut(Out):
    """A custom column of the item's pipeline and the item's value (None: no value)."""

    column_id: int
    name: str
    label: str
    field_type: str
    position: int
    is_required: bool
    value: str | None
    parsed: Any
    valid: bool
    updated_at: datetime | None


class ValuesIn(In):
    """Custom values to store, by column name; all are checked before any is written."""

    values: dict[Code, Any] = Field(min_length=1)


class ClearedOut(BaseModel):
    """Whether the item had a value of the column."""

    column: str
    cleared: bool


class ChecklistEntryOut(Out):
    """A checklist entry of the item's current stage."""

    key: str
    label: str
    required: bool
    completed: bool
    completed_by: int | None
    completed_at: datetime | None


class ChecklistIn(In):
    """Complete (true) or reopen (false) a checklist entry."""

    completed: bool


class WatchOut(BaseModel):
    """Whether the user watches the item now, and whether this call changed that."""

    user_id: int
    watching: bool
    changed: bool


class StageTimeOut(BaseModel):
    """Time spent in one stage: entries, exits, total and average, in seconds."""

    stage_id: int
    stage_code: str
    stage_name: str
    entries: int
    exits: int
    total_seconds: float
    average_seconds: float

    @classmethod
    def of(cls, t: StageTime) -> StageTimeOut:
        return cls(
            stage_id=t.stage_id,
            stage_code=t.stage_code,
            stage_name=t.stage_name,
            entries=t.entries,
            exits=t.exits,
            total_seconds=t.total.total_seconds(),
            average_seconds=t.average.total_seconds(),
        )


# --- batches -----------------------------------------------------------------------------


class BatchExecutionIn(In):
    """One execution of a batch."""

    item_id: Id
    method: Code


class BatchIn(In):
    """Executions run in one transaction; each item at most once."""

    executions: list[BatchExecutionIn] = Field(max_length=MAX_BATCH)
    params: dict[str, Any] = Field(
        default_factory=dict, description="parameters of every execution"
    )
    by_action: bool = Field(False, description="method names an action: its first method runs")
    on_error: Literal["abort", "skip"] = Field(
        "abort",
        description="abort: the first refusal is the response and nothing changes; "
        "skip: refused items are reported and the others commit",
    )


class OutcomeOut(BaseModel):
    """One item of a batch: its result, or the error that left it unchanged."""

    item_id: int
    ok: bool
    result: ExecutionOut | None = None
    error: ErrorOut | None = None


class BatchOut(BaseModel):
    """One outcome per execution, in request order."""

    ok: bool
    executed: int
    refused: int
    outcomes: list[OutcomeOut]


# --- pipelines ---------------------------------------------------------------------------


class ChecklistItemOut(Out):
    """An entry of a stage's checklist."""

    key: str
    label: str
    required: bool


class StageOut(Out):
    """A live stage; `required_columns` must hold values before an item enters it."""

    id: int
    pipeline_id: int
    code: str
    name: str
    position: int
    color: str | None
    probability: int | None
    sla_days: int | None
    is_won: bool
    is_lost: bool
    checklist: list[ChecklistItemOut]
    required_columns: list[str]


class ColumnOut(Out):
    """A custom column of a pipeline."""

    id: int
    pipeline_id: int
    name: str
    label: str
    field_type: str
    options: list[str]
    is_required: bool
    position: int
    is_active: bool


class AutomationOut(Out):
    """An automation: an event fired when an item enters or leaves a stage (None: any)."""

    id: int
    pipeline_id: int
    name: str | None
    trigger: str
    stage: str | None
    stage_id: int | None
    event_name: str
    payload_template: dict[str, Any]
    is_active: bool


class AllowedMoveOut(BaseModel):
    """A move the pipeline's rules allow besides the default ones."""

    from_stage: str
    to_stage: str


class PipelineOut(BaseModel):
    """A pipeline with its stages, columns, movement rules and automations."""

    id: int
    name: str
    code: str | None
    description: str | None
    object_type: str | None
    account_id: int | None
    user_id: int | None
    is_template: bool
    is_system: bool
    template_id: int | None
    movement: str
    allow_skip_forward: bool
    allow_backward: bool
    allowed_moves: list[AllowedMoveOut]
    version: int
    stages: list[StageOut]
    columns: list[ColumnOut]
    automations: list[AutomationOut]

    @classmethod
    def of(cls, info: PipelineInfo) -> PipelineOut:
        return cls(
            id=info.id,
            name=info.name,
            code=info.code,
            description=info.description,
            object_type=info.object_type,
            account_id=info.account_id,
            user_id=info.user_id,
            is_template=info.is_template,
            is_system=info.is_system,
            template_id=info.template_id,
            movement=info.movement,
            allow_skip_forward=info.allow_skip_forward,
            allow_backward=info.allow_backward,
            allowed_moves=[AllowedMoveOut(from_stage=a, to_stage=b) for a, b in info.allowed_moves],
            version=info.version,
            stages=[StageOut.model_validate(s) for s in info.stages],
            columns=[ColumnOut.model_validate(c) for c in info.columns],
            automations=[AutomationOut.model_validate(a) for a in info.automations],
        )


class BoardItemOut(Out):
    """A card on the board."""

    id: int
    object_type: str
    object_id: int
    assigned_user_id: int | None
    position: int
    last_stage_changed_at: datetime | None
    sla_due_at: datetime | None
    sla_breached_at: datetime | None
    value: Decimal | None


class BoardStageOut(Out):
    """A board column: the stage, a page of its items, its totals and a cursor for more."""

    id: int
    code: str
    name: str
    position: int
    color: str | None
    probability: int | None
    sla_days: int | None
    is_won: bool
    is_lost: bool
    count: int
    value_sum: Decimal | None
    weighted_value: Decimal | None
    items: list[BoardItemOut]
    next_cursor: str | None


class BoardOut(Out):
    """A pipeline's board; `next_cursor` continues every stage that has more items."""

    pipeline_id: int
    pipeline_name: str
    value_column: str | None
    stages: list[BoardStageOut]
    count: int
    value_sum: Decimal | None
    weighted_value: Decimal | None
    next_cursor: str | None
    as_of: datetime | None = None


class StagePageOut(Out):
    """One page of a stage's items, in board order."""

    stage_id: int
    items: list[BoardItemOut]
    next_cursor: str | None


class ConversionOut(Out):
    """The funnel between two stages: distinct items that entered each, and the ratio."""

    pipeline_id: int
    from_stage: str
    to_stage: str
    entered: int
    converted: int
    rate: float | None
