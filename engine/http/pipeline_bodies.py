"""Request and response bodies of the pipeline endpoints that change a pipeline: a template's
clone, a stage's removal, and edits of the pipeline, its stages, columns, requirements and
automations."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field

from flowkernel.http.bodies import Code, Id, In, Out
from flowkernel.validation import MAX_POSITION


class CloneIn(In):
    """Copy a template into a live pipeline of an account."""

    account_id: Id | None = Field(
        None, description="the account of the copy (default: the token's)"
    )
    name: str | None = Field(
        None, min_length=1, max_length=255, description="default: the template's"
    )
    code: Code | None = Field(None, description="default: the template's code")


class StageRemovalOut(Out):
    """What removing a stage moved (or, as a dry run, would move) and where to."""

    pipeline_id: int
    stage: str
    stage_id: int
    target: str | None
    target_id: int | None
    item_ids: list[int]
    count: int
    dry_run: bool


# --- editing a pipeline ---------------------------------------------------------------------

Name = Annotated[str, Field(min_length=1, max_length=255)]
Position = Annotated[int, Field(ge=0, le=MAX_POSITION)]
Ref = Code | Id
"""A stage or column: its code (name) or id."""


class Patch(In):
    """A partial change: only the keys sent change; null clears what may be cleared."""

    def given(self) -> dict[str, Any]:
        """The keys the request sent, with their values."""
        return {key: getattr(self, key) for key in self.model_fields_set}


class PipelineEditIn(Patch):
    """What to change of a pipeline."""

    name: Name | None = None
    code: Code | None = Field(None, description="null: no code")
    description: str | None = Field(None, max_length=10_000)
    object_type: Code | None = None
    is_template: bool | None = None


class AllowedMoveIn(In):
    """A move allowed besides the default ones."""

    from_stage: Ref
    to_stage: Ref


class MovementIn(Patch):
    """How users may move items; the system actor is never restricted."""

    allow_skip_forward: bool | None = None
    allow_backward: bool | None = None
    allowed_moves: list[AllowedMoveIn] | None = Field(
        None, max_length=10_000, description="the only moves out of each stage named; null: any"
    )


class ChecklistEntryIn(In):
    """An entry of a stage's checklist, in the seed's JSON form."""

    key: Code
    label: Name
    required: bool = False


class StageIn(In):
    """A stage to add; without position it goes last."""

    name: Name
    code: Code | None = None
    position: Position | None = None
    color: str | None = Field(None, max_length=64)
    probability: int | None = None
    sla_days: int | None = None
    is_won: bool = False
    is_lost: bool = False
    checklist: list[ChecklistEntryIn] = Field(default_factory=list, max_length=1_000)


class StageEditIn(Patch):
    """What to change of a stage; null clears colour, probability, SLA or checklist."""

    name: Name | None = None
    code: Code | None = None
    position: Position | None = None
    color: str | None = Field(None, max_length=64)
    probability: int | None = None
    sla_days: int | None = None
    checklist: list[ChecklistEntryIn] | None = Field(None, max_length=1_000)
    is_won: bool | None = None
    is_lost: bool | None = None


class StageOrderIn(In):
    """Every live stage, in its new order."""

    order: list[Ref] = Field(min_length=1, max_length=10_000)


class ColumnIn(In):
    """A custom column to add; select and multi_select columns need options."""

    name: Code
    label: Name | None = None
    field_type: str = Field("text", max_length=32)
    options: list[Name] | None = Field(None, max_length=1_000)
    is_required: bool = False
    position: Position | None = None


class ColumnEditIn(Patch):
    """What to change of a column; is_active false deactivates it (refused while a stage
    requires it)."""

    label: Name | None = None
    options: list[Name] | None = Field(None, max_length=1_000)
    position: Position | None = None
    is_required: bool | None = None
    is_active: bool | None = None


class AutomationIn(In):
    """An event fired when `trigger` happens in `stage` (null: any stage)."""

    trigger: str = Field(
        max_length=32, description="stage_entered, stage_exited, item_created or sla_breached"
    )
    event_name: Name
    stage: Ref | None = None
    name: Name | None = None
    payload_template: dict[str, Any] | None = None
    is_active: bool = True


class AutomationEditIn(Patch):
    """What to change of an automation; stage null: fire in any stage."""

    trigger: str | None = Field(None, max_length=32)
    event_name: Name | None = None
    stage: Ref | None = None
    name: Name | None = None
    payload_template: dict[str, Any] | None = None
    is_active: bool | None = None


# --- forecasts ----------------------------------------------------------------------------


class PeriodValueOut(Out):
    """Open items expected to close in one period (`period` null: no close date)."""

    period: str | None
    start: date | None
    count: int
    value: Decimal
    weighted_value: Decimal


class StageFiguresOut(Out):
    """One stage's figures over the forecast's window."""

    stage_id: int
    code: str
    name: str
    probability: int | None
    is_won: bool
    is_lost: bool
    in_stage: int
    entered: int
    advanced: int
    conversion: float | None
    p50_days: float | None
    p90_days: float | None
    idle: int | None
    idle_days: int | None


class ForecastOut(Out):
    """A pipeline's forecast at `as_of`; `previous` is the same one period before."""

    pipeline_id: int
    as_of: datetime
    period: str
    window_start: datetime
    window_end: datetime
    value_column: str | None
    close_column: str | None
    open_count: int
    open_value: Decimal | None
    weighted_value: Decimal | None
    by_period: list[PeriodValueOut]
    stages: list[StageFiguresOut]
    previous: ForecastOut | None
