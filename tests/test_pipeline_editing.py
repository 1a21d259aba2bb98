"""Editing a pipeline after it was created, over HTTP and from the command line: the pipeline,
its movement rules, stages, checklists, columns, entry requirements and automations, with bad
input refused by a typed error and nothing changed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from http_fixtures import Api, api
from rows import every_row

from flowkernel import Actor, Flowkernel
from flowkernel.cli import main

__all__ = ["api"]

REP = Actor.user(7, 1)
DOCUMENT: dict[str, Any] = {
    "name": "Sales",
    "code": "sales",
    "stages": [{"name": "Lead"}, {"name": "Proposal"}, {"name": "Won", "is_won": True}],
    "columns": [{"name": "notes"}],
}


def _outbox(fk: Flowkernel) -> list[str]:
    return [row["event_name"] for row in every_row(fk)["fk_outbox"]]


def test_a_pipeline_edited_over_http(fk: Flowkernel, api: Api) -> None:
    token = api.tokens.issue("rep", account_id=1, user_id=7).token
    with api.client(token) as client:
        made = client.post("/v1/pipelines", json=DOCUMENT)
        assert made.status_code == 201, made.text
        pid = made.json()["id"]

        edited = client.patch(
            "/v1/pipelines/sales", json={"name": "Deals", "description": "Q4", "code": "deals"}
        )
        assert edited.status_code == 200, edited.text
        assert (edited.json()["name"], edited.json()["code"]) == ("Deals", "deals")
        assert edited.json()["description"] == "Q4"
        kept = client.patch(f"/v1/pipelines/{pid}", json={"description": None})
        assert (kept.json()["name"], kept.json()["description"]) == ("Deals", None)

        stage = client.post(
            f"/v1/pipelines/{pid}/stages",
            json={
                "name": "Qualified",
                "position": 1,
                "probability": 40,
                "checklist": [{"key": "call", "label": "Call them", "required": True}],
            },
        )
        assert stage.status_code == 201, stage.text
        assert (stage.json()["code"], stage.json()["position"]) == ("qualified", 1)
        assert stage.json()["checklist"] == [
            {"key": "call", "label": "Call them", "required": True}
        ]
        changed = client.patch(
            f"/v1/pipelines/{pid}/stages/qualified",
            json={"sla_days": 3, "color": "#22c55e", "checklist": None},
        )
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert (body["sla_days"], body["color"], body["checklist"]) == (3, "#22c55e", [])
        cleared = client.patch(f"/v1/pipelines/{pid}/stages/qualified", json={"color": None})
        assert (cleared.json()["color"], cleared.json()["sla_days"]) == (None, 3)

        order = client.put(
            f"/v1/pipelines/{pid}/stage-order",
            json={"order": ["lead", "proposal", "qualified", "won"]},
        )
        assert order.status_code == 200, order.text
        assert [s["code"] for s in order.json()] == ["lead", "proposal", "qualified", "won"]

        column = client.post(
            f"/v1/pipelines/{pid}/columns",
            json={"name": "amount", "field_type": "number", "label": "Amount"},
        )
        assert column.status_code == 201, column.text
        relabelled = client.patch(f"/v1/pipelines/{pid}/columns/amount", json={"label": "Value"})
        assert relabelled.json()["label"] == "Value"
        required = client.put(f"/v1/pipelines/{pid}/stages/proposal/required/amount")
        assert required.status_code == 200 and required.json()["required_columns"] == ["amount"]

        deal = fk.place(pid, "deal", 1, REP).id
        before = every_row(fk)
        refused = client.post(f"/v1/items/{deal}/move", json={"stage": "proposal"})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "stage_requirement_missing"
        in_use = client.patch(  # refused whole: the label stays too
            f"/v1/pipelines/{pid}/columns/amount", json={"label": "Sum", "is_active": False}
        )
        assert in_use.status_code == 409, in_use.text
        assert in_use.json()["error"]["code"] == "definition_in_use"
        assert every_row(fk) == before
        freed = client.delete(f"/v1/pipelines/{pid}/stages/proposal/required/amount")
        assert freed.json()["required_columns"] == []
        off = client.patch(f"/v1/pipelines/{pid}/columns/amount", json={"is_active": False})
        assert off.status_code == 200 and off.json()["is_active"] is False

        rules = client.patch(
            f"/v1/pipelines/{pid}/movement",
            json={
                "allow_backward": False,
                "allowed_moves": [{"from_stage": "lead", "to_stage": 2}],
            },
        )
        assert rules.status_code == 200, rules.text
        assert rules.json()["allow_backward"] is False
        assert rules.json()["allowed_moves"] == [{"from_stage": "lead", "to_stage": "proposal"}]

        automation = client.post(
            f"/v1/pipelines/{pid}/automations",
            json={"trigger": "stage_entered", "event_name": "deal_proposed", "stage": "proposal"},
        )
        assert automation.status_code == 201, automation.text
        aid = automation.json()["id"]
        assert fk.move(deal, "proposal", REP).to_state == "proposal"
        assert _outbox(fk) == ["deal_proposed"]
        back = fk.pipelines.set_movement(pid, REP, allow_backward=True)
        assert back.allow_backward
        muted = client.patch(f"/v1/pipelines/{pid}/automations/{aid}", json={"is_active": False})
        assert muted.status_code == 200 and muted.json()["is_active"] is False
        fk.move(deal, "lead", REP)
        fk.move(deal, "proposal", REP)
        assert _outbox(fk) == ["deal_proposed"]  # inactive: fired no more
        listed = client.get(f"/v1/pipelines/{pid}/automations").json()
        assert [(a["id"], a["is_active"]) for a in listed] == [(aid, False)]
        gone = client.delete(f"/v1/pipelines/{pid}/automations/{aid}")
        assert gone.status_code == 204
        assert client.get(f"/v1/pipelines/{pid}/automations").json() == []

        deleted = client.delete(f"/v1/pipelines/{pid}")
        assert deleted.status_code == 204
        assert client.get(f"/v1/pipelines/{pid}").status_code == 404
        assert fk.item(deal, REP).state == "proposal"  # items and history stay


def test_bad_edits_over_http_change_nothing(fk: Flowkernel, api: Api) -> None:
    token = api.tokens.issue("rep", account_id=1, user_id=7).token
    other = fk.pipelines.create_pipeline("Theirs", Actor.user(8, 2), stages=[])
    theirs = fk.pipelines.add_automation(other.id, "stage_entered", "x", Actor.user(8, 2))
    with api.client(token) as client:
        pid = client.post("/v1/pipelines", json=DOCUMENT).json()["id"]
        before = every_row(fk)
        for method, path, body, status, code in [
            ("PATCH", f"/v1/pipelines/{pid}", {"colour": "red"}, 422, "invalid_request"),
            ("PATCH", f"/v1/pipelines/{pid}", {"is_template": "yes"}, 422, "invalid_request"),
            ("PATCH", f"/v1/pipelines/{pid}/stages/nowhere", {"name": "X"}, 404, None),
            ("PATCH", f"/v1/pipelines/{pid}/stages/lead", {"probability": 140}, 400, None),
            ("PATCH", f"/v1/pipelines/{pid}/stages/lead", {"code": "won"}, 409, None),
            ("POST", f"/v1/pipelines/{pid}/stages", {"name": "Won 2", "is_won": True}, 400, None),
            ("PUT", f"/v1/pipelines/{pid}/stage-order", {"order": ["won", "lead"]}, 400, None),
            ("POST", f"/v1/pipelines/{pid}/columns", {"name": "notes"}, 409, None),
            (
                "POST",
                f"/v1/pipelines/{pid}/columns",
                {"name": "p", "field_type": "select"},
                400,
                None,
            ),
            ("PUT", f"/v1/pipelines/{pid}/stages/won/required/nothing", None, 404, None),
            (
                "POST",
                f"/v1/pipelines/{pid}/automations",
                {"trigger": "sometimes", "event_name": "x"},
                400,
                None,
            ),
            (
                "PATCH",
                f"/v1/pipelines/{pid}/automations/{theirs.id}",
                {"is_active": False},
                404,
                None,
            ),
            ("DELETE", f"/v1/pipelines/{pid}/automations/{theirs.id}", None, 404, None),
            ("PATCH", f"/v1/pipelines/{other.id}", {"name": "Mine"}, 404, None),
            ("DELETE", f"/v1/pipelines/{other.id}", None, 404, None),
        ]:
            answer = client.request(method, path, json=body)
            assert answer.status_code == status, (method, path, answer.text)
            if code is not None:
                assert answer.json()["error"]["code"] == code
            else:
                assert answer.json()["error"]["message"]
        assert every_row(fk) == before


def test_a_pipeline_edited_from_the_command_line(
    fk: Flowkernel, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = fk.pipelines.create_pipeline("Sales", REP, code="sales", stages=[], columns=[]).id
    db = ["--database-url", database_url]
    acting = ["--account", "1", "--as", "7"]

    def run(*words: str) -> str:
        assert main([*db, "pipeline", *words, *acting]) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    assert run("add-stage", "sales", "Lead") == (
        f"added stage lead (Lead) to pipeline {pid}, as user 7 of account 1\n"
    )
    run("add-stage", "sales", "Won", "--won")
    run(
        "add-stage", "sales", "Proposal", "--position", "1", "--probability", "50",
        "--checklist", '[{"key": "quote", "label": "Send the quote", "required": true}]',
    )  # fmt: skip
    out = run("edit-stage", "sales", "proposal", "--sla-days", "5", "--clear", "checklist")
    assert out == f"changed stage proposal of pipeline {pid}, as user 7 of account 1\n"
    stage = fk.pipelines.get_pipeline(pid, REP).stage("proposal")
    assert (stage.position, stage.probability, stage.sla_days, stage.checklist) == (1, 50, 5, ())
    assert run("reorder-stages", "sales", "proposal", "lead", "won").startswith(
        f"stages of pipeline {pid}: proposal, lead, won"
    )
    run("add-column", "sales", "amount", "--type", "number")
    assert run("require", "sales", "won", "amount").startswith("stage won requires amount,")
    assert run("edit-column", "sales", "amount", "--label", "Value").startswith(
        "changed column amount (active)"
    )
    assert run("movement", "sales", "--backward", "refuse", "--allow", "proposal:lead").startswith(
        f"pipeline {pid}: moving back refused, skipping forward allowed, allowed moves: "
        "proposal -> lead"
    )
    out = run("add-automation", "sales", "stage_entered", "deal_won", "--stage", "won",
              "--payload", '{"channel": "sales"}')  # fmt: skip
    aid = fk.pipelines.list_automations(pid, REP)[0].id
    assert out.startswith(f"added automation {aid}: deal_won on stage_entered in stage won")
    assert "deal_won" in run("automations", "sales")
    run("edit-automation", "sales", str(aid), "--any-stage", "--active", "no")
    automation = fk.pipelines.list_automations(pid, REP)[0]
    assert (automation.stage, automation.is_active) == (None, False)
    assert automation.payload_template == {"channel": "sales"}
    shown = json.loads(run("edit", "sales", "--name", "Deals", "--no-code", "--json"))
    assert (shown["name"], shown["code"]) == ("Deals", None)

    before = every_row(fk)
    for words, status in [
        (["edit-stage", str(pid), "nowhere", "--name", "X"], 3),
        (["edit-stage", str(pid), "lead"], 2),  # nothing to change
        (["edit-stage", str(pid), "lead", "--probability", "140"], 3),
        (["require", str(pid), "lead", "nothing"], 3),
        (["edit-column", str(pid), "amount", "--label", "Sum", "--active", "no"], 3),  # required
        (["add-automation", str(pid), "stage_entered", "x", "--payload", "{oops"], 2),
        (["delete-automation", str(pid), "999999"], 3),
        (["movement", str(pid), "--allow", "lead"], 2),
    ]:
        assert main([*db, "pipeline", *words, *acting]) == status, words
        assert capsys.readouterr().err
    assert every_row(fk) == before

    run("delete-automation", str(pid), str(aid))
    assert fk.pipelines.list_automations(pid, REP) == []
    assert run("delete", str(pid)) == f"deleted pipeline {pid}, as user 7 of account 1\n"
    assert main([*db, "pipeline", "show", str(pid), *acting]) == 3
