"""Per-stage totals kept by triggers: item counts and number-column sums for the board.

`flow_stage_totals` holds the count of live (not soft-deleted) items per stage,
`flow_stage_value_totals` the count and sum of the values of each number column per stage. The
board reads them instead of counting a stage's items on every page. Triggers on `flow_items`,
`flow_item_values` and `flow_columns` keep them right for every writer, the LEO seed's raw SQL
included: placements, moves, soft deletes and restores, drops, account changes, value writes
and a column turned into (or out of) a number column.

Each total is split by the items' account (`account_key`: the account id, -1 for items of no
account), so a platform pipeline's board can show an account's users their own items only, and
over `SLOTS` slots by item id (`slot = id % 16`): concurrent moves into one stage update
different rows instead of queueing on one, and the board adds the slots up.

On PostgreSQL the triggers on `flow_items` inserts and updates run once per statement over
its transition tables, so a batch of moves updates each total row once (a statement that
changed one row of an item without number values, a single move, takes two one-row upserts
instead); a deletion runs per row before the row goes (its values are still there to
subtract). Within a statement total rows are taken in key order, so single moves and batches
do not deadlock on them; a transaction of several statements takes them statement by
statement. A value trigger locks the item row (`FOR SHARE`) before reading its stage, so a
move and a value write running at the same time cannot count the value in the stage the item
left. Value text that is not a decimal number is left out of the sums on PostgreSQL; SQLite
sums what `CAST(value AS NUMERIC)` makes of it, as its board query did.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SLOTS = 16
NO_ACCOUNT = -1


def upgrade() -> None:
    op.create_table(
        "flow_stage_totals",
        sa.Column("flow_stage_id", sa.BigInteger(), nullable=False),
        sa.Column("account_key", sa.BigInteger(), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("item_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow_stage_id"],
            ["flow_stages.id"],
            name=op.f("fk_flow_stage_totals_flow_stage_id_flow_stages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "flow_stage_id", "account_key", "slot", name=op.f("pk_flow_stage_totals")
        ),
    )
    op.create_table(
        "flow_stage_value_totals",
        sa.Column("flow_stage_id", sa.BigInteger(), nullable=False),
        sa.Column("flow_column_id", sa.BigInteger(), nullable=False),
        sa.Column("account_key", sa.BigInteger(), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("value_count", sa.BigInteger(), nullable=False),
        sa.Column("value_sum", sa.Numeric(), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow_stage_id"],
            ["flow_stages.id"],
            name=op.f("fk_flow_stage_value_totals_flow_stage_id_flow_stages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["flow_column_id"],
            ["flow_columns.id"],
            name=op.f("fk_flow_stage_value_totals_flow_column_id_flow_columns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "flow_stage_id",
            "flow_column_id",
            "account_key",
            "slot",
            name=op.f("pk_flow_stage_value_totals"),
        ),
    )
    with op.batch_alter_table("flow_stage_value_totals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flow_stage_value_totals_flow_column_id"), ["flow_column_id"]
        )
    postgresql = op.get_context().dialect.name == "postgresql"
    if postgresql:
        for statement in PG_FUNCTIONS:
            op.execute(statement)
    _backfill(postgresql)
    for statement in PG_TRIGGERS if postgresql else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    if postgresql:
        for table, name in PG_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name} ON {table}")
        for name in PG_FUNCTION_NAMES:
            op.execute(f"DROP FUNCTION {name}")
    else:
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("flow_stage_value_totals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_stage_value_totals_flow_column_id"))
    op.drop_table("flow_stage_value_totals")
    op.drop_table("flow_stage_totals")


def _backfill(postgresql: bool) -> None:
    """Totals of the rows already there (the triggers keep them from now on)."""
    number = "fk_number(v.value)" if postgresql else SQLITE_NUMBER.format(v="v.value")
    op.execute(
        "INSERT INTO flow_stage_totals (flow_stage_id, account_key, slot, item_count) "
        f"SELECT flow_stage_id, coalesce(iam_account_id, {NO_ACCOUNT}), id % {SLOTS}, count(*) "
        "FROM flow_items WHERE deleted_at IS NULL "
        f"GROUP BY flow_stage_id, coalesce(iam_account_id, {NO_ACCOUNT}), id % {SLOTS}"
    )
    op.execute(
        "INSERT INTO flow_stage_value_totals (flow_stage_id, flow_column_id, account_key, slot, "
        "value_count, value_sum) "
        f"SELECT i.flow_stage_id, v.flow_column_id, coalesce(i.iam_account_id, {NO_ACCOUNT}), "
        f"i.id % {SLOTS}, count(*), sum({number}) "
        "FROM flow_item_values v JOIN flow_items i ON i.id = v.flow_item_id "
        "JOIN flow_columns c ON c.id = v.flow_column_id "
        f"WHERE i.deleted_at IS NULL AND c.field_type = 'number' AND {number} IS NOT NULL "
        f"GROUP BY i.flow_stage_id, v.flow_column_id, coalesce(i.iam_account_id, {NO_ACCOUNT}), "
        f"i.id % {SLOTS}"
    )


# --- PostgreSQL ------------------------------------------------------------------------------

# Upserts adding a delta to a total row; `t` is the total, `excluded` the delta.
PG_ADD_COUNT = """
ON CONFLICT (flow_stage_id, account_key, slot)
DO UPDATE SET item_count = t.item_count + excluded.item_count"""

PG_ADD_VALUE = """
ON CONFLICT (flow_stage_id, flow_column_id, account_key, slot)
DO UPDATE SET value_count = t.value_count + excluded.value_count,
              value_sum = CASE WHEN t.value_count + excluded.value_count = 0 THEN 0
                               ELSE t.value_sum + excluded.value_sum END"""

PG_KEY = f"coalesce({{r}}.iam_account_id, {NO_ACCOUNT}), {{r}}.id % {SLOTS}"

PG_COUNT = (
    "INSERT INTO flow_stage_totals AS t (flow_stage_id, account_key, slot, item_count) "
    f"VALUES ({{r}}.flow_stage_id, {{r}}.account, {{r}}.id % {SLOTS}, {{n}})"
    + PG_ADD_COUNT.replace("\n", " ")
    + ";"
)
"""Add `n` to the count of record `r` (id, flow_stage_id, account) of the single-row path."""


PG_FUNCTIONS = [
    # The decimal number a value's text holds, else NULL (the sums leave such text out).
    r"""
