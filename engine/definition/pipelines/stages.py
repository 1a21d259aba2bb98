"""Stages of a pipeline: adding, editing, reordering and removing them; a removed stage's
items move to another stage first, each with a history row."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import delete, null, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.actors import Actor
from flowkernel.definition.codes import state_code
from flowkernel.definition.pipelines.info import StageInfo, StageRef, read_pipeline
from flowkernel.definition.pipelines.rows import (
    find_stage,
    insert_stage,
    live_stages,
    locked,
    make_room,
    pipeline_row,
    utc_now,
)
from flowkernel.definition.pipelines.specs import (
    MAX_CODE,
    UNSET,
    ChecklistItem,
    StageSpec,
    Unset,
    check_color,
    check_outcomes,
    check_probability,
    check_sla,
    checklist_json,
    parse_checklist,
    slugify,
    stage_spec,
    unique_code,
)
from flowkernel.errors import DuplicateCode, InvalidDefinition, StageNotEmpty
from flowkernel.previews import preview
from flowkernel.store.tables import automations as automation_table
from flowkernel.store.tables import items
from flowkernel.store.tables import stage_moves as move_table
from flowkernel.store.tables import stages as stage_table
from flowkernel.validation import MAX_POSITION, check_bool, check_code, check_int, check_text

REMOVE_STAGE: Final = "remove_stage"
"""The `method_code` of history rows written when a removed stage's items move."""

Relocate = Callable[
    [Session, Sequence[int], int, Actor, str, Callable[[int], None] | None], datetime
]
"""Moves items into a stage with a history row each, in the session's transaction, in order
(the executor's `relocate`, handed in by the facade); the time of the moves."""


@dataclass(frozen=True, slots=True)
class StageRemoval:
    """What removing a stage moved (or, with `dry_run`, would move) and where to."""

    pipeline_id: int
    stage: str
    stage_id: int
    target: str | None
    target_id: int | None
    item_ids: tuple[int, ...]
    dry_run: bool

    @property
    def count(self) -> int:
        """How many items the stage held."""
        return len(self.item_ids)


