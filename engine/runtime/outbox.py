"""Outgoing events: the outbox rows a change fires, written in its own transaction.

Matching automations become event rows, and every watcher of the item gets a notification
row; delivery plugins send them after commit (see `flowkernel.store.delivery`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from flowkernel.actors import Actor
from flowkernel.compile.compiled import CompiledAutomation, CompiledClass, CompiledState
from flowkernel.kinds import OutboxKind, Trigger
from flowkernel.snapshots import ItemSnapshot

MOVED: Final = "moved"
"""An item changed state: stage_entered and stage_exited automations, watchers."""
SLA_BREACHED: Final = "sla_breached"
"""An item overstayed its stage: sla_breached automations, watchers."""
CREATED: Final = "item_created"
"""An item was placed: item_created automations."""


def matches(
    automation: CompiledAutomation, kind: str, old: CompiledState | None, new: CompiledState
) -> bool:
    """The seed's automation match, extended to item_created and sla_breached."""
    if kind == MOVED:
        if automation.trigger == Trigger.STAGE_ENTERED:
            return automation.stage_id in (None, new.id)
        if automation.trigger == Trigger.STAGE_EXITED:
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
    """The runtime context merged over every automation's payload template; `object_key`
    only for an object keyed by a UUID or text."""
    context = {
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
    if item.object_key is not None:
        context["object_key"] = item.object_key
    return context


def merge_payload(template: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """The payload template with the runtime context laid over it (context keys win)."""
    return {**template, **context}


def event_rows(
    compiled: CompiledClass,
    item: ItemSnapshot,
    actor: Actor,
    now: datetime,
    kind: str,
    old: CompiledState | None,
    new: CompiledState,
    users: Sequence[int],
) -> list[dict[str, Any]]:
    """The outbox rows `kind` fires for an item watched by `users` (ordered), not yet written."""
    rows: list[dict[str, Any]] = []
    for automation in compiled.automations:
        if not matches(automation, kind, old, new):
            continue
        trigger = automation.trigger
        context = runtime_context(compiled, item, actor, trigger, old, new)
        payload = merge_payload(automation.payload_template, context)
        rows.append(
            _row(
                compiled,
                item,
                now,
                OutboxKind.AUTOMATION,
                automation.event_name,
                trigger,
                payload,
                automation.id,
                None,
            )
        )
    if users and kind in (MOVED, SLA_BREACHED):
        trigger = "stage_changed" if kind == MOVED else SLA_BREACHED
        context = runtime_context(compiled, item, actor, trigger, old, new)
        for user in users:
            rows.append(
                _row(
                    compiled,
                    item,
                    now,
                    OutboxKind.NOTIFICATION,
                    f"watcher.{trigger}",
                    trigger,
                    context,
                    None,
                    user,
                )
            )
    return rows


def _row(
    compiled: CompiledClass,
    item: ItemSnapshot,
    now: datetime,
    kind: OutboxKind,
    event_name: str,
    trigger: str,
    payload: dict[str, Any],
    automation_id: int | None,
    recipient: int | None,
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "kind": kind.value,
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
