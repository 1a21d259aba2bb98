"""Pipeline administration: pipelines, stages, columns, entry requirements, checklists,
automations, movement rules and templates.

Every call is one transaction and checks tenancy first. A pipeline of another account is
`UnknownDefinition` (its existence is not leaked); a platform pipeline (no account, such as a
system template) is read by everyone and changed only by the platform's system actor
(`AccessDenied` otherwise). Then the class-wide access rules: one that denies the actor
`execute` refuses changes, one that denies `visible` refuses reads and leaves the pipeline out
of lists (`AccessDenied`; see `engine.access`). Definition rows carry triggers that bump the
pipeline's version, so compiled classes refresh on their next use, also while items are in
flight.
"""

from __future__ import annotations

import enum
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from sqlalchemy import Select, Table, delete, func, insert, null, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine.access import EXECUTE, VISIBLE, check_class, class_rules, hidden_classes
from engine.actors import Actor
from engine.compiler import FREE, ChecklistItem, state_code
from engine.errors import (
    AccessDenied,
    DefinitionInUse,
    DuplicateCode,
    InvalidArgument,
    InvalidDefinition,
    StageNotEmpty,
    UnknownDefinition,
)
from engine.fields import FIELD_TYPES, MULTI_SELECT, SELECT
from engine.outbox import TRIGGERS
from engine.runtime import Runtime
from engine.schema import (
    AutomationRow,
    ColumnRow,
    PipelineRow,
    StageMoveRow,
    StageRequiredColumnRow,
    StageRow,
)
from engine.tables import automations as automation_table
from engine.tables import columns as column_table
from engine.tables import history, items
from engine.tables import pipelines as pipeline_table
from engine.tables import required_columns as required_table
from engine.tables import stage_moves as move_table
from engine.tables import stages as stage_table
from engine.validation import (
    MAX_ID,
    MAX_NAME,
    MAX_OBJECT_TYPE,
    MAX_POSITION,
    MAX_STATE_CODE,
    MAX_TEXT,
    MIN_ID,
    check_bool,
    check_code,
    check_id,
    check_int,
    check_optional_text,
    check_params,
    check_text,
    storable,
)

OPTION_TYPES: Final = (SELECT, MULTI_SELECT)
"""Field types whose columns carry a list of options."""

REMOVE_STAGE: Final = "remove_stage"
"""The `method_code` of history rows written when a removed stage's items move."""

MAX_OPTIONS: Final = 1000
"""Most options of a select or multi_select column."""

_HISTORY_CHUNK: Final = 1000
"""History rows written per statement when a removed stage's items move."""

MAX_CODE: Final = MAX_STATE_CODE
"""Longest stage or pipeline code: `move_to_<code>` must fit the 128 characters of a method code."""


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET: Final = _Unset.UNSET
"""Default of optional edits whose None means "clear": the value stays as it is."""

_T = TypeVar("_T")
StageRef = str | int
"""A stage by code (str) or id (int)."""
ColumnRef = str | int
"""A column by name (str) or id (int)."""


# --- values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageSpec:
    """A stage to create. Only `name` is needed; `code` defaults to a slug of the name.

    `checklist` takes the seed's JSON form, `[{"key", "label", "required"}]`, or
    `ChecklistItem` values. `position` defaults to the stage's place in the list.
    """

    name: str
    code: str | None = None
    position: int | None = None
    color: str | None = None
    probability: int | None = None
    sla_days: int | None = None
    is_won: bool = False
    is_lost: bool = False
    checklist: Sequence[Mapping[str, Any] | ChecklistItem] = ()


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """A custom column to create; `label` defaults to the name, `position` to the end."""

    name: str
    label: str | None = None
    field_type: str = "text"
    options: Sequence[str] | None = None
    is_required: bool = False
    position: int | None = None


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
            "stage", ref, f"pipeline {self.name!r}", [s.code for s in self.stages]
        )

    def column(self, ref: ColumnRef) -> ColumnInfo:
        """The column with this name or id."""
        for column in self.columns:
            if column.id == ref if isinstance(ref, int) else column.name == ref:
                return column
        raise UnknownDefinition(
            "column", ref, f"pipeline {self.name!r}", [c.name for c in self.columns]
        )


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


# --- the service -------------------------------------------------------------------------


