"""The SLA due queue: pending breaches in a table of their own, fired breaches in another.

`flow_sla_due` holds one row per item whose breach is still to fire: a live item in a stage
with an SLA whose breach has not fired since it entered the stage, with its due time.
`flow_sla_breaches` holds one row per item whose breach fired for its current stage entry,
with the moment it fired; it replaces `flow_items.sla_breached_at`.

A scan claims a breach by deleting its queue row and inserting its breach row, and leaves the
item's row alone. Claiming through `flow_items` rewrote 1,000 scattered item rows per 1,000
breaches, each update inserting into every index of the table because `sla_breached_at` was
in the predicate of the due index; a queue row's deletion touches no index at all.

Triggers on `flow_items` keep both tables for every writer, the LEO seed's raw SQL included: a
placement queues the item; a stage change (or a new `last_stage_changed_at`) clears its breach
and queues it again with the new due time; a soft delete takes it off the queue and a restore
puts it back unless its breach fired; a changed due time (a stage's `sla_days` edited) moves
its queue row, and a due time gone (the SLA removed, the stage made won or lost) clears the
breach too, so an item without a due time never holds one and a move out of it has nothing to
clear. Dropping the item drops both rows. Breaches of items without a due time are not carried
over from `sla_breached_at`.

Neither table has a foreign key to `flow_items`: checking one takes a share lock on the item's
row, which writes the item's page, the very write the queue saves a scan.

On PostgreSQL placements are queued once per statement (a bulk load of a million items is one
`INSERT ... SELECT`); updates run per row, only for rows whose due time, stage, stage entry or
deletion changed and which had or have a due time (the `WHEN` clause is evaluated without
calling the function), so moves of items without an SLA cost nothing more. The queue row is
written before the breach row is cleared, in separate statements: a mover whose item a scan
has just claimed waits for the scan's commit on the queue row, then clears the breach the scan
recorded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_sla_due",
        sa.Column("flow_item_id", sa.BigInteger(), nullable=False),
        sa.Column("flow_pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("flow_stage_id", sa.BigInteger(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("flow_item_id", name=op.f("pk_flow_sla_due")),
    )
    with op.batch_alter_table("flow_sla_due", schema=None) as batch_op:
        batch_op.create_index("ix_flow_sla_due_due_at", ["due_at", "flow_item_id"])
    op.create_table(
        "flow_sla_breaches",
        sa.Column("flow_item_id", sa.BigInteger(), nullable=False),
        sa.Column("breached_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("flow_item_id", name=op.f("pk_flow_sla_breaches")),
    )
    postgresql = op.get_context().dialect.name == "postgresql"
    op.execute(
        "INSERT INTO flow_sla_due (flow_item_id, flow_pipeline_id, flow_stage_id, due_at) "
        "SELECT id, flow_pipeline_id, flow_stage_id, sla_due_at FROM flow_items "
        "WHERE sla_due_at IS NOT NULL AND deleted_at IS NULL AND sla_breached_at IS NULL"
    )
    op.execute(
        "INSERT INTO flow_sla_breaches (flow_item_id, breached_at) "
        "SELECT id, sla_breached_at FROM flow_items "
        "WHERE sla_breached_at IS NOT NULL AND sla_due_at IS NOT NULL"
    )
    if postgresql:
        op.execute("DROP TRIGGER flow_items_sla_due ON flow_items")
        op.execute("DROP FUNCTION fk_item_sla_due()")
    else:
        op.execute("DROP TRIGGER flow_items_sla_due_update")
    op.drop_index("ix_flow_items_sla_due", table_name="flow_items")
    op.drop_column("flow_items", "sla_breached_at")
    if postgresql:
        for statement in PG_UP:
            op.execute(statement)
    else:
        for statement in SQLITE_UP:
            op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    if postgresql:
        for statement in PG_DOWN:
            op.execute(statement)
    else:
        for statement in SQLITE_DOWN:
            op.execute(statement)
    op.add_column(
        "flow_items", sa.Column("sla_breached_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE flow_items SET sla_breached_at = (SELECT b.breached_at FROM flow_sla_breaches b "
        "WHERE b.flow_item_id = flow_items.id) "
        "WHERE id IN (SELECT flow_item_id FROM flow_sla_breaches)"
    )
    op.create_index(
        "ix_flow_items_sla_due",
        "flow_items",
        ["sla_due_at"],
        postgresql_where=sa.text("sla_breached_at IS NULL AND deleted_at IS NULL"),
        sqlite_where=sa.text("sla_breached_at IS NULL AND deleted_at IS NULL"),
    )
    if postgresql:
        op.execute(PG_SLA_FUNCTION_0001)
        op.execute(PG_SLA_TRIGGER)
    else:
        op.execute(SQLITE_DUE_UPDATE_0001)
    with op.batch_alter_table("flow_sla_due", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_sla_due_due_at")
    op.drop_table("flow_sla_breaches")
    op.drop_table("flow_sla_due")


# --- PostgreSQL ------------------------------------------------------------------------------

# The due time of a row, as migration 0001 computes it: NULL in won and lost stages and in
# stages without `sla_days`.
PG_SLA_TRIGGER = (
    "CREATE TRIGGER flow_items_sla_due BEFORE INSERT OR UPDATE OF "
    "flow_stage_id, last_stage_changed_at ON flow_items "
    "FOR EACH ROW EXECUTE FUNCTION fk_item_sla_due()"
)

PG_SLA_FUNCTION = """
CREATE FUNCTION fk_item_sla_due() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    days integer;
BEGIN
    SELECT CASE WHEN is_won OR is_lost THEN NULL ELSE sla_days END INTO days
      FROM flow_stages WHERE id = NEW.flow_stage_id;
    NEW.sla_due_at := NEW.last_stage_changed_at + make_interval(days => days);
    RETURN NEW;