CREATE FUNCTION fk_number(value text) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN value ~ '^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?\s*$'
                THEN value::numeric END
$$
""",
    f"""
CREATE FUNCTION fk_stage_totals_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO flow_stage_totals AS t (flow_stage_id, account_key, slot, item_count)
    SELECT n.flow_stage_id, {PG_KEY.format(r="n")}, count(*)
      FROM new_rows n
     WHERE n.deleted_at IS NULL
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3
    {PG_ADD_COUNT};
    RETURN NULL;
END $$
""",
    # The old rows count -1 and the new rows +1 per (item, stage, account): an item whose
    # stage, account and liveness stayed cancels out, so `moved` holds the items that left or
    # entered a total (none for most updates: the SLA claim, a reorder, an assignment), and
    # their number values move with them. No join of the two transition tables: the plan,
    # cached for the session, stays linear in the rows of any later statement.
    # A statement that changed one row of an item without number values (a single move, the
    # hot path) takes a shorter way: the two counts, in key order, one statement each.
    f"""
CREATE FUNCTION fk_stage_totals_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_item record;
    new_item record;
    old_first boolean;
BEGIN
    IF (SELECT count(*) FROM new_rows) = 1 THEN
        SELECT id, flow_stage_id, coalesce(iam_account_id, {NO_ACCOUNT}) AS account,
               deleted_at IS NULL AS live
          INTO old_item FROM old_rows;
        SELECT id, flow_stage_id, coalesce(iam_account_id, {NO_ACCOUNT}) AS account,
               deleted_at IS NULL AS live
          INTO new_item FROM new_rows;
        IF old_item.id = new_item.id AND NOT EXISTS (
            SELECT 1 FROM flow_item_values WHERE flow_item_id = old_item.id
        ) THEN
            IF old_item.live = new_item.live
               AND old_item.flow_stage_id = new_item.flow_stage_id
               AND old_item.account = new_item.account THEN
                RETURN NULL;
            END IF;
            old_first := old_item.live
                AND (NOT new_item.live
                     OR (old_item.flow_stage_id, old_item.account)
                        < (new_item.flow_stage_id, new_item.account));
            IF old_first THEN
                {PG_COUNT.format(r="old_item", n=-1)}
            END IF;
            IF new_item.live THEN
                {PG_COUNT.format(r="new_item", n=1)}
            END IF;
            IF old_item.live AND NOT old_first THEN
                {PG_COUNT.format(r="old_item", n=-1)}
            END IF;
            RETURN NULL;
        END IF;
    END IF;
    WITH moved AS (
        SELECT d.id, d.stage, d.account, sum(d.n) AS n
          FROM (SELECT o.id, o.flow_stage_id, coalesce(o.iam_account_id, {NO_ACCOUNT}), -1
                  FROM old_rows o WHERE o.deleted_at IS NULL
                UNION ALL
                SELECT n.id, n.flow_stage_id, coalesce(n.iam_account_id, {NO_ACCOUNT}), 1
                  FROM new_rows n WHERE n.deleted_at IS NULL) AS d(id, stage, account, n)
         GROUP BY d.id, d.stage, d.account
        HAVING sum(d.n) <> 0
    ), counted AS (
        INSERT INTO flow_stage_totals AS t (flow_stage_id, account_key, slot, item_count)
        SELECT m.stage, m.account, m.id % {SLOTS}, sum(m.n)
          FROM moved m
         GROUP BY 1, 2, 3
        HAVING sum(m.n) <> 0
         ORDER BY 1, 2, 3
        {PG_ADD_COUNT}
    )
    INSERT INTO flow_stage_value_totals AS t
           (flow_stage_id, flow_column_id, account_key, slot, value_count, value_sum)
    SELECT m.stage, v.flow_column_id, m.account, m.id % {SLOTS}, sum(m.n),
           sum(m.n * fk_number(v.value))
      FROM moved m
      JOIN flow_item_values v ON v.flow_item_id = m.id
      JOIN flow_columns c ON c.id = v.flow_column_id
     WHERE c.field_type = 'number' AND fk_number(v.value) IS NOT NULL
     GROUP BY 1, 2, 3, 4
    HAVING sum(m.n) <> 0 OR sum(m.n * fk_number(v.value)) <> 0
     ORDER BY 1, 2, 3, 4
    {PG_ADD_VALUE};
    RETURN NULL;
