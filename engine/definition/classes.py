"""The authoring API for kernel classes, mirroring the seed's AddState, AddMethod, AddEvent.

Every write is validated before anything is stored, and each call is one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.definition.codes import RESERVED_METHOD_CODES, state_code
from flowkernel.definition.guard import Guard, Problems
from flowkernel.errors import (
    AbstractClassError,
    DefinitionInUse,
    DuplicateCode,
    DuplicateTransition,
    ForeignReference,
    InvalidArgument,
    InvalidDefinition,
    UnknownDefinition,
    UnknownHandler,
)
from flowkernel.kinds import MOVEMENTS, STATE_TYPES, CallLog, Movement
from flowkernel.snapshots import DefinitionProblem
from flowkernel.store.schema import (
    AccessRuleRow,
    ActionRow,
    EventRow,
    ItemRow,
    MethodRow,
    PipelineRow,
    StageHistoryRow,
    StageRow,
    TransitionRow,
)
from flowkernel.validation import (
    MAX_ACTION_CODE,
    MAX_CODE,
    MAX_STATE_CODE,
    MAX_TEXT,
    MIN_INT,
    check_bool,
    check_code,
    check_key,
    check_optional_id,
    check_optional_int,
    check_optional_text,
    check_text,
)

DEFAULT_METHODS: Final = (
    "create", "open", "edit", "save", "update", "enable", "disable", "delete", "restore", "drop",
)  # fmt: skip
"""The ten global methods of the seed's default lifecycle."""

DEFAULT_TRANSITIONS: Final = (
    (None, "create", "created"),
    ("created", "enable", "enabled"),
    ("created", "disable", "disabled"),
    ("created", "delete", "deleted"),
    ("enabled", "disable", "disabled"),
    ("enabled", "delete", "deleted"),
    ("disabled", "enable", "enabled"),
    ("disabled", "delete", "deleted"),
    ("deleted", "restore", "created"),
)
"""The seed's default lifecycle; `drop` from deleted removes the item (its chain, no target)."""


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


@dataclass(frozen=True, slots=True)
class StateInfo:
    """A state of a class."""

    id: int
    class_code: str
    code: str
    label: str
    state_type: str
    position: int


@dataclass(frozen=True, slots=True)
class ActionInfo:
    """An action of the global catalogue."""

    id: int
    code: str
    label: str
    is_standard: bool


@dataclass(frozen=True, slots=True)
class MethodDef:
    """A method row: an action bound to a class and a state (None: global)."""

    id: int
    class_code: str
    state: str | None
    action: str
    code: str
    label: str
    sequence: int
    visible: bool
    call_log: str = CallLog.ALL.value


@dataclass(frozen=True, slots=True)
class TransitionDef:
    """(state or any, method) -> new state."""

    id: int
    class_code: str
    state: str | None
    method: str
    new_state: str


@dataclass(frozen=True, slots=True)
class EventDef:
    """One entry of a class's chain for an action: a handler or the parent's chain."""

    id: int
    class_code: str
    action: str
    handler: str | None
    is_parent: bool
    label: str
    sequence: int
    enabled: bool


@dataclass(frozen=True, slots=True)
class AccessRuleDef:
    """Allow or deny a user or group to execute or see a method (None: every method)."""

    id: int
    class_code: str
    method: str | None
    subject_kind: str
    subject: str
    permission: str
    effect: str


