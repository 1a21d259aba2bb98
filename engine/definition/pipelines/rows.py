"""Definition rows of a pipeline: the pipeline an actor may use, its stages and columns by
reference, and the row writes the administration shares.

A pipeline of another account is `UnknownDefinition`; a platform pipeline is changed only by
the platform's system actor; the class-wide access rules apply to everyone else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, Table, insert, null, select, update
from sqlalchemy.orm import Session

from flowkernel.access import EXECUTE, VISIBLE, check_class
from flowkernel.actors import Actor
from flowkernel.definition.codes import state_code
from flowkernel.definition.pipelines.specs import (
    ColumnSpec,
    StageSpec,
    checklist_json,
    parse_checklist,
)
from flowkernel.definition.rules import class_rules
from flowkernel.errors import AccessDenied, DuplicateCode, InvalidDefinition, UnknownDefinition
from flowkernel.kinds import Movement
from flowkernel.previews import preview
from flowkernel.store.schema import ColumnRow, PipelineRow, StageRow
from flowkernel.store.tables import columns as column_table
from flowkernel.store.tables import pipelines as pipeline_table
from flowkernel.store.tables import stages as stage_table
from flowkernel.validation import MAX_ID, MIN_ID, check_id, storable

# --- reading -----------------------------------------------------------------------------


def pipeline_row(
    session: Session,
    pipeline_id: int,
    actor: Actor,
    *,
    write: bool,
    lock: bool | None = None,
) -> PipelineRow:
    """The pipeline, if the actor reads it (and, with `write`, may change it).

    A write locks the pipeline row on PostgreSQL, so definition changes of one pipeline
    run one after another.
    """
    check_id("pipeline_id", pipeline_id)
    stmt = select(PipelineRow).where(PipelineRow.id == pipeline_id)
    if write if lock is None else lock:
        stmt = locked(session, stmt)
    row = session.execute(stmt).scalar_one_or_none()
    if (
        row is None
        or row.deleted_at is not None
        or row.movement != Movement.FREE
        or not actor.reaches(row.iam_account_id)
    ):
        raise UnknownDefinition("pipeline", pipeline_id)
    if write and row.iam_account_id is None and not is_platform(actor):
        kind = "system template" if row.is_system else "platform pipeline"
        raise AccessDenied(
            f"pipeline {preview(row.name)} is a {kind}; only the platform's system actor changes "
            "it: clone it into your account and edit the copy",
            pipeline_id=row.id,
            user_id=actor.user_id,
        )
    if not actor.is_system:
        rules = class_rules(session.connection(), row.id)
        check_class(rules, actor, EXECUTE if write else VISIBLE, f"pipeline {preview(row.name)}")
    return row


def is_platform(actor: Actor) -> bool:
    """The system actor of the whole platform: the only one changing platform pipelines."""
    return actor.is_system and actor.account_id is None


def live_stages(session: Session, pipeline_id: int) -> list[StageRow]:
    """The pipeline's stages that are not deleted, by position."""
    return list(
        session.execute(
            select(StageRow)
            .where(StageRow.flow_pipeline_id == pipeline_id, StageRow.deleted_at.is_(None))
            .order_by(StageRow.position, StageRow.id)
        ).scalars()
    )


def find_stage(session: Session, pipeline: PipelineRow, ref: object) -> StageRow:
    """A live stage of the pipeline by code or id."""
    live = live_stages(session, pipeline.id)
    if isinstance(ref, int) and not isinstance(ref, bool):
        found = next((s for s in live if s.id == ref), None)
    elif isinstance(ref, str):
        found = next((s for s in live if state_code(s) == ref), None)
    else:
        raise InvalidDefinition(
            f"a stage is named by its code or id, not {preview(ref)}", stage=ref
        )
    if found is None:
        raise UnknownDefinition(
            "stage", ref, f"pipeline {preview(pipeline.name)}", [state_code(s) for s in live]
        )
    return found


