"""Pipeline endpoints: list, create from a document, show, dump, board, funnel, time in stage,
template clone and stage removal."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, status

from flowkernel.documents.pipelines import dump_pipeline, load_pipeline
from flowkernel.errors import InvalidArgument
from flowkernel.http.auth import CurrentActor, Kernel
from flowkernel.http.bodies import (
    MAX_ID,
    BoardOut,
    ConversionOut,
    PipelineOut,
    StagePageOut,
    StageTimeOut,
    ref,
)
from flowkernel.http.documents import PipelineDoc, request_body
from flowkernel.http.pipeline_bodies import CloneIn, ForecastOut, StageRemovalOut
from flowkernel.previews import preview
from flowkernel.runtime.board_results import FIRST_NUMBER_COLUMN, FirstNumberColumn
from flowkernel.runtime.scope import MAX_PAGE

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])


def _pipeline(
    pipeline_id: Annotated[
        str, Path(min_length=1, max_length=128, description="the pipeline's id or code")
    ],
    fk: Kernel,
    actor: CurrentActor,
) -> int:
    """The pipeline the path names, by id or code, as the command line reads it."""
    return fk.pipelines.pipeline_id(ref(pipeline_id), actor)


Pipeline = Annotated[int, Depends(_pipeline)]
AccountQuery = Annotated[
    int | None,
    Query(ge=1, le=MAX_ID, description="the account (default: the token's)"),
]
StageRef = Annotated[str, Query(min_length=1, max_length=128, description="stage code or id")]
ValueColumn = Annotated[
    str | None,
    Query(
        max_length=128,
        description="the number column whose values are summed (default: the pipeline's first "
        "active one; empty: none)",
    ),
]


def _column(value_column: str | None) -> str | FirstNumberColumn | None:
    """The board's column as the library takes it: absent is the default, empty is none."""
    if value_column is None:
        return FIRST_NUMBER_COLUMN
    return value_column or None


Cursor = Annotated[
    str | None, Query(min_length=1, max_length=10_000, description="a previous next_cursor")
]
AsOf = Annotated[
    datetime | None,
    Query(
        description="a past instant (ISO 8601; UTC unless it names an offset): the board then, "
        "each stage's items latest entry first, with counts and no sums"
    ),
]

PIPELINE_DOCUMENT: dict[str, Any] = {
    "name": "Sales",
    "code": "sales",
    "stages": [
        {"name": "Lead"},
        {"name": "Qualified", "requires": ["amount"]},
        {"name": "Won", "is_won": True},
        {"name": "Lost", "is_lost": True},
    ],
    "columns": [{"name": "amount", "field_type": "number"}],
}


@router.get("", summary="The pipelines the token's actor reads")
def list_pipelines(
    fk: Kernel,
    actor: CurrentActor,
    account_id: AccountQuery = None,
    templates: Annotated[
        bool | None, Query(description="true: templates only; false: live pipelines only")
    ] = None,
) -> list[PipelineOut]:
    found = fk.pipelines.list_pipelines(actor, account_id=account_id, templates=templates)
    return [PipelineOut.of(p) for p in found]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a pipeline from a pipeline document",
    description="The document's keys are described in docs/cli.md (`flowkernel pipeline "
    "create`); a refused document leaves nothing behind (400 `invalid_document` lists every "
    "problem at its path).",
    openapi_extra=request_body(PipelineDoc, PIPELINE_DOCUMENT),
)
def create_pipeline(
    fk: Kernel,
    actor: CurrentActor,
    document: Annotated[dict[str, Any], Body(examples=[PIPELINE_DOCUMENT])],
    account_id: AccountQuery = None,
) -> PipelineOut:
    return PipelineOut.of(load_pipeline(fk, document, actor, account_id=account_id))


@router.get("/{pipeline_id}", summary="A pipeline with its stages, columns and automations")
def show_pipeline(pipeline: Pipeline, fk: Kernel, actor: CurrentActor) -> PipelineOut:
    return PipelineOut.of(fk.pipelines.get_pipeline(pipeline, actor))


@router.get("/{pipeline_id}/document", summary="A pipeline as a document that creates it again")
def dump(pipeline: Pipeline, fk: Kernel, actor: CurrentActor) -> dict[str, Any]:
    return dump_pipeline(fk.pipelines.get_pipeline(pipeline, actor))


@router.get("/{pipeline_id}/board", summary="The board: stages with a page of items and totals")
def board(
    pipeline: Pipeline,
    fk: Kernel,
    actor: CurrentActor,
    per_stage: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    cursor: Cursor = None,
    value_column: ValueColumn = None,
    as_of: AsOf = None,
) -> BoardOut:
    found = fk.queries.board(
        pipeline,
        actor,
        per_stage=per_stage,
        page=page,
        cursor=cursor,
        value_column=_column(value_column),
        as_of=as_of,
    )
    return BoardOut.model_validate(found)