class Definitions:
    """Add, edit and delete classes, states, actions, methods, transitions, events, access rules."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        handler_names: Callable[[], Collection[str]],
        problems: Problems,
        *,
        strict_states: bool = False,
        guarded: bool = True,
    ) -> None:
        self._sessions = sessions
        self._handler_names = handler_names
        self._problems = problems
        self._guarded = guarded
        self.strict_states = strict_states
        self._local = threading.local()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One transaction per call; calls made inside another call share its transaction.

        Before the commit, the guard refuses the transaction if its writes broke a whole-class
        rule that held before them (`flowkernel.definition.guard`)."""
        current: Session | None = getattr(self._local, "session", None)
        if current is not None:
            yield current
            return
        with self._sessions.begin() as session:
            guard = (
                Guard(self._problems, strict_states=self.strict_states) if self._guarded else None
            )
            self._local.session = session
            self._local.guard = guard
            try:
                yield session
                if guard is not None:
                    guard.verify(session)
            finally:
                self._local.session = None
                self._local.guard = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the authoring calls inside the block one transaction: all of them or none.

        Whole-class rules are checked once, at the end of the block, against the classes as they
        were before it: a class can be reshaped in several steps that each alone would break one.
        """
        with self._tx():
            yield

    def _watch(self, session: Session, cls: PipelineRow) -> None:
        """Keep the whole-class rules of `cls` and the classes below it through this write."""
        guard: Guard | None = self._local.guard
        if guard is not None:
            guard.watch(session, _family(session, cls.id))

    def _added_state(self, row: StageRow) -> None:
        guard: Guard | None = self._local.guard
        if guard is not None:
            guard.added_state(row.id)

    def problems(
        self, class_code: str | int, account_id: int | None = None
    ) -> list[DefinitionProblem]:
        """The whole-class rules a class (by code or id) breaks, empty when it keeps them all:
        where its items start, states no transition reaches, active states with no way out."""
        with self._tx() as session:
            return list(self._problems(session, self.class_row(session, class_code, account_id).id))

    # --- lookups -------------------------------------------------------------------------

    @staticmethod
    def class_row(
        session: Session,
        code: str | int,
        account_id: int | None = None,
        *,
        any_account: bool = False,
    ) -> PipelineRow:
        """The class by code or id, among the platform's and `account_id`'s classes.

        `any_account` lets an id reach every account's classes (the platform's system actor).
        """
        if isinstance(code, bool) or not isinstance(code, (int, str)):
            raise InvalidArgument(f"a class is named by its code or id, not {code!r}", key=code)
        check_optional_id("account_id", account_id)
        if isinstance(code, str):
            check_key("class", code)
        if isinstance(code, int):
            row = session.get(PipelineRow, code) if -(2**63) <= code < 2**63 else None
            if row is not None and not any_account and row.iam_account_id not in (None, account_id):
                row = None  # another account's class: as if it did not exist
        else:
            rows = session.execute(
                select(PipelineRow).where(
                    PipelineRow.code == code,
                    PipelineRow.deleted_at.is_(None),
                    (PipelineRow.iam_account_id == account_id)
                    | PipelineRow.iam_account_id.is_(None),
                )
            ).scalars()
            row = min(rows, key=lambda r: r.iam_account_id is None, default=None)
        if row is None or row.deleted_at is not None:
            raise UnknownDefinition("class", code)
        return row

    @staticmethod
    def _state(session: Session, cls: PipelineRow, code: str) -> StageRow:
        check_key("state", code)
        rows = list(
            session.execute(
                select(StageRow).where(
                    StageRow.flow_pipeline_id == cls.id, StageRow.deleted_at.is_(None)
                )
            ).scalars()
        )
        for row in rows:
            if state_code(row) == code:
                return row
        raise UnknownDefinition("state", code, f"class {cls.code!r}", [state_code(r) for r in rows])

    @staticmethod
    def _action(session: Session, code: str) -> ActionRow:
        check_key("action", code)
        row = session.execute(select(ActionRow).where(ActionRow.code == code)).scalar_one_or_none()
        if row is None:
            raise UnknownDefinition("action", code, "the action catalogue; add it with add_action")
        return row

    def _method(
        self, session: Session, cls: PipelineRow, state: str | None, code: str
    ) -> MethodRow:
        check_key("method", code)
        stmt = select(MethodRow).where(MethodRow.class_id == cls.id, MethodRow.code == code)
        candidates = list(session.execute(stmt).scalars())
        if state is not None:
            state_row = self._state(session, cls, state)
            for row in candidates:
                if row.state_id == state_row.id:
                    return row
        for row in candidates:
            if row.state_id is None:
                return row
        other = session.execute(select(MethodRow).where(MethodRow.code == code)).scalars().first()
        if other is not None and other.class_id != cls.id and not candidates:
            owner = session.get(PipelineRow, other.class_id)
            raise ForeignReference(
                "method", code, (owner.code if owner else None) or "?", cls.code or "?"
            )
        scope = f"class {cls.code!r}" + (f" state {state!r}" if state else " (global)")
        raise UnknownDefinition("method", code, scope)

    @staticmethod
    def _touch(session: Session, cls: PipelineRow) -> None:
        """Bump the version of a class and of every class below it."""
        session.execute(
            update(PipelineRow)
            .where(PipelineRow.id.in_(_family(session, cls.id)))
            .values(version=PipelineRow.version + 1, updated_at=func.now())
        )

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
                f"movement {movement!r} is not one of {MOVEMENTS}", movement=movement
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
        self, code: str | int, account_id: int | None = None, *, any_account: bool = False
    ) -> ClassInfo:
        """A class header by code or id (see `class_row` for `any_account`)."""
        with self._tx() as session:
            return _class_info(
                session, self.class_row(session, code, account_id, any_account=any_account)
            )

    def list_classes(self, account_id: int | None = None) -> list[ClassInfo]:
        """Classes of the platform and of `account_id`, by code."""
        check_optional_id("account_id", account_id)
        with self._tx() as session:
            rows = session.execute(
                select(PipelineRow)
                .where(
                    PipelineRow.deleted_at.is_(None),
                    (PipelineRow.iam_account_id == account_id)
                    | PipelineRow.iam_account_id.is_(None),
                )
                .order_by(PipelineRow.code, PipelineRow.id)
            ).scalars()
            return [_class_info(session, r) for r in rows]

    def edit_class(
        self,
        code: str,
        *,
        label: str | None = None,
        parent: str | bool | None = False,
        abstract: bool | None = None,
        account_id: int | None = None,
    ) -> ClassInfo:
        """Change a class's label, parent (None detaches) or abstract flag."""
        check_optional_text("label", label)
        if abstract is not None:
            check_bool("abstract", abstract)
        if parent is not False and parent is not None:
            check_key("class", parent)
        with self._tx() as session:
            row = self.class_row(session, code, account_id)
            if parent is not False or abstract is not None:
                self._watch(session, row)
            if label is not None:
                row.name = label
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

    # --- states --------------------------------------------------------------------------

    def add_state(
        self,
        class_code: str,
        state_type: str,
        code: str,
        label: str,
        *,
        position: int | None = None,
        account_id: int | None = None,
    ) -> StateInfo:
        """The seed's AddState(class, state type, code, label)."""
        check_code("state", code, max_length=MAX_STATE_CODE)
        check_text("label", label)
        check_optional_int("position", position, minimum=MIN_INT)
        if state_type not in STATE_TYPES:
            raise UnknownDefinition("state type", state_type, "the four fixed types", STATE_TYPES)
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            if any(
                state_code(s) == code
                for s in session.execute(
                    select(StageRow).where(
                        StageRow.flow_pipeline_id == cls.id, StageRow.deleted_at.is_(None)
                    )
                ).scalars()
            ):
                raise DuplicateCode("state", code, f"class {cls.code!r}")
            self._watch(session, cls)
            if position is None:
                position = session.execute(
                    select(func.coalesce(func.max(StageRow.position) + 1, 0)).where(
                        StageRow.flow_pipeline_id == cls.id
                    )
                ).scalar_one()
            row = StageRow(
                flow_pipeline_id=cls.id,
                name=label,
                code=code,
                state_type=state_type,
                position=position,
            )
            session.add(row)
            session.flush()
            self._added_state(row)
            self._touch(session, cls)
            return _state_info(cls, row)

    def list_states(self, class_code: str, account_id: int | None = None) -> list[StateInfo]:
        """States of a class in position order."""
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            rows = session.execute(
                select(StageRow)
                .where(StageRow.flow_pipeline_id == cls.id, StageRow.deleted_at.is_(None))
                .order_by(StageRow.position, StageRow.id)
            ).scalars()
            return [_state_info(cls, r) for r in rows]

    def edit_state(
        self,
        class_code: str,
        code: str,
        *,
        label: str | None = None,
        position: int | None = None,
        new_code: str | None = None,
        account_id: int | None = None,
    ) -> StateInfo:
        """Rename, relabel or reposition a state."""
        if new_code is not None:
            check_code("state", new_code, max_length=MAX_STATE_CODE)
        check_optional_text("label", label)
        check_optional_int("position", position, minimum=MIN_INT)
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            row = self._state(session, cls, code)
            if position is not None:
                self._watch(session, cls)
            if new_code is not None and new_code != code:
                try:
                    self._state(session, cls, new_code)
                except UnknownDefinition:
                    row.code = new_code
                else:
                    raise DuplicateCode("state", new_code, f"class {cls.code!r}")
            if label is not None:
                row.name = label
            if position is not None:
                row.position = position
            session.flush()
            self._touch(session, cls)
            return _state_info(cls, row)

    def delete_state(self, class_code: str, code: str, account_id: int | None = None) -> None:
        """Delete a state; refused while items are in it or its history names it."""
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            row = self._state(session, cls, code)
            count = session.execute(
                select(func.count()).select_from(ItemRow).where(ItemRow.flow_stage_id == row.id)
            ).scalar_one()
            if count:
                raise DefinitionInUse("state", code, f"{count} item(s)")
            moves = session.execute(
                select(func.count())
                .select_from(StageHistoryRow)
                .where(
                    (StageHistoryRow.from_stage_id == row.id)
                    | (StageHistoryRow.to_stage_id == row.id)
                )
            ).scalar_one()
            if moves:
                raise DefinitionInUse("state", code, f"{moves} history row(s)")
            self._watch(session, cls)
            session.delete(row)
            session.flush()
            self._touch(session, cls)

    # --- actions -------------------------------------------------------------------------

    def add_action(
        self, code: str, label: str | None = None, description: str | None = None
    ) -> ActionInfo:
        """Add an action to the global catalogue."""
        check_code("action", code, max_length=MAX_ACTION_CODE)
        check_optional_text("label", label)
        check_optional_text("description", description, max_length=MAX_TEXT)
        with self._tx() as session:
            if session.execute(select(ActionRow.id).where(ActionRow.code == code)).first():
                raise DuplicateCode("action", code, "the action catalogue")
            row = ActionRow(
                code=code,
                label=label or code.replace("_", " ").capitalize(),
                description=description,
                is_standard=False,
            )
            session.add(row)
            session.flush()
            return ActionInfo(row.id, row.code, row.label, row.is_standard)

    def list_actions(self) -> list[ActionInfo]:
        """The action catalogue by code."""
        with self._tx() as session:
            rows = session.execute(select(ActionRow).order_by(ActionRow.code)).scalars()
            return [ActionInfo(r.id, r.code, r.label, r.is_standard) for r in rows]

    def delete_action(self, code: str) -> None:
        """Remove a custom action; refused for standard actions and while methods use it."""
        with self._tx() as session:
            row = self._action(session, code)
            if row.is_standard:
                raise DefinitionInUse("action", code, "the platform's default lifecycle")
            used = session.execute(
                select(func.count()).select_from(MethodRow).where(MethodRow.action_id == row.id)
            ).scalar_one()
            used += session.execute(
                select(func.count()).select_from(EventRow).where(EventRow.action_id == row.id)
            ).scalar_one()
            if used:
                raise DefinitionInUse("action", code, f"{used} method(s) and event(s)")
            session.delete(row)

    # --- methods -------------------------------------------------------------------------

    def add_method(
        self,
        class_code: str,
        state: str | None,
        action: str,
        *,
        code: str | None = None,
        label: str | None = None,
        sequence: int | None = None,
        visible: bool = True,
        call_log: str = CallLog.ALL.value,
        account_id: int | None = None,
    ) -> MethodDef:
        """The seed's AddMethod: an action bound to a class and a state (None: global).

        `call_log` says which of its calls that change no state the method-call log keeps:
        `all`, `last` (the last per item, counted: a device's heartbeat) or `none`."""
        check_key("action", action)
        code = _check_method_code(action if code is None else code)
        check_optional_text("label", label)
        check_optional_int("sequence", sequence, minimum=MIN_INT)
        check_bool("visible", visible)
        _check_call_log(call_log)
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            state_row = self._state(session, cls, state) if state is not None else None
            action_row = self._action(session, action)
            clash = session.execute(
                select(MethodRow.id).where(
                    MethodRow.class_id == cls.id,
                    MethodRow.code == code,
                    MethodRow.state_id.is_(None)
                    if state_row is None
                    else MethodRow.state_id == state_row.id,
                )
            ).first()
            if clash is not None:
                where = f"state {state!r}" if state else "the global methods"
                raise DuplicateCode("method", code, f"{where} of class {cls.code!r}")
            self._watch(session, cls)
            if sequence is None:
                sequence = session.execute(
                    select(func.count()).select_from(MethodRow).where(MethodRow.class_id == cls.id)
                ).scalar_one()
            row = MethodRow(
                class_id=cls.id,
                state_id=state_row.id if state_row else None,
                action_id=action_row.id,
                code=code,
                label=label or action_row.label,
                sequence=sequence,
                visible=visible,
                call_log=call_log,
            )
            session.add(row)
            session.flush()
            self._touch(session, cls)
            return MethodDef(
                row.id, cls.code or "", state, action, code, row.label, sequence, visible, call_log
            )

    def list_methods(self, class_code: str, account_id: int | None = None) -> list[MethodDef]:
        """Methods of a class (not inherited ones), by sequence."""
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            codes = _stage_codes(session, cls.id)
            rows = session.execute(
                select(MethodRow, ActionRow.code)
                .join(ActionRow, ActionRow.id == MethodRow.action_id)
                .where(MethodRow.class_id == cls.id)
                .order_by(MethodRow.sequence, MethodRow.id)
            ).all()
            return [
                MethodDef(
                    m.id,
                    cls.code or "",
                    codes.get(m.state_id) if m.state_id else None,
                    a,
                    m.code,
                    m.label,
                    m.sequence,
                    m.visible,
                    m.call_log,
                )
                for m, a in rows
            ]

    def edit_method(
        self,
        class_code: str,
        state: str | None,
        code: str,
        *,
        label: str | None = None,
        sequence: int | None = None,
        visible: bool | None = None,
        call_log: str | None = None,
        account_id: int | None = None,
    ) -> MethodDef:
        """Change a method's label, sequence, visibility or call log (as for `add_method`)."""
        check_optional_text("label", label)
        check_optional_int("sequence", sequence, minimum=MIN_INT)
        if visible is not None:
            check_bool("visible", visible)
        if call_log is not None:
            _check_call_log(call_log)
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            row = self._method(session, cls, state, code)
            if label is not None:
                row.label = label
            if sequence is not None:
                row.sequence = sequence
            if visible is not None:
                row.visible = visible
            if call_log is not None:
                row.call_log = call_log
            session.flush()
            self._touch(session, cls)
            action = session.get(ActionRow, row.action_id)
            assert action is not None
            return MethodDef(
                row.id,
                cls.code or "",
                state if row.state_id else None,
                action.code,
                row.code,
                row.label,
                row.sequence,
                row.visible,
                row.call_log,
            )

    def delete_method(
        self, class_code: str, state: str | None, code: str, account_id: int | None = None
    ) -> None:
        """Delete a method and its transitions."""
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            method_row = self._method(session, cls, state, code)
            self._watch(session, cls)
            session.delete(method_row)
            session.flush()
            self._touch(session, cls)

    # --- transitions ---------------------------------------------------------------------

    def add_transition(
        self,
        class_code: str,
        state: str | None,
        method: str,
        new_state: str,
        *,
        account_id: int | None = None,
    ) -> TransitionDef:
        """The seed's AddTransition(state, method, new state); one target per (state, method)."""
        if state is not None:
            check_key("state", state)
        check_key("method", method)
        check_key("state", new_state)
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            state_row = self._foreign_state(session, cls, state) if state is not None else None
            method_row = self._method(session, cls, state, method)
            target = self._foreign_state(session, cls, new_state)
            existing = session.execute(
                select(TransitionRow).where(
                    TransitionRow.method_id == method_row.id,
                    TransitionRow.state_id.is_(None)
                    if state_row is None
                    else TransitionRow.state_id == state_row.id,
                )
            ).scalar_one_or_none()
            if existing is not None:
                old = session.get(StageRow, existing.new_state_id)
                raise DuplicateTransition(state, method, state_code(old) if old else "?")
            self._watch(session, cls)
            row = TransitionRow(
                class_id=cls.id,
                state_id=state_row.id if state_row else None,
                method_id=method_row.id,
                new_state_id=target.id,
            )
            session.add(row)
            session.flush()
            self._touch(session, cls)
            return TransitionDef(row.id, cls.code or "", state, method, new_state)

    def _foreign_state(self, session: Session, cls: PipelineRow, code: str) -> StageRow:
        try:
            return self._state(session, cls, code)
        except UnknownDefinition:
            other = session.execute(
                select(StageRow, PipelineRow.code)
                .join(PipelineRow, PipelineRow.id == StageRow.flow_pipeline_id)
                .where(StageRow.code == code, StageRow.flow_pipeline_id != cls.id)
            ).first()
            if other is not None:
                raise ForeignReference("state", code, str(other[1]), cls.code or "?") from None
            raise

    def list_transitions(
        self, class_code: str, account_id: int | None = None
    ) -> list[TransitionDef]:
        """Transitions of a class."""
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            codes = _stage_codes(session, cls.id)
            rows = session.execute(
                select(TransitionRow, MethodRow.code)
                .join(MethodRow, MethodRow.id == TransitionRow.method_id)
                .where(TransitionRow.class_id == cls.id)
                .order_by(TransitionRow.id)
            ).all()
            return [
                TransitionDef(
                    t.id,
                    cls.code or "",
                    codes.get(t.state_id) if t.state_id else None,
                    m,
                    codes.get(t.new_state_id, "?"),
                )
                for t, m in rows
            ]

    def delete_transition(
        self, class_code: str, state: str | None, method: str, account_id: int | None = None
    ) -> None:
        """Delete the transition of `method` from `state` (None: the global one)."""
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            state_row = self._state(session, cls, state) if state is not None else None
            method_row = self._method(session, cls, state, method)
            row = session.execute(
                select(TransitionRow).where(
                    TransitionRow.method_id == method_row.id,
                    TransitionRow.state_id.is_(None)
                    if state_row is None
                    else TransitionRow.state_id == state_row.id,
                )
            ).scalar_one_or_none()
            if row is None:
                raise UnknownDefinition("transition", f"{state or '*'} -{method}->", cls.code or "")
            self._watch(session, cls)
            session.delete(row)
            session.flush()
            self._touch(session, cls)

    # --- events --------------------------------------------------------------------------

    def add_event(
        self,
        class_code: str,
        action: str,
        handler: str | None = None,
        *,
        parent: bool = False,
        label: str = "",
        sequence: int | None = None,
        enabled: bool = True,
        account_id: int | None = None,
    ) -> EventDef:
        """The seed's AddEvent: a named handler, or `parent=True` to splice the parent's chain."""
        check_bool("parent", parent)
        check_optional_text("handler", handler, max_length=MAX_CODE)
        check_key("action", action)
        check_text("label", label, empty=True)
        check_optional_int("sequence", sequence, minimum=MIN_INT)
        check_bool("enabled", enabled)
        if parent == (handler is not None):
            raise InvalidDefinition(
                "an event names a handler or splices the parent's chain (parent=True), not both",
                handler=handler,
            )
        if handler is not None:
            known = self._handler_names()
            if handler not in known:
                raise UnknownHandler(handler, list(known))
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            if parent and cls.parent_id is None:
                raise InvalidDefinition(
                    f"class {cls.code!r} has no parent whose chain could be spliced in",
                    class_code=cls.code,
                )
            action_row = self._action(session, action)
            if sequence is None:
                sequence = session.execute(
                    select(func.count())
                    .select_from(EventRow)
                    .where(EventRow.class_id == cls.id, EventRow.action_id == action_row.id)
                ).scalar_one()
            row = EventRow(
                class_id=cls.id,
                action_id=action_row.id,
                handler=handler,
                is_parent=parent,
                label=label or (handler or "parent"),
                sequence=sequence,
                enabled=enabled,
            )
            session.add(row)
            session.flush()
            self._touch(session, cls)
            return _event_def(cls, row, action)

    def list_events(self, class_code: str, account_id: int | None = None) -> list[EventDef]:
        """Event rows of a class by action and sequence."""
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            rows = session.execute(
                select(EventRow, ActionRow.code)
                .join(ActionRow, ActionRow.id == EventRow.action_id)
                .where(EventRow.class_id == cls.id)
                .order_by(ActionRow.code, EventRow.sequence, EventRow.id)
            ).all()
            return [_event_def(cls, e, a) for e, a in rows]

    def edit_event(
        self,
        event_id: int,
        *,
        sequence: int | None = None,
        enabled: bool | None = None,
        label: str | None = None,
        account_id: int | None = None,
    ) -> EventDef:
        """Reorder, enable or disable, or relabel an event row."""
        check_optional_int("sequence", sequence, minimum=MIN_INT)
        if enabled is not None:
            check_bool("enabled", enabled)
        if label is not None:
            check_text("label", label, empty=True)
        with self._tx() as session:
            row = _owned(session, EventRow, event_id, "event", account_id)
            if sequence is not None:
                row.sequence = sequence
            if enabled is not None:
                row.enabled = enabled
            if label is not None:
                row.label = label
            session.flush()
            cls = session.get(PipelineRow, row.class_id)
            action = session.get(ActionRow, row.action_id)
            assert cls is not None and action is not None
            self._touch(session, cls)
            return _event_def(cls, row, action.code)

    def delete_event(self, event_id: int, account_id: int | None = None) -> None:
        """Delete an event row."""
        with self._tx() as session:
            row = _owned(session, EventRow, event_id, "event", account_id)
            cls = session.get(PipelineRow, row.class_id)
            session.delete(row)
            session.flush()
            if cls is not None:
                self._touch(session, cls)

    # --- access rules --------------------------------------------------------------------

    def add_access_rule(
        self,
        class_code: str,
        *,
        subject: str,
        subject_kind: str = "user",
        permission: str = "execute",
        effect: str = "allow",
        method: str | None = None,
        account_id: int | None = None,
    ) -> AccessRuleDef:
        """Allow or deny a user (id) or group to `execute` or see (`visible`) a method or all."""
        for value, allowed, name in (
            (subject_kind, ("user", "group"), "subject_kind"),
            (permission, ("execute", "visible"), "permission"),
            (effect, ("allow", "deny"), "effect"),
        ):
            if value not in allowed:
                raise InvalidDefinition(
                    f"{name} must be one of {allowed}, not {value!r}", **{name: value}
                )
        check_text("subject", subject, max_length=MAX_CODE)
        if (
            subject_kind == "user"
            and subject != "*"
            and not (subject.isascii() and subject.isdigit())
        ):
            raise InvalidDefinition(
                f"a user rule's subject is a user id or '*' (every user), not {subject!r}; "
                "name a group with subject_kind='group'",
                subject=subject,
            )
        if method is not None:
            check_key("method", method)
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            method_row = None
            if method is not None:
                method_row = (
                    session.execute(
                        select(MethodRow).where(
                            MethodRow.class_id == cls.id, MethodRow.code == method
                        )
                    )
                    .scalars()
                    .first()
                )
                if method_row is None and cls.movement == Movement.EXPLICIT:
                    raise UnknownDefinition("method", method, f"class {cls.code!r}")
            row = AccessRuleRow(
                class_id=cls.id,
                method_id=method_row.id if method_row else None,
                method_code=method,
                subject_kind=subject_kind,
                subject=subject,
                permission=permission,
                effect=effect,
            )
            session.add(row)
            session.flush()
            self._touch(session, cls)
            return AccessRuleDef(
                row.id, cls.code or "", method, subject_kind, subject, permission, effect
            )

    def list_access_rules(
        self, class_code: str, account_id: int | None = None
    ) -> list[AccessRuleDef]:
        """Access rules of a class."""
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            rows = session.execute(
                select(AccessRuleRow)
                .where(AccessRuleRow.class_id == cls.id)
                .order_by(AccessRuleRow.id)
            ).scalars()
            return [
                AccessRuleDef(
                    r.id,
                    cls.code or "",
                    r.method_code,
                    r.subject_kind,
                    r.subject,
                    r.permission,
                    r.effect,
                )
                for r in rows
            ]

    def delete_access_rule(self, rule_id: int, account_id: int | None = None) -> None:
        """Delete an access rule."""
        with self._tx() as session:
            row = _owned(session, AccessRuleRow, rule_id, "access rule", account_id)
            cls = session.get(PipelineRow, row.class_id)
            session.delete(row)
            session.flush()
            if cls is not None:
                self._touch(session, cls)

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
        """The seed's DefaultTransition: the default lifecycle between the four default states."""
        with self._tx():
            return [
                self.add_transition(class_code, state, method, target, account_id=account_id)
                for state, method, target in DEFAULT_TRANSITIONS
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


OwnedRow = TypeVar("OwnedRow", EventRow, AccessRuleRow)


def _owned(
    session: Session, model: type[OwnedRow], row_id: object, kind: str, account_id: int | None
) -> OwnedRow:
    """A row of a class of the platform or of `account_id`, by id."""
    row = None
    if isinstance(row_id, int) and not isinstance(row_id, bool) and -(2**63) <= row_id < 2**63:
        row = session.get(model, row_id)
    if row is not None:
        owner = session.get(PipelineRow, row.class_id)
        if owner is None or owner.iam_account_id not in (None, account_id):
            row = None
    if row is None:
        raise UnknownDefinition(kind, row_id)
    return row


def _family(session: Session, class_id: int) -> list[int]:
    """A class and every class below it."""
    ids = [class_id]
    frontier = [class_id]
    while frontier:
        frontier = list(
            session.execute(
                select(PipelineRow.id).where(PipelineRow.parent_id.in_(frontier))
            ).scalars()
        )
        ids.extend(frontier)
    return ids


def _check_call_log(value: object) -> None:
    choices = tuple(c.value for c in CallLog)
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgument(
            f"call_log must be one of {', '.join(choices)}, not {value!r}", call_log=value
        )


def _check_method_code(code: object) -> str:
    checked = check_code("method", code)
    if checked in RESERVED_METHOD_CODES:
        raise InvalidDefinition(
            f"method code {checked!r} is reserved by the state machine; choose another code",
            kind="method",
            key=checked,
        )
    return checked


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
                f"class {parent.code!r} descends from {row.code!r}; "
                "a class cannot be its own ancestor",
                class_code=row.code,
            )
        cursor = session.get(PipelineRow, cursor.parent_id) if cursor.parent_id else None


def _stage_codes(session: Session, class_id: int) -> dict[int, str]:
    rows = session.execute(select(StageRow).where(StageRow.flow_pipeline_id == class_id)).scalars()
    return {r.id: state_code(r) for r in rows}


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


def _state_info(cls: PipelineRow, row: StageRow) -> StateInfo:
    return StateInfo(
        id=row.id,
        class_code=cls.code or f"pipeline_{cls.id}",
        code=state_code(row),
        label=row.name,
        state_type=row.state_type or ("disabled" if row.is_won or row.is_lost else "enabled"),
        position=row.position,
    )


def _event_def(cls: PipelineRow, row: EventRow, action: str) -> EventDef:
    return EventDef(
        row.id,
        cls.code or "",
        action,
        row.handler,
        row.is_parent,
        row.label,
        row.sequence,
        row.enabled,
    )


__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_TRANSITIONS",
    "AccessRuleDef",
    "ActionInfo",
    "ClassInfo",
    "Definitions",
    "EventDef",
    "MethodDef",
    "StateInfo",
    "TransitionDef",
]
