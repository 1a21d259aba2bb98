"""The item endpoints over HTTP: placing, methods, executions, moves, values, checklist,
watchers, history, time in stage, idempotency and tenancy."""

from __future__ import annotations

from typing import Any

import httpx
from http_fixtures import Api, World, api, world
from sqlalchemy import select

from flowkernel import SYSTEM, Actor
from flowkernel.store.tables import method_calls

__all__ = ["api", "world"]

REP = Actor.user(7, 1, ("sales",))


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error of a refused request, after checking its status and shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    found: dict[str, Any] = body["error"]
    return found


def test_place_read_and_list_methods(world: World) -> None:
    placed = world.user.post(
        "/v1/items",
        json={
            "class": world.sales,
            "object_type": "crm_opportunity",
            "object_id": 101,
            "assigned_user_id": 7,
        },
    )
    assert placed.status_code == 201, placed.text
    item = placed.json()
    assert item["state"] == "lead" and item["account_id"] == 1
    assert item["assigned_user_id"] == 7 and item["class_code"] == "sales"

    read = world.user.get(f"/v1/items/{item['id']}")
    assert read.status_code == 200 and read.json() == item

    methods = world.user.get(f"/v1/items/{item['id']}/methods")
    assert methods.status_code == 200
    codes = [m["code"] for m in methods.json()]
    assert codes == [m.code for m in world.api.fk.methods(item["id"], REP)]
    assert "move_to_qualified" in codes

    # placing by class code, into another state, with the object already placed refused
    station = world.system.post(
        "/v1/items",
        json={
            "class": "station",
            "object_type": "charging_station",
            "object_id": 301,
            "state": "unavailable",
            "account_id": 1,
        },
    )
    assert station.status_code == 201 and station.json()["state"] == "unavailable"
    again = world.system.post(
        "/v1/items",
        json={"class": "station", "object_type": "charging_station", "object_id": 301},
    )
    details = error(again, 409, "object_already_placed")["details"]
    assert details["item_id"] == station.json()["id"]


def test_execute_a_method_an_action_and_a_move(world: World) -> None:
    fk = world.api.fk
    done = world.user.post(f"/v1/items/{world.deal}/methods/move_to_qualified")
    assert done.status_code == 200, done.text
    result = done.json()
    assert (result["from_state"], result["to_state"], result["changed"]) == (
        "lead",
        "qualified",
        True,
    )
    assert fk.item(world.deal, REP).state == "qualified"

    moved = world.user.post(f"/v1/items/{world.deal}/move", json={"stage": "lead"})
    assert moved.status_code == 200 and moved.json()["to_state"] == "lead"
    stage_id = fk.pipelines.get_pipeline(world.sales, REP).stage("won").id
    by_id = world.user.post(f"/v1/items/{world.deal}/move", json={"stage": stage_id})
    assert by_id.status_code == 200 and by_id.json()["to_state"] == "won"

    # an action by code runs its first method: the station's hidden "available", system only
    action = world.account_system.post(f"/v1/items/{world.station}/actions/available")
    assert action.status_code == 200 and action.json()["to_state"] == "available"
    beat = world.account_system.post(
        f"/v1/items/{world.station}/methods/heartbeat", json={"params": {"status": "ok"}}
    )
    assert beat.status_code == 200
    assert beat.json()["changed"] is False and beat.json()["handlers"] == ["station_heartbeat"]


def test_a_refused_move_names_the_missing_fields_and_changes_nothing(world: World) -> None:
    fk = world.api.fk
    refused = world.user.post(f"/v1/items/{world.deal}/move", json={"stage": "proposal"})
    found = error(refused, 422, "stage_requirement_missing")
    assert found["details"] == {
        "stage": "proposal",
        "missing": [{"column": "close_date", "label": "Expected Close"}],
    }
    assert fk.item(world.deal, REP).state == "lead"
    assert len(fk.history(world.deal, REP)) == 1

    unknown = world.user.post(f"/v1/items/{world.deal}/methods/fly")
    assert error(unknown, 422, "method_not_available")["details"]["method"] == "fly"
    explained = world.user.get(f"/v1/items/{world.deal}/explain/proposal")
    assert explained.status_code == 200
    why = explained.json()
    assert why["possible"] is False and why["method"] == "move_to_proposal"
    assert [r["code"] for r in why["reasons"]] == [
        r.code for r in fk.explain(world.deal, "proposal", REP).reasons
    ]
    assert why["summary"] == fk.explain(world.deal, "proposal", REP).summary


