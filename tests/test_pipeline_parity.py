"""Pipeline operations of the library reachable over HTTP and the command line too: a
template's clone, a stage's removal with its dry run, and the funnel."""

from __future__ import annotations

import json

import pytest
from http_fixtures import Api, api
from rows import every_row

from flowkernel import SYSTEM, Actor, Flowkernel
from flowkernel.cli import main
from flowkernel.definition.pipelines.admin import StageSpec

__all__ = ["api"]

REP = Actor.user(7, 1)


@pytest.fixture
def template(fk: Flowkernel) -> int:
    stages = [StageSpec("Lead"), StageSpec("Qualified"), StageSpec("Won", is_won=True)]
    return fk.pipelines.create_pipeline(
        "Sales template", SYSTEM, code="sales_tpl", stages=stages, is_template=True, is_system=True
    ).id


def test_clone_and_remove_a_stage_over_http(fk: Flowkernel, api: Api, template: int) -> None:
    token = api.tokens.issue("rep", account_id=1, user_id=7).token
    with api.client(token) as client:
        made = client.post("/v1/pipelines/sales_tpl/clone", json={"name": "Our sales"})
        assert made.status_code == 201, made.text
        copy = made.json()
        assert (copy["name"], copy["account_id"]) == ("Our sales", 1)
        deals = [fk.place(copy["id"], "deal", n, REP).id for n in range(2)]
        for deal in deals:
            fk.move(deal, "qualified", REP)

        before = every_row(fk)
        planned = client.delete(
            f"/v1/pipelines/{copy['id']}/stages/qualified",
            params={"target": "lead", "dry_run": "true"},
        )
        assert planned.status_code == 200, planned.text
        assert planned.json()["item_ids"] == deals and planned.json()["dry_run"] is True
        assert every_row(fk) == before  # a dry run changes nothing
        refused = client.delete(f"/v1/pipelines/{copy['id']}/stages/qualified")
        assert refused.status_code in (409, 422), refused.text  # it holds items: a target
        assert every_row(fk) == before

        done = client.delete(
            f"/v1/pipelines/{copy['id']}/stages/qualified", params={"target": "lead"}
        )
        assert done.status_code == 200, done.text
        assert (done.json()["count"], done.json()["dry_run"]) == (2, False)
        assert [fk.item(d, REP).state for d in deals] == ["lead", "lead"]
        shown = client.get(f"/v1/pipelines/{copy['id']}").json()
        assert [s["code"] for s in shown["stages"]] == ["lead", "won"]

    platform = api.tokens.issue("platform", system=True).token
    with api.client(platform) as client:
        unnamed = client.post(f"/v1/pipelines/{template}/clone", json={})
        assert unnamed.status_code == 422
        assert unnamed.json()["error"]["code"] == "invalid_argument"
        placed = client.post(f"/v1/pipelines/{template}/clone", json={"account_id": 2})
        assert placed.status_code == 201 and placed.json()["account_id"] == 2


def test_funnel_on_the_command_line(
    fk: Flowkernel, database_url: str, template: int, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = fk.pipelines.clone_template(template, 1, REP, "Ours", code="ours")
    for n in range(4):
        deal = fk.place(copy.id, "deal", n, REP).id
        if n < 3:
            fk.move(deal, "qualified", REP)
        if n < 1:
            fk.move(deal, "won", REP)
    db = ["--database-url", database_url]
    acting = ["--account", "1", "--as", "7"]
    assert main([*db, "pipeline", "funnel", "ours", "qualified", "won", *acting]) == 0
    assert capsys.readouterr().out == "qualified -> won: 1 of 3 item(s), 33%\n"
    assert main([*db, "pipeline", "funnel", "ours", "lead", "qualified", *acting, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["entered"], found["converted"]) == (4, 3)
    assert main([*db, "pipeline", "funnel", "ours", "lead", "nowhere", *acting]) == 3
