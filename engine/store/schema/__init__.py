"""The database schema: the LEO seed's `flow_*` tables plus the kernel's `fk_*` tables.

A pipeline row is a class, a stage row is a state, and `flow_items.flow_stage_id` is the one
place an item's current state lives. Alembic owns the DDL; these models mirror it and a test
checks that they match.
"""

from __future__ import annotations

from flowkernel.store.schema.base import (
    FALSE,
    NAMING_CONVENTION,
    NOW,
    TRUE,
    Base,
    Id,
    Json,
    UTCDateTime,
)
from flowkernel.store.schema.definitions import (
    AccessRuleRow,
    ActionRow,
    AutomationRow,
    ColumnRow,
    EventRow,
    MethodRow,
    PipelineRow,
    StageMoveRow,
    StageRequiredColumnRow,
    StageRow,
    StateTypeRow,
    TransitionRow,
)
from flowkernel.store.schema.items import (
    ApiTokenRow,
    DroppedItemRow,
    EventLogRow,
    IdempotencyKeyRow,
    InboxRow,
    ItemRow,
    ItemValueRow,
    LastCallRow,
    MethodCallRow,
    OutboxRow,
    SlaBreachRow,
    SlaDueRow,
    StageCountMarkRow,
    StageHistoryRow,
    StageHourCountRow,
    StageTotalRow,
    StageValueTotalRow,
    WatcherRow,
)

metadata = Base.metadata
"""Every table of the schema, as the models declare them."""

__all__ = [
    "FALSE",
    "NAMING_CONVENTION",
    "NOW",
    "TRUE",
    "AccessRuleRow",
    "ActionRow",
    "ApiTokenRow",
    "AutomationRow",
    "Base",
    "ColumnRow",
    "DroppedItemRow",
    "EventLogRow",
    "EventRow",
    "Id",
    "IdempotencyKeyRow",
    "InboxRow",
    "ItemRow",
    "ItemValueRow",
    "Json",
    "LastCallRow",
    "MethodCallRow",
    "MethodRow",
    "OutboxRow",
    "PipelineRow",
    "SlaBreachRow",
    "SlaDueRow",
    "StageCountMarkRow",
    "StageHistoryRow",
    "StageHourCountRow",
    "StageMoveRow",
    "StageRequiredColumnRow",
    "StageRow",
    "StageTotalRow",
    "StageValueTotalRow",
    "StateTypeRow",
    "TransitionRow",
    "UTCDateTime",
    "WatcherRow",
    "metadata",
]
