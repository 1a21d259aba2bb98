"""Initial schema: the seed's flow tables, the kernel tables, catalogue data, triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 22:01:40.250650
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "fk_actions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("is_standard", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_actions")),
        sa.UniqueConstraint("code", name=op.f("uq_fk_actions_code")),
    )
    op.create_table(
        "fk_event_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_name", sa.Text(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("flow_pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("flow_item_id", sa.BigInteger(), nullable=False),
        sa.Column("iam_account_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "logged_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_event_log")),
        sa.UniqueConstraint("event_id", name=op.f("uq_fk_event_log_event_id")),
    )
    with op.batch_alter_table("fk_event_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fk_event_log_event_name"), ["event_name"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_fk_event_log_iam_account_id"), ["iam_account_id"], unique=False
        )

    op.create_table(
        "fk_inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("iam_user_id", sa.BigInteger(), nullable=False),
        sa.Column("iam_account_id", sa.BigInteger(), nullable=True),
        sa.Column("flow_item_id", sa.BigInteger(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_inbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_fk_inbox_event_id")),
    )
    with op.batch_alter_table("fk_inbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fk_inbox_iam_user_id"), ["iam_user_id"], unique=False)

    op.create_table(
        "fk_method_calls",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("flow_item_id", sa.BigInteger(), nullable=False),
        sa.Column("flow_pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("method_code", sa.String(length=128), nullable=False),
        sa.Column("action_code", sa.String(length=64), nullable=False),
        sa.Column("from_stage_id", sa.BigInteger(), nullable=True),
        sa.Column("to_stage_id", sa.BigInteger(), nullable=True),
        sa.Column("iam_account_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_iam_user_id", sa.BigInteger(), nullable=True),
        sa.Column("is_system", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "called_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_method_calls")),
    )
    with op.batch_alter_table("fk_method_calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fk_method_calls_item", ["flow_item_id", "called_at"], unique=False
        )

    op.create_table(
        "fk_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("event_name", sa.Text(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("flow_pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("flow_item_id", sa.BigInteger(), nullable=False),
        sa.Column("flow_automation_id", sa.BigInteger(), nullable=True),
        sa.Column("iam_account_id", sa.BigInteger(), nullable=True),
        sa.Column("recipient_iam_user_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status", sa.String(length=12), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "available_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_fk_outbox_event_id")),
    )
    with op.batch_alter_table("fk_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fk_outbox_pending", ["status", "available_at", "id"], unique=False
        )

    op.create_table(
        "fk_state_types",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_state_types")),
        sa.UniqueConstraint("code", name=op.f("uq_fk_state_types_code")),
    )
    op.create_table(
        "flow_pipelines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("object_type", sa.Text(), nullable=True),
        sa.Column("iam_account_id", sa.BigInteger(), nullable=True),
        sa.Column("iam_user_id", sa.BigInteger(), nullable=True),
        sa.Column("is_template", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("is_system", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("code", sa.String(length=128), nullable=True),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("is_abstract", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "movement", sa.String(length=16), server_default=sa.text("'free'"), nullable=False
        ),
        sa.Column(
            "allow_skip_forward", sa.Boolean(), server_default=sa.text("true"), nullable=False
        ),
        sa.Column("allow_backward", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("template_id", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["flow_pipelines.id"],
            name=op.f("fk_flow_pipelines_parent_id_flow_pipelines"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_pipelines")),
    )
    with op.batch_alter_table("flow_pipelines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flow_pipelines_code"), ["code"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_flow_pipelines_iam_account_id"), ["iam_account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_flow_pipelines_parent_id"), ["parent_id"], unique=False
        )

    op.create_table(
        "fk_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("class_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "action_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("handler", sa.String(length=128), nullable=True),
        sa.Column("is_parent", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("label", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("sequence", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"], ["fk_actions.id"], name=op.f("fk_fk_events_action_id_fk_actions")
        ),
        sa.ForeignKeyConstraint(
            ["class_id"],
            ["flow_pipelines.id"],
            name=op.f("fk_fk_events_class_id_flow_pipelines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_events")),
    )
    with op.batch_alter_table("fk_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fk_events_class_id"), ["class_id"], unique=False)

    op.create_table(
        "flow_columns",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "flow_pipeline_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column(
            "field_type", sa.String(length=16), server_default=sa.text("'text'"), nullable=False
        ),
        sa.Column("is_required", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "options",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["flow_pipeline_id"],
            ["flow_pipelines.id"],
            name=op.f("fk_flow_columns_flow_pipeline_id_flow_pipelines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_columns")),
        sa.UniqueConstraint(
            "flow_pipeline_id", "name", name=op.f("uq_flow_columns_flow_pipeline_id_name")
        ),
    )
    op.create_table(
        "flow_stages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "flow_pipeline_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("code", sa.String(length=128), nullable=True),
        sa.Column("state_type", sa.String(length=16), nullable=True),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("color", sa.Text(), nullable=True),
        sa.Column("probability", sa.Integer(), nullable=True),
        sa.Column("sla_days", sa.Integer(), nullable=True),
        sa.Column("is_won", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("is_lost", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "checklist",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["flow_pipeline_id"],
            ["flow_pipelines.id"],
            name=op.f("fk_flow_stages_flow_pipeline_id_flow_pipelines"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["state_type"],
            ["fk_state_types.code"],
            name=op.f("fk_flow_stages_state_type_fk_state_types"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_stages")),
    )
    with op.batch_alter_table("flow_stages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flow_stages_flow_pipeline_id"), ["flow_pipeline_id"], unique=False
        )

    op.create_table(
        "fk_methods",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("class_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("state_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "action_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("code", sa.String(length=128), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("sequence", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("visible", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["action_id"], ["fk_actions.id"], name=op.f("fk_fk_methods_action_id_fk_actions")
        ),
        sa.ForeignKeyConstraint(
            ["class_id"],
            ["flow_pipelines.id"],
            name=op.f("fk_fk_methods_class_id_flow_pipelines"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["state_id"],
            ["flow_stages.id"],
            name=op.f("fk_fk_methods_state_id_flow_stages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_methods")),
    )
    with op.batch_alter_table("fk_methods", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fk_methods_class_id"), ["class_id"], unique=False)

    op.create_table(
        "flow_automations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "flow_pipeline_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "flow_stage_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("event_name", sa.Text(), nullable=False),
        sa.Column(
            "payload_template",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["flow_pipeline_id"],
            ["flow_pipelines.id"],
            name=op.f("fk_flow_automations_flow_pipeline_id_flow_pipelines"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["flow_stage_id"],
            ["flow_stages.id"],
            name=op.f("fk_flow_automations_flow_stage_id_flow_stages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_automations")),
    )
    with op.batch_alter_table("flow_automations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_flow_automations_pipeline", ["flow_pipeline_id", "trigger"], unique=False
        )

    op.create_table(
        "flow_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "flow_pipeline_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "flow_stage_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("object_id", sa.BigInteger(), nullable=False),
        sa.Column("iam_account_id", sa.BigInteger(), nullable=True),
        sa.Column("iam_user_id", sa.BigInteger(), nullable=True),
        sa.Column("assigned_iam_user_id", sa.BigInteger(), nullable=True),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "checklist_state",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "last_stage_changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("sla_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["flow_pipeline_id"],
            ["flow_pipelines.id"],
            name=op.f("fk_flow_items_flow_pipeline_id_flow_pipelines"),
        ),
        sa.ForeignKeyConstraint(
            ["flow_stage_id"],
            ["flow_stages.id"],
            name=op.f("fk_flow_items_flow_stage_id_flow_stages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_items")),
        sa.UniqueConstraint(
            "flow_pipeline_id",
            "object_type",
            "object_id",
            name=op.f("uq_flow_items_flow_pipeline_id_object_type_object_id"),
        ),
        # Item ids are never reused on SQLite: history and the call log outlive dropped items.
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("flow_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flow_items_iam_account_id"), ["iam_account_id"], unique=False
        )
        batch_op.create_index("ix_flow_items_object", ["object_type", "object_id"], unique=False)
        batch_op.create_index(
            "ix_flow_items_sla_due",
            ["sla_due_at"],
            unique=False,
            postgresql_where=sa.text("sla_breached_at IS NULL AND deleted_at IS NULL"),
            sqlite_where=sa.text("sla_breached_at IS NULL AND deleted_at IS NULL"),
        )
        batch_op.create_index(
            "ix_flow_items_stage_position", ["flow_stage_id", "position"], unique=False
        )

    op.create_table(
        "flow_stage_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("flow_item_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "flow_pipeline_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "from_stage_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "to_stage_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("moved_by_iam_user_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "moved_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("method_code", sa.String(length=128), nullable=True),
        sa.Column("is_system", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow_pipeline_id"],
            ["flow_pipelines.id"],
            name=op.f("fk_flow_stage_history_flow_pipeline_id_flow_pipelines"),
        ),
        sa.ForeignKeyConstraint(
            ["from_stage_id"],
            ["flow_stages.id"],
            name=op.f("fk_flow_stage_history_from_stage_id_flow_stages"),
        ),
        sa.ForeignKeyConstraint(
            ["to_stage_id"],
            ["flow_stages.id"],
            name=op.f("fk_flow_stage_history_to_stage_id_flow_stages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_stage_history")),
    )
    with op.batch_alter_table("flow_stage_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_flow_stage_history_item", ["flow_item_id", "moved_at"], unique=False
        )
        batch_op.create_index(
            "ix_flow_stage_history_pipeline_to", ["flow_pipeline_id", "to_stage_id"], unique=False
        )

    op.create_table(
        "flow_stage_moves",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "flow_pipeline_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "from_stage_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "to_stage_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["flow_pipeline_id"],
            ["flow_pipelines.id"],
            name=op.f("fk_flow_stage_moves_flow_pipeline_id_flow_pipelines"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["from_stage_id"],
            ["flow_stages.id"],
            name=op.f("fk_flow_stage_moves_from_stage_id_flow_stages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["to_stage_id"],
            ["flow_stages.id"],
            name=op.f("fk_flow_stage_moves_to_stage_id_flow_stages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_stage_moves")),
        sa.UniqueConstraint(
            "from_stage_id",
            "to_stage_id",
            name=op.f("uq_flow_stage_moves_from_stage_id_to_stage_id"),
        ),
    )
    with op.batch_alter_table("flow_stage_moves", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flow_stage_moves_flow_pipeline_id"), ["flow_pipeline_id"], unique=False
        )

    op.create_table(
        "flow_stage_required_columns",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "flow_stage_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "flow_column_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["flow_column_id"],
            ["flow_columns.id"],
            name=op.f("fk_flow_stage_required_columns_flow_column_id_flow_columns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["flow_stage_id"],
            ["flow_stages.id"],
            name=op.f("fk_flow_stage_required_columns_flow_stage_id_flow_stages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_stage_required_columns")),
        sa.UniqueConstraint(
            "flow_stage_id",
            "flow_column_id",
            name=op.f("uq_flow_stage_required_columns_flow_stage_id_flow_column_id"),
        ),
    )
    op.create_table(
        "fk_access_rules",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("class_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("method_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("method_code", sa.String(length=128), nullable=True),
        sa.Column("subject_kind", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("permission", sa.String(length=8), nullable=False),
        sa.Column("effect", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["class_id"],
            ["flow_pipelines.id"],
            name=op.f("fk_fk_access_rules_class_id_flow_pipelines"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["method_id"],
            ["fk_methods.id"],
            name=op.f("fk_fk_access_rules_method_id_fk_methods"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_access_rules")),
    )
    with op.batch_alter_table("fk_access_rules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fk_access_rules_class_id"), ["class_id"], unique=False)

    op.create_table(
        "fk_transitions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("class_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("state_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "method_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "new_state_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["class_id"],
            ["flow_pipelines.id"],
            name=op.f("fk_fk_transitions_class_id_flow_pipelines"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["method_id"],
            ["fk_methods.id"],
            name=op.f("fk_fk_transitions_method_id_fk_methods"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["new_state_id"],
            ["flow_stages.id"],
            name=op.f("fk_fk_transitions_new_state_id_flow_stages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["state_id"],
            ["flow_stages.id"],
            name=op.f("fk_fk_transitions_state_id_flow_stages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_transitions")),
        sa.UniqueConstraint(
            "state_id", "method_id", name=op.f("uq_fk_transitions_state_id_method_id")
        ),
    )
    with op.batch_alter_table("fk_transitions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fk_transitions_class_id"), ["class_id"], unique=False)

    op.create_table(
        "flow_item_values",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "flow_item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "flow_column_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["flow_column_id"],
            ["flow_columns.id"],
            name=op.f("fk_flow_item_values_flow_column_id_flow_columns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["flow_item_id"],
            ["flow_items.id"],
            name=op.f("fk_flow_item_values_flow_item_id_flow_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_item_values")),
        sa.UniqueConstraint(
            "flow_item_id",
            "flow_column_id",
            name=op.f("uq_flow_item_values_flow_item_id_flow_column_id"),
        ),
    )
    with op.batch_alter_table("flow_item_values", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flow_item_values_flow_column_id"), ["flow_column_id"], unique=False
        )

    op.create_table(
        "flow_item_watchers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "flow_item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("iam_user_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["flow_item_id"],
            ["flow_items.id"],
            name=op.f("fk_flow_item_watchers_flow_item_id_flow_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_item_watchers")),
        sa.UniqueConstraint(
            "flow_item_id",
            "iam_user_id",
            name=op.f("uq_flow_item_watchers_flow_item_id_iam_user_id"),
        ),
    )
    with op.batch_alter_table("flow_item_watchers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flow_item_watchers_iam_user_id"), ["iam_user_id"], unique=False
        )
    _seed_catalogue()
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()

    with op.batch_alter_table("flow_item_watchers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_item_watchers_iam_user_id"))

    op.drop_table("flow_item_watchers")
    with op.batch_alter_table("flow_item_values", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_item_values_flow_column_id"))

    op.drop_table("flow_item_values")
    with op.batch_alter_table("fk_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fk_transitions_class_id"))

    op.drop_table("fk_transitions")
    with op.batch_alter_table("fk_access_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fk_access_rules_class_id"))

    op.drop_table("fk_access_rules")
    op.drop_table("flow_stage_required_columns")
    with op.batch_alter_table("flow_stage_moves", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_stage_moves_flow_pipeline_id"))

    op.drop_table("flow_stage_moves")
    with op.batch_alter_table("flow_stage_history", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_stage_history_pipeline_to")
        batch_op.drop_index("ix_flow_stage_history_item")

    op.drop_table("flow_stage_history")
    with op.batch_alter_table("flow_items", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_items_stage_position")
        batch_op.drop_index(
            "ix_flow_items_sla_due",
            postgresql_where=sa.text("sla_breached_at IS NULL AND deleted_at IS NULL"),
            sqlite_where=sa.text("sla_breached_at IS NULL AND deleted_at IS NULL"),
        )
        batch_op.drop_index("ix_flow_items_object")
        batch_op.drop_index(batch_op.f("ix_flow_items_iam_account_id"))

    op.drop_table("flow_items")
    with op.batch_alter_table("flow_automations", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_automations_pipeline")

    op.drop_table("flow_automations")
    with op.batch_alter_table("fk_methods", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fk_methods_class_id"))

    op.drop_table("fk_methods")
    with op.batch_alter_table("flow_stages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_stages_flow_pipeline_id"))

    op.drop_table("flow_stages")
    op.drop_table("flow_columns")
    with op.batch_alter_table("fk_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fk_events_class_id"))

    op.drop_table("fk_events")
    with op.batch_alter_table("flow_pipelines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_pipelines_parent_id"))
        batch_op.drop_index(batch_op.f("ix_flow_pipelines_iam_account_id"))
        batch_op.drop_index(batch_op.f("ix_flow_pipelines_code"))

    op.drop_table("flow_pipelines")
    op.drop_table("fk_state_types")
    with op.batch_alter_table("fk_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_fk_outbox_pending")

    op.drop_table("fk_outbox")
    with op.batch_alter_table("fk_method_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_fk_method_calls_item")

    op.drop_table("fk_method_calls")
    with op.batch_alter_table("fk_inbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fk_inbox_iam_user_id"))

    op.drop_table("fk_inbox")
    with op.batch_alter_table("fk_event_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fk_event_log_iam_account_id"))
        batch_op.drop_index(batch_op.f("ix_fk_event_log_event_name"))

    op.drop_table("fk_event_log")
    op.drop_table("fk_actions")


STATE_TYPES = [
    (1, "created", "Created"),
    (2, "enabled", "Enabled"),
    (3, "disabled", "Disabled"),
    (4, "deleted", "Deleted"),
]

STANDARD_ACTIONS = [
    "create",
    "open",
    "edit",
    "save",
    "update",
    "enable",
    "disable",
    "delete",
    "restore",
    "drop",
    "move",
]

COMMON_ACTIONS = [
    "heartbeat",
    "available",
    "unavailable",
    "faulted",
    "submit",
    "confirm",
    "reconfirm",
    "execute",
    "complete",
    "fail",
    "cancel",
    "abort",
    "start",
    "stop",
    "pause",
    "resume",
    "approve",
    "reject",
    "send",
    "check",
    "close",
    "reopen",
    "assign",
    "sla_breach",
]


def _seed_catalogue() -> None:
    state_types = sa.table(
        "fk_state_types",
        sa.column("id", sa.Integer()),
        sa.column("code", sa.String()),
        sa.column("label", sa.Text()),
    )
    op.bulk_insert(state_types, [{"id": i, "code": c, "label": lbl} for i, c, lbl in STATE_TYPES])
    actions = sa.table(
        "fk_actions",
        sa.column("code", sa.String()),
        sa.column("label", sa.Text()),
        sa.column("is_standard", sa.Boolean()),
    )
    op.bulk_insert(
        actions,
        [
            {"code": code, "label": code.replace("_", " ").capitalize(), "is_standard": True}
            for code in STANDARD_ACTIONS
        ]
        + [
            {"code": code, "label": code.replace("_", " ").capitalize(), "is_standard": False}
            for code in COMMON_ACTIONS
        ],
    )


# Tables whose rows are part of a class definition, with the column naming the class.
DEFINITION_TABLES = [
    ("flow_stages", "flow_pipeline_id"),
    ("flow_columns", "flow_pipeline_id"),
    ("flow_automations", "flow_pipeline_id"),
    ("flow_stage_moves", "flow_pipeline_id"),
    ("flow_stage_required_columns", "flow_stage_id"),
    ("fk_methods", "class_id"),
    ("fk_transitions", "class_id"),
    ("fk_events", "class_id"),
    ("fk_access_rules", "class_id"),
]

PG_BUMP_FUNCTION = """
CREATE FUNCTION fk_bump_class_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
    class_id bigint := (changed ->> TG_ARGV[0])::bigint;
