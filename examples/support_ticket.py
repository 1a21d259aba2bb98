"""A support desk from a platform template, cloned into two accounts.

The system actor keeps one system template (owned by no account); each account clones it into
a live pipeline of its own, places tickets and works them. Neither account can see the other's
tickets. Run it with `python examples/support_ticket.py` or through `flowkernel demo`.
"""

from __future__ import annotations

import sys
import time

from flowkernel import SYSTEM, Actor, Flowkernel, ItemNotFound
from flowkernel.definition.pipelines.admin import ColumnSpec, PipelineInfo, StageSpec

TEMPLATE = "support_desk"
ACCOUNTS = (101, 202)

STAGES = (
    StageSpec("New", color="#94a3b8", sla_days=1),
    StageSpec("Triaged", color="#60a5fa", sla_days=2),
    StageSpec(
        "In progress",
        code="in_progress",
        color="#f59e0b",
        sla_days=5,
        checklist=({"key": "reproduced", "label": "Issue reproduced", "required": True},),
    ),
    StageSpec("Waiting on customer", code="waiting", color="#a855f7"),
    StageSpec("Resolved", color="#22c55e", is_won=True),
    StageSpec("Closed unresolved", code="closed", color="#ef4444", is_lost=True),
)

COLUMNS = (
    ColumnSpec("severity", "Severity", "select", options=("S1", "S2", "S3")),
    ColumnSpec("product", "Product", "text"),
    ColumnSpec("tags", "Tags", "multi_select", options=("billing", "bug", "howto")),
)


def system_template(fk: Flowkernel) -> PipelineInfo:
    """The platform's support-desk template, created on first use."""
    for pipeline in fk.pipelines.list_pipelines(SYSTEM, templates=True):
        if pipeline.code == TEMPLATE and pipeline.is_system:
            return pipeline
    template = fk.pipelines.create_pipeline(
        "Support desk",
        SYSTEM,
        code=TEMPLATE,
        object_type="support_ticket",
        stages=STAGES,
        columns=COLUMNS,
        is_template=True,
        is_system=True,
    )
    fk.pipelines.require_column(template.id, "triaged", "severity", SYSTEM)
    fk.pipelines.add_automation(
        template.id,
        "stage_entered",
        "support.ticket_resolved",
        SYSTEM,
        stage="resolved",
        payload_template={"survey": True},
    )
    fk.pipelines.add_automation(template.id, "sla_breached", "support.escalate", SYSTEM)
    return fk.pipelines.get_pipeline(template.id, SYSTEM)


def desk_of(fk: Flowkernel, account: int, template: PipelineInfo) -> PipelineInfo:
    """The account's live support desk, cloned from the template on first use."""
    admin = Actor.user(1, account)
    for pipeline in fk.pipelines.list_pipelines(admin, templates=False):
        if pipeline.template_id == template.id:
            return pipeline
    return fk.pipelines.clone_template(template.id, account, admin, name=f"Support {account}")


def main(database_url: str | None = None) -> None:
    """Run the support story in two accounts and print what happened."""
    fk = Flowkernel(database_url)
    try:
        fk.upgrade()
        template = system_template(fk)
        print(f"system template {template.name!r} ({len(template.stages)} stages)")
        tickets: dict[int, int] = {}
        for account in ACCOUNTS:
            desk = desk_of(fk, account, template)
            agent = Actor.user(10 + account, account)
            ticket = fk.place(desk.id, "support_ticket", time.time_ns() // 1000, agent)
            tickets[account] = ticket.id
            fk.items.set_values(ticket.id, {"severity": "S2", "tags": ["bug"]}, agent)
            fk.move(ticket.id, "triaged", agent)
            fk.move(ticket.id, "in_progress", agent)
            fk.items.complete_checklist_item(ticket.id, "reproduced", agent)
            fk.move(ticket.id, "resolved", agent)
            history = " -> ".join(m.to_stage for m in fk.queries.item_history(ticket.id, agent))
            print(f"account {account}: desk {desk.id} ticket {ticket.id}: {history}")
        intruder = Actor.user(10 + ACCOUNTS[1], ACCOUNTS[1])
        try:
            fk.item(tickets[ACCOUNTS[0]], intruder)
        except ItemNotFound as refused:
            print(f"account {ACCOUNTS[1]} reading account {ACCOUNTS[0]}'s ticket: {refused}")
        for account in ACCOUNTS:
            agent = Actor.user(10 + account, account)
            names = [e.event_name for e in fk.queries.events(agent, item_id=tickets[account])]
            print(f"account {account} events: {', '.join(names) or 'none'}")
    finally:
        fk.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
