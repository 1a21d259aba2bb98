"""The wire form of outgoing events, shared by the webhook and broker plugins.

A message is a JSON object with sorted keys and no insignificant whitespace, so the same event
encodes to the same bytes on every attempt. The attempt number is not part of it (transports
send it as a header).
"""

from __future__ import annotations

import json
from typing import Any, Final

from flowkernel.snapshots import OutgoingEvent, WatcherNotification

EVENT: Final = "event"
NOTIFICATION: Final = "notification"


def event_message(event: OutgoingEvent) -> dict[str, Any]:
    """An automation event as a JSON-ready object."""
    return {
        "type": EVENT,
        "event_id": event.event_id,
        "event_name": event.event_name,
        "trigger": event.trigger,
        "pipeline_id": event.pipeline_id,
        "item_id": event.item_id,
        "account_id": event.account_id,
        "automation_id": event.automation_id,
        "payload": dict(event.payload),
    }


def notification_name(notification: WatcherNotification) -> str:
    """The name a watcher notification travels under: `watcher.<trigger>`."""
    return f"watcher.{notification.trigger}"


def notification_message(notification: WatcherNotification) -> dict[str, Any]:
    """A watcher notification as a JSON-ready object."""
    return {
        "type": NOTIFICATION,
        "event_id": notification.event_id,
        "event_name": notification_name(notification),
        "trigger": notification.trigger,
        "pipeline_id": notification.pipeline_id,
        "item_id": notification.item_id,
        "account_id": notification.account_id,
        "user_id": notification.user_id,
        "message": notification.message,
        "payload": dict(notification.payload),
    }


def encode(message: dict[str, Any]) -> bytes:
    """The message's bytes: UTF-8 JSON, keys sorted, compact."""
    return json.dumps(
        message, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()
