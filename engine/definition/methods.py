"""The authoring API for actions, methods and transitions: the seed's AddMethod and
AddTransition, the action catalogue, and their edits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flowkernel.definition.authoring import Authoring
from flowkernel.definition.codes import RESERVED_METHOD_CODES, state_code
from flowkernel.errors import (
    DefinitionInUse,
    DuplicateCode,
    DuplicateTransition,
    InvalidArgument,
    InvalidDefinition,
    UnknownDefinition,
)
from flowkernel.kinds import CallLog
from flowkernel.previews import preview
from flowkernel.store.schema import (
    ActionRow,
    EventRow,
    MethodRow,
    StageRow,
    TransitionRow,
)
from flowkernel.validation import (
    MAX_ACTION_CODE,
    MAX_TEXT,
    MIN_INT,
    check_bool,
    check_code,
    check_key,
    check_optional_int,
    check_optional_text,
)


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


class MethodAuthoring(Authoring):
    """Add, list, edit and delete actions, methods and transitions."""

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
        with self._read() as session:
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
                where = f"state {preview(state)}" if state else "the global methods"
                raise DuplicateCode("method", code, f"{where} of class {preview(cls.code)}")
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
        with self._read() as session:
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

    def list_transitions(
        self, class_code: str, account_id: int | None = None
    ) -> list[TransitionDef]:
        """Transitions of a class."""
        with self._read() as session:
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


def _check_call_log(value: object) -> None:
    choices = tuple(c.value for c in CallLog)
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgument(
            f"call_log must be one of {', '.join(choices)}, not {preview(value)}", call_log=value
        )


def _check_method_code(code: object) -> str:
    checked = check_code("method", code)
    if checked in RESERVED_METHOD_CODES:
        raise InvalidDefinition(
            f"method code {preview(checked)} is reserved by the state machine; choose another code",
            kind="method",
            key=checked,
        )
    return checked


def _stage_codes(session: Session, class_id: int) -> dict[int, str]:
    rows = session.execute(select(StageRow).where(StageRow.flow_pipeline_id == class_id)).scalars()
    return {r.id: state_code(r) for r in rows}
