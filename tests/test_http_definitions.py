"""Pipelines (list, create from a document, show, dump, board, funnel, time in stage) and
classes (list, create from a document, show, dump) over HTTP, per account."""

from __future__ import annotations

from pathlib import Path

from http_fixtures import World, api, world
from rows import every_row

from flowkernel import SYSTEM, Actor
from flowkernel.documents.classes import dump_class, loads
from flowkernel.documents.pipelines import dump_pipeline

__all__ = ["api", "world"]

REP = Actor.user(7, 1, ("sales",))
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_pipelines_list_show_and_dump(world: World) -> None:
    fk = world.api.fk
    listed = world.user.get("/v1/pipelines")
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()] == [world.sales]
    sales = world.user.get(f"/v1/pipelines/{world.sales}").json()
    info = fk.pipelines.get_pipeline(world.sales, REP)
    assert [s["code"] for s in sales["stages"]] == [s.code for s in info.stages]
    assert sales["stages"][2]["required_columns"] == ["close_date"]
    assert [c["key"] for c in sales["stages"][2]["checklist"]] == [
        c.key for c in info.stage("proposal").checklist
    ]
    assert [c["name"] for c in sales["columns"]] == [c.name for c in info.columns]
    assert [a["event_name"] for a in sales["automations"]] == [
        a.event_name for a in info.automations
    ]
    document = world.user.get(f"/v1/pipelines/{world.sales}/document")
    assert document.json() == dump_pipeline(info)

    assert world.stranger.get("/v1/pipelines").json()[0]["id"] == world.other
    assert world.system.get("/v1/pipelines", params={"account_id": 2}).json()[0]["id"] == (
        world.other
    )
    for path in ("", "/document", "/board", "/time-in-stage"):
        hidden = world.user.get(f"/v1/pipelines/{world.other}{path}")
        assert hidden.status_code == 404, path
        assert hidden.json()["error"]["code"] == "unknown_definition"
    foreign = world.user.get("/v1/pipelines", params={"account_id": 2})
    assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "access_denied"
    assert world.user.get("/v1/pipelines", params={"templates": True}).json() == []


