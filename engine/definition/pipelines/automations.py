"""Automations of a pipeline: an event fired when a trigger happens in a stage (or any stage)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, null, select, update
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.actors import Actor
from flowkernel.definition.pipelines.info import AutomationInfo, StageRef, read_pipeline
from flowkernel.definition.pipelines.rows import find_stage, pipeline_row, utc_now
from flowkernel.definition.pipelines.specs import UNSET, Unset
from flowkernel.errors import InvalidDefinition, UnknownDefinition
from flowkernel.kinds import TRIGGERS
from flowkernel.previews import preview
from flowkernel.store.database import reading
from flowkernel.store.schema import AutomationRow, PipelineRow
from flowkernel.store.tables import automations as automation_table
from flowkernel.validation import (
    check_bool,
    check_id,
    check_optional_text,
    check_params,
    check_text,
)


class AutomationAdmin:
    """The automation operations of `PipelineAdmin`, which sets `_sessions`."""

    _sessions: sessionmaker[Session]

    def add_automation(
        self,
        pipeline_id: int,
        trigger: str,
        event_name: str,
        actor: Actor,
        *,
        stage: StageRef | None = None,
        name: str | None = None,
        payload_template: Mapping[str, Any] | None = None,
        is_active: bool = True,
    ) -> AutomationInfo:
        """Fire `event_name` when `trigger` happens in `stage` (None: in any stage).

        `trigger` is one of stage_entered, stage_exited, item_created, sla_breached. The
        payload is `payload_template` with the runtime context laid over it.
        """
        _check_trigger(trigger)
        check_text("event_name", event_name)
        check_optional_text("name", name)
        template = _check_payload(payload_template)
        check_bool("is_active", is_active)
        with self._sessions.begin() as session:
            row = pipeline_row(session, pipeline_id, actor, write=True)
            stage_id = find_stage(session, row, stage).id if stage is not None else None
            now = utc_now()
            automation_id = session.execute(
                insert(automation_table)
                .values(
                    flow_pipeline_id=row.id,
                    flow_stage_id=stage_id,
                    name=name,
                    trigger=trigger,
                    event_name=event_name,
                    payload_template=template,
                    is_active=is_active,
                    created_at=now,
                    updated_at=now,
                )
                .returning(automation_table.c.id)
            ).scalar_one()
            return _automation_info(session, row.id, automation_id)

    def list_automations(self, pipeline_id: int, actor: Actor) -> list[AutomationInfo]:
        """A pipeline's automations (inactive ones too, not deleted ones), by id."""
        with reading(self._sessions) as session:
            row = pipeline_row(session, pipeline_id, actor, write=False)
            return list(read_pipeline(session, row.id).automations)

    def edit_automation(
        self,
        automation_id: int,
        actor: Actor,
        *,
        trigger: str | None = None,
        event_name: str | None = None,
        stage: StageRef | Unset | None = UNSET,
        name: str | Unset | None = UNSET,
        payload_template: Mapping[str, Any] | Unset | None = UNSET,
        is_active: bool | None = None,
        pipeline_id: int | None = None,
    ) -> AutomationInfo:
        """Change an automation; `stage=None` makes it fire for every stage. With
        `pipeline_id`, an automation of another pipeline is unknown."""
        values: dict[str, Any] = {}
        if trigger is not None:
            values["trigger"] = _check_trigger(trigger)
        if event_name is not None:
            check_text("event_name", event_name)
            values["event_name"] = event_name
        if not isinstance(name, Unset):
            check_optional_text("name", name)
            values["name"] = name
        if not isinstance(payload_template, Unset):
            values["payload_template"] = _check_payload(payload_template)
        if is_active is not None:
            values["is_active"] = check_bool("is_active", is_active)
        with self._sessions.begin() as session:
            row, automation = _automation_row(session, automation_id, actor, pipeline_id)
            if not isinstance(stage, Unset):
                values["flow_stage_id"] = (
                    find_stage(session, row, stage).id if stage is not None else None
                )
            if values:
                session.execute(
                    update(automation_table)
                    .where(automation_table.c.id == automation.id)
                    .values(updated_at=utc_now(), **values)
                )
            return _automation_info(session, row.id, automation.id)

    def deactivate_automation(self, automation_id: int, actor: Actor) -> AutomationInfo:
        """Stop an automation from firing; it stays listed and can be activated again."""
        return self.edit_automation(automation_id, actor, is_active=False)

    def activate_automation(self, automation_id: int, actor: Actor) -> AutomationInfo:
        """Let a deactivated automation fire again."""
        return self.edit_automation(automation_id, actor, is_active=True)

    def delete_automation(
        self, automation_id: int, actor: Actor, *, pipeline_id: int | None = None
    ) -> None:
        """Soft-delete an automation (sets `deleted_at`); it never fires again. With
        `pipeline_id`, an automation of another pipeline is unknown."""
        with self._sessions.begin() as session:
            _row, automation = _automation_row(session, automation_id, actor, pipeline_id)
            now = utc_now()
            session.execute(
                update(automation_table)
                .where(automation_table.c.id == automation.id)
                .values(deleted_at=now, updated_at=now)
            )


def _automation_row(
    session: Session, automation_id: int, actor: Actor, pipeline_id: int | None = None
) -> tuple[PipelineRow, AutomationRow]:
    """The automation (not deleted) and its pipeline, if the actor may change it (and it is
    one of pipeline `pipeline_id`'s, when given)."""
    check_id("automation_id", automation_id)
    if pipeline_id is not None:
        check_id("pipeline_id", pipeline_id)
    automation = session.execute(
        select(AutomationRow).where(
            AutomationRow.id == automation_id, AutomationRow.deleted_at.is_(None)
        )
    ).scalar_one_or_none()
    if automation is None or pipeline_id not in (None, automation.flow_pipeline_id):
        scope = "" if pipeline_id is None else f"pipeline {pipeline_id}"
        raise UnknownDefinition("automation", automation_id, scope)
    try:
        row = pipeline_row(session, automation.flow_pipeline_id, actor, write=True)
    except UnknownDefinition:
        raise UnknownDefinition("automation", automation_id) from None
    return row, automation


def _automation_info(session: Session, pipeline_id: int, automation_id: int) -> AutomationInfo:
    info = read_pipeline(session, pipeline_id)
    return next(a for a in info.automations if a.id == automation_id)


def _check_payload(template: object) -> Any:
    """A payload template as plain JSON (tuples become lists); None as SQL NULL."""
    checked = check_params(template, "payload_template", error=InvalidDefinition)
    return null() if checked is None else json.loads(json.dumps(checked))


def _check_trigger(trigger: object) -> str:
    if trigger not in TRIGGERS:
        raise InvalidDefinition(
            f"automation trigger {preview(trigger)} is not one of {', '.join(TRIGGERS)}",
            trigger=trigger,
        )
    assert isinstance(trigger, str)
    return trigger
