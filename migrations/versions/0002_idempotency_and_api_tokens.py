"""Idempotency keys for executions and hashed API tokens for the HTTP service.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "fk_idempotency_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("flow_item_id", sa.BigInteger(), nullable=False),
        sa.Column("method_code", sa.String(length=128), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_idempotency_keys")),
        sa.UniqueConstraint(
            "scope", "idempotency_key", name=op.f("uq_fk_idempotency_keys_scope_idempotency_key")
        ),
    )
    op.create_table(
        "fk_api_tokens",
        sa.Column("id", ID, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("iam_account_id", sa.BigInteger(), nullable=True),
        sa.Column("iam_user_id", sa.BigInteger(), nullable=True),
        sa.Column("groups", JSON, nullable=False),
        sa.Column("is_system", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_fk_api_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_fk_api_tokens_iam_account_id"), "fk_api_tokens", ["iam_account_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_fk_api_tokens_iam_account_id"), table_name="fk_api_tokens")
    op.drop_table("fk_api_tokens")
    op.drop_table("fk_idempotency_keys")
