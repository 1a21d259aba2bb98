"""Definition rows: the kernel's catalogue, classes (pipelines) and states (stages), methods,
transitions, events, access rules, and the LEO flow's columns, requirements and automations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from flowkernel.store.schema.base import (
    FALSE,
    TRUE,
    Base,
    Id,
    Json,
    created_column,
    deleted_column,
)

# --- kernel catalogue --------------------------------------------------------------------


class StateTypeRow(Base):
    """The four fixed state types: created, enabled, disabled, deleted."""

    __tablename__ = "fk_state_types"

    id: Mapped[int] = mapped_column(SmallInteger(), primary_key=True, autoincrement=False)
    code: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    label: Mapped[str] = mapped_column(Text(), nullable=False)


class ActionRow(Base):
    """The global catalogue of verbs methods bind to."""

    __tablename__ = "fk_actions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    label: Mapped[str] = mapped_column(Text(), nullable=False)
    description: Mapped[str | None] = mapped_column(Text(), nullable=True)
    is_standard: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    created_at: Mapped[datetime] = created_column()


# --- classes and states (the seed's pipelines and stages) --------------------------------


class PipelineRow(Base):
    """A pipeline, which is also the persisted class."""

    __tablename__ = "flow_pipelines"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(Text(), nullable=False)
    description: Mapped[str | None] = mapped_column(Text(), nullable=True)
    object_type: Mapped[str | None] = mapped_column(Text(), nullable=True)
    iam_account_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True, index=True)
    iam_user_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    is_template: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    is_system: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    code: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("flow_pipelines.id"), nullable=True, index=True
    )
    is_abstract: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    movement: Mapped[str] = mapped_column(String(16), nullable=False, server_default=text("'free'"))
    allow_skip_forward: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=TRUE)
    allow_backward: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=TRUE)
    template_id: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    version: Mapped[int] = mapped_column(Integer(), nullable=False, server_default=text("1"))
    deleted_at: Mapped[datetime | None] = deleted_column()
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class StageRow(Base):
    """A stage, which is also the persisted state."""

    __tablename__ = "flow_stages"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flow_pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("flow_pipelines.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(Text(), nullable=False)
    code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    state_type: Mapped[str | None] = mapped_column(ForeignKey("fk_state_types.code"), nullable=True)
    position: Mapped[int] = mapped_column(Integer(), nullable=False, server_default=text("0"))
    color: Mapped[str | None] = mapped_column(Text(), nullable=True)
    probability: Mapped[int | None] = mapped_column(Integer(), nullable=True)
    sla_days: Mapped[int | None] = mapped_column(Integer(), nullable=True)
    is_won: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    is_lost: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    checklist: Mapped[Any | None] = mapped_column(Json, nullable=True)
    deleted_at: Mapped[datetime | None] = deleted_column()
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class StageMoveRow(Base):
    """An allowed move of a pipeline that restricts movement."""

    __tablename__ = "flow_stage_moves"
    __table_args__ = (UniqueConstraint("from_stage_id", "to_stage_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flow_pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("flow_pipelines.id", ondelete="CASCADE"), nullable=False, index=True
    )
    from_stage_id: Mapped[int] = mapped_column(
        ForeignKey("flow_stages.id", ondelete="CASCADE"), nullable=False
    )
    to_stage_id: Mapped[int] = mapped_column(
        ForeignKey("flow_stages.id", ondelete="CASCADE"), nullable=False
    )


# --- kernel definitions --------------------------------------------------------------------


class MethodRow(Base):
    """An action bound to a class and a state (NULL state: global)."""

    __tablename__ = "fk_methods"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    class_id: Mapped[int] = mapped_column(
        ForeignKey("flow_pipelines.id", ondelete="CASCADE"), nullable=False, index=True
    )
    state_id: Mapped[int | None] = mapped_column(
        ForeignKey("flow_stages.id", ondelete="CASCADE"), nullable=True
    )
    action_id: Mapped[int] = mapped_column(ForeignKey("fk_actions.id"), nullable=False)
    code: Mapped[str] = mapped_column(String(128), nullable=False)
    label: Mapped[str] = mapped_column(Text(), nullable=False)
    sequence: Mapped[int] = mapped_column(Integer(), nullable=False, server_default=text("0"))
    visible: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=TRUE)
    # Which calls that change no state are logged: all, the last per item, or none.
    call_log: Mapped[str] = mapped_column(String(8), nullable=False, server_default=text("'all'"))
    created_at: Mapped[datetime] = created_column()

    __table_args__ = (CheckConstraint("call_log IN ('all', 'last', 'none')", name="call_log"),)


class TransitionRow(Base):
    """When in `state_id` (NULL: any) and `method_id` runs, move to `new_state_id`."""

    __tablename__ = "fk_transitions"
    __table_args__ = (UniqueConstraint("state_id", "method_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    class_id: Mapped[int] = mapped_column(
        ForeignKey("flow_pipelines.id", ondelete="CASCADE"), nullable=False, index=True
    )
    state_id: Mapped[int | None] = mapped_column(
        ForeignKey("flow_stages.id", ondelete="CASCADE"), nullable=True
    )
    method_id: Mapped[int] = mapped_column(
        ForeignKey("fk_methods.id", ondelete="CASCADE"), nullable=False
    )
    new_state_id: Mapped[int] = mapped_column(
        ForeignKey("flow_stages.id", ondelete="CASCADE"), nullable=False
    )


class EventRow(Base):
    """One handler (or a splice of the parent's chain) in a class's chain for an action."""

    __tablename__ = "fk_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    class_id: Mapped[int] = mapped_column(
        ForeignKey("flow_pipelines.id", ondelete="CASCADE"), nullable=False, index=True
    )
    action_id: Mapped[int] = mapped_column(ForeignKey("fk_actions.id"), nullable=False)
    handler: Mapped[str | None] = mapped_column(String(128), nullable=True)
    is_parent: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    label: Mapped[str] = mapped_column(Text(), nullable=False, server_default=text("''"))
    sequence: Mapped[int] = mapped_column(Integer(), nullable=False, server_default=text("0"))
    enabled: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=TRUE)


class AccessRuleRow(Base):
    """Allow or deny a user or group to execute or see a class's methods."""

    __tablename__ = "fk_access_rules"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    class_id: Mapped[int] = mapped_column(
        ForeignKey("flow_pipelines.id", ondelete="CASCADE"), nullable=False, index=True
    )
    method_id: Mapped[int | None] = mapped_column(
        ForeignKey("fk_methods.id", ondelete="CASCADE"), nullable=True
    )
    method_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    subject_kind: Mapped[str] = mapped_column(String(8), nullable=False)
    subject: Mapped[str] = mapped_column(String(128), nullable=False)
    permission: Mapped[str] = mapped_column(String(8), nullable=False)
    effect: Mapped[str] = mapped_column(String(8), nullable=False)


class ColumnRow(Base):
    """A typed custom field of a pipeline."""

    __tablename__ = "flow_columns"
    __table_args__ = (UniqueConstraint("flow_pipeline_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flow_pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("flow_pipelines.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(Text(), nullable=False)
    label: Mapped[str] = mapped_column(Text(), nullable=False)
    field_type: Mapped[str] = mapped_column(
        String(16), nullable=False, server_default=text("'text'")
    )
    is_required: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=FALSE)
    position: Mapped[int] = mapped_column(Integer(), nullable=False, server_default=text("0"))
    options: Mapped[Any | None] = mapped_column(Json, nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=TRUE)
    deleted_at: Mapped[datetime | None] = deleted_column()
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class StageRequiredColumnRow(Base):
    """A column that must hold a value before an item enters the stage."""

    __tablename__ = "flow_stage_required_columns"
    __table_args__ = (UniqueConstraint("flow_stage_id", "flow_column_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flow_stage_id: Mapped[int] = mapped_column(
        ForeignKey("flow_stages.id", ondelete="CASCADE"), nullable=False
    )
    flow_column_id: Mapped[int] = mapped_column(
        ForeignKey("flow_columns.id", ondelete="CASCADE"), nullable=False
    )
    created_at: Mapped[datetime] = created_column()


class AutomationRow(Base):
    """A rule firing a named event when a pipeline transition occurs."""

    __tablename__ = "flow_automations"
    __table_args__ = (Index("ix_flow_automations_pipeline", "flow_pipeline_id", "trigger"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flow_pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("flow_pipelines.id", ondelete="CASCADE"), nullable=False
    )
    flow_stage_id: Mapped[int | None] = mapped_column(
        ForeignKey("flow_stages.id", ondelete="CASCADE"), nullable=True
    )
    name: Mapped[str | None] = mapped_column(Text(), nullable=True)
    trigger: Mapped[str] = mapped_column(String(32), nullable=False)
    event_name: Mapped[str] = mapped_column(Text(), nullable=False)
    payload_template: Mapped[Any | None] = mapped_column(Json, nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean(), nullable=False, server_default=TRUE)
    deleted_at: Mapped[datetime | None] = deleted_column()
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()
