"""Template cloning: a template copied, with new ids, into a live pipeline of an account."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, null, select
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.actors import Actor
from flowkernel.definition.pipelines.info import PipelineInfo, read_pipeline
from flowkernel.definition.pipelines.rows import check_free_code, live_stages, pipeline_row, utc_now
from flowkernel.definition.pipelines.specs import MAX_CODE
from flowkernel.errors import AccessDenied, InvalidDefinition, UnknownDefinition
from flowkernel.kinds import Movement
from flowkernel.previews import preview
from flowkernel.store.schema import (
    AutomationRow,
    ColumnRow,
    PipelineRow,
    StageMoveRow,
    StageRequiredColumnRow,
)
from flowkernel.store.tables import automations as automation_table
from flowkernel.store.tables import columns as column_table
from flowkernel.store.tables import pipelines as pipeline_table
from flowkernel.store.tables import required_columns as required_table
from flowkernel.store.tables import stage_moves as move_table
from flowkernel.store.tables import stages as stage_table
from flowkernel.validation import check_code, check_id, check_text


class TemplateAdmin:
    """The template operations of `PipelineAdmin`, which sets `_sessions`."""

    _sessions: sessionmaker[Session]

    def clone_template(
        self,
        template_id: int,
        account_id: int,
        actor: Actor,
        name: str | None = None,
        *,
        code: str | None = None,
    ) -> PipelineInfo:
        """Copy a template into a live pipeline of `account_id`.

        Stages (codes, colours, probabilities, SLA, won/lost, checklists), columns (with
        options), entry requirements, automations and movement rules are copied with new ids;
        the copy records `template_id` and is independent of the template from then on. The
        copy keeps the template's code unless `code` is given. A system template clones into
        any account; an account's template only into its own account.
        """
        check_id("account_id", account_id)
        if name is not None:
            check_text("name", name)
        if code is not None:
            check_code("pipeline", code, max_length=MAX_CODE)
        if not actor.reaches(account_id):
            raise AccessDenied(
                f"actor of account {actor.account_id} cannot create pipelines in "
                f"account {account_id}",
                account_id=account_id,
            )
        with self._sessions.begin() as session:
            source = pipeline_row(session, template_id, actor, write=False)
            if source.iam_account_id is not None and source.iam_account_id != account_id:
                raise UnknownDefinition("template", template_id, f"account {account_id}")
            if not source.is_template:
                raise InvalidDefinition(
                    f"pipeline {preview(source.name)} is not a template; mark it with "
                    "edit_pipeline(..., is_template=True) to clone it",
                    pipeline_id=source.id,
                )
            new_code = code if code is not None else source.code
            if new_code is not None:
                check_free_code(session, new_code, account_id)
            return read_pipeline(session, _copy(session, source, account_id, actor, name, new_code))


def _copy(
    session: Session,
    source: PipelineRow,
    account_id: int,
    actor: Actor,
    name: str | None,
    code: str | None,
) -> int:
    """Insert a copy of `source` into `account_id`; the new pipeline's id."""
    now = utc_now()
    new_id = session.execute(
        insert(pipeline_table)
        .values(
            name=name if name is not None else source.name,
            description=source.description,
            object_type=source.object_type,
            code=code,
            iam_account_id=account_id,
            iam_user_id=actor.user_id,
            is_template=False,
            is_system=False,
            movement=Movement.FREE,
            allow_skip_forward=source.allow_skip_forward,
            allow_backward=source.allow_backward,
            template_id=source.id,
            created_at=now,
            updated_at=now,
        )
        .returning(pipeline_table.c.id)
    ).scalar_one()
    stage_ids: dict[int, int] = {}
    for s in live_stages(session, source.id):
        stage_ids[s.id] = session.execute(
            insert(stage_table)
            .values(
                flow_pipeline_id=new_id,
                name=s.name,
                code=s.code,
                state_type=s.state_type,
                position=s.position,
                color=s.color,
                probability=s.probability,
                sla_days=s.sla_days,
                is_won=s.is_won,
                is_lost=s.is_lost,
                checklist=_json_or_null(s.checklist),
                created_at=now,
                updated_at=now,
            )
            .returning(stage_table.c.id)
        ).scalar_one()
    column_ids: dict[int, int] = {}
    for c in session.execute(
        select(ColumnRow)
        .where(ColumnRow.flow_pipeline_id == source.id, ColumnRow.deleted_at.is_(None))
        .order_by(ColumnRow.position, ColumnRow.id)
    ).scalars():
        column_ids[c.id] = session.execute(
            insert(column_table)
            .values(
                flow_pipeline_id=new_id,
                name=c.name,
                label=c.label,
                field_type=c.field_type,
                options=_json_or_null(c.options),
                is_required=c.is_required,
                position=c.position,
                is_active=c.is_active,
                created_at=now,
                updated_at=now,
            )
            .returning(column_table.c.id)
        ).scalar_one()
    requirements = [
        {
            "flow_stage_id": stage_ids[r.flow_stage_id],
            "flow_column_id": column_ids[r.flow_column_id],
        }
        for r in session.execute(
            select(StageRequiredColumnRow).where(
                StageRequiredColumnRow.flow_stage_id.in_(list(stage_ids))
            )
        ).scalars()
        if r.flow_column_id in column_ids
    ]
    if requirements:
        session.execute(insert(required_table), [{**r, "created_at": now} for r in requirements])
    for a in session.execute(
        select(AutomationRow)
        .where(AutomationRow.flow_pipeline_id == source.id, AutomationRow.deleted_at.is_(None))
        .order_by(AutomationRow.id)
    ).scalars():
        if a.flow_stage_id is not None and a.flow_stage_id not in stage_ids:
            continue  # bound to a removed stage: it could never fire
        session.execute(
            insert(automation_table).values(
                flow_pipeline_id=new_id,
                flow_stage_id=stage_ids[a.flow_stage_id] if a.flow_stage_id is not None else None,
                name=a.name,
                trigger=a.trigger,
                event_name=a.event_name,
                payload_template=_json_or_null(a.payload_template),
                is_active=a.is_active,
                created_at=now,
                updated_at=now,
            )
        )
    moves = [
        {"flow_pipeline_id": new_id, "from_stage_id": stage_ids[m.from_stage_id],
         "to_stage_id": stage_ids[m.to_stage_id]}
        for m in session.execute(
            select(StageMoveRow).where(StageMoveRow.flow_pipeline_id == source.id)
        ).scalars()
        if m.from_stage_id in stage_ids and m.to_stage_id in stage_ids
    ]  # fmt: skip
    if moves:
        session.execute(insert(move_table), moves)
    return int(new_id)


def _json_or_null(document: Any) -> Any:
    """A JSON document to copy; None becomes SQL NULL rather than the JSON text `null`."""
    return null() if document is None else json.loads(json.dumps(document))
