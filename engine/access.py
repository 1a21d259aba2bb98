"""Class-wide access rules: what a rule without a method says about a class and its items.

A rule that names a method governs that method (`CompiledClass.allowed`): `visible` lists it,
`execute` runs it; a hidden method needs an allow rule. A rule that names no method governs
every method of the class, and also the operations that are not methods:

- `execute` denied: the actor changes nothing of the class: it runs no method, writes no
  value, checklist mark, assignment, board position or watcher of its items, and changes
  nothing of the pipeline's definition.
- `visible` denied: the actor reads nothing of the class: its items, their history, values,
  checklist and watchers, explanations, the board, funnel and stage times, the pipeline's
  definition; lists leave the class out.

Deny wins over allow; without a deny rule everything but hidden methods is allowed. The system
actor is not subject to rules. These checks come after the account check: an actor of another
account is told the class or item does not exist, never that it is denied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from sqlalchemy import Connection, select

from flowkernel.actors import Actor
from flowkernel.compiler import AccessRule
from flowkernel.errors import AccessDenied
from flowkernel.tables import access_rules, pipelines

EXECUTE: Final = "execute"
VISIBLE: Final = "visible"


def class_denial(rules: Iterable[AccessRule], actor: Actor, permission: str) -> AccessRule | None:
    """The class-wide rule among `rules` that denies `actor` the `permission`, if any."""
    if actor.is_system:
        return None
    for rule in rules:
        if rule.method is None and rule.effect == "deny" and rule.matches(actor, "", permission):
            return rule
    return None


def check_class(rules: Iterable[AccessRule], actor: Actor, permission: str, name: str) -> None:
    """Refuse (`AccessDenied`) when a class-wide rule denies `actor` the `permission`."""
    rule = class_denial(rules, actor, permission)
    if rule is None:
        return
    doing = "change" if permission == EXECUTE else "see"
    raise AccessDenied(
        f"an access rule of {name} denies {rule.subject_kind} {rule.subject!r} the {permission} "
        f"permission: this actor may not {doing} its items or its definition; ask for an access "
        "rule that allows it",
        permission=permission,
        user_id=actor.user_id,
    )


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


__all__ = ["EXECUTE", "VISIBLE", "check_class", "class_denial", "class_rules", "hidden_classes"]
