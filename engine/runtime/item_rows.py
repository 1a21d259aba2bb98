"""An item row loaded for one item operation, once the actor's reach is checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from flowkernel.access import check_class
from flowkernel.actors import Actor
from flowkernel.definition.rules import class_rules
from flowkernel.errors import (
    ItemDeleted,
    ItemNotFound,
)
from flowkernel.store.tables import items
from flowkernel.validation import check_id, check_item_id

ITEM_COLUMNS: Final = select(
    items.c.id,
    items.c.flow_pipeline_id,
    items.c.flow_stage_id,
    items.c.object_type,
    items.c.object_id,
    items.c.object_key,
    items.c.iam_account_id,
    items.c.assigned_iam_user_id,
    items.c.position,
    items.c.checklist_state,
    items.c.version,
    items.c.deleted_at,
    items.c.last_stage_changed_at,
)
"""The columns an item operation reads of its item."""


@dataclass(frozen=True, slots=True)
class LoadedItem:
    """An item row as loaded for one operation."""

    id: int
    flow_pipeline_id: int
    flow_stage_id: int
    object_type: str
    object_id: int
    object_key: str | None
    iam_account_id: int | None
    assigned_iam_user_id: int | None
    position: int
    checklist_state: Any
    version: int
    deleted_at: datetime | None
    last_stage_changed_at: datetime | None


def load_item(
    session: Session, item_id: int, actor: Actor, *, lock: bool, permission: str
) -> LoadedItem:
    """The item, if the actor reaches its account (else `ItemNotFound`) and no class-wide
    access rule denies the actor `permission` (else `AccessDenied`)."""
    check_item_id(item_id)
    stmt = ITEM_COLUMNS.where(items.c.id == item_id)
    if lock:  # SQLite leaves FOR UPDATE out: its transactions hold the write lock
        stmt = stmt.with_for_update()
    conn = session.connection()
    row = conn.execute(stmt).first()
    if row is None or not actor.reaches(row.iam_account_id):
        raise ItemNotFound(item_id)
    if not actor.is_system:
        rules = class_rules(conn, row.flow_pipeline_id)
        check_class(rules, actor, permission, f"pipeline {row.flow_pipeline_id}")
    return LoadedItem(**row._mapping)


def refuse_deleted(row: LoadedItem) -> None:
    """Refuse a write to a soft-deleted item (`ItemDeleted`)."""
    if row.deleted_at is not None:
        raise ItemDeleted(row.id)


def check_user(user_id: object) -> None:
    """Refuse a user id that is not a 64-bit integer id."""
    check_id("user_id", user_id)
