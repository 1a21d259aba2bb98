"""The authoring API for states: the seed's AddState, and their edits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flowkernel.definition.authoring import Authoring
from flowkernel.definition.codes import state_code
from flowkernel.errors import (
    DefinitionInUse,
    DuplicateCode,
    UnknownDefinition,
)
from flowkernel.kinds import STATE_TYPES
from flowkernel.previews import preview
from flowkernel.store.schema import (
    ItemRow,
    PipelineRow,
    StageHistoryRow,
    StageRow,
)
from flowkernel.validation import (
    MAX_STATE_CODE,
    MIN_INT,
    check_code,
    check_optional_int,
    check_optional_text,
    check_text,
)


@dataclass(frozen=True, slots=True)
class StateInfo:
    """A state of a class."""

    id: int
    class_code: str
    code: str
    label: str
    state_type: str
    position: int


class StateAuthoring(Authoring):
    """Add, list, edit and delete the states of a class."""

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
                raise DuplicateCode("state", code, f"class {preview(cls.code)}")
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
        with self._read() as session:
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
        state_type: str | None = None,
        account_id: int | None = None,
    ) -> StateInfo:
        """Rename, relabel or reposition a state, or change the type of one no item is in and
        the history does not name."""
        if new_code is not None:
            check_code("state", new_code, max_length=MAX_STATE_CODE)
        check_optional_text("label", label)
        check_optional_int("position", position, minimum=MIN_INT)
        if state_type is not None and state_type not in STATE_TYPES:
            raise UnknownDefinition("state type", state_type, "the four fixed types", STATE_TYPES)
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            row = self._state(session, cls, code)
            if position is not None or state_type is not None:
                self._watch(session, cls)
            if state_type is not None and state_type != row.state_type:
                _refuse_used(session, row, code)
                row.state_type = state_type
            if new_code is not None and new_code != code:
                try:
                    self._state(session, cls, new_code)
                except UnknownDefinition:
                    row.code = new_code
                else:
                    raise DuplicateCode("state", new_code, f"class {preview(cls.code)}")
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
            _refuse_used(session, row, code)
            self._watch(session, cls)
            session.delete(row)
            session.flush()
            self._touch(session, cls)


def _refuse_used(session: Session, row: StageRow, code: str) -> None:
    """`DefinitionInUse` while items are in the state or its history names it."""
    users = state_users(session, row.id)
    if users is not None:
        raise DefinitionInUse("state", code, users)


def state_users(session: Session, state_id: int) -> str | None:
    """What still uses a state (its items, else the history rows naming it), or None."""
    count = session.execute(
        select(func.count()).select_from(ItemRow).where(ItemRow.flow_stage_id == state_id)
    ).scalar_one()
    if count:
        return f"{count} item(s)"
    moves = session.execute(
        select(func.count())
        .select_from(StageHistoryRow)
        .where(
            (StageHistoryRow.from_stage_id == state_id) | (StageHistoryRow.to_stage_id == state_id)
        )
    ).scalar_one()
    return f"{moves} history row(s)" if moves else None


def _state_info(cls: PipelineRow, row: StageRow) -> StateInfo:
    return StateInfo(
        id=row.id,
        class_code=cls.code or f"pipeline_{cls.id}",
        code=state_code(row),
        label=row.name,
        state_type=row.state_type or ("disabled" if row.is_won or row.is_lost else "enabled"),
        position=row.position,
    )
