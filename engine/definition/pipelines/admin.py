"""Pipeline administration: pipelines, stages, columns, entry requirements, checklists,
automations, movement rules and templates.

Every call is one transaction and checks tenancy first. A pipeline of another account is
`UnknownDefinition` (its existence is not leaked); a platform pipeline (no account, such as a
system template) is read by everyone and changed only by the platform's system actor
(`AccessDenied` otherwise). Then the class-wide access rules: one that denies the actor
`execute` refuses changes, one that denies `visible` refuses reads and leaves the pipeline out
of lists (`AccessDenied`; see `flowkernel.access`). Definition rows carry triggers that bump the
pipeline's version, so compiled classes refresh on their next use, also while items are in
flight.

`PipelineAdmin` holds the pipeline and movement operations and takes the others from
the `stages`, `columns`, `automations` and `templates` modules of this package. Specs and
their validation live in `specs`,
the values read back in `flowkernel.definition.pipelines.info`, the shared row lookups and writes in
`flowkernel.definition.pipelines.rows`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.actors import Actor
from flowkernel.definition.codes import state_code
from flowkernel.definition.pipelines.automations import AutomationAdmin
from flowkernel.definition.pipelines.columns import ColumnAdmin
from flowkernel.definition.pipelines.info import (
    AutomationInfo,
    ColumnInfo,
    PipelineInfo,
    StageInfo,
    StageRef,
    read_pipeline,
    read_pipelines,
)
from flowkernel.definition.pipelines.rows import (
    bump_pipeline,
    check_free_code,
    find_stage,
    insert_column,
    insert_stage,
    is_platform,
    pipeline_row,
    utc_now,
)
from flowkernel.definition.pipelines.specs import (
    MAX_CODE,
    MAX_OPTIONS,
    UNSET,
    ColumnSpec,
    StageSpec,
    Unset,
    check_outcomes,
    column_spec,
    read_specs,
    slugify,
    stage_codes_for,
    stage_spec,
)
from flowkernel.definition.pipelines.stages import (
    REMOVE_STAGE,
    Relocate,
    StageAdmin,
    StageRemoval,
)
from flowkernel.definition.pipelines.templates import TemplateAdmin
from flowkernel.definition.rules import hidden_classes
from flowkernel.errors import (
    AccessDenied,
    DuplicateCode,
    InvalidArgument,
    InvalidDefinition,
    UnknownDefinition,
)
from flowkernel.kinds import Movement
from flowkernel.previews import preview
from flowkernel.store.database import reading
from flowkernel.store.tables import pipelines as pipeline_table
from flowkernel.store.tables import stage_moves as move_table
from flowkernel.validation import (
    MAX_OBJECT_TYPE,
    MAX_TEXT,
    check_bool,
    check_code,
    check_id,
    check_key,
    check_optional_text,
    check_text,
)


class PipelineAdmin(StageAdmin, ColumnAdmin, AutomationAdmin, TemplateAdmin):
    """Create, read, edit and remove pipelines and their definitions, per tenant account."""

    def __init__(self, sessions: sessionmaker[Session], relocate: Relocate) -> None:
        self._sessions = sessions
        self._relocate = relocate

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
        stage_specs = read_specs(stages, "stages", stage_spec)
        column_specs = read_specs(columns, "columns", column_spec)
        if is_system:
            if not is_platform(actor):
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
        codes = stage_codes_for(stage_specs)
        check_outcomes(
            name, [(c, s.is_won, s.is_lost) for c, s in zip(codes, stage_specs, strict=True)]
        )
        names = [c.name for c in column_specs]
        for column_name in names:
            if names.count(column_name) > 1:
                raise DuplicateCode("column", column_name, f"pipeline {preview(name)}")
        with self._sessions.begin() as session:
            if code is not None:
                check_free_code(session, code, account)
            now = utc_now()
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
                    movement=Movement.FREE,
                    created_at=now,
                    updated_at=now,
                )
                .returning(pipeline_table.c.id)
            ).scalar_one()
            for index, (stage_code, spec) in enumerate(zip(codes, stage_specs, strict=True)):
                insert_stage(session, pipeline_id, stage_code, spec, _default(spec.position, index))
            for index, column in enumerate(column_specs):
                insert_column(session, pipeline_id, column, _default(column.position, index))
            return read_pipeline(session, pipeline_id)

    def get_pipeline(self, pipeline_id: int, actor: Actor) -> PipelineInfo:
        """A pipeline of the actor's account, or a platform pipeline such as a system template."""
        with reading(self._sessions) as session:
            row = pipeline_row(session, pipeline_id, actor, write=False)
            return read_pipeline(session, row.id)

    def pipeline_id(self, ref: int | str, actor: Actor) -> int:
        """The id of the pipeline named by `ref`, its id or its code among the pipelines the
        actor reads; the account's own wins over a platform pipeline of the same code. A code
        of several such pipelines is `InvalidArgument` naming them, an unknown one
        `UnknownDefinition`."""
        if isinstance(ref, int) and not isinstance(ref, bool):
            with reading(self._sessions) as session:
                return int(pipeline_row(session, ref, actor, write=False).id)
        check_key("pipeline", ref, error=InvalidArgument)
        readable = self.list_pipelines(actor)
        found = [p for p in readable if p.code == ref]
        own = [p for p in found if p.account_id == actor.account_id]
        if len(own) == 1 or len(found) == 1:
            return (own or found)[0].id
        if not found:
            known = sorted({p.code for p in readable if p.code is not None})
            raise UnknownDefinition("pipeline", ref, "", known)
        listed = ", ".join(f"{p.id} (account {p.account_id or '-'})" for p in found)
        raise InvalidArgument(
            f"pipeline code {preview(ref)} names several pipelines: {listed}; pass the id or "
            "the account",
            pipeline=ref,
        )

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
            pipeline_table.c.deleted_at.is_(None), pipeline_table.c.movement == Movement.FREE
        )
        if account is not None:
            stmt = stmt.where(
                or_(
                    pipeline_table.c.iam_account_id == account,
                    pipeline_table.c.iam_account_id.is_(None),
                )
            )
        elif not is_platform(actor):  # an actor without an account reads platform rows only
            stmt = stmt.where(pipeline_table.c.iam_account_id.is_(None))
        if templates is not None:
            stmt = stmt.where(pipeline_table.c.is_template == templates)
        with reading(self._sessions) as session:
            ids = list(session.execute(stmt.order_by(pipeline_table.c.id)).scalars())
            hidden = hidden_classes(session.connection(), ids, actor)
            return read_pipelines(session, [i for i in ids if i not in hidden])

    def edit_pipeline(
        self,
        pipeline_id: int,
        actor: Actor,
        *,
        name: str | None = None,
        code: str | Unset | None = UNSET,
        description: str | Unset | None = UNSET,
        object_type: str | Unset | None = UNSET,
        is_template: bool | None = None,
    ) -> PipelineInfo:
        """Rename a pipeline, change its code, description or object type, or (un)mark it a
        template. A system template stays a template."""
        values: dict[str, Any] = {}
        if name is not None:
            check_text("name", name)
            values["name"] = name
        if not isinstance(description, Unset):
            check_optional_text("description", description, max_length=MAX_TEXT)
            values["description"] = description
        if not isinstance(object_type, Unset):
            check_optional_text("object_type", object_type, max_length=MAX_OBJECT_TYPE)
            values["object_type"] = object_type
        if is_template is not None:
            values["is_template"] = check_bool("is_template", is_template)
        with self._sessions.begin() as session:
            row = pipeline_row(session, pipeline_id, actor, write=True)
            if not isinstance(code, Unset) and code != row.code:
                if code is not None:
                    check_code("pipeline", code, max_length=MAX_CODE)
                    check_free_code(session, code, row.iam_account_id)
                values["code"] = code
            if row.is_system and values.get("is_template") is False:
                raise InvalidDefinition(
                    f"pipeline {preview(row.name)} is a system template and stays a template",
                    pipeline_id=row.id,
                )
            if values:
                bump_pipeline(session, row.id, **values)
            return read_pipeline(session, row.id)

    def delete_pipeline(self, pipeline_id: int, actor: Actor) -> None:
        """Soft-delete a pipeline (sets `deleted_at`); its items and history stay.

        A deleted pipeline is no longer listed, read or placed into.
        """
        with self._sessions.begin() as session:
            row = pipeline_row(session, pipeline_id, actor, write=True)
            now = utc_now()
            bump_pipeline(session, row.id, deleted_at=now)

    # --- movement rules ------------------------------------------------------------------

    def set_movement(
        self,
        pipeline_id: int,
        actor: Actor,
        *,
        allow_skip_forward: bool | None = None,
        allow_backward: bool | None = None,
        allowed_moves: Sequence[tuple[StageRef, StageRef]] | Unset | None = UNSET,
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
            row = pipeline_row(session, pipeline_id, actor, write=True)
            if not isinstance(allowed_moves, Unset):
                if allowed_moves is not None and (
                    isinstance(allowed_moves, str | bytes)
                    or not isinstance(allowed_moves, Sequence)
                ):
                    raise InvalidDefinition(
                        f"allowed_moves must be a list of (from stage, to stage) pairs or None, "
                        f"not {preview(allowed_moves)}",
                        allowed_moves=allowed_moves,
                    )
                pairs: list[tuple[int, int]] = []
                for pair in allowed_moves or ():
                    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                        raise InvalidDefinition(
                            f"an allowed move is a (from stage, to stage) pair, not "
                            f"{preview(pair)}",
                            move=pair,
                        )
                    source = find_stage(session, row, pair[0])
                    dest = find_stage(session, row, pair[1])
                    if source.id == dest.id:
                        raise InvalidDefinition(
                            f"an allowed move joins two different stages, not "
                            f"{preview(state_code(source))} to itself",
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
                bump_pipeline(session, row.id, **flags)
            return read_pipeline(session, row.id)


def _default(value: int | None, fallback: int) -> int:
    return fallback if value is None else value


__all__ = [
    "MAX_CODE",
    "MAX_OPTIONS",
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
