"""Item rows: items, their SLA queue and breaches, history, method calls, values, stage totals,
watchers, the outbox, the event log, the inbox, idempotency keys and API tokens."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from flowkernel.store.schema.base import (
    FALSE,
    NOW,
    Base,
    Id,
    Json,
    UTCDateTime,
    created_column,
    deleted_column,
)

# --- items, values, history ----------------------------------------------------------------


class ItemRow(Base):
    """A polymorphic link placing (object_type, object_id) into one stage of a pipeline."""

    __tablename__ = "flow_items"
    __table_args__ = (
        # The seed's rule: one object occupies one stage of a pipeline.
        UniqueConstraint("flow_pipeline_id", "object_type", "object_id"),
        # The board: a stage's items in order, and the end of a stage for the next position.
        Index("ix_flow_items_stage_position", "flow_stage_id", "position"),
        # The pipelines an object is in (the seed's "pipelines of an object" query).
        Index("ix_flow_items_object", "object_type", "object_id"),
        # A pipeline's deleted items, for its past boards (live items are not in it).
        Index(
            "ix_flow_items_deleted",
            "flow_pipeline_id",
            "deleted_at",
            postgresql_where=text("deleted_at IS NOT NULL"),
            sqlite_where=text("deleted_at IS NOT NULL"),
        ),
        # Item ids are never reused on SQLite: history and the call log outlive dropped items.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flow_pipeline_id: Mapped[int] = mapped_column(ForeignKey("flow_pipelines.id"), nullable=False)
    flow_stage_id: Mapped[int] = mapped_column(ForeignKey("flow_stages.id"), nullable=False)
    object_type: Mapped[str] = mapped_column(Text(), nullable=False)
    object_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    # the host's UUID or text key (object_id then holds its digest); none for an integer key
    object_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    iam_account_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    iam_user_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    assigned_iam_user_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    position: Mapped[int] = mapped_column(Integer(), nullable=False, server_default=text("0"))
    checklist_state: Mapped[Any | None] = mapped_column(Json, nullable=True)
    last_stage_changed_at: Mapped[datetime] = created_column()
    sla_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    version: Mapped[int] = mapped_column(Integer(), nullable=False, server_default=text("1"))
    deleted_at: Mapped[datetime | None] = deleted_column()
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class SlaDueRow(Base):
    """An item whose SLA breach is still to fire for its current stage entry, and when it is
    due. Kept by triggers on `flow_items` (no foreign key: checking one would lock, and so
    write, the item's row); a scan claims a breach by deleting its row."""

    __tablename__ = "flow_sla_due"
    __table_args__ = (Index("ix_flow_sla_due_due_at", "due_at", "flow_item_id"),)

    flow_item_id: Mapped[int] = mapped_column(BigInteger(), primary_key=True)
    flow_pipeline_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    flow_stage_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class SlaBreachRow(Base):
    """An item whose SLA breach fired for its current stage entry, and when. Cleared by
    trigger when the item enters a stage again."""

    __tablename__ = "flow_sla_breaches"

    flow_item_id: Mapped[int] = mapped_column(BigInteger(), primary_key=True)
    breached_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class StageHistoryRow(Base):
    """Audit log of every stage (state) change, the first placement included: what moved the
    item (method, action, parameters), who (user, system) and the item's account, and the
    period its new state held, from `moved_at` to `valid_to` (empty while it holds; set by a
    trigger when the item's next row is written, or when the item is dropped).

    `flow_item_id` carries no foreign key so the log outlives a dropped item.
    """

    __tablename__ = "flow_stage_history"
    __table_args__ = (
        # An item's history, in order; its state at an instant.
        Index("ix_flow_stage_history_item", "flow_item_id", "moved_at"),
        # The funnel and the stage times of one pipeline; the items in a state at an instant.
        Index("ix_flow_stage_history_pipeline_to", "flow_pipeline_id", "to_stage_id", "moved_at"),
        # The periods that ended in a time range: the hourly counts of past boards.
        Index(
            "ix_flow_stage_history_ended",
            "flow_pipeline_id",
            "valid_to",
            postgresql_where=text("valid_to IS NOT NULL"),
            sqlite_where=text("valid_to IS NOT NULL"),
        ),
        # At most one open period per item: the row of its current state.
        Index(
            "ux_flow_stage_history_open",
            "flow_item_id",
            unique=True,
            postgresql_where=text("valid_to IS NULL"),
            sqlite_where=text("valid_to IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flow_item_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    flow_pipeline_id: Mapped[int] = mapped_column(ForeignKey("flow_pipelines.id"), nullable=False)
    from_stage_id: Mapped[int | None] = mapped_column(ForeignKey("flow_stages.id"), nullable=True)
    to_stage_id: Mapped[int] = mapped_column(ForeignKey("flow_stages.id"), nullable=False)
    moved_by_iam_user_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    moved_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, server_default=NOW)
    method_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    is_system: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    action_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    params: Mapped[Any | None] = mapped_column(Json, nullable=True)
    iam_account_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class MethodCallRow(Base):
    """An executed method that changed no state, for methods that keep every call (the
    default); a state change is in the history instead."""

    __tablename__ = "fk_method_calls"
    __table_args__ = (Index("ix_fk_method_calls_item", "flow_item_id", "called_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flow_item_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    flow_pipeline_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    method_code: Mapped[str] = mapped_column(String(128), nullable=False)
    action_code: Mapped[str] = mapped_column(String(64), nullable=False)
    from_stage_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    to_stage_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    iam_account_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    actor_iam_user_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    is_system: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    params: Mapped[Any | None] = mapped_column(Json, nullable=True)
    called_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, server_default=NOW)


class LastCallRow(Base):
    """The last call per item of a method that keeps only its last call (a device heartbeat),
    with how many calls it stands for."""

    __tablename__ = "fk_method_last_calls"

    flow_item_id: Mapped[int] = mapped_column(BigInteger(), primary_key=True)
    method_code: Mapped[str] = mapped_column(String(128), primary_key=True)
    flow_pipeline_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    action_code: Mapped[str] = mapped_column(String(64), nullable=False)
    from_stage_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    iam_account_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    actor_iam_user_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    is_system: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    params: Mapped[Any | None] = mapped_column(Json, nullable=True)
    called_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    call_count: Mapped[int] = mapped_column(BigInteger(), nullable=False, server_default=text("1"))


class ItemValueRow(Base):
    """EAV: one custom column value of one item, stored as text."""

    __tablename__ = "flow_item_values"
    __table_args__ = (UniqueConstraint("flow_item_id", "flow_column_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flow_item_id: Mapped[int] = mapped_column(
        ForeignKey("flow_items.id", ondelete="CASCADE"), nullable=False
    )
    flow_column_id: Mapped[int] = mapped_column(
        ForeignKey("flow_columns.id", ondelete="CASCADE"), nullable=False, index=True
    )
    value: Mapped[str | None] = mapped_column(Text(), nullable=True)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class StageTotalRow(Base):
    """Live items of a stage, per account and slot; kept by triggers (migration 0003).

    `account_key` is the items' account, -1 for items of none; `slot` is `item id % 16`, so
    concurrent moves into one stage update different rows. A stage's count is the sum of its
    rows (of the accounts in scope).
    """

    __tablename__ = "flow_stage_totals"

    flow_stage_id: Mapped[int] = mapped_column(
        BigInteger(), ForeignKey("flow_stages.id", ondelete="CASCADE"), primary_key=True
    )
    account_key: Mapped[int] = mapped_column(BigInteger(), primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger(), primary_key=True)
    item_count: Mapped[int] = mapped_column(BigInteger(), nullable=False)


class StageValueTotalRow(Base):
    """Count and sum of a number column's values over the live items of a stage, per account
    and slot as in `StageTotalRow`; kept by triggers (migration 0003)."""

    __tablename__ = "flow_stage_value_totals"

    flow_stage_id: Mapped[int] = mapped_column(
        BigInteger(), ForeignKey("flow_stages.id", ondelete="CASCADE"), primary_key=True
    )
    flow_column_id: Mapped[int] = mapped_column(
        BigInteger(),
        ForeignKey("flow_columns.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
    account_key: Mapped[int] = mapped_column(BigInteger(), primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger(), primary_key=True)
    value_count: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    value_sum: Mapped[Decimal] = mapped_column(Numeric(), nullable=False)


class StageHourCountRow(Base):
    """The number of items a stage held at the end of an hour, per account, from the history.

    Written for closed hours by the first past board that needs them (`flowkernel.runtime.past`),
    only for hours in which the count changed: a stage's count at an instant is its latest row
    at or before it plus the history's moves since. `account_key` is the items' account, -1 for
    items of none, -2 for all of them together.
    """

    __tablename__ = "flow_stage_hour_counts"

    flow_stage_id: Mapped[int] = mapped_column(
        BigInteger(), ForeignKey("flow_stages.id", ondelete="CASCADE"), primary_key=True
    )
    account_key: Mapped[int] = mapped_column(BigInteger(), primary_key=True)
    hour_end: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    item_count: Mapped[int] = mapped_column(BigInteger(), nullable=False)


class DroppedItemRow(Base):
    """What a dropped item leaves for past boards: its object, account, assignee and deletion
    mark, kept by the trigger that deletes its row (migration 0012)."""

    __tablename__ = "flow_dropped_items"
    # A pipeline's items deleted by an instant, for its past boards.
    __table_args__ = (Index("ix_flow_dropped_items_deleted", "flow_pipeline_id", "deleted_at"),)

    flow_item_id: Mapped[int] = mapped_column(BigInteger(), primary_key=True)
    flow_pipeline_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    object_type: Mapped[str] = mapped_column(Text(), nullable=False)
    object_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    object_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    iam_account_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    assigned_iam_user_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    dropped_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class StageCountMarkRow(Base):
    """How far a pipeline's `flow_stage_hour_counts` are written: every hour up to `counted_to`."""

    __tablename__ = "flow_stage_count_marks"

    flow_pipeline_id: Mapped[int] = mapped_column(
        BigInteger(), ForeignKey("flow_pipelines.id", ondelete="CASCADE"), primary_key=True
    )
    counted_to: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class WatcherRow(Base):
    """A user following an item."""

    __tablename__ = "flow_item_watchers"
    __table_args__ = (UniqueConstraint("flow_item_id", "iam_user_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flow_item_id: Mapped[int] = mapped_column(
        ForeignKey("flow_items.id", ondelete="CASCADE"), nullable=False
    )
    iam_user_id: Mapped[int] = mapped_column(BigInteger(), nullable=False, index=True)
    created_at: Mapped[datetime] = created_column()


# --- outgoing events and the inbox ----------------------------------------------------------


class OutboxRow(Base):
    """An outgoing event or watcher notification, written with the change that caused it."""

    __tablename__ = "fk_outbox"
    __table_args__ = (Index("ix_fk_outbox_pending", "status", "available_at", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    event_name: Mapped[str] = mapped_column(Text(), nullable=False)
    trigger: Mapped[str] = mapped_column(String(32), nullable=False)
    flow_pipeline_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    flow_item_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    flow_automation_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    iam_account_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    recipient_iam_user_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    payload: Mapped[Any] = mapped_column(Json, nullable=False)
    status: Mapped[str] = mapped_column(
        String(12), nullable=False, server_default=text("'pending'")
    )
    attempts: Mapped[int] = mapped_column(Integer(), nullable=False, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text(), nullable=True)
    available_at: Mapped[datetime] = created_column()
    created_at: Mapped[datetime] = created_column()
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class EventLogRow(Base):
    """Events delivered to the built-in event log plugin."""

    __tablename__ = "fk_event_log"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    event_name: Mapped[str] = mapped_column(Text(), nullable=False, index=True)
    trigger: Mapped[str] = mapped_column(String(32), nullable=False)
    flow_pipeline_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    flow_item_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    iam_account_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True, index=True)
    payload: Mapped[Any] = mapped_column(Json, nullable=False)
    logged_at: Mapped[datetime] = created_column()


class InboxRow(Base):
    """A watcher's notification, kept by the built-in inbox plugin."""

    __tablename__ = "fk_inbox"
    __table_args__ = (UniqueConstraint("event_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), nullable=False)
    iam_user_id: Mapped[int] = mapped_column(BigInteger(), nullable=False, index=True)
    iam_account_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    flow_item_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    trigger: Mapped[str] = mapped_column(String(32), nullable=False)
    message: Mapped[str] = mapped_column(Text(), nullable=False)
    payload: Mapped[Any] = mapped_column(Json, nullable=False)
    created_at: Mapped[datetime] = created_column()
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# --- reliability and integrations: idempotency keys, API tokens ----------------------------


class IdempotencyKeyRow(Base):
    """The first result of an execution made with an idempotency key, per actor scope."""

    __tablename__ = "fk_idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "idempotency_key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(255), nullable=False)
    flow_item_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    method_code: Mapped[str] = mapped_column(String(128), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    result: Mapped[Any] = mapped_column(Json, nullable=False)
    created_at: Mapped[datetime] = created_column()


class ApiTokenRow(Base):
    """An HTTP API token, stored as its SHA-256, bound to an account user or the system."""

    __tablename__ = "fk_api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    name: Mapped[str] = mapped_column(Text(), nullable=False)
    iam_account_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True, index=True)
    iam_user_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    groups: Mapped[Any] = mapped_column(Json, nullable=False)
    is_system: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    created_at: Mapped[datetime] = created_column()
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
