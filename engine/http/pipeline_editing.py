"""Editing a pipeline over HTTP: the pipeline itself, its movement rules, stages, columns,
stage entry requirements and automations, as the library's `PipelineAdmin` does them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status

from flowkernel.http.auth import CurrentActor, Kernel
from flowkernel.http.bodies import (
    MAX_ID,
    AutomationOut,
    ColumnOut,
    PipelineOut,
    StageOut,
    ref,
)
from flowkernel.http.pipeline_bodies import (
    AutomationEditIn,
    AutomationIn,
    ColumnEditIn,
    ColumnIn,
    MovementIn,
    PipelineEditIn,
    StageEditIn,
    StageIn,
    StageOrderIn,
)
from flowkernel.http.pipelines import Pipeline

router = APIRouter(prefix="/v1/pipelines", tags=["pipeline editing"])

StagePath = Annotated[str, Path(min_length=1, max_length=128, description="stage code or id")]
ColumnPath = Annotated[str, Path(min_length=1, max_length=128, description="column name or id")]
AutomationPath = Annotated[int, Path(ge=1, le=MAX_ID, description="the automation's id")]


def _ref(value: str | int) -> str | int:
    return ref(value) if isinstance(value, str) else value


@router.patch("/{pipeline_id}", summary="Rename a pipeline or change its code, type or kind")
def edit_pipeline(
    pipeline: Pipeline, body: PipelineEditIn, fk: Kernel, actor: CurrentActor
) -> PipelineOut:
    return PipelineOut.of(fk.pipelines.edit_pipeline(pipeline, actor, **body.given()))


@router.delete(
    "/{pipeline_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a pipeline (its items and history stay)",
)
def delete_pipeline(pipeline: Pipeline, fk: Kernel, actor: CurrentActor) -> Response:
    fk.pipelines.delete_pipeline(pipeline, actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.patch("/{pipeline_id}/movement", summary="Restrict or free how users move items")
def set_movement(
    pipeline: Pipeline, body: MovementIn, fk: Kernel, actor: CurrentActor
) -> PipelineOut:
    given: dict[str, Any] = body.given()
    if "allowed_moves" in given and body.allowed_moves is not None:
        given["allowed_moves"] = [
            (_ref(m.from_stage), _ref(m.to_stage)) for m in body.allowed_moves
        ]
    return PipelineOut.of(fk.pipelines.set_movement(pipeline, actor, **given))


# --- stages ------------------------------------------------------------------------------------


@router.post(
    "/{pipeline_id}/stages",
    status_code=status.HTTP_201_CREATED,
    summary="Add a stage (last, or at a position)",
)
def add_stage(pipeline: Pipeline, body: StageIn, fk: Kernel, actor: CurrentActor) -> StageOut:
    values = body.model_dump()
    values["checklist"] = [entry.model_dump() for entry in body.checklist]
    name = values.pop("name")
    return StageOut.model_validate(fk.pipelines.add_stage(pipeline, name, actor, **values))


@router.patch("/{pipeline_id}/stages/{stage}", summary="Change a stage")
def edit_stage(
    pipeline: Pipeline, stage: StagePath, body: StageEditIn, fk: Kernel, actor: CurrentActor
) -> StageOut:
    given = body.given()
    if body.checklist is not None:
        given["checklist"] = [entry.model_dump() for entry in body.checklist]
    found = fk.pipelines.edit_stage(pipeline, ref(stage), actor, **given)
    return StageOut.model_validate(found)


@router.put("/{pipeline_id}/stage-order", summary="Put every live stage in a new order")
def reorder_stages(
    pipeline: Pipeline, body: StageOrderIn, fk: Kernel, actor: CurrentActor
) -> list[StageOut]:
    found = fk.pipelines.reorder_stages(pipeline, [_ref(s) for s in body.order], actor)
    return [StageOut.model_validate(s) for s in found]


@router.put(
    "/{pipeline_id}/stages/{stage}/required/{column}",
    summary="Require a value in a column before an item enters a stage",
)
def require_column(
    pipeline: Pipeline, stage: StagePath, column: ColumnPath, fk: Kernel, actor: CurrentActor
) -> StageOut:
    found = fk.pipelines.require_column(pipeline, ref(stage), ref(column), actor)
    return StageOut.model_validate(found)


@router.delete(
    "/{pipeline_id}/stages/{stage}/required/{column}",
    summary="Stop requiring a column to enter a stage",
)
def unrequire_column(
    pipeline: Pipeline, stage: StagePath, column: ColumnPath, fk: Kernel, actor: CurrentActor
) -> StageOut:
    found = fk.pipelines.unrequire_column(pipeline, ref(stage), ref(column), actor)
    return StageOut.model_validate(found)


# --- columns -----------------------------------------------------------------------------------


@router.post(
    "/{pipeline_id}/columns",
    status_code=status.HTTP_201_CREATED,
    summary="Add a custom column (last, or at a position)",
)
def add_column(pipeline: Pipeline, body: ColumnIn, fk: Kernel, actor: CurrentActor) -> ColumnOut:
    values = body.model_dump()
    name = values.pop("name")
    return ColumnOut.model_validate(fk.pipelines.add_column(pipeline, name, actor, **values))


@router.patch(
    "/{pipeline_id}/columns/{column}",
    summary="Change a column, or (is_active) deactivate or activate it",
)
def edit_column(
    pipeline: Pipeline, column: ColumnPath, body: ColumnEditIn, fk: Kernel, actor: CurrentActor
) -> ColumnOut:
    found = fk.pipelines.edit_column(pipeline, ref(column), actor, **body.given())
    return ColumnOut.model_validate(found)


# --- automations -------------------------------------------------------------------------------


@router.get("/{pipeline_id}/automations", summary="A pipeline's automations, inactive ones too")
def list_automations(pipeline: Pipeline, fk: Kernel, actor: CurrentActor) -> list[AutomationOut]:
    return [AutomationOut.model_validate(a) for a in fk.pipelines.list_automations(pipeline, actor)]


@router.post(
    "/{pipeline_id}/automations",
    status_code=status.HTTP_201_CREATED,
    summary="Fire an event when an item enters or leaves a stage, is created or breaches its SLA",
)
def add_automation(
    pipeline: Pipeline, body: AutomationIn, fk: Kernel, actor: CurrentActor
) -> AutomationOut:
    found = fk.pipelines.add_automation(
        pipeline,
        body.trigger,
        body.event_name,
        actor,
        stage=_ref(body.stage) if body.stage is not None else None,
        name=body.name,
        payload_template=body.payload_template,
        is_active=body.is_active,
    )
    return AutomationOut.model_validate(found)


@router.patch("/{pipeline_id}/automations/{automation_id}", summary="Change an automation")
def edit_automation(
    pipeline: Pipeline,
    automation_id: AutomationPath,
    body: AutomationEditIn,
    fk: Kernel,
    actor: CurrentActor,
) -> AutomationOut:
    given = body.given()
    if body.stage is not None:
        given["stage"] = _ref(body.stage)
    found = fk.pipelines.edit_automation(automation_id, actor, pipeline_id=pipeline, **given)
    return AutomationOut.model_validate(found)


@router.delete(
    "/{pipeline_id}/automations/{automation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an automation; it never fires again",
)
def delete_automation(
    pipeline: Pipeline, automation_id: AutomationPath, fk: Kernel, actor: CurrentActor
) -> Response:
    fk.pipelines.delete_automation(automation_id, actor, pipeline_id=pipeline)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
