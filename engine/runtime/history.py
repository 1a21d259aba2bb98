"""An item's history: the one reader behind `fk.history`, `fk.state_at` and the seed's
history query (`fk.queries.item_history`), and the one check of who may read it.

History outlives a dropped item: its account and class are then those its last history row
recorded, so the same actors may read it as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, or_, select

from flowkernel.access import VISIBLE, check_class
from flowkernel.actors import Actor
from flowkernel.definition.rules import class_rules
from flowkernel.errors import ItemNotFound
from flowkernel.snapshots import HistoryEntry
from flowkernel.store.tables import history, items, stages
from flowkernel.validation import check_item_id


@dataclass(frozen=True, slots=True)
class Step:
    """One history row with the codes and names of the stages it joins."""

    id: int
    item_id: int
    from_stage_id: int | None
    from_code: str | None
    from_name: str | None
    to_stage_id: int
    to_code: str
    to_name: str
    method: str | None
    user_id: int | None
    is_system: bool
    moved_at: datetime
    valid_to: datetime | None

    def entry(self) -> HistoryEntry:
        """The step as `fk.history` gives it."""
        return HistoryEntry(
            id=self.id,
            item_id=self.item_id,
            from_state=self.from_code,
            to_state=self.to_code,
            method=self.method,
            user_id=self.user_id,
            is_system=self.is_system,
            moved_at=self.moved_at,
            valid_to=self.valid_to,
        )


def reach(conn: Connection, item_id: int, actor: Actor) -> int:
    """The class of an item the actor may read: `ItemNotFound` when the item (or, dropped,
    its last history row) is not in the actor's reach, `AccessDenied` when a class-wide rule
    hides its class."""
    check_item_id(item_id)
    row = conn.execute(
        select(items.c.iam_account_id, items.c.flow_pipeline_id).where(items.c.id == item_id)
    ).first()
    if row is None:
        row = conn.execute(
            select(history.c.iam_account_id, history.c.flow_pipeline_id)
            .where(history.c.flow_item_id == item_id)
            .order_by(history.c.id.desc())
            .limit(1)
        ).first()
    if row is None or not actor.reaches(row[0]):
        raise ItemNotFound(item_id)
    if not actor.is_system:
        check_class(class_rules(conn, row[1]), actor, VISIBLE, f"pipeline {row[1]}")
    return int(row[1])


def read(conn: Connection, item_id: int, actor: Actor) -> list[Step]:
    """The item's history, oldest first, once `reach` lets the actor read it."""
    reach(conn, item_id, actor)
    from_s = stages.alias("from_s")
    to_s = stages.alias("to_s")
    rows = conn.execute(
        select(
            history.c.id,
            history.c.from_stage_id,
            from_s.c.code,
            from_s.c.name,
            history.c.to_stage_id,
            to_s.c.code,
            to_s.c.name,
            history.c.method_code,
            history.c.moved_by_iam_user_id,
            history.c.is_system,
            history.c.moved_at,
            history.c.valid_to,
        )
        .select_from(
            history.outerjoin(from_s, from_s.c.id == history.c.from_stage_id).join(
                to_s, to_s.c.id == history.c.to_stage_id
            )
        )
        .where(history.c.flow_item_id == item_id)
        .order_by(history.c.moved_at, history.c.id)
    ).all()
    return [
        Step(
            id=r[0],
            item_id=item_id,
            from_stage_id=r[1],
            from_code=(r[2] or f"stage_{r[1]}") if r[1] is not None else None,
            from_name=r[3],
            to_stage_id=r[4],
            to_code=r[5] or f"stage_{r[4]}",
            to_name=r[6],
            method=r[7],
            user_id=r[8],
            is_system=r[9],
            moved_at=r[10],
            valid_to=r[11],
        )
        for r in rows
    ]


def state_at(conn: Connection, item_id: int, when: datetime, actor: Actor) -> str | None:
    """The state whose period holds `when` (None before the item was placed, or after it was
    dropped): one row found by the item's index."""
    reach(conn, item_id, actor)
    row = conn.execute(
        select(stages.c.code, history.c.to_stage_id)
        .join_from(history, stages, stages.c.id == history.c.to_stage_id)
        .where(
            history.c.flow_item_id == item_id,
            history.c.moved_at <= when,
            or_(history.c.valid_to.is_(None), history.c.valid_to > when),
        )
        .order_by(history.c.moved_at.desc(), history.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return str(row[0] or f"stage_{row[1]}")
