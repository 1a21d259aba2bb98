"""API tokens may expire: `fk_api_tokens.expires_at`, empty for a token that never does.

Existing tokens keep working as before (no expiry). Going down drops the column: tokens issued
with an expiry then never expire, so revoke those first where that matters.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fk_api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fk_api_tokens", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
