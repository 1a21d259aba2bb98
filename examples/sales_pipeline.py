"""The LEO seed's sales pipeline, end to end.

Stages, colours, probabilities and SLA days exactly as in the seed; the four custom columns with
the priority options; close date required before Proposal; the Proposal checklist; automations
on won deals, new opportunities and stale ones; a watching manager. Run it with
`python examples/sales_pipeline.py` (a `flowkernel.db` in the working folder) or through
`flowkernel demo`; it can run again on the same database.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

from flowkernel import Actor, ChecklistIncomplete, Flowkernel, RequirementMissing
from flowkernel.definition.pipelines.admin import ColumnSpec, PipelineInfo, StageSpec

ACCOUNT = 1
ADMIN = Actor.user(42, ACCOUNT)
REP = Actor.user(7, ACCOUNT)
MANAGER = 9
CODE = "sales"

STAGES = (
    StageSpec("Lead", color="#94a3b8", probability=10, sla_days=7),
    StageSpec("Qualified", color="#60a5fa", probability=30, sla_days=14),
    StageSpec(
        "Proposal",
        color="#f59e0b",
        probability=60,
        sla_days=10,
        checklist=(
            {"key": "proposal_sent", "label": "Proposal sent to client", "required": True},
            {"key": "budget_confirmed", "label": "Budget confirmed", "required": True},
            {"key": "legal_reviewed", "label": "Legal review completed", "required": False},
        ),
    ),
    StageSpec("Won", color="#22c55e", probability=100, is_won=True),
    StageSpec("Lost", color="#ef4444", probability=0, is_lost=True),
)

COLUMNS = (
    ColumnSpec("decision_maker", "Decision Maker", "text"),
    ColumnSpec("contract_value", "Contract Value", "number"),
    ColumnSpec("close_date", "Expected Close", "date"),
    ColumnSpec("priority", "Priority", "select", options=("High", "Medium", "Low")),
)


def build_sales_pipeline(fk: Flowkernel) -> PipelineInfo:
    """The seed's sales pipeline of account 1, created on first use."""
    for pipeline in fk.pipelines.list_pipelines(ADMIN, templates=False):
        if pipeline.code == CODE:
            return pipeline
    pipeline = fk.pipelines.create_pipeline(
        "Sales Pipeline",
        ADMIN,
        code=CODE,
        object_type="crm_opportunity",
        stages=STAGES,
        columns=COLUMNS,
    )
    fk.pipelines.require_column(pipeline.id, "proposal", "close_date", ADMIN)
    fk.pipelines.add_automation(
        pipeline.id, "item_created", "crm.opportunity_added", ADMIN, name="New opportunity"
    )
    fk.pipelines.add_automation(
        pipeline.id,
        "stage_entered",
        "crm.deal_won",
        ADMIN,
        stage="won",
        name="Deal won",
        payload_template={"channel": "#sales", "celebrate": True},
    )
    fk.pipelines.add_automation(
        pipeline.id, "sla_breached", "crm.deal_stale", ADMIN, name="Stale deal"
    )
    return fk.pipelines.get_pipeline(pipeline.id, ADMIN)


def main(database_url: str | None = None) -> None:
    """Run the sales story and print what happened."""
    fk = Flowkernel(database_url)
    try:
        fk.upgrade()
        pipeline = build_sales_pipeline(fk)
        print(f"pipeline {pipeline.name!r}: " + " -> ".join(s.name for s in pipeline.stages))
        base = time.time_ns() // 1000  # fresh opportunity ids on every run
        deal = fk.place(pipeline.id, "crm_opportunity", base, REP)
        stale = fk.place(pipeline.id, "crm_opportunity", base + 1, REP)
        fk.items.watch(deal.id, MANAGER, REP)
        print(f"opportunity {deal.object_id} placed in {deal.state}; manager {MANAGER} watches")
        fk.items.set_values(
            deal.id,
            {"decision_maker": "Dana Reyes", "contract_value": 42500, "priority": "High"},
            REP,
        )
        fk.move(deal.id, "qualified", REP)
        try:
            fk.move(deal.id, "proposal", REP)
        except RequirementMissing as refused:
            print(f"refused: {refused}")
        fk.items.set_value(deal.id, "close_date", "2026-07-01", REP)
        fk.move(deal.id, "proposal", REP)
        try:
            fk.move(deal.id, "won", REP)
        except ChecklistIncomplete as refused:
            print(f"refused: {refused}")
        for key in ("proposal_sent", "budget_confirmed"):
            fk.items.complete_checklist_item(deal.id, key, REP)
        result = fk.move(deal.id, "won", REP)
        print(f"moved {result.from_state} -> {result.to_state}")

        for move in fk.queries.item_history(deal.id, REP):
            print(f"  history: {move.from_stage or '-'} -> {move.to_stage} by {move.moved_by}")
        for value in fk.items.values(deal.id, REP):
            print(f"  {value.label}: {value.value}")

        report = fk.sla.scan(pipeline_id=pipeline.id, now=datetime.now(UTC) + timedelta(days=8))
        print(f"SLA scan 8 days ahead: {len(report.fired)} stale opportunity(ies)")

        board = fk.queries.board(pipeline.id, REP, value_column="contract_value")
        for stage in board.stages:
            print(
                f"  {stage.name:<10} {stage.count:>3} item(s)  value {stage.value_sum or 0}"
                f"  weighted {stage.weighted_value or 0}"
            )
        funnel = fk.queries.conversion(pipeline.id, "lead", "won", REP)
        print(f"funnel lead -> won: {funnel.converted}/{funnel.entered}")
        events = fk.queries.events(REP, item_id=deal.id) + fk.queries.events(REP, item_id=stale.id)
        for event in events:
            print(f"  event {event.event_name} ({event.trigger})")
        for entry in fk.items.inbox(MANAGER, Actor.user(MANAGER, ACCOUNT), unread_only=True)[:3]:
            print(f"  manager's inbox: {entry.message}")
    finally:
        fk.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
