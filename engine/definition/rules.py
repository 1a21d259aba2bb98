"""Class-wide access rules as stored, read for a class and its ancestors (`flowkernel.access`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select

from flowkernel.access import VISIBLE, AccessRule, class_denial
from flowkernel.actors import Actor
from flowkernel.store.tables import access_rules, pipelines


def class_rules(conn: Connection, class_id: int) -> tuple[AccessRule, ...]:
    """The class-wide rules of a class and of its ancestors, read from the database."""
    lineage: list[int] = []
    next_id: int | None = class_id
    while next_id is not None and next_id not in lineage:
        lineage.append(next_id)
        next_id = conn.execute(
            select(pipelines.c.parent_id).where(pipelines.c.id == next_id)
        ).scalar()
    return _rules(conn, lineage)


def hidden_classes(conn: Connection, class_ids: Sequence[int], actor: Actor) -> set[int]:
    """Of `class_ids`, those a class-wide rule hides from `actor` (for lists to leave out)."""
    if actor.is_system or not class_ids:
        return set()
    return {
        class_id
        for class_id in set(class_ids)
        if class_denial(class_rules(conn, class_id), actor, VISIBLE) is not None
    }


def _rules(conn: Connection, class_ids: Sequence[int]) -> tuple[AccessRule, ...]:
    rows = conn.execute(
        select(
            access_rules.c.subject_kind,
            access_rules.c.subject,
            access_rules.c.permission,
            access_rules.c.effect,
        )
        .where(access_rules.c.class_id.in_(list(class_ids)), access_rules.c.method_code.is_(None))
        .order_by(access_rules.c.id)
    )
    return tuple(
        AccessRule(
            method=None,
            subject_kind=r.subject_kind,
            subject=r.subject,
            permission=r.permission,
            effect=r.effect,
        )
        for r in rows
    )
