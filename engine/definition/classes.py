"""The authoring API for kernel classes, mirroring the seed's AddClass, AddState, AddMethod,
AddEvent: `Definitions`, made of one part per kind of definition.

Every write is validated before anything is stored, and each call is one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flowkernel.access import VISIBLE, check_class
from flowkernel.actors import Actor
from flowkernel.definition.authoring import Authoring
from flowkernel.definition.events import EventAuthoring, EventDef
from flowkernel.definition.methods import ActionInfo, MethodAuthoring, MethodDef, TransitionDef
from flowkernel.definition.rules import (
    AccessRuleDef,
    RuleAuthoring,
    class_rules,
    hidden_classes,
)
from flowkernel.definition.states import StateAuthoring, StateInfo
from flowkernel.errors import (
    AbstractClassError,
    DefinitionInUse,
    DuplicateCode,
    InvalidDefinition,
)
from flowkernel.kinds import GLOBAL_TARGETS, MOVEMENTS, STATE_TYPES, Movement
from flowkernel.previews import preview
from flowkernel.store.schema import (
    ItemRow,
    PipelineRow,
    StageHistoryRow,
)
from flowkernel.validation import (
    MAX_CODE,
    check_bool,
    check_code,
    check_key,
    check_optional_id,
    check_optional_text,
    check_text,
)

__all__ = [
    "DEFAULT_METHODS",
    "AccessRuleDef",
    "ActionInfo",
    "ClassInfo",
    "Definitions",
    "EventDef",
    "MethodDef",
    "StateInfo",
    "TransitionDef",
]

DEFAULT_METHODS: Final = (
    "create", "open", "edit", "save", "update", "enable", "disable", "delete", "restore", "drop",
)  # fmt: skip
"""The ten global methods of the seed's default lifecycle."""


@dataclass(frozen=True, slots=True)
class ClassInfo:
    """A class (pipeline) definition header."""

    id: int
    code: str
    label: str
    parent: str | None
    is_abstract: bool
    account_id: int | None
    movement: str
    version: int


