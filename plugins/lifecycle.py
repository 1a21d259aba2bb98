"""The standard handlers of the default lifecycle: state change, drop, soft delete, restore."""

from __future__ import annotations

from collections.abc import Mapping

from flowkernel.errors import ItemNotDeleted
from flowkernel.hookspecs import EventHandler, hookimpl
from flowkernel.snapshots import ChangeState, DropItem, EventContext, Restore, SoftDelete


def change_object_state(context: EventContext) -> ChangeState:
    """Take the method's transition, as the seed's ChangeObjectState() does."""
    return ChangeState()


def drop_object(context: EventContext) -> DropItem:
    """Remove a deleted item from its class; its history stays."""
    if not context.item.deleted:
        raise ItemNotDeleted(context.item.id, context.item.state)
    return DropItem()


def soft_delete_object(context: EventContext) -> SoftDelete:
    """Mark the item deleted; it keeps its stage and leaves the board."""
    return SoftDelete()


def restore_object(context: EventContext) -> Restore:
    """Clear the item's deleted mark."""
    return Restore()


@hookimpl
def flowkernel_event_handlers() -> Mapping[str, EventHandler]:
    return {
        "change_object_state": change_object_state,
        "drop_object": drop_object,
        "soft_delete_object": soft_delete_object,
        "restore_object": restore_object,
    }
