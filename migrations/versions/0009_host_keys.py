"""Objects keyed by the host's UUID or text key: `flow_items.object_key`.

An item placed with an integer key keeps it in `object_id`, as before, and has no
`object_key`. A UUID or text key goes into `object_key`, and `object_id` then holds a negative
digest of it (`flowkernel.keys`), so the unique constraint and the object index serve every
key and the seed's SQL is unchanged. Existing items all have integer keys and stay as they are.

Going down is refused while an item is keyed by a UUID or text: the previous schema cannot hold
its key. Drop or re-place those items first.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flow_items", sa.Column("object_key", sa.String(128), nullable=True))


def downgrade() -> None:
    keyed = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM flow_items WHERE object_key IS NOT NULL"))
        .scalar_one()
    )
    if keyed:
        raise RuntimeError(
            f"{keyed} item(s) are keyed by a UUID or text key, which revision 0008 cannot hold; "
            "drop them or place their objects again with integer keys, then downgrade"
        )
    op.drop_column("flow_items", "object_key")
