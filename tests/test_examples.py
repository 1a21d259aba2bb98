"""Every shipped example runs, on SQLite and PostgreSQL, and runs again on the same database."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from flowkernel import Actor
from flowkernel.examples import EXAMPLES
from flowkernel.kernel import Flowkernel

ROOT = Path(__file__).resolve().parent.parent


def test_every_example_file_is_in_the_demo() -> None:
    files = {p.stem for p in (ROOT / "examples").glob("*.py") if p.stem != "__init__"}
    assert files == set(EXAMPLES)


def test_sales_pipeline_story(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    sales = importlib.import_module("flowkernel.examples.sales_pipeline")
    sales.main(database_url)
    out = capsys.readouterr().out
    assert "pipeline 'Sales Pipeline': Lead -> Qualified -> Proposal -> Won -> Lost" in out
    assert "refused: cannot enter stage 'proposal': fill close_date (Expected Close)" in out
    assert "complete proposal_sent (Proposal sent to client), budget_confirmed" in out
    assert "moved proposal -> won" in out
    assert "SLA scan 8 days ahead: 1 stale opportunity(ies)" in out
    for event in ("crm.opportunity_added", "crm.deal_won", "crm.deal_stale"):
        assert f"event {event}" in out
    assert "manager's inbox: crm_opportunity" in out
    sales.main(database_url)  # a second run on the same database works too
    with Flowkernel(database_url) as fk:
        (pipeline,) = [p for p in fk.pipelines.list_pipelines(sales.ADMIN) if p.code == "sales"]
        stages = [(s.name, s.color, s.probability, s.sla_days) for s in pipeline.stages]
        assert stages == [
            ("Lead", "#94a3b8", 10, 7),
            ("Qualified", "#60a5fa", 30, 14),
            ("Proposal", "#f59e0b", 60, 10),
            ("Won", "#22c55e", 100, None),
            ("Lost", "#ef4444", 0, None),
        ]
        assert pipeline.stage("proposal").required_columns == ("close_date",)
        assert [c.name for c in pipeline.columns] == [
            "decision_maker", "contract_value", "close_date", "priority",
        ]  # fmt: skip
        assert pipeline.column("priority").options == ("High", "Medium", "Low")
        board = fk.queries.board(pipeline.id, sales.REP, value_column="contract_value")
        assert [s.count for s in board.stages] == [2, 0, 0, 2, 0]


def test_support_desk_story(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    support = importlib.import_module("flowkernel.examples.support_ticket")
    support.main(database_url)
    support.main(database_url)
    out = capsys.readouterr().out
    assert out.count("New -> Triaged -> In progress -> Resolved") == 4
    assert "reading account 101's ticket: no item" in out
    assert out.count("events: support.ticket_resolved") == 4
    with Flowkernel(database_url) as fk:
        for account in support.ACCOUNTS:
            desks = fk.pipelines.list_pipelines(Actor.user(1, account), templates=False)
            assert len(desks) == 1 and desks[0].template_id is not None