END $$
""",
    # Before the row goes: its values are still there (a drop cascades to them afterwards,
    # when the value trigger no longer finds the item).
    f"""
CREATE FUNCTION fk_stage_totals_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO flow_stage_totals AS t (flow_stage_id, account_key, slot, item_count)
    VALUES (OLD.flow_stage_id, coalesce(OLD.iam_account_id, {NO_ACCOUNT}), OLD.id % {SLOTS}, -1)
    {PG_ADD_COUNT};
    INSERT INTO flow_stage_value_totals AS t
           (flow_stage_id, flow_column_id, account_key, slot, value_count, value_sum)
    SELECT OLD.flow_stage_id, v.flow_column_id, coalesce(OLD.iam_account_id, {NO_ACCOUNT}),
           OLD.id % {SLOTS}, -count(*), -sum(fk_number(v.value))
      FROM flow_item_values v JOIN flow_columns c ON c.id = v.flow_column_id
     WHERE v.flow_item_id = OLD.id AND c.field_type = 'number'
       AND fk_number(v.value) IS NOT NULL
     GROUP BY v.flow_column_id
     ORDER BY v.flow_column_id
    {PG_ADD_VALUE};
    RETURN OLD;
END $$
""",
    # A value written, changed or removed: the item row is locked first (FOR SHARE), so a
    # concurrent move either sees this value or waits for it.
    f"""
