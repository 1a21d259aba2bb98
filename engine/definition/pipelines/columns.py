"""Custom columns of a pipeline and the columns a stage requires before an item enters it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.actors import Actor
from flowkernel.definition.codes import state_code
from flowkernel.definition.pipelines.info import (
    ColumnInfo,
    ColumnRef,
    StageInfo,
    StageRef,
    read_pipeline,
)
from flowkernel.definition.pipelines.rows import (
    find_column,
    find_stage,
    insert_column,
    make_room,
    pipeline_row,
    utc_now,
)
from flowkernel.definition.pipelines.specs import ColumnSpec, check_options, column_spec
from flowkernel.errors import DefinitionInUse, DuplicateCode, InvalidDefinition
from flowkernel.previews import preview
from flowkernel.store.schema import StageRequiredColumnRow, StageRow
from flowkernel.store.tables import columns as column_table
from flowkernel.store.tables import required_columns as required_table
from flowkernel.validation import MAX_POSITION, check_bool, check_int, check_text


class ColumnAdmin:
    """The column and stage entry requirement operations of `PipelineAdmin`, which sets
    `_sessions`."""

    _sessions: sessionmaker[Session]

    def add_column(
        self,
        pipeline_id: int,
        name: str,
        actor: Actor,
        *,
        label: str | None = None,
        field_type: str = "text",
        options: Sequence[str] | None = None,
        is_required: bool = False,
        position: int | None = None,
    ) -> ColumnInfo:
        """Add a custom column; select and multi_select columns need their options.

        Without `position` the column goes last; with one, it takes that position and the
        columns at or after it shift back by one.
        """
        spec = column_spec(
            ColumnSpec(
                name=name,
                label=label,
                field_type=field_type,
                options=options,
                is_required=is_required,
                position=position,
            )
        )
        with self._sessions.begin() as session:
            row = pipeline_row(session, pipeline_id, actor, write=True)
            existing = session.execute(
                select(column_table.c.id).where(
                    column_table.c.flow_pipeline_id == row.id, column_table.c.name == spec.name
                )
            ).first()
            if existing is not None:
                raise DuplicateCode("column", spec.name, f"pipeline {preview(row.name)}")
            if spec.position is None:
                at = session.execute(
                    select(func.coalesce(func.max(column_table.c.position) + 1, 0)).where(
                        column_table.c.flow_pipeline_id == row.id,
                        column_table.c.deleted_at.is_(None),
                    )
                ).scalar_one()
            else:
                at = spec.position
                make_room(session, column_table, row.id, at, None)
            column_id = insert_column(session, row.id, spec, at)
            return read_pipeline(session, row.id).column(column_id)

    def edit_column(
        self,
        pipeline_id: int,
        column: ColumnRef,
        actor: Actor,
        *,
        label: str | None = None,
        options: Sequence[str] | None = None,
        position: int | None = None,
        is_required: bool | None = None,
        is_active: bool | None = None,
    ) -> ColumnInfo:
        """Change a column's label, options (select types only), position or `is_required`,
        and (`is_active`) deactivate or activate it, all in one transaction.

        Stored values are not revalidated against new options. Deactivating is refused while a
        stage requires the column (`DefinitionInUse`), and then nothing changes.
        """
        values: dict[str, Any] = {}
        if label is not None:
            check_text("label", label)
            values["label"] = label
        if position is not None:
            check_int("position", position, maximum=MAX_POSITION)
        if is_required is not None:
            values["is_required"] = check_bool("is_required", is_required)
        active = None if is_active is None else check_bool("is_active", is_active)
        with self._sessions.begin() as session:
            row = pipeline_row(session, pipeline_id, actor, write=True)
            target = find_column(session, row, column)
            if options is not None:
                values["options"] = check_options(target.name, target.field_type, options)
            if active is not None:
                if not active:
                    _check_unrequired(session, target)
                if target.is_active != active:
                    values["is_active"] = active
            if position is not None and position != target.position:
                make_room(session, column_table, row.id, position, target.id)
                values["position"] = position
            if values:
                session.execute(
                    update(column_table)
                    .where(column_table.c.id == target.id)
                    .values(updated_at=utc_now(), **values)
                )
            return read_pipeline(session, row.id).column(target.id)

    def deactivate_column(self, pipeline_id: int, column: ColumnRef, actor: Actor) -> ColumnInfo:
        """Deactivate a column: it keeps its values but is hidden and takes no writes.

        Refused while a stage requires the column (`DefinitionInUse`); unrequire it first.
        """
        return self.edit_column(pipeline_id, column, actor, is_active=False)

    def activate_column(self, pipeline_id: int, column: ColumnRef, actor: Actor) -> ColumnInfo:
        """Activate a deactivated column again."""
        return self.edit_column(pipeline_id, column, actor, is_active=True)

    # --- stage entry requirements --------------------------------------------------------

    def require_column(
        self, pipeline_id: int, stage: StageRef, column: ColumnRef, actor: Actor
    ) -> StageInfo:
        """Require a value in `column` before an item enters `stage` (idempotent)."""
        with self._sessions.begin() as session:
            row = pipeline_row(session, pipeline_id, actor, write=True)
            stage_row = find_stage(session, row, stage)
            column_row = find_column(session, row, column)
            if not column_row.is_active:
                raise InvalidDefinition(
                    f"column {preview(column_row.name)} is inactive; activate it before a stage "
                    "requires it",
                    column=column_row.name,
                )
            existing = session.execute(
                select(required_table.c.id).where(
                    required_table.c.flow_stage_id == stage_row.id,
                    required_table.c.flow_column_id == column_row.id,
                )
            ).first()
            if existing is None:
                session.execute(
                    insert(required_table).values(
                        flow_stage_id=stage_row.id,
                        flow_column_id=column_row.id,
                        created_at=utc_now(),
                    )
                )
            return read_pipeline(session, row.id).stage(stage_row.id)

    def unrequire_column(
        self, pipeline_id: int, stage: StageRef, column: ColumnRef, actor: Actor
    ) -> StageInfo:
        """Stop requiring `column` to enter `stage` (idempotent)."""
        with self._sessions.begin() as session:
            row = pipeline_row(session, pipeline_id, actor, write=True)
            stage_row = find_stage(session, row, stage)
            column_row = find_column(session, row, column)
            session.execute(
                delete(required_table).where(
                    required_table.c.flow_stage_id == stage_row.id,
                    required_table.c.flow_column_id == column_row.id,
                )
            )
            return read_pipeline(session, row.id).stage(stage_row.id)


def _check_unrequired(session: Session, column: Any) -> None:
    """`DefinitionInUse` while a live stage requires `column` to enter it."""
    requiring = list(
        session.execute(
            select(StageRow)
            .join(StageRequiredColumnRow, StageRequiredColumnRow.flow_stage_id == StageRow.id)
            .where(
                StageRequiredColumnRow.flow_column_id == column.id, StageRow.deleted_at.is_(None)
            )
            .order_by(StageRow.position, StageRow.id)
        ).scalars()
    )
    if requiring:
        stages = ", ".join(state_code(s) for s in requiring)
        raise DefinitionInUse("column", column.name, f"the entry requirements of stage(s) {stages}")