def test_create_a_pipeline_from_a_document(world: World) -> None:
    fk = world.api.fk
    document = {
        "name": "Hiring",
        "code": "hiring",
        "stages": [
            {"name": "Applied"},
            {"name": "Interview", "requires": ["cv"], "checklist": [{"key": "booked"}]},
            {"name": "Hired", "is_won": True},
        ],
        "columns": [{"name": "cv", "field_type": "text"}],
        "movement": {"allow_backward": False},
    }
    created = world.user.post("/v1/pipelines", json=document)
    assert created.status_code == 201, created.text
    info = created.json()
    assert info["account_id"] == 1 and info["user_id"] == 7 and info["allow_backward"] is False
    assert [s["code"] for s in info["stages"]] == ["applied", "interview", "hired"]
    assert fk.pipelines.get_pipeline(info["id"], REP).stage("interview").required_columns == ("cv",)
    again = world.user.post("/v1/pipelines", json=document)
    # a document reports every refusal at its path: here the whole document's code
    assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_document"
    assert "already exists" in again.json()["error"]["message"]
    bad = world.user.post("/v1/pipelines", json={"name": "X", "stages": [{"nam": "A"}]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_document"
    assert bad.json()["error"]["details"]["path"].startswith("stages[0]")
    elsewhere = world.user.post("/v1/pipelines", params={"account_id": 2}, json={"name": "X"})
    assert elsewhere.status_code == 403
    assert [p.name for p in fk.pipelines.list_pipelines(Actor.user(1, 2))] == ["Support"]
    not_an_object = world.user.post("/v1/pipelines", json=["name"])
    assert not_an_object.status_code == 422
    assert not_an_object.json()["error"]["code"] == "invalid_request"


def test_board_stage_items_funnel_and_time_in_stage(world: World) -> None:
    fk = world.api.fk
    deals = [fk.place(world.sales, "crm_opportunity", 500 + n, REP).id for n in range(3)]
    for deal in deals[:2]:
        fk.items.set_values(deal, {"contract_value": 100, "close_date": "2030-01-01"}, REP)
        fk.move(deal, "qualified", REP)

    board = world.user.get(
        f"/v1/pipelines/{world.sales}/board",
        params={"per_stage": 1, "value_column": "contract_value"},
    )
    assert board.status_code == 200, board.text
    found = board.json()
    expected = fk.queries.board(world.sales, REP, per_stage=1, value_column="contract_value")
    assert [(s["code"], s["count"]) for s in found["stages"]] == [
        (s.code, s.count) for s in expected.stages
    ]
    qualified = found["stages"][1]
    assert qualified["count"] == 2 and len(qualified["items"]) == 1
    assert qualified["value_sum"] == "200" and found["next_cursor"] is not None

    # by code as by id, and the same default sums as the library and the command line
    by_code = world.user.get("/v1/pipelines/sales/board", params={"per_stage": 1})
    assert by_code.status_code == 200, by_code.text
    assert by_code.json()["value_column"] == "contract_value"
    assert by_code.json()["stages"] == found["stages"]
    none = world.user.get("/v1/pipelines/sales/board", params={"value_column": ""}).json()
    assert none["value_column"] is None and none["value_sum"] is None
    assert world.user.get("/v1/pipelines/nope/board").status_code == 404

    rest = world.user.get(
        f"/v1/pipelines/{world.sales}/stages/qualified/items",
        params={"cursor": qualified["next_cursor"], "limit": 5},
    )
    assert rest.status_code == 200, rest.text
    assert len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None
    seen = {qualified["items"][0]["id"], rest.json()["items"][0]["id"]}
    assert seen == set(deals[:2])
    bad_cursor = world.user.get(
        f"/v1/pipelines/{world.sales}/board", params={"cursor": "not a cursor"}
    )
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["error"]["code"] == "invalid_argument"

    funnel = world.user.get(
        f"/v1/pipelines/{world.sales}/funnel",
        params={"from_stage": "lead", "to_stage": "qualified"},
    )
    assert funnel.status_code == 200
    assert (funnel.json()["entered"], funnel.json()["converted"]) == (4, 2)
    assert funnel.json()["rate"] == 0.5
    unknown = world.user.get(
        f"/v1/pipelines/{world.sales}/funnel", params={"from_stage": "lead", "to_stage": "nope"}
    )
    assert unknown.status_code == 404

    times = world.user.get(f"/v1/pipelines/{world.sales}/time-in-stage").json()
    assert [(t["stage_code"], t["entries"], t["exits"]) for t in times][:2] == [
        ("lead", 4, 2),
        ("qualified", 2, 0),
    ]


def test_classes_list_show_dump_and_create(world: World) -> None:
    fk = world.api.fk
    listed = world.user.get("/v1/classes")
    assert listed.status_code == 200
    codes = [c["code"] for c in listed.json()]
    assert "station" in codes and "sales" in codes and "support" not in str(codes)
    shown = world.user.get("/v1/classes/station")
    assert shown.status_code == 200
    station = shown.json()
    assert [s["code"] for s in station["states"]] == [
        s.code for s in fk.definitions.list_states("station")
    ]
    assert any(m["code"] == "heartbeat" and m["visible"] is False for m in station["methods"])
    assert world.user.get(f"/v1/classes/{station['id']}").json() == station
    dumped = world.user.get("/v1/classes/station/document")
    assert dumped.json() == dump_class(fk, "station")

    document = loads((EXAMPLES / "station.yaml").read_text())
    document["class"] = "kiosk"
    refused = world.user.post("/v1/classes", json=document)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "access_denied"
    created = world.account_system.post("/v1/classes", json=document)
    assert created.status_code == 201, created.text
    assert created.json()["account_id"] == 1 and created.json()["code"] == "kiosk"
    assert dump_class(fk, "kiosk", 1) | {"class": "station"} == dump_class(fk, "station")
    assert world.user.get("/v1/classes/kiosk").status_code == 200
    assert world.stranger.get("/v1/classes/kiosk").status_code == 404
    duplicate = world.account_system.post("/v1/classes", json=document)
    assert duplicate.status_code == 409
    platform = world.system.post("/v1/classes", json=document)
    assert platform.status_code == 201 and platform.json()["account_id"] is None
    into_2 = world.system.post("/v1/classes", params={"account_id": 2}, json=document)
    assert into_2.status_code == 201 and into_2.json()["account_id"] == 2
    other = world.account_system.post("/v1/classes", params={"account_id": 2}, json=document)
    assert other.status_code == 403
    broken = world.system.post("/v1/classes", json={"class": "x", "states": [{"code": "a"}]})
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_document"
    assert [c.code for c in fk.definitions.list_classes(2)].count("x") == 0
    assert world.user.get("/v1/classes/nope").status_code == 404
    assert fk.item(world.station, SYSTEM).class_code == "station"


def test_a_class_hidden_by_a_rule_is_not_read_over_http(world: World) -> None:
    """A class-wide `visible` deny hides the class's definition as well as its items; the
    refusal does not name the class, and a system token still reads it."""
    fk = world.api.fk
    deny = {"subject": "sales", "subject_kind": "group", "permission": "visible", "effect": "deny"}
    fk.definitions.add_access_rule("station", **deny)
    fk.definitions.add_access_rule("sales", account_id=1, **deny)
    station = fk.definitions.get_class("station")
    sales = fk.definitions.get_class(world.sales, 1)
    names = {station.code, station.label, sales.label}  # its code is the group's name, "sales"

    listed = world.user.get("/v1/classes")
    assert listed.status_code == 200
    assert not {c["code"] for c in listed.json()} & {"station", sales.code}
    before = every_row(fk)
    for path in (
        "/v1/classes/station",
        f"/v1/classes/{station.id}",
        f"/v1/classes/{world.sales}",
        f"/v1/classes/{sales.code}",
        "/v1/classes/station/document",
        "/v1/classes/station/problems",
        f"/v1/pipelines/{world.sales}",
        f"/v1/items/{world.station}",
    ):
        refused = world.user.get(path)
        assert refused.status_code == 403, (path, refused.text)
        problem = refused.json()["error"]
        assert problem["code"] == "access_denied"
        assert "visible" in problem["message"]
        assert not any(name in refused.text for name in names), (path, refused.text)
    assert every_row(fk) == before
    for client in (world.system, world.account_system):
        assert client.get("/v1/classes/station").status_code == 200
        assert "station" in {c["code"] for c in client.get("/v1/classes").json()}
    assert world.stranger.get("/v1/classes/station").status_code == 200  # not in group sales