CREATE FUNCTION fk_stage_totals_value() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    item record;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        SELECT i.id, i.flow_stage_id, i.iam_account_id INTO item
          FROM flow_items i
         WHERE i.id = OLD.flow_item_id AND i.deleted_at IS NULL
           FOR SHARE;
        IF FOUND AND fk_number(OLD.value) IS NOT NULL AND EXISTS (
            SELECT 1 FROM flow_columns WHERE id = OLD.flow_column_id AND field_type = 'number'
        ) THEN
            INSERT INTO flow_stage_value_totals AS t
                   (flow_stage_id, flow_column_id, account_key, slot, value_count, value_sum)
            VALUES (item.flow_stage_id, OLD.flow_column_id, {PG_KEY.format(r="item")}, -1,
                    -fk_number(OLD.value))
            {PG_ADD_VALUE};
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        SELECT i.id, i.flow_stage_id, i.iam_account_id INTO item
          FROM flow_items i
         WHERE i.id = NEW.flow_item_id AND i.deleted_at IS NULL
           FOR SHARE;
        IF FOUND AND fk_number(NEW.value) IS NOT NULL AND EXISTS (
            SELECT 1 FROM flow_columns WHERE id = NEW.flow_column_id AND field_type = 'number'
        ) THEN
            INSERT INTO flow_stage_value_totals AS t
                   (flow_stage_id, flow_column_id, account_key, slot, value_count, value_sum)
            VALUES (item.flow_stage_id, NEW.flow_column_id, {PG_KEY.format(r="item")}, 1,
                    fk_number(NEW.value))
            {PG_ADD_VALUE};
        END IF;
    END IF;
    RETURN NULL;
END $$
""",
    # A column turned into or out of a number column: its sums are recounted.
    f"""
CREATE FUNCTION fk_stage_totals_column() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM flow_stage_value_totals WHERE flow_column_id = NEW.id;
    IF NEW.field_type = 'number' THEN
        INSERT INTO flow_stage_value_totals
               (flow_stage_id, flow_column_id, account_key, slot, value_count, value_sum)
        SELECT i.flow_stage_id, v.flow_column_id, {PG_KEY.format(r="i")}, count(*),
               sum(fk_number(v.value))
          FROM flow_item_values v JOIN flow_items i ON i.id = v.flow_item_id
         WHERE v.flow_column_id = NEW.id AND i.deleted_at IS NULL
           AND fk_number(v.value) IS NOT NULL
         GROUP BY 1, 2, 3, 4;
    END IF;
    RETURN NULL;