class Definitions(StateAuthoring, MethodAuthoring, EventAuthoring, RuleAuthoring, Authoring):
    """Add, edit and delete classes, states, actions, methods, transitions, events, access rules."""

    # --- classes -------------------------------------------------------------------------

    def add_class(
        self,
        code: str,
        label: str,
        *,
        parent: str | None = None,
        abstract: bool = False,
        account_id: int | None = None,
        object_type: str | None = None,
        movement: str = Movement.EXPLICIT,
    ) -> ClassInfo:
        """Create a class (a kernel class by default; `movement="free"` makes a pipeline)."""
        check_code("class", code)
        check_text("label", label)
        check_bool("abstract", abstract)
        check_optional_id("account_id", account_id)
        check_optional_text("object_type", object_type, max_length=MAX_CODE)
        if movement not in MOVEMENTS:
            raise InvalidDefinition(
                f"movement {preview(movement)} is not one of {MOVEMENTS}", movement=movement
            )
        with self._tx() as session:
            existing = session.execute(
                select(PipelineRow.id).where(
                    PipelineRow.code == code,
                    PipelineRow.deleted_at.is_(None),
                    PipelineRow.iam_account_id.is_(None)
                    if account_id is None
                    else PipelineRow.iam_account_id == account_id,
                )
            ).first()
            if existing is not None:
                raise DuplicateCode("class", code, _account_scope(account_id))
            parent_row = self.class_row(session, parent, account_id) if parent is not None else None
            row = PipelineRow(
                code=code,
                name=label,
                parent_id=parent_row.id if parent_row else None,
                is_abstract=abstract,
                iam_account_id=account_id,
                object_type=object_type,
                movement=movement,
            )
            session.add(row)
            session.flush()
            return _class_info(session, row)

    def get_class(
        self,
        code: str | int,
        account_id: int | None = None,
        *,
        any_account: bool = False,
        visible_to: Actor | None = None,
    ) -> ClassInfo:
        """A class header by code or id (see `class_row` for `any_account`).

        With `visible_to`, an actor a class-wide rule denies `visible` is refused
        (`AccessDenied`, which does not name the class).
        """
        with self._read() as session:
            row = self.class_row(session, code, account_id, any_account=any_account)
            if visible_to is not None:
                rules = class_rules(session.connection(), row.id)
                check_class(rules, visible_to, VISIBLE, "the class")
            return _class_info(session, row)

    def list_classes(
        self, account_id: int | None = None, *, visible_to: Actor | None = None
    ) -> list[ClassInfo]:
        """Classes of the platform and of `account_id`, by code; with `visible_to`, only those
        no class-wide rule hides from that actor."""
        check_optional_id("account_id", account_id)
        with self._read() as session:
            rows = (
                session.execute(
                    select(PipelineRow)
                    .where(
                        PipelineRow.deleted_at.is_(None),
                        (PipelineRow.iam_account_id == account_id)
                        | PipelineRow.iam_account_id.is_(None),
                    )
                    .order_by(PipelineRow.code, PipelineRow.id)
                )
                .scalars()
                .all()
            )
            if visible_to is not None:
                hidden = hidden_classes(session.connection(), [r.id for r in rows], visible_to)
                rows = [r for r in rows if r.id not in hidden]
            return [_class_info(session, r) for r in rows]

    def edit_class(
        self,
        code: str,
        *,
        label: str | None = None,
        parent: str | bool | None = False,
        abstract: bool | None = None,
        movement: str | None = None,
        object_type: str | None = None,
        account_id: int | None = None,
    ) -> ClassInfo:
        """Change a class's label, parent (None detaches), abstract flag, movement or object
        type (refused while the class holds items of another type)."""
        check_optional_text("label", label)
        check_optional_text("object_type", object_type, max_length=MAX_CODE)
        if abstract is not None:
            check_bool("abstract", abstract)
        if parent is not False and parent is not None:
            check_key("class", parent)
        if movement is not None and movement not in MOVEMENTS:
            raise InvalidDefinition(
                f"movement {preview(movement)} is not one of {MOVEMENTS}", movement=movement
            )
        with self._tx() as session:
            row = self.class_row(session, code, account_id)
            if parent is not False or abstract is not None or movement is not None:
                self._watch(session, row)
            if label is not None:
                row.name = label
            if movement is not None:
                row.movement = movement
            if object_type is not None and object_type != row.object_type:
                others = session.execute(
                    select(func.count())
                    .select_from(ItemRow)
                    .where(ItemRow.flow_pipeline_id == row.id, ItemRow.object_type != object_type)
                ).scalar_one()
                if others:
                    raise DefinitionInUse(
                        "class", row.code or str(row.id), f"{others} item(s) of another type"
                    )
                row.object_type = object_type
            if parent is not False:
                if parent is None:
                    row.parent_id = None
                else:
                    parent_row = self.class_row(session, parent, account_id)
                    _refuse_cycle(session, row, parent_row)
                    row.parent_id = parent_row.id
            if abstract is not None and abstract != row.is_abstract:
                if abstract:
                    count = _item_count(session, row.id)
                    if count:
                        raise AbstractClassError(row.code or str(row.id), count)
                row.is_abstract = abstract
            session.flush()
            self._touch(session, row)
            session.refresh(row)
            return _class_info(session, row)

    def delete_class(self, code: str, account_id: int | None = None) -> None:
        """Delete a class with its definition; refused while it has items, subclasses or history."""
        with self._tx() as session:
            row = self.class_row(session, code, account_id)
            count = _item_count(session, row.id)
            if count:
                raise DefinitionInUse("class", code, f"{count} item(s)")
            children = (
                session.execute(select(PipelineRow.code).where(PipelineRow.parent_id == row.id))
                .scalars()
                .all()
            )
            if children:
                raise DefinitionInUse("class", code, f"subclasses {', '.join(map(str, children))}")
            # History outlives dropped items and keeps its class and states.
            moves = session.execute(
                select(func.count())
                .select_from(StageHistoryRow)
                .where(StageHistoryRow.flow_pipeline_id == row.id)
            ).scalar_one()
            if moves:
                raise DefinitionInUse("class", code, f"{moves} history row(s)")
            session.delete(row)

    # --- the default lifecycle -----------------------------------------------------------

    def default_methods(self, class_code: str, account_id: int | None = None) -> list[MethodDef]:
        """The seed's DefaultMethods: the ten global methods."""
        with self._tx():
            return [
                self.add_method(class_code, None, action, sequence=i, account_id=account_id)
                for i, action in enumerate(DEFAULT_METHODS)
            ]

    def default_transitions(
        self, class_code: str, account_id: int | None = None
    ) -> list[TransitionDef]:
        """The seed's DefaultTransition: a transition from any state (state NULL) for each
        global method of create, enable, disable, delete and restore, into the first state (by
        position) of its state type. Methods whose state type the class lacks get none."""
        with self._tx():
            first: dict[str, str] = {}
            for state in self.list_states(class_code, account_id):
                first.setdefault(state.state_type, state.code)
            return [
                self.add_transition(
                    class_code,
                    None,
                    method.code,
                    first[GLOBAL_TARGETS[method.action]],
                    account_id=account_id,
                )
                for method in self.list_methods(class_code, account_id)
                if method.state is None
                and method.action in GLOBAL_TARGETS
                and GLOBAL_TARGETS[method.action] in first
            ]

    def add_default_methods(self, class_code: str, account_id: int | None = None) -> None:
        """The seed's AddDefaultMethods: one state per state type, the methods, the transitions."""
        with self._tx():
            self._add_default_methods(class_code, account_id)

    def _add_default_methods(self, class_code: str, account_id: int | None) -> None:
        for position, state_type in enumerate(STATE_TYPES):
            self.add_state(
                class_code,
                state_type,
                state_type,
                state_type.capitalize(),
                position=position,
                account_id=account_id,
            )
        self.default_methods(class_code, account_id)
        self.default_transitions(class_code, account_id)


def _account_scope(account_id: int | None) -> str:
    return "the platform" if account_id is None else f"account {account_id}"


def _item_count(session: Session, class_id: int) -> int:
    return session.execute(
        select(func.count()).select_from(ItemRow).where(ItemRow.flow_pipeline_id == class_id)
    ).scalar_one()


def _refuse_cycle(session: Session, row: PipelineRow, parent: PipelineRow) -> None:
    cursor: PipelineRow | None = parent
    while cursor is not None:
        if cursor.id == row.id:
            raise InvalidDefinition(
                f"class {preview(parent.code)} descends from {preview(row.code)}; "
                "a class cannot be its own ancestor",
                class_code=row.code,
            )
        cursor = session.get(PipelineRow, cursor.parent_id) if cursor.parent_id else None


def _class_info(session: Session, row: PipelineRow) -> ClassInfo:
    parent = session.get(PipelineRow, row.parent_id) if row.parent_id else None
    return ClassInfo(
        id=row.id,
        code=row.code or f"pipeline_{row.id}",
        label=row.name,
        parent=(parent.code or f"pipeline_{parent.id}") if parent else None,
        is_abstract=row.is_abstract,
        account_id=row.iam_account_id,
        movement=row.movement,
        version=row.version,
    )
