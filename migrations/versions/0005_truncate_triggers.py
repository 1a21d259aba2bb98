"""What triggers keep from `flow_items` and `flow_item_values` is emptied when they are truncated.

The per-stage totals (migration 0003) and the SLA due queue and breaches (migration 0004) are
kept by row triggers, which PostgreSQL's `TRUNCATE` does not fire: after `TRUNCATE flow_items
CASCADE` the board would still count the items and a scan would still find their breaches.
Statement triggers on `TRUNCATE` empty them: truncating `flow_items` empties the totals, the
value totals, the due queue and the breaches; truncating `flow_item_values` (alone or through
the cascade) empties the value totals.

SQLite has no `TRUNCATE`; its `DELETE` without `WHERE` runs the row triggers, since a table
with triggers is never emptied by its truncate optimisation. Nothing changes there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 07:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PG_UP = [
    """
CREATE FUNCTION fk_items_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM flow_stage_totals;
    DELETE FROM flow_stage_value_totals;
    DELETE FROM flow_sla_due;
    DELETE FROM flow_sla_breaches;
    RETURN NULL;
END $$
""",
    "CREATE TRIGGER flow_items_truncate AFTER TRUNCATE ON flow_items "
    "FOR EACH STATEMENT EXECUTE FUNCTION fk_items_truncated()",
    """
CREATE FUNCTION fk_item_values_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM flow_stage_value_totals;
    RETURN NULL;
END $$
""",
    "CREATE TRIGGER flow_item_values_truncate AFTER TRUNCATE ON flow_item_values "
    "FOR EACH STATEMENT EXECUTE FUNCTION fk_item_values_truncated()",
]

PG_DOWN = [
    "DROP TRIGGER flow_item_values_truncate ON flow_item_values",
    "DROP FUNCTION fk_item_values_truncated()",
    "DROP TRIGGER flow_items_truncate ON flow_items",
    "DROP FUNCTION fk_items_truncated()",
]


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for statement in PG_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for statement in PG_DOWN:
            op.execute(statement)