BEGIN
    IF TG_ARGV[0] = 'flow_stage_id' THEN
        SELECT flow_pipeline_id INTO class_id FROM flow_stages WHERE id = class_id;
    END IF;
    UPDATE flow_pipelines SET version = version + 1, updated_at = now() WHERE id = class_id;
    RETURN NULL;
END $$
"""

PG_SLA_FUNCTION = """
CREATE FUNCTION fk_item_sla_due() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    days integer;
BEGIN
    SELECT CASE WHEN is_won OR is_lost THEN NULL ELSE sla_days END INTO days
      FROM flow_stages WHERE id = NEW.flow_stage_id;
    NEW.sla_due_at := NEW.last_stage_changed_at + make_interval(days => days);
    IF TG_OP = 'UPDATE' AND (NEW.flow_stage_id IS DISTINCT FROM OLD.flow_stage_id
        OR NEW.last_stage_changed_at IS DISTINCT FROM OLD.last_stage_changed_at) THEN
        NEW.sla_breached_at := NULL;
    END IF;
    RETURN NEW;
END $$
"""

SQLITE_SLA_DUE = """
UPDATE flow_items SET sla_due_at = (
    SELECT strftime('%Y-%m-%d %H:%M:%S', NEW.last_stage_changed_at, '+' || s.sla_days || ' days')
           || substr(NEW.last_stage_changed_at, 20)
      FROM flow_stages s
     WHERE s.id = NEW.flow_stage_id AND NOT s.is_won AND NOT s.is_lost
){reset}
WHERE id = NEW.id;
"""


def _create_triggers() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(PG_BUMP_FUNCTION)
        for table, column in DEFINITION_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_bump_class_version "
                f"AFTER INSERT OR UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION fk_bump_class_version('{column}')"
            )
        op.execute(PG_SLA_FUNCTION)
        op.execute(
            "CREATE TRIGGER flow_items_sla_due BEFORE INSERT OR UPDATE OF "
            "flow_stage_id, last_stage_changed_at ON flow_items "
            "FOR EACH ROW EXECUTE FUNCTION fk_item_sla_due()"
        )
        return
    for table, column in DEFINITION_TABLES:
        for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            if column == "flow_stage_id":
                target = f"(SELECT flow_pipeline_id FROM flow_stages WHERE id = {row}.{column})"
            else:
                target = f"{row}.{column}"
            op.execute(
                f"CREATE TRIGGER {table}_bump_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN UPDATE flow_pipelines SET version = version + 1 WHERE id = {target}; END"
            )
    op.execute(
        "CREATE TRIGGER flow_items_sla_due_insert AFTER INSERT ON flow_items BEGIN "
        + SQLITE_SLA_DUE.format(reset="")
        + " END"
    )
    op.execute(
        "CREATE TRIGGER flow_items_sla_due_update AFTER UPDATE OF flow_stage_id, "
        "last_stage_changed_at ON flow_items BEGIN "
        + SQLITE_SLA_DUE.format(
            reset=", sla_breached_at = CASE WHEN NEW.flow_stage_id IS NOT OLD.flow_stage_id "
            "OR NEW.last_stage_changed_at IS NOT OLD.last_stage_changed_at "
            "THEN NULL ELSE NEW.sla_breached_at END"
        )
        + " END"
    )


def _drop_triggers() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER flow_items_sla_due ON flow_items")
        op.execute("DROP FUNCTION fk_item_sla_due()")
        for table, _column in DEFINITION_TABLES:
            op.execute(f"DROP TRIGGER {table}_bump_class_version ON {table}")
        op.execute("DROP FUNCTION fk_bump_class_version()")
        return
    op.execute("DROP TRIGGER flow_items_sla_due_insert")
    op.execute("DROP TRIGGER flow_items_sla_due_update")
    for table, _column in DEFINITION_TABLES:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER {table}_bump_{event}")
