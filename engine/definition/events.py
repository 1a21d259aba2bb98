"""The authoring API for event rows: the seed's AddEvent, and their edits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from flowkernel.definition.authoring import Authoring
from flowkernel.errors import (
    InvalidDefinition,
    UnknownHandler,
)
from flowkernel.previews import preview
from flowkernel.store.schema import (
    ActionRow,
    EventRow,
    PipelineRow,
)
from flowkernel.validation import (
    MAX_CODE,
    MIN_INT,
    check_bool,
    check_key,
    check_optional_int,
    check_optional_text,
    check_text,
)


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


class EventAuthoring(Authoring):
    """Add, list, edit and delete the event rows of a class."""

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
                    f"class {preview(cls.code)} has no parent whose chain could be spliced in",
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
        with self._read() as session:
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
            row = self._owned(session, EventRow, event_id, "event", account_id)
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
            row = self._owned(session, EventRow, event_id, "event", account_id)
            cls = session.get(PipelineRow, row.class_id)
            session.delete(row)
            session.flush()
            if cls is not None:
                self._touch(session, cls)


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
