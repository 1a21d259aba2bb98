"""The base of the authoring API: one transaction per call, lookups, and the guard of whole-class
rules that every write keeps.

Every write is validated before anything is stored, and each call is one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.definition.codes import state_code
from flowkernel.definition.guard import Guard, Problems
from flowkernel.errors import (
    ForeignReference,
    InvalidArgument,
    UnknownDefinition,
)
from flowkernel.previews import preview
from flowkernel.snapshots import DefinitionProblem
from flowkernel.store.database import reading
from flowkernel.store.schema import (
    AccessRuleRow,
    ActionRow,
    EventRow,
    MethodRow,
    PipelineRow,
    StageRow,
)
from flowkernel.validation import (
    check_key,
    check_optional_id,
)


class Authoring:
    """What every part of the authoring API shares: sessions, transactions, lookups, the guard."""

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
    def _read(self) -> Iterator[Session]:
        """A transaction that only reads (no write lock on SQLite); inside `transaction`, that
        transaction, so a read sees the block's writes."""
        current: Session | None = getattr(self._local, "session", None)
        if current is not None:
            yield current
            return
        with reading(self._sessions) as session:
            yield session

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
            guard.watch(session, family(session, cls.id))

    def _added_state(self, row: StageRow) -> None:
        guard: Guard | None = self._local.guard
        if guard is not None:
            guard.added_state(row.id)

    def problems(
        self, class_code: str | int, account_id: int | None = None
    ) -> list[DefinitionProblem]:
        """The whole-class rules a class (by code or id) breaks, empty when it keeps them all:
        where its items start, states no transition reaches, active states with no way out."""
        with self._read() as session:
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
            raise InvalidArgument(
                f"a class is named by its code or id, not {preview(code)}", key=code
            )
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
        raise UnknownDefinition(
            "state", code, f"class {preview(cls.code)}", [state_code(r) for r in rows]
        )

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
        scope = f"class {preview(cls.code)}" + (
            f" state {preview(state)}" if state else " (global)"
        )
        raise UnknownDefinition("method", code, scope)

    @staticmethod
    def _touch(session: Session, cls: PipelineRow) -> None:
        """Bump the version of a class and of every class below it."""
        session.execute(
            update(PipelineRow)
            .where(PipelineRow.id.in_(family(session, cls.id)))
            .values(version=PipelineRow.version + 1, updated_at=func.now())
        )

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

    @staticmethod
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


OwnedRow = TypeVar("OwnedRow", EventRow, AccessRuleRow)


def family(session: Session, class_id: int) -> list[int]:
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
