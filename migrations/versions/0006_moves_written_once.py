"""Each move written once: the history records what moved an item, the call log what did not.

A state change used to write a history row and a method-call row with the same facts. Now the
history row carries them all: the method and its action, the actor, the parameters and the
item's account (`action_code`, `params` and `iam_account_id` are new); the method-call log keeps
the executions that changed no state. The state changes already in the call log (placements
included) give their action, parameters and account to their history rows, matched by item,
method, target stage and moment, and leave the call log; rows without one (written by the
seed's SQL) take the account of their item.

A method chooses which of its calls that change no state are logged (`fk_methods.call_log`):
`all` (the default, as before), `last` (only the last call per item, in
`fk_method_last_calls`, with a count: a device's heartbeat) or `none`.

On SQLite a move no longer reads the item's number values to keep the stage sums: the trigger
that keeps the counts runs for every change of stage, account or deletion, and a second one
moves the item's number values between the sums only when it has some.

`flow_items` loses its index on `iam_account_id`, which no query reads: every read of items
goes by id, by stage (the board's index), by object (the object index) or by pipeline and
object (the unique constraint), and on PostgreSQL a move writes an entry into every index of
the table.

Going down, each history row written by a method gives its call-log row back, the last calls
join the call log, and the index returns.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# the call-log rows of state changes, matched to the history rows written with them
_MATCH = (
    "c.flow_item_id = flow_stage_history.flow_item_id "
    "AND c.method_code = flow_stage_history.method_code "
    "AND c.to_stage_id = flow_stage_history.to_stage_id "
    "AND c.called_at = flow_stage_history.moved_at"
)


SLOTS = 16
NO_ACCOUNT = -1
_CHANGED = (
    "OLD.flow_stage_id IS NOT NEW.flow_stage_id "
    "OR OLD.iam_account_id IS NOT NEW.iam_account_id "
    "OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)"
)
_UNCOUNT_OLD = (
    "UPDATE flow_stage_totals SET item_count = item_count - 1 "
    "WHERE OLD.deleted_at IS NULL AND flow_stage_id = OLD.flow_stage_id "
    f"AND account_key = coalesce(OLD.iam_account_id, {NO_ACCOUNT}) AND slot = OLD.id % {SLOTS};"
)
_COUNT_NEW = (
    "INSERT INTO flow_stage_totals (flow_stage_id, account_key, slot, item_count) "
    f"SELECT NEW.flow_stage_id, coalesce(NEW.iam_account_id, {NO_ACCOUNT}), NEW.id % {SLOTS}, 1 "
    "WHERE NEW.deleted_at IS NULL "
    "ON CONFLICT (flow_stage_id, account_key, slot) "
    "DO UPDATE SET item_count = item_count + excluded.item_count;"
)
_NUMBER = "CAST(NULLIF(v.value, '') AS NUMERIC)"


def _values(row: str, sign: str) -> str:
    """Add (`sign` '') or subtract ('-') the number values of item `row` to its stage's sums."""
    return (
        "INSERT INTO flow_stage_value_totals "
        "(flow_stage_id, flow_column_id, account_key, slot, value_count, value_sum) "
        f"SELECT {row}.flow_stage_id, v.flow_column_id, "
        f"coalesce({row}.iam_account_id, {NO_ACCOUNT}), {row}.id % {SLOTS}, "
        f"{sign}count(*), {sign}sum({_NUMBER}) "
        "FROM flow_item_values v JOIN flow_columns c ON c.id = v.flow_column_id "
        f"WHERE v.flow_item_id = {row}.id AND {row}.deleted_at IS NULL "
        f"AND c.field_type = 'number' AND {_NUMBER} IS NOT NULL "
        "GROUP BY v.flow_column_id "
        "ON CONFLICT (flow_stage_id, flow_column_id, account_key, slot) "
        "DO UPDATE SET value_count = value_count + excluded.value_count, "
        "value_sum = CASE WHEN value_count + excluded.value_count = 0 THEN 0 "
        "ELSE value_sum + excluded.value_sum END;"
    )


_HAS_NUMBERS = (
    "EXISTS (SELECT 1 FROM flow_item_values v JOIN flow_columns c ON c.id = v.flow_column_id "
    "WHERE v.flow_item_id = NEW.id AND c.field_type = 'number')"
)
SQLITE_TOTALS_0003 = (
    "CREATE TRIGGER flow_items_totals_update AFTER UPDATE OF flow_stage_id, iam_account_id, "
    f"deleted_at ON flow_items WHEN {_CHANGED} BEGIN "
    f"{_UNCOUNT_OLD} {_values('OLD', '-')} {_COUNT_NEW} {_values('NEW', '')} END"
)
SQLITE_TOTALS = (
    "CREATE TRIGGER flow_items_totals_update AFTER UPDATE OF flow_stage_id, iam_account_id, "
    f"deleted_at ON flow_items WHEN {_CHANGED} BEGIN {_UNCOUNT_OLD} {_COUNT_NEW} END",
    "CREATE TRIGGER flow_items_value_totals_update AFTER UPDATE OF flow_stage_id, "
    f"iam_account_id, deleted_at ON flow_items WHEN ({_CHANGED}) AND {_HAS_NUMBERS} BEGIN "
    f"{_values('OLD', '-')} {_values('NEW', '')} END",
)


