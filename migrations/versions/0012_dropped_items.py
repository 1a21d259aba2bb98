"""What a dropped item leaves behind for past boards: `flow_dropped_items`.

Dropping an item deletes its row; its history stays. The row's trigger now also keeps the
item's object, account, assignee and deletion mark in `flow_dropped_items`, so a board at a
past instant leaves the item out from its deletion on and shows its card while it was there.
Items dropped before this revision left nothing: they count until their drop, without a card.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_KEEP = (
    "INSERT INTO flow_dropped_items (flow_item_id, flow_pipeline_id, object_type, object_id, "
    "object_key, iam_account_id, assigned_iam_user_id, deleted_at, dropped_at) VALUES (OLD.id, "
    "OLD.flow_pipeline_id, OLD.object_type, OLD.object_id, OLD.object_key, OLD.iam_account_id, "
    "OLD.assigned_iam_user_id, OLD.deleted_at, {now})"
)
PG_FUNCTION = f"""CREATE OR REPLACE FUNCTION fk_item_history_close() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE flow_stage_history SET valid_to = statement_timestamp()
     WHERE flow_item_id = OLD.id AND valid_to IS NULL;
    {_KEEP.format(now="statement_timestamp()")};
    RETURN OLD;
END $$"""
PG_FUNCTION_BEFORE = """CREATE OR REPLACE FUNCTION fk_item_history_close() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE flow_stage_history SET valid_to = statement_timestamp()
     WHERE flow_item_id = OLD.id AND valid_to IS NULL;
    RETURN OLD;
END $$"""
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
SQLITE_TRIGGER = (
    "CREATE TRIGGER flow_items_history_close BEFORE DELETE ON flow_items BEGIN "
    f"UPDATE flow_stage_history SET valid_to = {_SQLITE_NOW} "
    f"WHERE flow_item_id = OLD.id AND valid_to IS NULL; {_KEEP.format(now=_SQLITE_NOW)}; END"
)
SQLITE_TRIGGER_BEFORE = (
    "CREATE TRIGGER flow_items_history_close BEFORE DELETE ON flow_items BEGIN "
    f"UPDATE flow_stage_history SET valid_to = {_SQLITE_NOW} "
    "WHERE flow_item_id = OLD.id AND valid_to IS NULL; END"
)


def upgrade() -> None:
    op.create_table(
        "flow_dropped_items",
        sa.Column("flow_item_id", sa.BigInteger(), primary_key=True),
        sa.Column("flow_pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("object_id", sa.BigInteger(), nullable=False),
        sa.Column("object_key", sa.String(128), nullable=True),
        sa.Column("iam_account_id", sa.BigInteger(), nullable=True),
        sa.Column("assigned_iam_user_id", sa.BigInteger(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dropped_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_flow_dropped_items_deleted", "flow_dropped_items", ["flow_pipeline_id", "deleted_at"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
    else:
        op.execute("DROP TRIGGER flow_items_history_close")
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION_BEFORE)
    else:
        op.execute("DROP TRIGGER flow_items_history_close")
        op.execute(SQLITE_TRIGGER_BEFORE)
    op.drop_index("ix_flow_dropped_items_deleted", table_name="flow_dropped_items")
    op.drop_table("flow_dropped_items")
