"""Writing outgoing events in the transaction of the change that fires them (an outbox).

Matching automations become event rows, and every watcher of the item gets a notification
row; delivery plugins send them after commit (see `flowkernel.store.delivery`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, insert, select

from flowkernel.actors import Actor
from flowkernel.compile.compiler import CompiledAutomation, CompiledClass, CompiledState
from flowkernel.snapshots import ItemSnapshot
from flowkernel.store.tables import outbox, watchers

TRIGGERS: Final = ("stage_entered", "stage_exited", "item_created", "sla_breached")
AUTOMATION: Final = "automation"
NOTIFICATION: Final = "notification"


def _matches(
    automation: CompiledAutomation,
    kind: str,
    old: CompiledState | None,
    new: CompiledState,
) -> bool:
    """The seed's automation match, extended to item_created and sla_breached."""
    if kind == "moved":
        if automation.trigger == "stage_entered":
            return automation.stage_id in (None, new.id)
        if automation.trigger == "stage_exited":
            return automation.stage_id is None or (
                old is not None and automation.stage_id == old.id
            )
        return False
    return automation.trigger == kind and automation.stage_id in (None, new.id)


def runtime_context(
    compiled: CompiledClass,
    item: ItemSnapshot,
    actor: Actor,
    trigger: str,
    old: CompiledState | None,
    new: CompiledState,
) -> dict[str, Any]:
    """The runtime context merged over every automation's payload template."""
    return {
        "trigger": trigger,
        "item_id": item.id,
        "object_type": item.object_type,
        "object_id": item.object_id,
        "pipeline_id": compiled.id,
        "pipeline": compiled.name,
        "from_stage": old.code if old is not None else None,
        "from_stage_name": old.label if old is not None else None,
        "to_stage": new.code,
        "to_stage_name": new.label,
        "user_id": actor.user_id,
        "is_system": actor.is_system,
        "account_id": item.account_id,
    }


def merge_payload(template: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """The payload template with the runtime context laid over it (context keys win)."""
    return {**template, **context}


class OutboxWriter:
    """Records automation events and watcher notifications for one change."""

    def record(
        self,
        conn: Connection,
        compiled: CompiledClass,
        item: ItemSnapshot,
        actor: Actor,
        now: datetime,
        kind: str,
        old: CompiledState | None,
        new: CompiledState,
    ) -> list[int]:
        """Write the rows `kind` ("item_created", "moved" or "sla_breached") fires; their ids."""
        users: Sequence[int] = ()
        if kind in ("moved", "sla_breached"):
            users = (
                conn.execute(
                    select(watchers.c.iam_user_id)
                    .where(watchers.c.flow_item_id == item.id)
                    .order_by(watchers.c.iam_user_id)
                )
                .scalars()
                .all()
            )
        rows = self.rows(compiled, item, actor, now, kind, old, new, users)
        if not rows:
            return []
        return list(conn.execute(insert(outbox).returning(outbox.c.id), rows).scalars())

    def rows(
        self,
        compiled: CompiledClass,
        item: ItemSnapshot,
        actor: Actor,
        now: datetime,
        kind: str,
        old: CompiledState | None,
        new: CompiledState,
        users: Sequence[int],
    ) -> list[dict[str, Any]]:
        """The rows `kind` fires for an item watched by `users` (ordered), not yet written."""
        rows: list[dict[str, Any]] = []
        for automation in compiled.automations:
            if not _matches(automation, kind, old, new):
                continue
            trigger = automation.trigger
            context = runtime_context(compiled, item, actor, trigger, old, new)
            rows.append(
                self._row(
                    compiled,
                    item,
                    now,
                    AUTOMATION,
                    automation.event_name,
                    trigger,
                    merge_payload(automation.payload_template, context),
                    automation.id,
                    None,
                )
            )
        if users and kind in ("moved", "sla_breached"):
            trigger = "stage_changed" if kind == "moved" else "sla_breached"
            context = runtime_context(compiled, item, actor, trigger, old, new)
            for user in users:
                rows.append(
                    self._row(
                        compiled,
                        item,
                        now,
                        NOTIFICATION,
                        f"watcher.{trigger}",
                        trigger,
                        context,
                        None,
                        user,
                    )
                )
        return rows

    @staticmethod
    def _row(
        compiled: CompiledClass,
        item: ItemSnapshot,
        now: datetime,
        kind: str,
        event_name: str,
        trigger: str,
        payload: dict[str, Any],
        automation_id: int | None,
        recipient: int | None,
    ) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "kind": kind,
            "event_name": event_name,
            "trigger": trigger,
            "flow_pipeline_id": compiled.id,
            "flow_item_id": item.id,
            "flow_automation_id": automation_id,
            "iam_account_id": item.account_id,
            "recipient_iam_user_id": recipient,
            "payload": payload,
            "available_at": now,
            "created_at": now,
        }