def test_hidden_methods_fire_only_for_system_tokens(world: World) -> None:
    fk = world.api.fk
    listed = {m["code"] for m in world.user.get(f"/v1/items/{world.station}/methods").json()}
    assert "heartbeat" not in listed and "available" not in listed
    system_listed = world.system.get(f"/v1/items/{world.station}/methods").json()
    assert {"heartbeat", "available"} <= {m["code"] for m in system_listed}

    for path in ("methods/heartbeat", "methods/available", "actions/available"):
        refused = world.user.post(f"/v1/items/{world.station}/{path}")
        error(refused, 422, "method_not_available")
    assert fk.item(world.station, SYSTEM).state == "unavailable"
    assert len(fk.history(world.station, SYSTEM)) == 2  # placed, enabled

    assert world.system.post(f"/v1/items/{world.station}/methods/available").status_code == 200
    assert fk.item(world.station, SYSTEM).state == "available"


def test_another_accounts_ids_are_refused_and_nothing_changes(world: World) -> None:
    fk = world.api.fk
    before = fk.history(world.other_deal, SYSTEM)
    theirs = world.other_deal
    for response in (
        world.user.get(f"/v1/items/{theirs}"),
        world.user.get(f"/v1/items/{theirs}/methods"),
        world.user.post(f"/v1/items/{theirs}/methods/move_to_done"),
        world.user.post(f"/v1/items/{theirs}/actions/move"),
        world.user.post(f"/v1/items/{theirs}/move", json={"stage": "done"}),
        world.account_system.post(f"/v1/items/{theirs}/move", json={"stage": "done"}),
        world.user.get(f"/v1/items/{theirs}/explain/done"),
        world.user.get(f"/v1/items/{theirs}/history"),
        world.user.get(f"/v1/items/{theirs}/values"),
        world.user.patch(f"/v1/items/{theirs}/values", json={"values": {"x": 1}}),
        world.user.delete(f"/v1/items/{theirs}/values/x"),
        world.user.get(f"/v1/items/{theirs}/checklist"),
        world.user.put(f"/v1/items/{theirs}/checklist/x", json={"completed": True}),
        world.user.get(f"/v1/items/{theirs}/watchers"),
        world.user.put(f"/v1/items/{theirs}/watchers/7"),
        world.user.delete(f"/v1/items/{theirs}/watchers/7"),
        world.user.get(f"/v1/items/{theirs}/time-in-stage"),
    ):
        found = error(response, 404, "item_not_found")
        assert found["details"] == {"item_id": theirs}
    assert fk.history(world.other_deal, SYSTEM) == before
    assert fk.item(world.other_deal, SYSTEM).state == "new"
    assert fk.items.watchers(world.other_deal, SYSTEM) == []

    # placing into another account's pipeline, or into another account
    into = world.user.post(
        "/v1/items", json={"class": world.other, "object_type": "ticket", "object_id": 9}
    )
    error(into, 404, "unknown_definition")
    elsewhere = world.account_system.post(
        "/v1/items",
        json={
            "class": "station",
            "object_type": "charging_station",
            "object_id": 9,
            "account_id": 2,
        },
    )
    assert elsewhere.status_code in (403, 404), elsewhere.text
    assert error(elsewhere, elsewhere.status_code, elsewhere.json()["error"]["code"])