END $$
""",
]

PG_FUNCTION_NAMES = [
    "fk_stage_totals_column()",
    "fk_stage_totals_value()",
    "fk_stage_totals_deleted()",
    "fk_stage_totals_updated()",
    "fk_stage_totals_inserted()",
    "fk_number(text)",
]

PG_TRIGGERS = [
    "CREATE TRIGGER flow_items_totals_insert AFTER INSERT ON flow_items "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION fk_stage_totals_inserted()",
    "CREATE TRIGGER flow_items_totals_update AFTER UPDATE ON flow_items "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION fk_stage_totals_updated()",
    "CREATE TRIGGER flow_items_totals_delete BEFORE DELETE ON flow_items "
    "FOR EACH ROW WHEN (OLD.deleted_at IS NULL) EXECUTE FUNCTION fk_stage_totals_deleted()",
    "CREATE TRIGGER flow_item_values_totals_insert AFTER INSERT ON flow_item_values "
    "FOR EACH ROW EXECUTE FUNCTION fk_stage_totals_value()",
    "CREATE TRIGGER flow_item_values_totals_update AFTER UPDATE ON flow_item_values "
    "FOR EACH ROW WHEN (OLD.value IS DISTINCT FROM NEW.value "
    "OR OLD.flow_item_id <> NEW.flow_item_id OR OLD.flow_column_id <> NEW.flow_column_id) "
    "EXECUTE FUNCTION fk_stage_totals_value()",
    "CREATE TRIGGER flow_item_values_totals_delete AFTER DELETE ON flow_item_values "
    "FOR EACH ROW EXECUTE FUNCTION fk_stage_totals_value()",
    "CREATE TRIGGER flow_columns_totals_type AFTER UPDATE OF field_type ON flow_columns "
    "FOR EACH ROW WHEN (OLD.field_type IS DISTINCT FROM NEW.field_type) "
    "EXECUTE FUNCTION fk_stage_totals_column()",
]

PG_TRIGGER_NAMES = [
    ("flow_columns", "flow_columns_totals_type"),
    ("flow_item_values", "flow_item_values_totals_delete"),
    ("flow_item_values", "flow_item_values_totals_update"),
    ("flow_item_values", "flow_item_values_totals_insert"),
    ("flow_items", "flow_items_totals_delete"),
    ("flow_items", "flow_items_totals_update"),
    ("flow_items", "flow_items_totals_insert"),
]

# --- SQLite ----------------------------------------------------------------------------------

SQLITE_NUMBER = "CAST(NULLIF({v}, '') AS NUMERIC)"
"""A value's number as SQLite's board query read it (NULL for NULL and empty text)."""

SQLITE_ADD_COUNT = """
ON CONFLICT (flow_stage_id, account_key, slot)
DO UPDATE SET item_count = item_count + excluded.item_count;"""

SQLITE_ADD_VALUE = """
ON CONFLICT (flow_stage_id, flow_column_id, account_key, slot)
DO UPDATE SET value_count = value_count + excluded.value_count,
              value_sum = CASE WHEN value_count + excluded.value_count = 0 THEN 0
                               ELSE value_sum + excluded.value_sum END;"""


def _sqlite_count(row: str, delta: int) -> str:
    """Add `delta` to the item count of `row`'s stage (OLD or NEW), if the row is live."""
    return (
        "INSERT INTO flow_stage_totals (flow_stage_id, account_key, slot, item_count) "
        f"SELECT {row}.flow_stage_id, coalesce({row}.iam_account_id, {NO_ACCOUNT}), "
        f"{row}.id % {SLOTS}, {delta} WHERE {row}.deleted_at IS NULL" + SQLITE_ADD_COUNT
    )


def _sqlite_uncount(row: str) -> str:
    """Take one from the item count of `row`'s stage (OLD), if the row was live: its total
    exists, a plain UPDATE is cheaper than an upsert."""
    return (
        "UPDATE flow_stage_totals SET item_count = item_count - 1 "
        f"WHERE {row}.deleted_at IS NULL AND flow_stage_id = {row}.flow_stage_id "
        f"AND account_key = coalesce({row}.iam_account_id, {NO_ACCOUNT}) "
        f"AND slot = {row}.id % {SLOTS};"
    )


def _sqlite_item_values(row: str, sign: str) -> str:
    """Add (`sign` '') or subtract ('-') all number values of item `row` to its stage's sums."""
    number = SQLITE_NUMBER.format(v="v.value")
    return (
        "INSERT INTO flow_stage_value_totals "
        "(flow_stage_id, flow_column_id, account_key, slot, value_count, value_sum) "
        f"SELECT {row}.flow_stage_id, v.flow_column_id, "
        f"coalesce({row}.iam_account_id, {NO_ACCOUNT}), {row}.id % {SLOTS}, "
        f"{sign}count(*), {sign}sum({number}) "
        "FROM flow_item_values v JOIN flow_columns c ON c.id = v.flow_column_id "
        f"WHERE v.flow_item_id = {row}.id AND {row}.deleted_at IS NULL "
        f"AND c.field_type = 'number' AND {number} IS NOT NULL "
        "GROUP BY v.flow_column_id" + SQLITE_ADD_VALUE
    )


