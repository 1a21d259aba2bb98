"""Typed Core handles on the schema's tables, for statements on the hot path."""

from __future__ import annotations

from typing import Final

from sqlalchemy import Table

from flowkernel.store import schema


def table_of(model: type[schema.Base]) -> Table:
    """The Core `Table` behind a mapped model."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


pipelines: Final = table_of(schema.PipelineRow)
stages: Final = table_of(schema.StageRow)
stage_moves: Final = table_of(schema.StageMoveRow)
methods: Final = table_of(schema.MethodRow)
transitions: Final = table_of(schema.TransitionRow)
events: Final = table_of(schema.EventRow)
access_rules: Final = table_of(schema.AccessRuleRow)
actions: Final = table_of(schema.ActionRow)
items: Final = table_of(schema.ItemRow)
history: Final = table_of(schema.StageHistoryRow)
sla_due: Final = table_of(schema.SlaDueRow)
sla_breaches: Final = table_of(schema.SlaBreachRow)
method_calls: Final = table_of(schema.MethodCallRow)
columns: Final = table_of(schema.ColumnRow)
required_columns: Final = table_of(schema.StageRequiredColumnRow)
item_values: Final = table_of(schema.ItemValueRow)
stage_totals: Final = table_of(schema.StageTotalRow)
stage_value_totals: Final = table_of(schema.StageValueTotalRow)
automations: Final = table_of(schema.AutomationRow)
watchers: Final = table_of(schema.WatcherRow)
outbox: Final = table_of(schema.OutboxRow)
event_log: Final = table_of(schema.EventLogRow)
inbox: Final = table_of(schema.InboxRow)
idempotency_keys: Final = table_of(schema.IdempotencyKeyRow)
api_tokens: Final = table_of(schema.ApiTokenRow)
last_calls: Final = table_of(schema.LastCallRow)
stage_hour_counts: Final = table_of(schema.StageHourCountRow)
stage_count_marks: Final = table_of(schema.StageCountMarkRow)
dropped_items: Final = table_of(schema.DroppedItemRow)
