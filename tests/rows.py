"""Reading the database in tests: every row of every table, and an item's SLA bookkeeping."""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Label, select

from flowkernel import Flowkernel
from flowkernel.store.database import reader
from flowkernel.store.schema import Base
from flowkernel.store.tables import items, sla_breaches, sla_due


def every_row(fk: Flowkernel) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, by primary key, as last committed (it waits for no writer)."""
    with reader(fk.engine).connect() as conn:
        return {
            t.name: [
                dict(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns)).mappings()
            ]
            for t in Base.metadata.sorted_tables
        }


BREACHED_AT: Final[Label[Any]] = (
    select(sla_breaches.c.breached_at)
    .where(sla_breaches.c.flow_item_id == items.c.id)
    .scalar_subquery()
    .label("sla_breached_at")
)
"""When the item's SLA breach fired for its current stage entry (None: it has not), as a
column of a select from `flow_items`."""

QUEUED_AT: Final[Label[Any]] = (
    select(sla_due.c.due_at)
    .where(sla_due.c.flow_item_id == items.c.id)
    .scalar_subquery()
    .label("queued")
)
"""The item's due time on the SLA queue (None: not queued), as a column of a select from
`flow_items`."""
