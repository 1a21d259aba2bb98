"""What past boards read: the periods that ended in a time range, a pipeline's deleted items, and
each stage's item count at the end of every hour it changed.

`ix_flow_stage_history_ended` finds the history periods that ended in a time range (only closed
periods are in it); `ix_flow_items_deleted` holds deleted items only. `flow_stage_hour_counts`
starts empty: the first past board of a pipeline writes the hours it needs from the history,
up to `flow_stage_count_marks.counted_to`. Existing rows stay as they are.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_flow_stage_history_ended",
        "flow_stage_history",
        ["flow_pipeline_id", "valid_to"],
        postgresql_where=sa.text("valid_to IS NOT NULL"),
        sqlite_where=sa.text("valid_to IS NOT NULL"),
    )
    op.create_index(
        "ix_flow_items_deleted",
        "flow_items",
        ["flow_pipeline_id", "deleted_at"],
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
        sqlite_where=sa.text("deleted_at IS NOT NULL"),
    )
    op.create_table(
        "flow_stage_hour_counts",
        sa.Column(
            "flow_stage_id",
            sa.BigInteger(),
            sa.ForeignKey("flow_stages.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("account_key", sa.BigInteger(), primary_key=True),
        sa.Column("hour_end", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("item_count", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "flow_stage_count_marks",
        sa.Column(
            "flow_pipeline_id",
            sa.BigInteger(),
            sa.ForeignKey("flow_pipelines.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("counted_to", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("flow_stage_count_marks")
    op.drop_table("flow_stage_hour_counts")
    op.drop_index("ix_flow_items_deleted", table_name="flow_items")
    op.drop_index("ix_flow_stage_history_ended", table_name="flow_stage_history")