def test_values_checklist_and_history(world: World) -> None:
    fk = world.api.fk
    deal = world.deal
    read = world.user.get(f"/v1/items/{deal}/values")
    assert read.status_code == 200
    assert [v["name"] for v in read.json()] == [v.name for v in fk.items.values(deal, REP)]
    assert all(v["value"] is None for v in read.json())

    written = world.user.patch(
        f"/v1/items/{deal}/values",
        json={"values": {"contract_value": 1250.5, "close_date": "2030-01-31", "priority": "High"}},
    )
    assert written.status_code == 200, written.text
    assert {v["name"]: v["value"] for v in written.json()} == {
        "contract_value": "1250.5",
        "close_date": "2030-01-31",
        "priority": "High",
    }
    bad = world.user.patch(
        f"/v1/items/{deal}/values", json={"values": {"priority": "Urgent", "contract_value": 1}}
    )
    assert error(bad, 422, "invalid_value")["details"]["column"] == "priority"
    assert {v.name: v.value for v in fk.items.values(deal, REP)}["contract_value"] == "1250.5"
    several = world.user.patch(
        f"/v1/items/{deal}/values", json={"values": {"priority": "Urgent", "contract_value": "x"}}
    )
    refused = error(several, 422, "invalid_value")["details"]["refused"]
    assert [(r["column"], r["value"]) for r in refused] == [
        ("priority", "Urgent"),
        ("contract_value", "x"),
    ]
    assert all(r["expected"] for r in refused)
    assert {v.name: v.value for v in fk.items.values(deal, REP)}["priority"] == "High"
    unknown = world.user.patch(f"/v1/items/{deal}/values", json={"values": {"nope": 1}})
    error(unknown, 404, "unknown_definition")

    cleared = world.user.delete(f"/v1/items/{deal}/values/priority")
    assert cleared.json() == {"column": "priority", "cleared": True}
    again = world.user.delete(f"/v1/items/{deal}/values/priority")
    assert again.json() == {"column": "priority", "cleared": False}

    # into proposal now that close_date is set; its checklist guards leaving it
    assert world.user.post(f"/v1/items/{deal}/move", json={"stage": "proposal"}).status_code == 200
    needed = world.user.delete(f"/v1/items/{deal}/values/close_date")
    assert error(needed, 422, "invalid_value")["details"]["column"] == "close_date"
    checklist = world.user.get(f"/v1/items/{deal}/checklist").json()
    assert [(e["key"], e["required"], e["completed"]) for e in checklist] == [
        ("proposal_sent", True, False),
        ("budget_confirmed", True, False),
        ("legal_reviewed", False, False),
    ]
    stuck = world.user.post(f"/v1/items/{deal}/move", json={"stage": "won"})
    open_items = error(stuck, 422, "checklist_incomplete")["details"]["open_items"]
    assert open_items == [
        {"key": "proposal_sent", "label": "Proposal sent to client"},
        {"key": "budget_confirmed", "label": "Budget confirmed"},
    ]
    for key in ("proposal_sent", "budget_confirmed"):
        marked = world.user.put(f"/v1/items/{deal}/checklist/{key}", json={"completed": True})
        assert marked.status_code == 200
        assert marked.json()["completed"] is True and marked.json()["completed_by"] == 7
    reopened = world.user.put(
        f"/v1/items/{deal}/checklist/budget_confirmed", json={"completed": False}
    )
    assert reopened.json()["completed"] is False
    world.user.put(f"/v1/items/{deal}/checklist/budget_confirmed", json={"completed": True})
    error(
        world.user.put(f"/v1/items/{deal}/checklist/nope", json={"completed": True}),
        404,
        "unknown_definition",
    )
    assert world.user.post(f"/v1/items/{deal}/move", json={"stage": "won"}).status_code == 200

    history = world.user.get(f"/v1/items/{deal}/history")
    assert [(h["from_state"], h["to_state"]) for h in history.json()] == [
        (None, "lead"),
        ("lead", "proposal"),
        ("proposal", "won"),
    ]
    assert [h["id"] for h in history.json()] == [h.id for h in fk.history(deal, REP)]
    times = world.user.get(f"/v1/items/{deal}/time-in-stage").json()
    assert [(t["stage_code"], t["entries"]) for t in times] == [
        ("lead", 1),
        ("proposal", 1),
        ("won", 1),
    ]
    assert all(t["total_seconds"] >= 0 for t in times)