def upgrade() -> None:
    op.add_column("flow_stage_history", sa.Column("action_code", sa.String(64), nullable=True))
    op.add_column("flow_stage_history", sa.Column("params", JSON, nullable=True))
    op.add_column("flow_stage_history", sa.Column("iam_account_id", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE flow_stage_history SET "
        f"action_code = (SELECT c.action_code FROM fk_method_calls c WHERE {_MATCH} "
        "ORDER BY c.id LIMIT 1), "
        f"params = (SELECT c.params FROM fk_method_calls c WHERE {_MATCH} "
        "ORDER BY c.id LIMIT 1), "
        f"iam_account_id = (SELECT c.iam_account_id FROM fk_method_calls c WHERE {_MATCH} "
        "ORDER BY c.id LIMIT 1) "
        f"WHERE EXISTS (SELECT 1 FROM fk_method_calls c WHERE {_MATCH})"
    )
    op.execute(
        "UPDATE flow_stage_history SET iam_account_id = (SELECT i.iam_account_id "
        "FROM flow_items i WHERE i.id = flow_stage_history.flow_item_id) "
        f"WHERE NOT EXISTS (SELECT 1 FROM fk_method_calls c WHERE {_MATCH})"
    )
    op.execute("DELETE FROM fk_method_calls WHERE to_stage_id IS NOT NULL")
    # SQLite takes a CHECK constraint in ADD COLUMN, so fk_methods (and its triggers) stay
    op.execute(
        "ALTER TABLE fk_methods ADD COLUMN call_log VARCHAR(8) DEFAULT 'all' NOT NULL "
        "CONSTRAINT ck_fk_methods_call_log CHECK (call_log IN ('all', 'last', 'none'))"
    )
    op.create_table(
        "fk_method_last_calls",
        sa.Column("flow_item_id", sa.BigInteger(), nullable=False),
        sa.Column("method_code", sa.String(128), nullable=False),
        sa.Column("flow_pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("action_code", sa.String(64), nullable=False),
        sa.Column("from_stage_id", sa.BigInteger(), nullable=True),
        sa.Column("iam_account_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_iam_user_id", sa.BigInteger(), nullable=True),
        sa.Column("is_system", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("params", JSON, nullable=True),
        sa.Column("called_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_count", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.PrimaryKeyConstraint(
            "flow_item_id", "method_code", name=op.f("pk_fk_method_last_calls")
        ),
    )
    op.drop_index("ix_flow_items_iam_account_id", table_name="flow_items")
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER flow_items_totals_update")
        for statement in SQLITE_TOTALS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER flow_items_value_totals_update")
        op.execute("DROP TRIGGER flow_items_totals_update")
        op.execute(SQLITE_TOTALS_0003)
    op.create_index("ix_flow_items_iam_account_id", "flow_items", ["iam_account_id"])
    op.execute(
        "INSERT INTO fk_method_calls (flow_item_id, flow_pipeline_id, iam_account_id, "
        "method_code, action_code, from_stage_id, to_stage_id, actor_iam_user_id, is_system, "
        "params, called_at) "
        "SELECT l.flow_item_id, l.flow_pipeline_id, l.iam_account_id, l.method_code, "
        "l.action_code, l.from_stage_id, NULL, l.actor_iam_user_id, l.is_system, l.params, "
        "l.called_at FROM fk_method_last_calls l ORDER BY l.called_at"
    )
    op.drop_table("fk_method_last_calls")
    op.drop_column("fk_methods", "call_log")
    op.execute(
        "INSERT INTO fk_method_calls (flow_item_id, flow_pipeline_id, iam_account_id, "
        "method_code, action_code, from_stage_id, to_stage_id, actor_iam_user_id, is_system, "
        "params, called_at) "
        "SELECT h.flow_item_id, h.flow_pipeline_id, h.iam_account_id, h.method_code, "
        "coalesce(h.action_code, h.method_code), h.from_stage_id, h.to_stage_id, "
        "h.moved_by_iam_user_id, h.is_system, h.params, h.moved_at "
        "FROM flow_stage_history h WHERE h.method_code IS NOT NULL ORDER BY h.id"
    )
    op.drop_column("flow_stage_history", "iam_account_id")
    op.drop_column("flow_stage_history", "params")
    op.drop_column("flow_stage_history", "action_code")
