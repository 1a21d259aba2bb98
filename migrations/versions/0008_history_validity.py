"""History rows carry the period their state held: `flow_stage_history.valid_to`.

A row's state held from its `moved_at` to its `valid_to`, empty while the state holds. A
trigger closes an item's open row when its next row is written (by the engine or by the seed's
own SQL), and another when the item is deleted; at most one row per item is open (a unique
partial index). "State of item X at T" reads `ix_flow_stage_history_item`; "items in state S at
T" reads `ix_flow_stage_history_pipeline_to`, which gains `moved_at` (one index more on every
move would cost each move its upkeep).

Existing rows get the moment of the item's next row. The last row of an item that is gone gets
the moment of its logged drop, else the last moment anything of it was recorded. Going down
drops the column, its indexes and the triggers.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 13:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_NEXT = """
UPDATE flow_stage_history SET valid_to = (
    SELECT n.moved_at FROM flow_stage_history AS n
     WHERE n.flow_item_id = flow_stage_history.flow_item_id
       AND (n.moved_at > flow_stage_history.moved_at
            OR (n.moved_at = flow_stage_history.moved_at AND n.id > flow_stage_history.id))
     ORDER BY n.moved_at, n.id LIMIT 1)
"""
_NEXT_PG = """
UPDATE flow_stage_history AS h SET valid_to = x.next_at
  FROM (SELECT id, lead(moved_at) OVER (PARTITION BY flow_item_id ORDER BY moved_at, id)
               AS next_at
          FROM flow_stage_history) AS x
 WHERE h.id = x.id AND x.next_at IS NOT NULL
"""
_GONE = """
UPDATE flow_stage_history SET valid_to = coalesce(
    (SELECT max(c.called_at) FROM fk_method_calls AS c
      WHERE c.flow_item_id = flow_stage_history.flow_item_id AND c.action_code = 'drop'),
    (SELECT max(c.called_at) FROM fk_method_calls AS c
      WHERE c.flow_item_id = flow_stage_history.flow_item_id
        AND c.called_at > flow_stage_history.moved_at),
    flow_stage_history.moved_at)
 WHERE valid_to IS NULL
   AND NOT EXISTS (SELECT 1 FROM flow_items AS i WHERE i.id = flow_stage_history.flow_item_id)
"""

PG_FUNCTIONS = [
    """CREATE FUNCTION fk_history_close() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE flow_stage_history SET valid_to = NEW.moved_at
     WHERE flow_item_id = NEW.flow_item_id AND valid_to IS NULL;
    RETURN NEW;
END $$""",
    """CREATE FUNCTION fk_item_history_close() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE flow_stage_history SET valid_to = statement_timestamp()
     WHERE flow_item_id = OLD.id AND valid_to IS NULL;
    RETURN OLD;
END $$""",
]
PG_TRIGGERS = [
    "CREATE TRIGGER flow_stage_history_close BEFORE INSERT ON flow_stage_history "
    "FOR EACH ROW EXECUTE FUNCTION fk_history_close()",
    "CREATE TRIGGER flow_items_history_close BEFORE DELETE ON flow_items "
    "FOR EACH ROW EXECUTE FUNCTION fk_item_history_close()",
]
SQLITE_TRIGGERS = [
    "CREATE TRIGGER flow_stage_history_close BEFORE INSERT ON flow_stage_history BEGIN "
    "UPDATE flow_stage_history SET valid_to = NEW.moved_at "
    "WHERE flow_item_id = NEW.flow_item_id AND valid_to IS NULL; END",
    "CREATE TRIGGER flow_items_history_close BEFORE DELETE ON flow_items BEGIN "
    "UPDATE flow_stage_history SET valid_to = strftime('%Y-%m-%d %H:%M:%f', 'now') "
    "WHERE flow_item_id = OLD.id AND valid_to IS NULL; END",
]


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("flow_stage_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True))
    op.execute(_NEXT_PG if postgresql else _NEXT)
    op.execute(_GONE)
    with op.batch_alter_table("flow_stage_history", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_stage_history_pipeline_to")
        batch_op.create_index(
            "ix_flow_stage_history_pipeline_to", ["flow_pipeline_id", "to_stage_id", "moved_at"]
        )
        batch_op.create_index(
            "ux_flow_stage_history_open",
            ["flow_item_id"],
            unique=True,
            postgresql_where=sa.text("valid_to IS NULL"),
            sqlite_where=sa.text("valid_to IS NULL"),
        )
    for statement in [*PG_FUNCTIONS, *PG_TRIGGERS] if postgresql else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute("DROP TRIGGER flow_stage_history_close" + (" ON flow_stage_history" * postgresql))
    op.execute("DROP TRIGGER flow_items_history_close" + (" ON flow_items" * postgresql))
    if postgresql:
        op.execute("DROP FUNCTION fk_history_close()")
        op.execute("DROP FUNCTION fk_item_history_close()")
    with op.batch_alter_table("flow_stage_history", schema=None) as batch_op:
        batch_op.drop_index("ux_flow_stage_history_open")
        batch_op.drop_index("ix_flow_stage_history_pipeline_to")
        batch_op.create_index(
            "ix_flow_stage_history_pipeline_to", ["flow_pipeline_id", "to_stage_id"]
        )
        batch_op.drop_column("valid_to")