END $$
"""

# Migration 0001's function, which also cleared `sla_breached_at` on a new stage entry.
PG_SLA_FUNCTION_0001 = PG_SLA_FUNCTION.replace(
    "    RETURN NEW;",
    """    IF TG_OP = 'UPDATE' AND (NEW.flow_stage_id IS DISTINCT FROM OLD.flow_stage_id
        OR NEW.last_stage_changed_at IS DISTINCT FROM OLD.last_stage_changed_at) THEN
        NEW.sla_breached_at := NULL;
    END IF;
    RETURN NEW;""",
)

# After a change of due time, stage, stage entry or deletion: queue the item
# while its breach is pending, else take it off the queue; a new stage entry, or a due time
# gone, clears the breach (after the queue row, see the module's docstring).
PG_QUEUE_FUNCTION = """
CREATE FUNCTION fk_item_sla_queue() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entered boolean := NEW.flow_stage_id IS DISTINCT FROM OLD.flow_stage_id
        OR NEW.last_stage_changed_at IS DISTINCT FROM OLD.last_stage_changed_at;
BEGIN
    IF NEW.sla_due_at IS NOT NULL AND NEW.deleted_at IS NULL AND (entered OR NOT EXISTS (
        SELECT 1 FROM flow_sla_breaches WHERE flow_item_id = NEW.id
    )) THEN
        INSERT INTO flow_sla_due AS q (flow_item_id, flow_pipeline_id, flow_stage_id, due_at)
        VALUES (NEW.id, NEW.flow_pipeline_id, NEW.flow_stage_id, NEW.sla_due_at)
        ON CONFLICT (flow_item_id) DO UPDATE
           SET flow_pipeline_id = excluded.flow_pipeline_id,
               flow_stage_id = excluded.flow_stage_id,
               due_at = excluded.due_at;
    ELSE
        DELETE FROM flow_sla_due WHERE flow_item_id = NEW.id;
    END IF;
    IF entered OR NEW.sla_due_at IS NULL THEN
        DELETE FROM flow_sla_breaches WHERE flow_item_id = NEW.id;
    END IF;
    RETURN NULL;
END $$
"""

PG_QUEUE_INSERTED = """
CREATE FUNCTION fk_items_sla_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO flow_sla_due (flow_item_id, flow_pipeline_id, flow_stage_id, due_at)
    SELECT id, flow_pipeline_id, flow_stage_id, sla_due_at
      FROM new_rows
     WHERE sla_due_at IS NOT NULL AND deleted_at IS NULL
     ORDER BY id;
    RETURN NULL;
END $$
"""

PG_QUEUE_DELETED = """
CREATE FUNCTION fk_item_sla_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM flow_sla_due WHERE flow_item_id = OLD.id;
    DELETE FROM flow_sla_breaches WHERE flow_item_id = OLD.id;
    RETURN NULL;
