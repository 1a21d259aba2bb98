"""Pipelines as frozen values: live stages (by position), columns, automations and movement
rules, read fresh from the definition rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flowkernel.definition.codes import state_code
from flowkernel.definition.pipelines.specs import ChecklistItem
from flowkernel.errors import UnknownDefinition
from flowkernel.previews import preview
from flowkernel.store.schema import (
    AutomationRow,
    ColumnRow,
    PipelineRow,
    StageMoveRow,
    StageRequiredColumnRow,
    StageRow,
)

StageRef = str | int
"""A stage by code (str) or id (int)."""
ColumnRef = str | int
"""A column by name (str) or id (int)."""


@dataclass(frozen=True, slots=True)
class StageInfo:
    """A live stage of a pipeline; `required_columns` names the columns needed to enter it."""

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
    checklist: tuple[ChecklistItem, ...]
    required_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    """A custom column of a pipeline (`options` is empty unless it is a select type)."""

    id: int
    pipeline_id: int
    name: str
    label: str
    field_type: str
    options: tuple[str, ...]
    is_required: bool
    position: int
    is_active: bool


@dataclass(frozen=True, slots=True)
class AutomationInfo:
    """An automation of a pipeline; `stage` None fires for every stage."""

    id: int
    pipeline_id: int
    name: str | None
    trigger: str
    stage: str | None
    stage_id: int | None
    event_name: str
    payload_template: Mapping[str, Any]
    is_active: bool


@dataclass(frozen=True, slots=True)
class PipelineInfo:
    """A pipeline with its live stages (by position), columns and automations (not deleted)."""

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
    allowed_moves: tuple[tuple[str, str], ...]
    version: int
    stages: tuple[StageInfo, ...]
    columns: tuple[ColumnInfo, ...]
    automations: tuple[AutomationInfo, ...]

    def stage(self, ref: StageRef) -> StageInfo:
        """The stage with this code or id."""
        for stage in self.stages:
            if stage.id == ref if isinstance(ref, int) else stage.code == ref:
                return stage
        raise UnknownDefinition(
            "stage", ref, f"pipeline {preview(self.name)}", [s.code for s in self.stages]
        )

    def column(self, ref: ColumnRef) -> ColumnInfo:
        """The column with this name or id."""
        for column in self.columns:
            if column.id == ref if isinstance(ref, int) else column.name == ref:
                return column
        raise UnknownDefinition(
            "column", ref, f"pipeline {preview(self.name)}", [c.name for c in self.columns]
        )


# --- reading -----------------------------------------------------------------------------


def read_pipeline(session: Session, pipeline_id: int) -> PipelineInfo:
    """One pipeline with its definitions, read fresh."""
    return read_pipelines(session, [pipeline_id])[0]


def read_pipelines(session: Session, pipeline_ids: Sequence[int]) -> list[PipelineInfo]:
    """Pipelines with their definitions, read fresh (triggers may have bumped versions)."""
    if not pipeline_ids:
        return []
    session.expire_all()
    ids = list(pipeline_ids)
    rows = {
        r.id: r
        for r in session.execute(select(PipelineRow).where(PipelineRow.id.in_(ids))).scalars()
    }
    stage_rows = list(
        session.execute(
            select(StageRow)
            .where(StageRow.flow_pipeline_id.in_(ids), StageRow.deleted_at.is_(None))
            .order_by(StageRow.position, StageRow.id)
        ).scalars()
    )
    codes = {s.id: state_code(s) for s in stage_rows}
    required: dict[int, list[str]] = {}
    if stage_rows:
        for stage_id, column_name in session.execute(
            select(StageRequiredColumnRow.flow_stage_id, ColumnRow.name)
            .join(ColumnRow, ColumnRow.id == StageRequiredColumnRow.flow_column_id)
            .where(StageRequiredColumnRow.flow_stage_id.in_(list(codes)))
            .order_by(ColumnRow.position, ColumnRow.id)
        ):
            required.setdefault(stage_id, []).append(column_name)
    column_rows = session.execute(
        select(ColumnRow)
        .where(ColumnRow.flow_pipeline_id.in_(ids), ColumnRow.deleted_at.is_(None))
        .order_by(ColumnRow.position, ColumnRow.id)
    ).scalars()
    automation_rows = session.execute(
        select(AutomationRow)
        .where(AutomationRow.flow_pipeline_id.in_(ids), AutomationRow.deleted_at.is_(None))
        .order_by(AutomationRow.id)
    ).scalars()
    move_rows = session.execute(
        select(StageMoveRow).where(StageMoveRow.flow_pipeline_id.in_(ids)).order_by(StageMoveRow.id)
    ).scalars()
    stages_of: dict[int, list[StageInfo]] = {}
    for s in stage_rows:
        stages_of.setdefault(s.flow_pipeline_id, []).append(
            StageInfo(
                id=s.id,
                pipeline_id=s.flow_pipeline_id,
                code=codes[s.id],
                name=s.name,
                position=s.position,
                color=s.color,
                probability=s.probability,
                sla_days=s.sla_days,
                is_won=s.is_won,
                is_lost=s.is_lost,
                checklist=_stored_checklist(s.checklist),
                required_columns=tuple(required.get(s.id, ())),
            )
        )
    columns_of: dict[int, list[ColumnInfo]] = {}
    for c in column_rows:
        columns_of.setdefault(c.flow_pipeline_id, []).append(_column_info(c))
    automations_of: dict[int, list[AutomationInfo]] = {}
    for a in automation_rows:
        automations_of.setdefault(a.flow_pipeline_id, []).append(_to_automation_info(a, codes))
    moves_of: dict[int, list[tuple[str, str]]] = {}
    for m in move_rows:
        if m.from_stage_id in codes and m.to_stage_id in codes:
            moves_of.setdefault(m.flow_pipeline_id, []).append(
                (codes[m.from_stage_id], codes[m.to_stage_id])
            )
    return [
        PipelineInfo(
            id=r.id,
            name=r.name,
            code=r.code,
            description=r.description,
            object_type=r.object_type,
            account_id=r.iam_account_id,
            user_id=r.iam_user_id,
            is_template=r.is_template,
            is_system=r.is_system,
            template_id=r.template_id,
            movement=r.movement,
            allow_skip_forward=r.allow_skip_forward,
            allow_backward=r.allow_backward,
            allowed_moves=tuple(moves_of.get(r.id, ())),
            version=r.version,
            stages=tuple(stages_of.get(r.id, ())),
            columns=tuple(columns_of.get(r.id, ())),
            automations=tuple(automations_of.get(r.id, ())),
        )
        for r in (rows[i] for i in ids)
    ]


def _column_info(c: ColumnRow) -> ColumnInfo:
    return ColumnInfo(
        id=c.id,
        pipeline_id=c.flow_pipeline_id,
        name=c.name,
        label=c.label,
        field_type=c.field_type,
        options=tuple(str(o) for o in c.options) if isinstance(c.options, list) else (),
        is_required=c.is_required,
        position=c.position,
        is_active=c.is_active,
    )


def _to_automation_info(a: AutomationRow, codes: Mapping[int, str]) -> AutomationInfo:
    return AutomationInfo(
        id=a.id,
        pipeline_id=a.flow_pipeline_id,
        name=a.name,
        trigger=a.trigger,
        stage=codes.get(a.flow_stage_id) if a.flow_stage_id is not None else None,
        stage_id=a.flow_stage_id,
        event_name=a.event_name,
        payload_template=dict(a.payload_template) if isinstance(a.payload_template, dict) else {},
        is_active=a.is_active,
    )


def _stored_checklist(raw: Any) -> tuple[ChecklistItem, ...]:
    """A stored checklist as values; entries written by hand without a key are skipped."""
    if not isinstance(raw, list):
        return ()
    return tuple(
        ChecklistItem(
            key=entry["key"],
            label=str(entry.get("label", entry["key"])),
            required=bool(entry.get("required", False)),
        )
        for entry in raw
        if isinstance(entry, dict) and isinstance(entry.get("key"), str)
    )