def test_watchers(world: World) -> None:
    deal = world.deal
    assert world.user.get(f"/v1/items/{deal}/watchers").json() == []
    first = world.user.put(f"/v1/items/{deal}/watchers/9")
    assert first.json() == {"user_id": 9, "watching": True, "changed": True}
    assert world.user.put(f"/v1/items/{deal}/watchers/9").json()["changed"] is False
    world.user.put(f"/v1/items/{deal}/watchers/3")
    assert world.user.get(f"/v1/items/{deal}/watchers").json() == [3, 9]
    gone = world.user.delete(f"/v1/items/{deal}/watchers/9")
    assert gone.json() == {"user_id": 9, "watching": False, "changed": True}
    assert world.user.delete(f"/v1/items/{deal}/watchers/9").json()["changed"] is False
    assert world.api.fk.items.watchers(deal, REP) == [3]


def test_idempotency_keys_over_http(world: World) -> None:
    fk = world.api.fk
    url = f"/v1/items/{world.deal}/methods/move_to_qualified"
    first = world.user.post(url, headers={"Idempotency-Key": "deal-1-qualify"})
    assert first.status_code == 200
    again = world.user.post(url, headers={"Idempotency-Key": "deal-1-qualify"})
    assert again.status_code == 200 and again.json() == first.json()
    in_body = world.user.post(url, json={"idempotency_key": "deal-1-qualify"})
    assert in_body.json() == first.json()
    assert len(fk.history(world.deal, REP)) == 2  # placed, qualified once

    # the same key for another request is refused; nothing changes
    other = world.user.post(
        f"/v1/items/{world.deal}/move",
        json={"stage": "lead"},
        headers={"Idempotency-Key": "deal-1-qualify"},
    )
    error(other, 409, "idempotency_key_reused")
    assert fk.item(world.deal, REP).state == "qualified"

    # header and body must agree; a move and an action take keys too
    both = world.user.post(url, json={"idempotency_key": "b"}, headers={"Idempotency-Key": "a"})
    error(both, 422, "invalid_argument")
    back = world.user.post(
        f"/v1/items/{world.deal}/move", json={"stage": "lead", "idempotency_key": "deal-1-back"}
    )
    repeat = world.user.post(
        f"/v1/items/{world.deal}/move",
        json={"stage": "lead"},
        headers={"Idempotency-Key": "deal-1-back"},
    )
    assert back.status_code == repeat.status_code == 200 and back.json() == repeat.json()
    # JSON numbers of one value are one request, however the client wrote them
    status = f"/v1/items/{world.station}/methods/heartbeat"
    sent = [
        world.system.post(
            status,
            content=body,
            headers={"Idempotency-Key": "st-beat-n", "Content-Type": "application/json"},
        )
        for body in ('{"params": {"n": 1}}', '{"params": {"n": 1.0}}', '{"params": {"n": 10e-1}}')
    ]
    assert [r.status_code for r in sent] == [200, 200, 200], sent[0].text
    assert sent[0].json() == sent[1].json() == sent[2].json()
    beat = f"/v1/items/{world.station}/actions/heartbeat"
    one = world.system.post(beat, headers={"Idempotency-Key": "beat-1"})
    two = world.system.post(beat, headers={"Idempotency-Key": "beat-1"})
    assert one.json() == two.json()
    # once under "st-beat-n", once under "beat-1"
    assert len([c for c in _calls(world.api, world.station) if c == "heartbeat"]) == 2


def _calls(api: Api, item_id: int) -> list[str]:
    with api.fk.engine.connect() as conn:
        return list(
            conn.execute(
                select(method_calls.c.method_code)
                .where(method_calls.c.flow_item_id == item_id)
                .order_by(method_calls.c.id)
            ).scalars()
        )


def test_a_wrong_object_type_is_refused_over_http(world: World) -> None:
    refused = world.system.post(
        "/v1/items",
        json={"class": "station", "object_type": "ev_charger", "object_id": 20, "account_id": 1},
    )
    assert refused.status_code == 422, refused.text
    problem = refused.json()["error"]
    assert problem["code"] == "wrong_object_type"
    assert problem["details"]["expected"] == "charging_station"
