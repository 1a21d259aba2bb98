"""Access rules: written per class (or method), read for a class and its ancestors.

The checks themselves are pure and live in `flowkernel.access`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select

from flowkernel.access import VISIBLE, AccessRule, class_denial
from flowkernel.actors import Actor
from flowkernel.definition.authoring import Authoring
from flowkernel.errors import InvalidDefinition, UnknownDefinition
from flowkernel.kinds import Movement
from flowkernel.previews import preview
from flowkernel.store.schema import AccessRuleRow, MethodRow, PipelineRow
from flowkernel.store.tables import access_rules, pipelines
from flowkernel.validation import MAX_CODE, check_key, check_text


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


@dataclass(frozen=True, slots=True)
class AccessRuleDef:
    """Allow or deny a user or group to execute or see a method (None: every method)."""

    id: int
    class_code: str
    method: str | None
    subject_kind: str
    subject: str
    permission: str
    effect: str


class RuleAuthoring(Authoring):
    """Add, list and delete the access rules of a class."""

    def add_access_rule(
        self,
        class_code: str,
        *,
        subject: str,
        subject_kind: str = "user",
        permission: str = "execute",
        effect: str = "allow",
        method: str | None = None,
        account_id: int | None = None,
    ) -> AccessRuleDef:
        """Allow or deny a user (id) or group to `execute` or see (`visible`) a method or all."""
        for value, allowed, name in (
            (subject_kind, ("user", "group"), "subject_kind"),
            (permission, ("execute", "visible"), "permission"),
            (effect, ("allow", "deny"), "effect"),
        ):
            if value not in allowed:
                raise InvalidDefinition(
                    f"{name} must be one of {allowed}, not {preview(value)}", **{name: value}
                )
        check_text("subject", subject, max_length=MAX_CODE)
        if (
            subject_kind == "user"
            and subject != "*"
            and not (subject.isascii() and subject.isdigit())
        ):
            raise InvalidDefinition(
                f"a user rule's subject is a user id or '*' (every user), not {preview(subject)}; "
                "name a group with subject_kind='group'",
                subject=subject,
            )
        if method is not None:
            check_key("method", method)
        with self._tx() as session:
            cls = self.class_row(session, class_code, account_id)
            method_row = None
            if method is not None:
                method_row = (
                    session.execute(
                        select(MethodRow).where(
                            MethodRow.class_id == cls.id, MethodRow.code == method
                        )
                    )
                    .scalars()
                    .first()
                )
                if method_row is None and cls.movement == Movement.EXPLICIT:
                    raise UnknownDefinition("method", method, f"class {preview(cls.code)}")
            row = AccessRuleRow(
                class_id=cls.id,
                method_id=method_row.id if method_row else None,
                method_code=method,
                subject_kind=subject_kind,
                subject=subject,
                permission=permission,
                effect=effect,
            )
            session.add(row)
            session.flush()
            self._touch(session, cls)
            return AccessRuleDef(
                row.id, cls.code or "", method, subject_kind, subject, permission, effect
            )

    def list_access_rules(
        self, class_code: str, account_id: int | None = None
    ) -> list[AccessRuleDef]:
        """Access rules of a class."""
        with self._read() as session:
            cls = self.class_row(session, class_code, account_id)
            rows = session.execute(
                select(AccessRuleRow)
                .where(AccessRuleRow.class_id == cls.id)
                .order_by(AccessRuleRow.id)
            ).scalars()
            return [
                AccessRuleDef(
                    r.id,
                    cls.code or "",
                    r.method_code,
                    r.subject_kind,
                    r.subject,
                    r.permission,
                    r.effect,
                )
                for r in rows
            ]

    def delete_access_rule(self, rule_id: int, account_id: int | None = None) -> None:
        """Delete an access rule."""
        with self._tx() as session:
            row = self._owned(session, AccessRuleRow, rule_id, "access rule", account_id)
            cls = session.get(PipelineRow, row.class_id)
            session.delete(row)
            session.flush()
            if cls is not None:
                self._touch(session, cls)
