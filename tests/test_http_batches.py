"""The batch endpoint: many executions in one transaction, abort or skip on a refusal."""

from __future__ import annotations

import threading

from http_fixtures import World, api, world
from sqlalchemy import func, select

from flowkernel import SYSTEM
from flowkernel.http.bodies import BatchOut
from flowkernel.store.tables import method_calls

__all__ = ["api", "world"]


def stations(world: World, count: int) -> list[int]:
    fk = world.api.fk
    ids = []
    for n in range(count):
        item = fk.place("station", "charging_station", 1000 + n, SYSTEM, account_id=1)
        fk.execute(item.id, "enable", SYSTEM)
        ids.append(item.id)
    return ids


def test_a_batch_of_heartbeats_and_reports(world: World) -> None:
    fk = world.api.fk
    ids = stations(world, 4)
    body = {
        "executions": [
            {"item_id": ids[0], "method": "heartbeat"},
            {"item_id": ids[1], "method": "available"},
            {"item_id": ids[2], "method": "faulted"},
            {"item_id": ids[3], "method": "heartbeat"},
        ],
        "params": {"status": "ok"},
    }
    done = world.account_system.post("/v1/batches", json=body)
    assert done.status_code == 200, done.text
    result = done.json()
    assert BatchOut.model_validate(result).model_dump(mode="json") == result
    assert (result["ok"], result["executed"], result["refused"]) == (True, 4, 0)
    assert [o["item_id"] for o in result["outcomes"]] == ids
    assert [o["result"]["to_state"] for o in result["outcomes"]] == [
        "unavailable",
        "available",
        "faulted",
        "unavailable",
    ]
    assert all(o["ok"] and o["error"] is None for o in result["outcomes"])
    assert [fk.item(i, SYSTEM).state for i in ids] == [
        "unavailable",
        "available",
        "faulted",
        "unavailable",
    ]

    by_action = world.system.post(
        "/v1/batches",
        json={
            "executions": [{"item_id": i, "method": "heartbeat"} for i in ids],
            "by_action": True,
        },
    )
    assert by_action.status_code == 200 and by_action.json()["executed"] == 4
    empty = world.system.post("/v1/batches", json={"executions": []})
    assert empty.json() == {"ok": True, "executed": 0, "refused": 0, "outcomes": []}


def test_abort_refuses_the_whole_batch(world: World) -> None:
    fk = world.api.fk
    ids = stations(world, 3)
    body = {
        "executions": [
            {"item_id": ids[0], "method": "available"},
            {"item_id": ids[1], "method": "disable"},
            {"item_id": ids[2], "method": "nope"},
        ]
    }
    refused = world.system.post("/v1/batches", json=body)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "method_not_available"
    assert refused.json()["error"]["details"]["method"] == "nope"
    assert [fk.item(i, SYSTEM).state for i in ids] == ["unavailable"] * 3

    # a user's batch of hidden methods, and another account's items, are refused as well
    hidden = world.user.post(
        "/v1/batches", json={"executions": [{"item_id": ids[0], "method": "available"}]}
    )
    assert hidden.json()["error"]["code"] == "method_not_available"
    theirs = world.stranger.post(
        "/v1/batches", json={"executions": [{"item_id": ids[0], "method": "disable"}]}
    )
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "item_not_found"
    twice = world.system.post(
        "/v1/batches",
        json={"executions": [{"item_id": ids[0], "method": "disable"}] * 2},
    )
    assert twice.status_code == 422 and twice.json()["error"]["code"] == "invalid_argument"
    assert [fk.item(i, SYSTEM).state for i in ids] == ["unavailable"] * 3


def test_skip_reports_refusals_and_commits_the_rest(world: World) -> None:
    fk = world.api.fk
    ids = stations(world, 3)
    body = {
        "executions": [
            {"item_id": ids[0], "method": "available"},
            {"item_id": world.other_deal, "method": "move_to_done"},
            {"item_id": ids[1], "method": "nope"},
            {"item_id": ids[2], "method": "faulted"},
        ],
        "on_error": "skip",
    }
    done = world.account_system.post("/v1/batches", json=body)
    assert done.status_code == 200, done.text
    result = done.json()
    assert BatchOut.model_validate(result).model_dump(mode="json") == result
    assert (result["ok"], result["executed"], result["refused"]) == (False, 2, 2)
    outcomes = result["outcomes"]
    assert [o["ok"] for o in outcomes] == [True, False, False, True]
    assert outcomes[1]["error"]["code"] == "item_not_found"
    assert outcomes[1]["result"] is None
    assert outcomes[2]["error"]["code"] == "method_not_available"
    assert outcomes[2]["error"]["details"]["available"]
    assert [fk.item(i, SYSTEM).state for i in ids] == ["available", "unavailable", "faulted"]
    assert fk.item(world.other_deal, SYSTEM).state == "new"


def test_malformed_batches(world: World) -> None:
    for body in (
        [],
        {"executions": [{"item_id": 0, "method": "heartbeat"}]},
        {"executions": [{"item_id": 1}]},
        {"executions": [{"item_id": 1, "method": ""}]},
        {"executions": [], "on_error": "ignore"},
        {"executions": [], "params": []},
        {"executions": [{"item_id": 1, "method": "x"}] * 10_001},
    ):
        refused = world.system.post("/v1/batches", json=body)
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "invalid_request" and error["details"]["problems"]


def test_concurrent_requests_all_commit(world: World) -> None:
    """Overlapping batches and single heartbeats from several clients at once: the server's
    thread pool runs them side by side, and every one commits exactly once."""
    ids = stations(world, 6)
    token = world.api.tokens.issue("gateways", system=True).token
    statuses: list[int] = []

    def gateway(k: int) -> None:
        with world.api.client(token) as client:
            for _ in range(5):
                single = client.post(f"/v1/items/{ids[k]}/methods/heartbeat")
                overlapping = client.post(
                    "/v1/batches",
                    json={"executions": [{"item_id": i, "method": "heartbeat"} for i in ids]},
                )
                statuses.extend((single.status_code, overlapping.status_code))

    threads = [threading.Thread(target=gateway, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 40
    with world.api.fk.engine.connect() as conn:
        beats = conn.execute(
            select(func.count())
            .select_from(method_calls)
            .where(method_calls.c.flow_item_id.in_(ids), method_calls.c.method_code == "heartbeat")
        ).scalar_one()
    assert beats == 4 * 5 * (1 + len(ids))
