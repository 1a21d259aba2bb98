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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from flowkernel.actors import Actor
from flowkernel.errors import AccessDenied
from flowkernel.previews import preview

EXECUTE: Final = "execute"
VISIBLE: Final = "visible"


@dataclass(frozen=True, slots=True)
class AccessRule:
    """Allow or deny one subject a permission on a method (or on every method)."""

    method: str | None
    subject_kind: str
    subject: str
    permission: str
    effect: str

    def matches(self, actor: Actor, method: str, permission: str) -> bool:
        """Whether the rule speaks about this actor, method and permission."""
        if self.permission != permission or self.method not in (None, method):
            return False
        if self.subject_kind == "group":
            return self.subject in actor.groups
        return self.subject == "*" or self.subject == str(actor.user_id)


def class_denial(rules: Iterable[AccessRule], actor: Actor, permission: str) -> AccessRule | None:
    """The class-wide rule among `rules` that denies `actor` the `permission`, if any."""
    if actor.is_system:
        return None
    for rule in rules:
        if rule.method is None and rule.effect == "deny" and rule.matches(actor, "", permission):
            return rule
    return None


def check_class(rules: Iterable[AccessRule], actor: Actor, permission: str, name: str) -> None:
    """Refuse (`AccessDenied`) when a class-wide rule denies `actor` the `permission`.

    `name` names the class in an `execute` refusal only: an actor denied `visible` is not told
    the name of what it may not see.
    """
    rule = class_denial(rules, actor, permission)
    if rule is None:
        return
    if permission == EXECUTE:
        what = f"an access rule of {name}"
        effect = "this actor may not change its items or its definition"
    else:
        what = "a class-wide access rule"
        effect = "this actor may not see the class, its items or its definition"
    raise AccessDenied(
        f"{what} denies {rule.subject_kind} {preview(rule.subject)} the {permission} "
        f"permission: {effect}; ask for an access rule that allows it",
        permission=permission,
        user_id=actor.user_id,
    )


__all__ = ["EXECUTE", "VISIBLE", "AccessRule", "check_class", "class_denial"]