class PipelineAdmin:
    """Create, read, edit and remove pipelines and their definitions, per tenant account."""

    def __init__(self, sessions: sessionmaker[Session], runtime: Runtime) -> None:
        self._sessions = sessions
        self._runtime = runtime

    # --- pipelines -----------------------------------------------------------------------

    def create_pipeline(
        self,
        name: str,
        actor: Actor,
        *,
        stages: Sequence[StageSpec | Mapping[str, Any]] = (),
        columns: Sequence[ColumnSpec | Mapping[str, Any]] = (),
        object_type: str | None = None,
        code: str | None = None,
        description: str | None = None,
        account_id: int | None = None,
        is_template: bool = False,
        is_system: bool = False,
    ) -> PipelineInfo:
        """Create a pipeline (free movement) with its stages and columns, in one transaction.

        The pipeline belongs to `account_id` (default: the actor's account). `is_system` makes
        a platform template without an account, which only the platform's system actor may
        create; a system pipeline is always a template.
        """
        check_text("name", name)
        check_optional_text("object_type", object_type, max_length=MAX_OBJECT_TYPE)
        check_optional_text("description", description, max_length=MAX_TEXT)
        if code is not None:
            check_code("pipeline", code, max_length=MAX_CODE)
        check_bool("is_template", is_template)
        check_bool("is_system", is_system)
        stage_specs = _specs(stages, "stages", _stage_spec)
        column_specs = _specs(columns, "columns", _column_spec)
        if is_system:
            if not _is_platform(actor):
                raise AccessDenied(
                    "only the platform's system actor may create a system template",
                    user_id=actor.user_id,
                )
            if account_id is not None:
                raise InvalidArgument(
                    f"a system template belongs to no account; drop account_id={account_id}",
                    account_id=account_id,
                )
            account: int | None = None
            is_template = True
        else:
            account = account_id if account_id is not None else actor.account_id
            if account is None:
                raise InvalidArgument(
                    "a pipeline belongs to an account: pass account_id (or is_system=True for "
                    "a platform template)",
                    account_id=account_id,
                )
            check_id("account_id", account)
            if not actor.reaches(account):
                raise AccessDenied(
                    f"actor of account {actor.account_id} cannot create pipelines in "
                    f"account {account}",
                    account_id=account,
                )
        codes = _stage_codes_for(stage_specs)
        _check_outcomes(
            name, [(c, s.is_won, s.is_lost) for c, s in zip(codes, stage_specs, strict=True)]
        )
        names = [c.name for c in column_specs]
        for column_name in names:
            if names.count(column_name) > 1:
                raise DuplicateCode("column", column_name, f"pipeline {name!r}")
        with self._sessions.begin() as session:
            if code is not None:
                _check_free_code(session, code, account)
            now = _now()
            pipeline_id = session.execute(
                insert(pipeline_table)
                .values(
                    name=name,
                    description=description,
                    object_type=object_type,
                    code=code,
                    iam_account_id=account,
                    iam_user_id=actor.user_id,
                    is_template=is_template,
                    is_system=is_system,
                    movement=FREE,
                    created_at=now,
                    updated_at=now,
                )
                .returning(pipeline_table.c.id)
            ).scalar_one()
            for index, (stage_code, spec) in enumerate(zip(codes, stage_specs, strict=True)):
                _insert_stage(
                    session, pipeline_id, stage_code, spec, _default(spec.position, index)
                )
            for index, column in enumerate(column_specs):
                _insert_column(session, pipeline_id, column, _default(column.position, index))
            return _info(session, pipeline_id)

    def get_pipeline(self, pipeline_id: int, actor: Actor) -> PipelineInfo:
        """A pipeline of the actor's account, or a platform pipeline such as a system template."""
        with self._sessions.begin() as session:
            row = self._pipeline(session, pipeline_id, actor, write=False)
            return _info(session, row.id)

    def list_pipelines(
        self, actor: Actor, *, account_id: int | None = None, templates: bool | None = None
    ) -> list[PipelineInfo]:
        """Pipelines the actor reads: its account's and the platform's, by id.

        `account_id` narrows a platform system actor to one account; `templates=True` lists
        templates only, `False` live pipelines only.
        """
        account = account_id if account_id is not None else actor.account_id
        if account is not None:
            check_id("account_id", account)
        if templates is not None:
            check_bool("templates", templates, error=InvalidArgument)
        if not actor.reaches(account):
            raise AccessDenied(
                f"actor of account {actor.account_id} cannot read account {account}",
                account_id=account,
            )
        stmt = select(pipeline_table.c.id).where(
            pipeline_table.c.deleted_at.is_(None), pipeline_table.c.movement == FREE
        )
        if account is not None:
            stmt = stmt.where(
                or_(
                    pipeline_table.c.iam_account_id == account,
                    pipeline_table.c.iam_account_id.is_(None),
                )
            )
        elif not _is_platform(actor):  # an actor without an account reads platform rows only
            stmt = stmt.where(pipeline_table.c.iam_account_id.is_(None))
        if templates is not None:
            stmt = stmt.where(pipeline_table.c.is_template == templates)
        with self._sessions.begin() as session:
            ids = list(session.execute(stmt.order_by(pipeline_table.c.id)).scalars())
            hidden = hidden_classes(session.connection(), ids, actor)
            return _infos(session, [i for i in ids if i not in hidden])

    def edit_pipeline(
        self,
        pipeline_id: int,
        actor: Actor,
        *,
        name: str | None = None,
        code: str | _Unset | None = UNSET,
        description: str | _Unset | None = UNSET,
        object_type: str | _Unset | None = UNSET,
        is_template: bool | None = None,
    ) -> PipelineInfo:
        """Rename a pipeline, change its code, description or object type, or (un)mark it a
        template. A system template stays a template."""
        values: dict[str, Any] = {}
        if name is not None:
            check_text("name", name)
            values["name"] = name
        if not isinstance(description, _Unset):
            check_optional_text("description", description, max_length=MAX_TEXT)
            values["description"] = description
        if not isinstance(object_type, _Unset):
            check_optional_text("object_type", object_type, max_length=MAX_OBJECT_TYPE)
            values["object_type"] = object_type
        if is_template is not None:
            values["is_template"] = check_bool("is_template", is_template)
        with self._sessions.begin() as session:
            row = self._pipeline(session, pipeline_id, actor, write=True)
            if not isinstance(code, _Unset) and code != row.code:
                if code is not None:
                    check_code("pipeline", code, max_length=MAX_CODE)
                    _check_free_code(session, code, row.iam_account_id)
                values["code"] = code
            if row.is_system and values.get("is_template") is False:
                raise InvalidDefinition(
                    f"pipeline {row.name!r} is a system template and stays a template",
                    pipeline_id=row.id,
                )
            if values:
                _bump(session, row.id, **values)
            return _info(session, row.id)

    def delete_pipeline(self, pipeline_id: int, actor: Actor) -> None:
        """Soft-delete a pipeline (sets `deleted_at`); its items and history stay.

        A deleted pipeline is no longer listed, read or placed into.
        """
        with self._sessions.begin() as session:
            row = self._pipeline(session, pipeline_id, actor, write=True)
            now = _now()
            _bump(session, row.id, deleted_at=now)

    # --- stages --------------------------------------------------------------------------

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
        spec = _stage_spec(
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
            row = self._pipeline(session, pipeline_id, actor, write=True)
            live = _live_stages(session, row.id)
            taken = {state_code(s) for s in live}
            if spec.code is not None:
                if spec.code in taken:
                    raise DuplicateCode("stage", spec.code, f"pipeline {row.name!r}")
                stage_code = spec.code
            else:
                stage_code = _unique(slugify(spec.name), taken)
            _check_outcomes(
                row.name,
                [(state_code(s), s.is_won, s.is_lost) for s in live]
                + [(stage_code, spec.is_won, spec.is_lost)],
            )
            if spec.position is None:
                at = max((s.position for s in live), default=-1) + 1
            else:
                at = spec.position
                _make_room(session, stage_table, row.id, at, None)
            stage_id = _insert_stage(session, row.id, stage_code, spec, at)
            return _info(session, row.id).stage(stage_id)

    def edit_stage(
        self,
        pipeline_id: int,
        stage: StageRef,
        actor: Actor,
        *,
        name: str | None = None,
        code: str | None = None,
        position: int | None = None,
        color: str | _Unset | None = UNSET,
        probability: int | _Unset | None = UNSET,
        sla_days: int | _Unset | None = UNSET,
        checklist: Sequence[Mapping[str, Any] | ChecklistItem] | _Unset | None = UNSET,
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
        if not isinstance(color, _Unset):
            values["color"] = _check_color(color)
        if not isinstance(probability, _Unset):
            values["probability"] = _check_probability(probability)
        if not isinstance(sla_days, _Unset):
            values["sla_days"] = _check_sla(sla_days)
        if not isinstance(checklist, _Unset):
            parsed = _checklist(checklist)
            values["checklist"] = _checklist_json(parsed) if parsed else null()
        if is_won is not None:
            values["is_won"] = check_bool("is_won", is_won)
        if is_lost is not None:
            values["is_lost"] = check_bool("is_lost", is_lost)
        with self._sessions.begin() as session:
            row = self._pipeline(session, pipeline_id, actor, write=True)
            target = _stage(session, row, stage)
            live = _live_stages(session, row.id)
            old_code = state_code(target)
            if code is not None and code != old_code:
                if code in {state_code(s) for s in live}:
                    raise DuplicateCode("stage", code, f"pipeline {row.name!r}")
                values["code"] = code
            _check_outcomes(
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
                _make_room(session, stage_table, row.id, position, target.id)
                values["position"] = position
            if values:
                session.execute(
                    update(stage_table)
                    .where(stage_table.c.id == target.id)
                    .values(updated_at=_now(), **values)
                )
            if {"sla_days", "is_won", "is_lost"} & values.keys():
                _recompute_sla(session, target.id)
            return _info(session, row.id).stage(target.id)

    def reorder_stages(
        self, pipeline_id: int, order: Sequence[StageRef], actor: Actor
    ) -> tuple[StageInfo, ...]:
        """Put every live stage in `order` (codes or ids), at positions 0, 1, 2, ..."""
        if isinstance(order, str | bytes) or not isinstance(order, Sequence):
            raise InvalidDefinition(
                f"order must be a list of stage codes or ids, not {order!r}", order=order
            )
        with self._sessions.begin() as session:
            row = self._pipeline(session, pipeline_id, actor, write=True)
            live = _live_stages(session, row.id)
            chosen = [_stage(session, row, ref) for ref in order]
            ids = [s.id for s in chosen]
            if len(set(ids)) != len(ids) or set(ids) != {s.id for s in live}:
                raise InvalidDefinition(
                    f"the order must name every stage of pipeline {row.name!r} exactly once: "
                    f"{', '.join(state_code(s) for s in live)}",
                    order=tuple(order),
                )
            now = _now()
            for position, stage_row in enumerate(chosen):
                if stage_row.position != position:
                    session.execute(
                        update(stage_table)
                        .where(stage_table.c.id == stage_row.id)
                        .values(position=position, updated_at=now)
                    )
            return _info(session, row.id).stages

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

        In one transaction each item moves with a history row (`method_code` "remove_stage"),
        a fresh `last_stage_changed_at` and an empty checklist state; the target's entry
        requirements do not apply and no automation fires. Then the stage is soft-deleted,
        so history keeps pointing at it; its allowed moves go, and its automations are
        soft-deleted. A stage holding items needs a target (`StageNotEmpty`). `dry_run`
        reports what would move and changes nothing. `on_progress` is called with the number
        of items moved so far as their history is written, for progress bars.
        """
        check_bool("dry_run", dry_run)
        with self._sessions.begin() as session:
            row = self._pipeline(session, pipeline_id, actor, write=True, lock=not dry_run)
            doomed = _stage(session, row, stage)
            dest = _stage(session, row, target) if target is not None else None
            if dest is not None and dest.id == doomed.id:
                raise InvalidDefinition(
                    f"stage {state_code(doomed)!r} cannot take its own items; pick another "
                    "target stage",
                    stage=state_code(doomed),
                )
            stmt = (
                select(items.c.id)
                .where(items.c.flow_stage_id == doomed.id)
                .order_by(items.c.position, items.c.id)
            )
            if not dry_run:
                stmt = _locked(session, stmt)
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
            now = _now()
            if item_ids and dest is not None:
                _move_all(session, row.id, doomed.id, dest.id, item_ids, actor, now, on_progress)
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

    # --- movement rules ------------------------------------------------------------------

    def set_movement(
        self,
        pipeline_id: int,
        actor: Actor,
        *,
        allow_skip_forward: bool | None = None,
        allow_backward: bool | None = None,
        allowed_moves: Sequence[tuple[StageRef, StageRef]] | _Unset | None = UNSET,
    ) -> PipelineInfo:
        """Restrict (or free) how users move items; the system actor is never restricted.

        `allow_backward=False` refuses moves to an earlier stage, `allow_skip_forward=False`
        moves past the next stage (except into the won or lost stage). `allowed_moves` lists
        the only moves out of each stage it names, as (from, to) pairs; None clears the list.
        """
        flags: dict[str, Any] = {}
        if allow_skip_forward is not None:
            flags["allow_skip_forward"] = check_bool("allow_skip_forward", allow_skip_forward)
        if allow_backward is not None:
            flags["allow_backward"] = check_bool("allow_backward", allow_backward)
        with self._sessions.begin() as session:
            row = self._pipeline(session, pipeline_id, actor, write=True)
            if not isinstance(allowed_moves, _Unset):
                if allowed_moves is not None and (
                    isinstance(allowed_moves, str | bytes)
                    or not isinstance(allowed_moves, Sequence)
                ):
                    raise InvalidDefinition(
                        f"allowed_moves must be a list of (from stage, to stage) pairs or None, "
                        f"not {allowed_moves!r}",
                        allowed_moves=allowed_moves,
                    )
                pairs: list[tuple[int, int]] = []
                for pair in allowed_moves or ():
                    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                        raise InvalidDefinition(
                            f"an allowed move is a (from stage, to stage) pair, not {pair!r}",
                            move=pair,
                        )
                    source = _stage(session, row, pair[0])
                    dest = _stage(session, row, pair[1])
                    if source.id == dest.id:
                        raise InvalidDefinition(
                            f"an allowed move joins two different stages, not "
                            f"{state_code(source)!r} to itself",
                            move=tuple(pair),
                        )
                    if (source.id, dest.id) not in pairs:
                        pairs.append((source.id, dest.id))
                session.execute(delete(move_table).where(move_table.c.flow_pipeline_id == row.id))
                if pairs:
                    session.execute(
                        insert(move_table),
                        [
                            {"flow_pipeline_id": row.id, "from_stage_id": a, "to_stage_id": b}
                            for a, b in pairs
                        ],
                    )
            if flags:
                _bump(session, row.id, **flags)
            return _info(session, row.id)

    # --- columns -------------------------------------------------------------------------

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
        spec = _column_spec(
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
            row = self._pipeline(session, pipeline_id, actor, write=True)
            existing = session.execute(
                select(column_table.c.id).where(
                    column_table.c.flow_pipeline_id == row.id, column_table.c.name == spec.name
                )
            ).first()
            if existing is not None:
                raise DuplicateCode("column", spec.name, f"pipeline {row.name!r}")
            if spec.position is None:
                at = session.execute(
                    select(func.coalesce(func.max(column_table.c.position) + 1, 0)).where(
                        column_table.c.flow_pipeline_id == row.id,
                        column_table.c.deleted_at.is_(None),
                    )
                ).scalar_one()
            else:
                at = spec.position
                _make_room(session, column_table, row.id, at, None)
            column_id = _insert_column(session, row.id, spec, at)
            return _info(session, row.id).column(column_id)

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
    ) -> ColumnInfo:
        """Change a column's label, options (select types only), position or `is_required`.

        Stored values are not revalidated against new options.
        """
        values: dict[str, Any] = {}
        if label is not None:
            check_text("label", label)
            values["label"] = label
        if position is not None:
            check_int("position", position, maximum=MAX_POSITION)
        if is_required is not None:
            values["is_required"] = check_bool("is_required", is_required)
        with self._sessions.begin() as session:
            row = self._pipeline(session, pipeline_id, actor, write=True)
            target = _column(session, row, column)
            if options is not None:
                values["options"] = _check_options(target.name, target.field_type, options)
            if position is not None and position != target.position:
                _make_room(session, column_table, row.id, position, target.id)
                values["position"] = position
            if values:
                session.execute(
                    update(column_table)
                    .where(column_table.c.id == target.id)
                    .values(updated_at=_now(), **values)
                )
            return _info(session, row.id).column(target.id)

    def deactivate_column(self, pipeline_id: int, column: ColumnRef, actor: Actor) -> ColumnInfo:
        """Deactivate a column: it keeps its values but is hidden and takes no writes.

        Refused while a stage requires the column (`DefinitionInUse`); unrequire it first.
        """
        return self._set_column_active(pipeline_id, column, actor, active=False)

    def activate_column(self, pipeline_id: int, column: ColumnRef, actor: Actor) -> ColumnInfo:
        """Activate a deactivated column again."""
        return self._set_column_active(pipeline_id, column, actor, active=True)

    def _set_column_active(
        self, pipeline_id: int, column: ColumnRef, actor: Actor, *, active: bool
    ) -> ColumnInfo:
        with self._sessions.begin() as session:
            row = self._pipeline(session, pipeline_id, actor, write=True)
            target = _column(session, row, column)
            if not active:
                requiring = list(
                    session.execute(
                        select(StageRow)
                        .join(
                            StageRequiredColumnRow,
                            StageRequiredColumnRow.flow_stage_id == StageRow.id,
                        )
                        .where(
                            StageRequiredColumnRow.flow_column_id == target.id,
                            StageRow.deleted_at.is_(None),
                        )
                        .order_by(StageRow.position, StageRow.id)
                    ).scalars()
                )
                if requiring:
                    stages = ", ".join(state_code(s) for s in requiring)
                    raise DefinitionInUse(
                        "column", target.name, f"the entry requirements of stage(s) {stages}"
                    )
            if target.is_active != active:
                session.execute(
                    update(column_table)
                    .where(column_table.c.id == target.id)
                    .values(is_active=active, updated_at=_now())
                )
            return _info(session, row.id).column(target.id)

    # --- stage entry requirements --------------------------------------------------------

    def require_column(
        self, pipeline_id: int, stage: StageRef, column: ColumnRef, actor: Actor
    ) -> StageInfo:
        """Require a value in `column` before an item enters `stage` (idempotent)."""
        with self._sessions.begin() as session:
            row = self._pipeline(session, pipeline_id, actor, write=True)
            stage_row = _stage(session, row, stage)
            column_row = _column(session, row, column)
            if not column_row.is_active:
                raise InvalidDefinition(
                    f"column {column_row.name!r} is inactive; activate it before a stage "
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
                        flow_stage_id=stage_row.id, flow_column_id=column_row.id, created_at=_now()
                    )
                )
            return _info(session, row.id).stage(stage_row.id)

    def unrequire_column(
        self, pipeline_id: int, stage: StageRef, column: ColumnRef, actor: Actor
    ) -> StageInfo:
        """Stop requiring `column` to enter `stage` (idempotent)."""
        with self._sessions.begin() as session:
            row = self._pipeline(session, pipeline_id, actor, write=True)
            stage_row = _stage(session, row, stage)
            column_row = _column(session, row, column)
            session.execute(
                delete(required_table).where(
                    required_table.c.flow_stage_id == stage_row.id,
                    required_table.c.flow_column_id == column_row.id,
                )
            )
            return _info(session, row.id).stage(stage_row.id)

    # --- automations ---------------------------------------------------------------------

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
            row = self._pipeline(session, pipeline_id, actor, write=True)
            stage_id = _stage(session, row, stage).id if stage is not None else None
            now = _now()
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
        return list(self.get_pipeline(pipeline_id, actor).automations)

    def edit_automation(
        self,
        automation_id: int,
        actor: Actor,
        *,
        trigger: str | None = None,
        event_name: str | None = None,
        stage: StageRef | _Unset | None = UNSET,
        name: str | _Unset | None = UNSET,
        payload_template: Mapping[str, Any] | _Unset | None = UNSET,
        is_active: bool | None = None,
    ) -> AutomationInfo:
        """Change an automation; `stage=None` makes it fire for every stage."""
        values: dict[str, Any] = {}
        if trigger is not None:
            values["trigger"] = _check_trigger(trigger)
        if event_name is not None:
            check_text("event_name", event_name)
            values["event_name"] = event_name
        if not isinstance(name, _Unset):
            check_optional_text("name", name)
            values["name"] = name
        if not isinstance(payload_template, _Unset):
            values["payload_template"] = _check_payload(payload_template)
        if is_active is not None:
            values["is_active"] = check_bool("is_active", is_active)
        with self._sessions.begin() as session:
            row, automation = self._automation(session, automation_id, actor)
            if not isinstance(stage, _Unset):
                values["flow_stage_id"] = (
                    _stage(session, row, stage).id if stage is not None else None
                )
            if values:
                session.execute(
                    update(automation_table)
                    .where(automation_table.c.id == automation.id)
                    .values(updated_at=_now(), **values)
                )
            return _automation_info(session, row.id, automation.id)

    def deactivate_automation(self, automation_id: int, actor: Actor) -> AutomationInfo:
        """Stop an automation from firing; it stays listed and can be activated again."""
        return self.edit_automation(automation_id, actor, is_active=False)

    def activate_automation(self, automation_id: int, actor: Actor) -> AutomationInfo:
        """Let a deactivated automation fire again."""
        return self.edit_automation(automation_id, actor, is_active=True)

    def delete_automation(self, automation_id: int, actor: Actor) -> None:
        """Soft-delete an automation (sets `deleted_at`); it never fires again."""
        with self._sessions.begin() as session:
            _row, automation = self._automation(session, automation_id, actor)
            now = _now()
            session.execute(
                update(automation_table)
                .where(automation_table.c.id == automation.id)
                .values(deleted_at=now, updated_at=now)
            )

    # --- templates -----------------------------------------------------------------------

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
            source = self._pipeline(session, template_id, actor, write=False)
            if source.iam_account_id is not None and source.iam_account_id != account_id:
                raise UnknownDefinition("template", template_id, f"account {account_id}")
            if not source.is_template:
                raise InvalidDefinition(
                    f"pipeline {source.name!r} is not a template; mark it with "
                    "edit_pipeline(..., is_template=True) to clone it",
                    pipeline_id=source.id,
                )
            new_code = code if code is not None else source.code
            if new_code is not None:
                _check_free_code(session, new_code, account_id)
            return _info(session, _copy(session, source, account_id, actor, name, new_code))

    # --- lookups -------------------------------------------------------------------------

    def _pipeline(
        self,
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
            stmt = _locked(session, stmt)
        row = session.execute(stmt).scalar_one_or_none()
        if (
            row is None
            or row.deleted_at is not None
            or row.movement != FREE
            or not actor.reaches(row.iam_account_id)
        ):
            raise UnknownDefinition("pipeline", pipeline_id)
        if write and row.iam_account_id is None and not _is_platform(actor):
            kind = "system template" if row.is_system else "platform pipeline"
            raise AccessDenied(
                f"pipeline {row.name!r} is a {kind}; only the platform's system actor changes "
                "it: clone it into your account and edit the copy",
                pipeline_id=row.id,
                user_id=actor.user_id,
            )
        if not actor.is_system:
            rules = class_rules(session.connection(), row.id)
            check_class(rules, actor, EXECUTE if write else VISIBLE, f"pipeline {row.name!r}")
        return row

    def _automation(
        self, session: Session, automation_id: int, actor: Actor
    ) -> tuple[PipelineRow, AutomationRow]:
        check_id("automation_id", automation_id)
        automation = session.execute(
            select(AutomationRow).where(
                AutomationRow.id == automation_id, AutomationRow.deleted_at.is_(None)
            )
        ).scalar_one_or_none()
        if automation is None:
            raise UnknownDefinition("automation", automation_id)
        try:
            row = self._pipeline(session, automation.flow_pipeline_id, actor, write=True)
        except UnknownDefinition:
            raise UnknownDefinition("automation", automation_id) from None
        return row, automation


# --- reading definitions -----------------------------------------------------------------


def _live_stages(session: Session, pipeline_id: int) -> list[StageRow]:
    return list(
        session.execute(
            select(StageRow)
            .where(StageRow.flow_pipeline_id == pipeline_id, StageRow.deleted_at.is_(None))
            .order_by(StageRow.position, StageRow.id)
        ).scalars()
    )


def _stage(session: Session, pipeline: PipelineRow, ref: object) -> StageRow:
    """A live stage of the pipeline by code or id."""
    live = _live_stages(session, pipeline.id)
    if isinstance(ref, int) and not isinstance(ref, bool):
        found = next((s for s in live if s.id == ref), None)
    elif isinstance(ref, str):
        found = next((s for s in live if state_code(s) == ref), None)
    else:
        raise InvalidDefinition(f"a stage is named by its code or id, not {ref!r}", stage=ref)
    if found is None:
        raise UnknownDefinition(
            "stage", ref, f"pipeline {pipeline.name!r}", [state_code(s) for s in live]
        )
    return found


def _column(session: Session, pipeline: PipelineRow, ref: object) -> ColumnRow:
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
        raise InvalidDefinition(f"a column is named by its name or id, not {ref!r}", column=ref)
    if found is None:
        known = session.execute(stmt.with_only_columns(ColumnRow.name)).scalars()
        raise UnknownDefinition("column", ref, f"pipeline {pipeline.name!r}", sorted(known))
    return found


def _info(session: Session, pipeline_id: int) -> PipelineInfo:
    return _infos(session, [pipeline_id])[0]


def _infos(session: Session, pipeline_ids: Sequence[int]) -> list[PipelineInfo]:
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


def _automation_info(session: Session, pipeline_id: int, automation_id: int) -> AutomationInfo:
    info = _info(session, pipeline_id)
    return next(a for a in info.automations if a.id == automation_id)


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


# --- writing definitions -----------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _locked(session: Session, stmt: Select[Any]) -> Select[Any]:
    """`stmt` locking its rows on PostgreSQL; SQLite transactions already hold the write lock."""
    bind = session.get_bind()
    return stmt.with_for_update() if bind.dialect.name == "postgresql" else stmt


def _bump(session: Session, pipeline_id: int, **values: Any) -> None:
    """Update the pipeline row itself; its own columns carry no version trigger."""
    session.execute(
        update(pipeline_table)
        .where(pipeline_table.c.id == pipeline_id)
        .values(version=pipeline_table.c.version + 1, updated_at=_now(), **values)
    )


def _check_free_code(session: Session, code: str, account_id: int | None) -> None:
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


def _insert_stage(
    session: Session, pipeline_id: int, code: str, spec: StageSpec, position: int
) -> int:
    now = _now()
    checklist = _checklist(spec.checklist)
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
                checklist=_checklist_json(checklist) if checklist else null(),
                created_at=now,
                updated_at=now,
            )
            .returning(stage_table.c.id)
        ).scalar_one()
    )


def _insert_column(session: Session, pipeline_id: int, spec: ColumnSpec, position: int) -> int:
    now = _now()
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


def _make_room(
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
    session.execute(stmt.values(position=table.c.position + 1, updated_at=_now()))


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


def _move_all(
    session: Session,
    pipeline_id: int,
    from_stage: int,
    to_stage: int,
    item_ids: Sequence[int],
    actor: Actor,
    now: datetime,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Move every item of `from_stage` to the end of `to_stage`, keeping their order."""
    first = session.execute(
        select(func.min(items.c.position)).where(items.c.flow_stage_id == from_stage)
    ).scalar_one()
    end = session.execute(
        select(func.coalesce(func.max(items.c.position) + 1, 0)).where(
            items.c.flow_stage_id == to_stage
        )
    ).scalar_one()
    session.execute(
        update(items)
        .where(items.c.flow_stage_id == from_stage)
        .values(
            flow_stage_id=to_stage,
            position=items.c.position + (int(end) - int(first or 0)),
            last_stage_changed_at=now,
            checklist_state=null(),
            version=items.c.version + 1,
            updated_at=now,
        )
    )
    for start in range(0, len(item_ids), _HISTORY_CHUNK):
        chunk = item_ids[start : start + _HISTORY_CHUNK]
        session.execute(
            insert(history),
            [
                {
                    "flow_item_id": item_id,
                    "flow_pipeline_id": pipeline_id,
                    "from_stage_id": from_stage,
                    "to_stage_id": to_stage,
                    "moved_by_iam_user_id": actor.user_id,
                    "moved_at": now,
                    "method_code": REMOVE_STAGE,
                    "is_system": actor.is_system,
                }
                for item_id in chunk
            ],
        )
        if on_progress is not None:
            on_progress(start + len(chunk))


def _copy(
    session: Session,
    source: PipelineRow,
    account_id: int,
    actor: Actor,
    name: str | None,
    code: str | None,
) -> int:
    """Insert a copy of `source` into `account_id`; the new pipeline's id."""
    now = _now()
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
            movement=FREE,
            allow_skip_forward=source.allow_skip_forward,
            allow_backward=source.allow_backward,
            template_id=source.id,
            created_at=now,
            updated_at=now,
        )
        .returning(pipeline_table.c.id)
    ).scalar_one()
    stage_ids: dict[int, int] = {}
    for s in _live_stages(session, source.id):
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


# --- validation --------------------------------------------------------------------------

_CODE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def slugify(name: str) -> str:
    """A stage code from a name: ASCII lower case, words joined by '_' ("Won deal" -> won_deal)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:100].rstrip("_")
    if not slug:
        return "stage"
    return f"stage_{slug}" if slug[0].isdigit() else slug


def _unique(code: str, taken: Iterable[str]) -> str:
    used = set(taken)
    if code not in used:
        return code
    n = 2
    while f"{code}_{n}" in used:
        n += 1
    return f"{code}_{n}"


def _stage_codes_for(specs: Sequence[StageSpec]) -> list[str]:
    """Stage codes of a new pipeline: the explicit ones, then unique slugs of the names."""
    explicit = [s.code for s in specs if s.code is not None]
    for code in explicit:
        if explicit.count(code) > 1:
            raise DuplicateCode("stage", code, "the new pipeline")
    taken = set(explicit)
    codes: list[str] = []
    for spec in specs:
        code = spec.code if spec.code is not None else _unique(slugify(spec.name), taken)
        taken.add(code)
        codes.append(code)
    return codes


def _check_outcomes(pipeline: str, stages: Sequence[tuple[str, bool, bool]]) -> None:
    """At most one won and one lost stage per pipeline; no stage both won and lost."""
    for code, won, lost in stages:
        if won and lost:
            raise InvalidDefinition(
                f"stage {code!r} cannot be both the won and the lost stage", stage=code
            )
    for kind, index in (("won", 1), ("lost", 2)):
        marked = [s[0] for s in stages if s[index]]
        if len(marked) > 1:
            raise InvalidDefinition(
                f"pipeline {pipeline!r} would have {len(marked)} {kind} stages "
                f"({', '.join(marked)}); keep at most one won and one lost stage",
                outcome=kind,
                stages=tuple(marked),
            )


def _specs(raw: object, what: str, read: Callable[[Any], _T]) -> list[_T]:
    """Each entry of the list `raw`, read by `read`; a refusal names the entry (`stages[2]`)."""
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence):
        raise InvalidDefinition(f"{what} must be a list, not {raw!r}", **{what: raw})
    specs = []
    for index, entry in enumerate(raw):
        try:
            specs.append(read(entry))
        except InvalidDefinition as exc:
            raise InvalidDefinition(f"{what}[{index}]: {exc.message}", **exc.details()) from None
    return specs


def _stage_spec(raw: StageSpec | Mapping[str, Any]) -> StageSpec:
    spec = _spec(StageSpec, raw, "stage")
    check_text("name", spec.name)
    if spec.code is not None:
        check_code("stage", spec.code, max_length=MAX_CODE)
    if spec.position is not None:
        check_int("position", spec.position, maximum=MAX_POSITION)
    _check_color(spec.color)
    _check_probability(spec.probability)
    _check_sla(spec.sla_days)
    check_bool("is_won", spec.is_won)
    check_bool("is_lost", spec.is_lost)
    _checklist(spec.checklist)
    return spec


def _column_spec(raw: ColumnSpec | Mapping[str, Any]) -> ColumnSpec:
    spec = _spec(ColumnSpec, raw, "column")
    if not isinstance(spec.name, str) or not _CODE.fullmatch(spec.name) or len(spec.name) > 128:
        raise InvalidDefinition(
            f"column name {spec.name!r} must be 1-128 ASCII letters, digits or '_', not "
            "starting with a digit",
            column=spec.name,
        )
    if spec.label is not None:
        check_text("label", spec.label)
    if spec.field_type not in FIELD_TYPES:
        raise InvalidDefinition(
            f"column {spec.name!r} has field type {spec.field_type!r}; use one of "
            f"{', '.join(FIELD_TYPES)}",
            column=spec.name,
            field_type=spec.field_type,
        )
    options = _check_options(spec.name, spec.field_type, spec.options)
    check_bool("is_required", spec.is_required)
    if spec.position is not None:
        check_int("position", spec.position, maximum=MAX_POSITION)
    return ColumnSpec(
        name=spec.name,
        label=spec.label,
        field_type=spec.field_type,
        options=tuple(options) if options is not None else None,
        is_required=spec.is_required,
        position=spec.position,
    )


def _spec(kind: type[_T], raw: object, what: str) -> _T:
    if isinstance(raw, kind):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidDefinition(
            f"a {what} is a {kind.__name__} or a mapping of its fields, not {raw!r}", value=raw
        )
    known = [f.name for f in fields(kind)]  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(known), key=repr)
    if unknown:
        raise InvalidDefinition(
            f"unknown {what} field(s) {', '.join(map(str, unknown))}; known: {', '.join(known)}",
            fields=tuple(unknown),
        )
    if "name" not in raw:
        raise InvalidDefinition(f"a {what} needs a name", value=dict(raw))
    return kind(**raw)


def _check_options(column: str, field_type: str, options: object) -> list[str] | None:
    if field_type not in OPTION_TYPES:
        if options is not None:
            raise InvalidDefinition(
                f"column {column!r} of type {field_type!r} takes no options; only "
                f"{' and '.join(OPTION_TYPES)} columns do",
                column=column,
                field_type=field_type,
            )
        return None
    if (
        isinstance(options, (str, bytes))
        or not isinstance(options, Sequence)
        or not options
        or len(options) > MAX_OPTIONS
        or not all(isinstance(o, str) and o and len(o) <= MAX_NAME and storable(o) for o in options)
        or len(set(options)) != len(options)
    ):
        raise InvalidDefinition(
            f"column {column!r} of type {field_type!r} needs a list of 1 to {MAX_OPTIONS} "
            f"distinct option strings (1 to {MAX_NAME} characters each), not {options!r}",
            column=column,
            options=options,
        )
    return list(options)


def _checklist(raw: object) -> tuple[ChecklistItem, ...]:
    """A checklist in the seed's JSON form (or `ChecklistItem` values), validated; None: empty."""
    if raw is None:
        return ()
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
        raise InvalidDefinition(
            f'a checklist is a list of {{"key", "label", "required"}} entries, not {raw!r}',
            checklist=raw,
        )
    entries: list[ChecklistItem] = []
    for entry in raw:
        key: object
        label: object
        required: object
        if isinstance(entry, ChecklistItem):
            key, label, required = entry.key, entry.label, entry.required
        elif isinstance(entry, Mapping):
            extra = set(entry) - {"key", "label", "required"}
            key = entry.get("key")
            label = entry.get("label", key)
            required = entry.get("required", False)
            if extra:
                raise InvalidDefinition(
                    f"checklist entry {dict(entry)!r} has unknown field(s) "
                    f"{', '.join(sorted(map(str, extra)))}; it takes key, label, required",
                    entry=dict(entry),
                )
        else:
            raise InvalidDefinition(f"checklist entry {entry!r} is not a mapping", entry=entry)
        if (
            not isinstance(key, str)
            or not key
            or len(key) > MAX_NAME
            or not storable(key)
            or not isinstance(label, str)
            or len(label) > MAX_NAME
            or not storable(label)
            or not isinstance(required, bool)
        ):
            raise InvalidDefinition(
                f"checklist entry {entry!r} needs a non-empty string key, a string label (at "
                f"most {MAX_NAME} characters each) and a boolean required",
                entry=entry,
            )
        item = ChecklistItem(key=key, label=label, required=required)
        if any(e.key == item.key for e in entries):
            raise InvalidDefinition(f"checklist key {item.key!r} appears twice", key=item.key)
        entries.append(item)
    return tuple(entries)


def _checklist_json(entries: Sequence[ChecklistItem]) -> list[dict[str, Any]]:
    return [{"key": e.key, "label": e.label, "required": e.required} for e in entries]


def _check_payload(template: object) -> Any:
    """A payload template as plain JSON (tuples become lists); None as SQL NULL."""
    checked = check_params(template, "payload_template", error=InvalidDefinition)
    return null() if checked is None else json.loads(json.dumps(checked))


def _check_trigger(trigger: object) -> str:
    if trigger not in TRIGGERS:
        raise InvalidDefinition(
            f"automation trigger {trigger!r} is not one of {', '.join(TRIGGERS)}",
            trigger=trigger,
        )
    assert isinstance(trigger, str)
    return trigger


def _check_color(color: object) -> str | None:
    """A stage colour: a string such as '#22c55e', at most 64 characters."""
    return check_optional_text("color", color, max_length=64)


def _check_probability(probability: object) -> int | None:
    if probability is None:
        return None
    if (
        isinstance(probability, bool)
        or not isinstance(probability, int)
        or not (0 <= probability <= 100)
    ):
        raise InvalidDefinition(
            f"a stage probability is an integer percentage from 0 to 100, not {probability!r}",
            probability=probability,
        )
    return probability


def _check_sla(days: object) -> int | None:
    if days is None:
        return None
    return check_int("sla_days", days, minimum=1)


def _default(value: int | None, fallback: int) -> int:
    return fallback if value is None else value


def _is_platform(actor: Actor) -> bool:
    """The system actor of the whole platform: the only one changing platform pipelines."""
    return actor.is_system and actor.account_id is None


__all__ = [
    "REMOVE_STAGE",
    "UNSET",
    "AutomationInfo",
    "ColumnInfo",
    "ColumnSpec",
    "PipelineAdmin",
    "PipelineInfo",
    "StageInfo",
    "StageRemoval",
    "StageSpec",
    "slugify",
]