def find_column(session: Session, pipeline: PipelineRow, ref: object) -> ColumnRow:
    """A column (not deleted) of the pipeline by name or id."""
    stmt = select(ColumnRow).where(
        ColumnRow.flow_pipeline_id == pipeline.id, ColumnRow.deleted_at.is_(None)
    )
    found: ColumnRow | None = None
    if isinstance(ref, int) and not isinstance(ref, bool):
        if MIN_ID <= ref <= MAX_ID:  # a larger id names no column (and would overflow BIGINT)
            found = session.execute(stmt.where(ColumnRow.id == ref)).scalar_one_or_none()
    elif isinstance(ref, str):
        if storable(ref):  # a name with NUL names no column (and cannot be sent to PostgreSQL)
            found = session.execute(stmt.where(ColumnRow.name == ref)).scalar_one_or_none()
    else:
        raise InvalidDefinition(
            f"a column is named by its name or id, not {preview(ref)}", column=ref
        )
    if found is None:
        known = session.execute(stmt.with_only_columns(ColumnRow.name)).scalars()
        raise UnknownDefinition("column", ref, f"pipeline {preview(pipeline.name)}", sorted(known))
    return found


# --- writing -----------------------------------------------------------------------------


def utc_now() -> datetime:
    """The current time in UTC, for `created_at`, `updated_at` and `deleted_at`."""
    return datetime.now(UTC)


def locked(session: Session, stmt: Select[Any]) -> Select[Any]:
    """`stmt` locking its rows (SQLite leaves FOR UPDATE out: its transactions hold the lock)."""
    return stmt.with_for_update()


def bump_pipeline(session: Session, pipeline_id: int, **values: Any) -> None:
    """Update the pipeline row itself; its own columns carry no version trigger."""
    session.execute(
        update(pipeline_table)
        .where(pipeline_table.c.id == pipeline_id)
        .values(version=pipeline_table.c.version + 1, updated_at=utc_now(), **values)
    )


def check_free_code(session: Session, code: str, account_id: int | None) -> None:
    """Refuse (`DuplicateCode`) a code that a pipeline of the account (None: of the platform)
    has and that is not deleted."""
    taken = session.execute(
        select(pipeline_table.c.id).where(
            pipeline_table.c.code == code,
            pipeline_table.c.deleted_at.is_(None),
            pipeline_table.c.iam_account_id.is_(None)
            if account_id is None
            else pipeline_table.c.iam_account_id == account_id,
        )
    ).first()
    if taken is not None:
        scope = "the platform" if account_id is None else f"account {account_id}"
        raise DuplicateCode("pipeline", code, scope)


def insert_stage(
    session: Session, pipeline_id: int, code: str, spec: StageSpec, position: int
) -> int:
    """Insert a checked stage spec under `code` at `position`; the new stage's id."""
    now = utc_now()
    checklist = parse_checklist(spec.checklist)
    return int(
        session.execute(
            insert(stage_table)
            .values(
                flow_pipeline_id=pipeline_id,
                name=spec.name,
                code=code,
                position=position,
                color=spec.color,
                probability=spec.probability,
                sla_days=spec.sla_days,
                is_won=spec.is_won,
                is_lost=spec.is_lost,
                checklist=checklist_json(checklist) if checklist else null(),
                created_at=now,
                updated_at=now,
            )
            .returning(stage_table.c.id)
        ).scalar_one()
    )


def insert_column(session: Session, pipeline_id: int, spec: ColumnSpec, position: int) -> int:
    """Insert a checked column spec at `position`; the new column's id."""
    now = utc_now()
    return int(
        session.execute(
            insert(column_table)
            .values(
                flow_pipeline_id=pipeline_id,
                name=spec.name,
                label=spec.label or spec.name,
                field_type=spec.field_type,
                options=list(spec.options) if spec.options is not None else null(),
                is_required=spec.is_required,
                position=position,
                created_at=now,
                updated_at=now,
            )
            .returning(column_table.c.id)
        ).scalar_one()
    )


def make_room(
    session: Session, table: Table, pipeline_id: int, position: int, moving: int | None
) -> None:
    """Shift the live rows at or after `position` back by one (all but `moving`)."""
    stmt = update(table).where(
        table.c.flow_pipeline_id == pipeline_id,
        table.c.deleted_at.is_(None),
        table.c.position >= position,
    )
    if moving is not None:
        stmt = stmt.where(table.c.id != moving)
    session.execute(stmt.values(position=table.c.position + 1, updated_at=utc_now()))