END $$
"""

PG_UP = [
    PG_SLA_FUNCTION,
    PG_SLA_TRIGGER,
    PG_QUEUE_FUNCTION,
    PG_QUEUE_INSERTED,
    PG_QUEUE_DELETED,
    "CREATE TRIGGER flow_items_sla_queue_insert AFTER INSERT ON flow_items "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION fk_items_sla_queue()",
    "CREATE TRIGGER flow_items_sla_queue_delete AFTER DELETE ON flow_items FOR EACH ROW "
    "EXECUTE FUNCTION fk_item_sla_forget()",
    "CREATE TRIGGER flow_items_sla_queue_update AFTER UPDATE ON flow_items FOR EACH ROW "
    "WHEN ((OLD.sla_due_at IS NOT NULL OR NEW.sla_due_at IS NOT NULL) AND ("
    "NEW.sla_due_at IS DISTINCT FROM OLD.sla_due_at "
    "OR NEW.flow_stage_id IS DISTINCT FROM OLD.flow_stage_id "
    "OR NEW.last_stage_changed_at IS DISTINCT FROM OLD.last_stage_changed_at "
    "OR NEW.deleted_at IS DISTINCT FROM OLD.deleted_at "
    "OR NEW.flow_pipeline_id IS DISTINCT FROM OLD.flow_pipeline_id)) "
    "EXECUTE FUNCTION fk_item_sla_queue()",
]

PG_DOWN = [
    "DROP TRIGGER flow_items_sla_queue_update ON flow_items",
    "DROP TRIGGER flow_items_sla_queue_delete ON flow_items",
    "DROP TRIGGER flow_items_sla_queue_insert ON flow_items",
    "DROP FUNCTION fk_item_sla_queue()",
    "DROP FUNCTION fk_item_sla_forget()",
    "DROP FUNCTION fk_items_sla_queue()",
    "DROP TRIGGER flow_items_sla_due ON flow_items",
    "DROP FUNCTION fk_item_sla_due()",
]


# --- SQLite ------------------------------------------------------------------------------------

# The due time as migration 0001's triggers compute it.
SQLITE_DUE = """
UPDATE flow_items SET sla_due_at = (
    SELECT strftime('%Y-%m-%d %H:%M:%S', NEW.last_stage_changed_at, '+' || s.sla_days || ' days')
           || substr(NEW.last_stage_changed_at, 20)
      FROM flow_stages s
     WHERE s.id = NEW.flow_stage_id AND NOT s.is_won AND NOT s.is_lost
)
WHERE id = NEW.id;
"""

SQLITE_DUE_UPDATE_0001 = (
    "CREATE TRIGGER flow_items_sla_due_update AFTER UPDATE OF flow_stage_id, "
    "last_stage_changed_at ON flow_items BEGIN "
    + SQLITE_DUE.replace(
        ")\nWHERE",
        "), sla_breached_at = CASE WHEN NEW.flow_stage_id IS NOT OLD.flow_stage_id "
        "OR NEW.last_stage_changed_at IS NOT OLD.last_stage_changed_at "
        "THEN NULL ELSE NEW.sla_breached_at END\nWHERE",
    )
    + " END"
)

# A new stage entry clears the breach, then sets the due time, whose update resyncs the
# queue (the placement trigger of 0001 sets it too). The queue trigger reads the row as it is
# now, so the order in which SQLite runs the triggers of one statement does not matter.
SQLITE_UP = [
    "CREATE TRIGGER flow_items_sla_due_update AFTER UPDATE OF flow_stage_id, "
    "last_stage_changed_at ON flow_items BEGIN "
    "DELETE FROM flow_sla_breaches WHERE flow_item_id = NEW.id "
    "AND (NEW.flow_stage_id IS NOT OLD.flow_stage_id "
    "OR NEW.last_stage_changed_at IS NOT OLD.last_stage_changed_at); " + SQLITE_DUE + " END",
    "CREATE TRIGGER flow_items_sla_queue AFTER UPDATE OF sla_due_at, deleted_at, "
    "flow_pipeline_id ON flow_items BEGIN "
    "DELETE FROM flow_sla_due WHERE flow_item_id = NEW.id; "
    "DELETE FROM flow_sla_breaches WHERE flow_item_id = NEW.id "
    "AND (SELECT sla_due_at FROM flow_items WHERE id = NEW.id) IS NULL; "
    "INSERT INTO flow_sla_due (flow_item_id, flow_pipeline_id, flow_stage_id, due_at) "
    "SELECT id, flow_pipeline_id, flow_stage_id, sla_due_at FROM flow_items "
    "WHERE id = NEW.id AND sla_due_at IS NOT NULL AND deleted_at IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM flow_sla_breaches WHERE flow_item_id = NEW.id); END",
    "CREATE TRIGGER flow_items_sla_forget AFTER DELETE ON flow_items BEGIN "
    "DELETE FROM flow_sla_due WHERE flow_item_id = OLD.id; "
    "DELETE FROM flow_sla_breaches WHERE flow_item_id = OLD.id; END",
]

SQLITE_DOWN = [
    "DROP TRIGGER flow_items_sla_forget",
    "DROP TRIGGER flow_items_sla_queue",
    "DROP TRIGGER flow_items_sla_due_update",
]