def _sqlite_value(row: str, sign: str) -> str:
    """Add (`sign` '') or subtract ('-') value row `row` to its item's stage's sums."""
    number = SQLITE_NUMBER.format(v=f"{row}.value")
    return (
        "INSERT INTO flow_stage_value_totals "
        "(flow_stage_id, flow_column_id, account_key, slot, value_count, value_sum) "
        f"SELECT i.flow_stage_id, {row}.flow_column_id, "
        f"coalesce(i.iam_account_id, {NO_ACCOUNT}), i.id % {SLOTS}, {sign}1, {sign}{number} "
        f"FROM flow_items i JOIN flow_columns c ON c.id = {row}.flow_column_id "
        f"WHERE i.id = {row}.flow_item_id AND i.deleted_at IS NULL "
        f"AND c.field_type = 'number' AND {number} IS NOT NULL" + SQLITE_ADD_VALUE
    )


SQLITE_CHANGED = (
    "OLD.flow_stage_id IS NOT NEW.flow_stage_id "
    "OR OLD.iam_account_id IS NOT NEW.iam_account_id "
    "OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)"
)

SQLITE_TRIGGERS = [
    "CREATE TRIGGER flow_items_totals_insert AFTER INSERT ON flow_items "
    f"WHEN NEW.deleted_at IS NULL BEGIN {_sqlite_count('NEW', 1)} END",
    "CREATE TRIGGER flow_items_totals_update AFTER UPDATE OF flow_stage_id, iam_account_id, "
    f"deleted_at ON flow_items WHEN {SQLITE_CHANGED} BEGIN "
    f"{_sqlite_uncount('OLD')} {_sqlite_item_values('OLD', '-')} "
    f"{_sqlite_count('NEW', 1)} {_sqlite_item_values('NEW', '')} END",
    "CREATE TRIGGER flow_items_totals_delete BEFORE DELETE ON flow_items "
    f"WHEN OLD.deleted_at IS NULL BEGIN {_sqlite_uncount('OLD')} "
    f"{_sqlite_item_values('OLD', '-')} END",
    f"CREATE TRIGGER flow_item_values_totals_insert AFTER INSERT ON flow_item_values BEGIN "
    f"{_sqlite_value('NEW', '')} END",
    "CREATE TRIGGER flow_item_values_totals_update AFTER UPDATE OF value, flow_item_id, "
    "flow_column_id ON flow_item_values WHEN OLD.value IS NOT NEW.value "
    "OR OLD.flow_item_id <> NEW.flow_item_id OR OLD.flow_column_id <> NEW.flow_column_id "
    f"BEGIN {_sqlite_value('OLD', '-')} {_sqlite_value('NEW', '')} END",
    "CREATE TRIGGER flow_item_values_totals_delete AFTER DELETE ON flow_item_values BEGIN "
    f"{_sqlite_value('OLD', '-')} END",
    "CREATE TRIGGER flow_columns_totals_type AFTER UPDATE OF field_type ON flow_columns "
    "WHEN OLD.field_type IS NOT NEW.field_type BEGIN "
    "DELETE FROM flow_stage_value_totals WHERE flow_column_id = NEW.id; "
    "INSERT INTO flow_stage_value_totals "
    "(flow_stage_id, flow_column_id, account_key, slot, value_count, value_sum) "
    f"SELECT i.flow_stage_id, v.flow_column_id, coalesce(i.iam_account_id, {NO_ACCOUNT}), "
    f"i.id % {SLOTS}, count(*), sum({SQLITE_NUMBER.format(v='v.value')}) "
    "FROM flow_item_values v JOIN flow_items i ON i.id = v.flow_item_id "
    "WHERE v.flow_column_id = NEW.id AND NEW.field_type = 'number' "
    f"AND i.deleted_at IS NULL AND {SQLITE_NUMBER.format(v='v.value')} IS NOT NULL "
    f"GROUP BY i.flow_stage_id, coalesce(i.iam_account_id, {NO_ACCOUNT}), i.id % {SLOTS}; "
    "END",
]

SQLITE_TRIGGER_NAMES = [
    "flow_columns_totals_type",
    "flow_item_values_totals_delete",
    "flow_item_values_totals_update",
    "flow_item_values_totals_insert",
    "flow_items_totals_delete",
    "flow_items_totals_update",
    "flow_items_totals_insert",
]