@router.get(
    "/{pipeline_id}/stages/{stage}/items", summary="One stage's items after a board's cursor"
)
def stage_items(
    pipeline: Pipeline,
    stage: Annotated[str, Path(min_length=1, max_length=128, description="stage code or id")],
    fk: Kernel,
    actor: CurrentActor,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Cursor = None,
    value_column: ValueColumn = None,
    as_of: AsOf = None,
) -> StagePageOut:
    found = fk.queries.stage_items(
        pipeline,
        ref(stage),
        actor,
        limit=limit,
        cursor=cursor,
        value_column=_column(value_column),
        as_of=as_of,
    )
    return StagePageOut.model_validate(found)


@router.get("/{pipeline_id}/funnel", summary="Conversion between two stages")
def funnel(
    pipeline: Pipeline,
    from_stage: StageRef,
    to_stage: StageRef,
    fk: Kernel,
    actor: CurrentActor,
) -> ConversionOut:
    found = fk.queries.conversion(pipeline, ref(from_stage), ref(to_stage), actor)
    return ConversionOut.model_validate(found)


@router.get(
    "/{pipeline_id}/forecast",
    summary="Weighted value by close period, conversion, time in stage and idle items, with "
    "the previous period's",
)
def forecast(
    pipeline: Pipeline,
    fk: Kernel,
    actor: CurrentActor,
    close_column: Annotated[
        str | None, Query(min_length=1, max_length=128, description="a date column")
    ] = None,
    period: Annotated[Literal["week", "month", "quarter"], Query()] = "month",
    value_column: ValueColumn = None,
    idle_days: Annotated[
        str | None,
        Query(
            max_length=10_000,
            description="days without a move or a call after which an item is idle: one number "
            "for every open stage, or code:days,code:days",
        ),
    ] = None,
    as_of: AsOf = None,
) -> ForecastOut:
    found = fk.queries.forecast(
        pipeline,
        actor,
        close_column=close_column,
        period=period,
        value_column=_column(value_column),
        idle_days=idle_days_of(idle_days),
        as_of=as_of,
    )
    return ForecastOut.model_validate(found)


def idle_days_of(text: str | None) -> int | dict[str, int] | None:
    """`idle_days` as the library takes it: `7`, or `lead:7,proposal:14`."""
    if text is None or not text.strip():
        return None
    try:
        if ":" not in text:
            return int(text)
        return {
            code.strip(): int(days) for code, days in (part.split(":") for part in text.split(","))
        }
    except ValueError:
        raise InvalidArgument(
            f"idle_days must be a number of days or code:days,code:days, not {preview(text)}",
            idle_days=text,
        ) from None


@router.get("/{pipeline_id}/time-in-stage", summary="Time spent per stage over all items")
def time_in_stage(pipeline: Pipeline, fk: Kernel, actor: CurrentActor) -> list[StageTimeOut]:
    return [StageTimeOut.of(t) for t in fk.queries.stage_times(pipeline, actor)]


@router.post(
    "/{pipeline_id}/clone",
    status_code=status.HTTP_201_CREATED,
    summary="Copy a template into a live pipeline of an account",
)
def clone_template(
    pipeline: Pipeline, body: CloneIn, fk: Kernel, actor: CurrentActor
) -> PipelineOut:
    account = body.account_id if body.account_id is not None else actor.account_id
    if account is None:
        raise InvalidArgument(
            "a platform token names the account of the copy: pass account_id",
            account_id=None,
        )
    info = fk.pipelines.clone_template(pipeline, account, actor, body.name, code=body.code)
    return PipelineOut.of(info)


@router.delete(
    "/{pipeline_id}/stages/{stage}",
    summary="Remove a stage, moving its items to a target stage first",
    description="With dry_run=true nothing changes: the answer lists the items that would "
    "move. A stage holding items needs a target.",
)
def remove_stage(
    pipeline: Pipeline,
    stage: Annotated[str, Path(min_length=1, max_length=128, description="stage code or id")],
    fk: Kernel,
    actor: CurrentActor,
    target: Annotated[
        str | None, Query(min_length=1, max_length=128, description="stage code or id")
    ] = None,
    dry_run: bool = False,
) -> StageRemovalOut:
    report = fk.pipelines.remove_stage(
        pipeline,
        ref(stage),
        actor,
        target=ref(target) if target is not None else None,
        dry_run=dry_run,
    )
    return StageRemovalOut(
        pipeline_id=report.pipeline_id,
        stage=report.stage,
        stage_id=report.stage_id,
        target=report.target,
        target_id=report.target_id,
        item_ids=list(report.item_ids),
        count=report.count,
        dry_run=report.dry_run,
    )