class StageAdmin:
    """The stage operations of `PipelineAdmin`, which sets `_sessions` and `_relocate`."""

    _sessions: sessionmaker[Session]
    _relocate: Relocate

    def add_stage(
        self,
        pipeline_id: int,
        name: str,
        actor: Actor,
        *,
        code: str | None = None,
        position: int | None = None,
        color: str | None = None,
        probability: int | None = None,
        sla_days: int | None = None,
        is_won: bool = False,
        is_lost: bool = False,
        checklist: Sequence[Mapping[str, Any] | ChecklistItem] = (),
    ) -> StageInfo:
        """Add a stage; items in flight stay where they are.

        Without `position` the stage goes last; with one, it takes that position and the
        stages at or after it shift back by one.
        """
        spec = stage_spec(
            StageSpec(
                name=name,
                code=code,
                position=position,
                color=color,
                probability=probability,
                sla_days=sla_days,
                is_won=is_won,
                is_lost=is_lost,
                checklist=checklist,
            )
        )
        with self._sessions.begin() as session:
            row = pipeline_row(session, pipeline_id, actor, write=True)
            live = live_stages(session, row.id)
            taken = {state_code(s) for s in live}
            if spec.code is not None:
                if spec.code in taken:
                    raise DuplicateCode("stage", spec.code, f"pipeline {preview(row.name)}")
                stage_code = spec.code
            else:
                stage_code = unique_code(slugify(spec.name), taken)
            check_outcomes(
                row.name,
                [(state_code(s), s.is_won, s.is_lost) for s in live]
                + [(stage_code, spec.is_won, spec.is_lost)],
            )
            if spec.position is None:
                at = max((s.position for s in live), default=-1) + 1
            else:
                at = spec.position
                make_room(session, stage_table, row.id, at, None)
            stage_id = insert_stage(session, row.id, stage_code, spec, at)
            return read_pipeline(session, row.id).stage(stage_id)

    def edit_stage(
        self,
        pipeline_id: int,
        stage: StageRef,
        actor: Actor,
        *,
        name: str | None = None,
        code: str | None = None,
        position: int | None = None,
        color: str | Unset | None = UNSET,
        probability: int | Unset | None = UNSET,
        sla_days: int | Unset | None = UNSET,
        checklist: Sequence[Mapping[str, Any] | ChecklistItem] | Unset | None = UNSET,
        is_won: bool | None = None,
        is_lost: bool | None = None,
    ) -> StageInfo:
        """Rename, recode, move, recolour a stage or change its probability, SLA, checklist or
        outcome; None clears the optional ones. Items in the stage stay in it.

        A new `sla_days` (or outcome) recomputes the SLA due time of the stage's items from
        when they entered it; breaches already recorded stay recorded.
        """
        values: dict[str, Any] = {}
        if name is not None:
            check_text("name", name)
            values["name"] = name
        if code is not None:
            check_code("stage", code, max_length=MAX_CODE)
        if position is not None:
            check_int("position", position, maximum=MAX_POSITION)
        if not isinstance(color, Unset):
            values["color"] = check_color(color)
        if not isinstance(probability, Unset):
            values["probability"] = check_probability(probability)
        if not isinstance(sla_days, Unset):
            values["sla_days"] = check_sla(sla_days)
        if not isinstance(checklist, Unset):
            parsed = parse_checklist(checklist)
            values["checklist"] = checklist_json(parsed) if parsed else null()
        if is_won is not None:
            values["is_won"] = check_bool("is_won", is_won)
        if is_lost is not None:
            values["is_lost"] = check_bool("is_lost", is_lost)
        with self._sessions.begin() as session:
            row = pipeline_row(session, pipeline_id, actor, write=True)
            target = find_stage(session, row, stage)
            live = live_stages(session, row.id)
            old_code = state_code(target)
            if code is not None and code != old_code:
                if code in {state_code(s) for s in live}:
                    raise DuplicateCode("stage", code, f"pipeline {preview(row.name)}")
                values["code"] = code
            check_outcomes(
                row.name,
                [
                    (
                        state_code(s),
                        values.get("is_won", s.is_won) if s.id == target.id else s.is_won,
                        values.get("is_lost", s.is_lost) if s.id == target.id else s.is_lost,
                    )
                    for s in live
                ],
            )
            if position is not None and position != target.position:
                make_room(session, stage_table, row.id, position, target.id)
                values["position"] = position
            if values:
                session.execute(
                    update(stage_table)
                    .where(stage_table.c.id == target.id)
                    .values(updated_at=utc_now(), **values)
                )
            if {"sla_days", "is_won", "is_lost"} & values.keys():
                _recompute_sla(session, target.id)
            return read_pipeline(session, row.id).stage(target.id)

    def reorder_stages(
        self, pipeline_id: int, order: Sequence[StageRef], actor: Actor
    ) -> tuple[StageInfo, ...]:
        """Put every live stage in `order` (codes or ids), at positions 0, 1, 2, ..."""
        if isinstance(order, str | bytes) or not isinstance(order, Sequence):
            raise InvalidDefinition(
                f"order must be a list of stage codes or ids, not {preview(order)}", order=order
            )
        with self._sessions.begin() as session:
            row = pipeline_row(session, pipeline_id, actor, write=True)
            live = live_stages(session, row.id)
            chosen = [find_stage(session, row, ref) for ref in order]
            ids = [s.id for s in chosen]
            if len(set(ids)) != len(ids) or set(ids) != {s.id for s in live}:
                raise InvalidDefinition(
                    f"the order must name every stage of pipeline {preview(row.name)} exactly "
                    f"once: "
                    f"{', '.join(state_code(s) for s in live)}",
                    order=tuple(order),
                )
            now = utc_now()
            for position, stage_row in enumerate(chosen):
                if stage_row.position != position:
                    session.execute(
                        update(stage_table)
                        .where(stage_table.c.id == stage_row.id)
                        .values(position=position, updated_at=now)
                    )
            return read_pipeline(session, row.id).stages

    def remove_stage(
        self,
        pipeline_id: int,
        stage: StageRef,
        actor: Actor,
        *,
        target: StageRef | None = None,
        dry_run: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> StageRemoval:
        """Remove a stage; its items (deleted ones too) move to `target` first.

        In one transaction each item moves, in board order, through the executor's write path
        to the end of the target with a history row (`method_code` "remove_stage"), a fresh
        `last_stage_changed_at` and an empty checklist state; the target's entry requirements
        do not apply and no automation fires. Then the stage is soft-deleted,
        so history keeps pointing at it; its allowed moves go, and its automations are
        soft-deleted. A stage holding items needs a target (`StageNotEmpty`). `dry_run`
        reports what would move and changes nothing. `on_progress` is called with the number
        of items moved so far as their history is written, for progress bars.
        """
        check_bool("dry_run", dry_run)
        with self._sessions.begin() as session:
            row = pipeline_row(session, pipeline_id, actor, write=True, lock=not dry_run)
            doomed = find_stage(session, row, stage)
            dest = find_stage(session, row, target) if target is not None else None
            if dest is not None and dest.id == doomed.id:
                raise InvalidDefinition(
                    f"stage {preview(state_code(doomed))} cannot take its own items; pick another "
                    "target stage",
                    stage=state_code(doomed),
                )
            stmt = (
                select(items.c.id)
                .where(items.c.flow_stage_id == doomed.id)
                .order_by(items.c.position, items.c.id)
            )
            if not dry_run:
                stmt = locked(session, stmt)
            item_ids = tuple(session.execute(stmt).scalars())
            report = StageRemoval(
                pipeline_id=row.id,
                stage=state_code(doomed),
                stage_id=doomed.id,
                target=state_code(dest) if dest is not None else None,
                target_id=dest.id if dest is not None else None,
                item_ids=item_ids,
                dry_run=dry_run,
            )
            if dry_run:
                return report
            if item_ids and dest is None:
                raise StageNotEmpty(state_code(doomed), len(item_ids), item_ids)
            if item_ids and dest is not None:
                self._relocate(session, item_ids, dest.id, actor, REMOVE_STAGE, on_progress)
            now = utc_now()
            session.execute(
                delete(move_table).where(
                    or_(
                        move_table.c.from_stage_id == doomed.id,
                        move_table.c.to_stage_id == doomed.id,
                    )
                )
            )
            session.execute(
                update(automation_table)
                .where(
                    automation_table.c.flow_stage_id == doomed.id,
                    automation_table.c.deleted_at.is_(None),
                )
                .values(deleted_at=now, updated_at=now)
            )
            session.execute(
                update(stage_table)
                .where(stage_table.c.id == doomed.id)
                .values(deleted_at=now, updated_at=now)
            )
            return report


def _recompute_sla(session: Session, stage_id: int) -> None:
    """Recompute `sla_due_at` of the stage's items from when they entered the stage.

    The due-time trigger runs when `last_stage_changed_at` is assigned; assigning it its own
    value keeps a breach that fired, since that is cleared only when the value changes, and
    the due queue follows the new due times.
    """
    session.execute(
        update(items)
        .where(items.c.flow_stage_id == stage_id)
        .values(last_stage_changed_at=items.c.last_stage_changed_at)
    )
