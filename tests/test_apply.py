"""Applying class documents: a class is created or brought in line with its document entry by
entry, the plan says every change and the items it affects, a dry run changes nothing, the
same documents twice change nothing, and a change that would strand items is refused."""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from http_fixtures import Api, api
from rows import every_row

from flowkernel import SYSTEM, Actor, Flowkernel
from flowkernel.cli import main
from flowkernel.documents import apply, dump_class
from flowkernel.errors import DefinitionInUse, InvalidDocument
from flowkernel.examples.charging_station import register_handlers
from flowkernel.store.database import reading

__all__ = ["api"]

STATION_YAML = Path(__file__).resolve().parents[1] / "examples" / "station.yaml"
TECH = Actor.user(3, None, groups=("technicians",))


@pytest.fixture
def fk(fk: Flowkernel) -> Flowkernel:
    """The station document names the station example's handlers: register them."""
    register_handlers(fk)
    return fk


def station() -> dict[str, Any]:
    return yaml.safe_load(STATION_YAML.read_text(encoding="utf-8"))


def changed_station() -> dict[str, Any]:
    """The station with a pause: a new state, methods and transitions into it and out, a
    heartbeat that keeps its last call only, a retargeted `faulted` from unavailable, no
    `disable` from faulted, an event turned off, and an access rule."""
    doc = station()
    doc["states"].insert(4, {"code": "paused", "type": "enabled", "label": "Paused"})
    doc["actions"].append({"code": "pause", "label": "Pause"})
    doc["methods"].append({"code": "pause", "action": "pause", "state": "available"})
    doc["methods"].append({"code": "available", "action": "available", "state": "paused"})
    doc["transitions"].append({"state": "available", "method": "pause", "to": "paused"})
    doc["transitions"].append({"state": "paused", "method": "available", "to": "available"})
    doc["events"].append({"action": "pause", "handler": "change_object_state"})
    for m in doc["methods"]:
        if m["code"] == "heartbeat":
            m["call_log"] = "last"
    doc["methods"] = [
        m for m in doc["methods"] if not (m["state"] == "faulted" and m["code"] == "disable")
    ]
    doc["transitions"] = [
        t for t in doc["transitions"] if not (t["state"] == "faulted" and t["method"] == "disable")
    ]
    for t in doc["transitions"]:
        if t["state"] == "unavailable" and t["method"] == "faulted":
            t["to"] = "disabled"
    for e in doc["events"]:
        if e.get("handler") == "station_heartbeat":
            e["enabled"] = False
    doc["access"] = [{"subject": "technicians", "subject_kind": "group", "method": "faulted"}]
    return doc


def place_stations(fk: Flowkernel) -> dict[str, int]:
    """Stations in created, available, unavailable and faulted."""
    placed = {}
    for n, path in enumerate(((), ("enable",), ("enable", "available"), ("enable", "faulted"))):
        item = fk.place("station", "charging_station", n + 1, SYSTEM).id
        for method in path:
            fk.execute(item, method, SYSTEM)
        placed[fk.item(item, SYSTEM).state] = item
    return placed


def test_a_document_creates_its_class_then_changes_nothing(fk: Flowkernel) -> None:
    [plan] = apply(fk, [station()], dry_run=True)
    assert plan.created and plan.changes[0].op == "add"
    assert ("state", "faulted", "add") in {(c.kind, c.key, c.op) for c in plan.changes}
    assert fk.definitions.list_classes() == []  # a dry run wrote nothing
    [plan] = apply(fk, [station()])
    assert plan.created
    assert dump_class(fk, "station") == station()
    before = every_row(fk)
    [again] = apply(fk, [station()])
    assert (again.created, again.unchanged, again.changes) == (False, True, ())
    assert every_row(fk) == before  # not even the class's version moved


def test_a_changed_document_is_planned_then_applied(fk: Flowkernel) -> None:
    apply(fk, [station()])
    placed = place_stations(fk)
    version = fk.definitions.get_class("station").version
    before = every_row(fk)
    [plan] = apply(fk, [changed_station()], dry_run=True)
    assert every_row(fk) == before
    found = {(c.kind, c.key, c.op): (c.detail, c.items) for c in plan.changes}
    assert found == {
        ("state", "paused", "add"): ("enabled", None),
        ("method", "available.pause", "add"): ("pause", None),
        ("method", "paused.available", "add"): ("available", None),
        ("method", "available.heartbeat", "change"): ("call_log 'all' -> 'last'", 1),
        ("method", "unavailable.heartbeat", "change"): ("call_log 'all' -> 'last'", 1),
        ("method", "faulted.heartbeat", "change"): ("call_log 'all' -> 'last'", 1),
        ("method", "faulted.disable", "remove"): ("disable", 1),
        ("transition", "available.pause", "add"): ("to paused", None),
        ("transition", "paused.available", "add"): ("to available", None),
        ("transition", "unavailable.faulted", "change"): ("to 'faulted' -> 'disabled'", 1),
        ("transition", "faulted.disable", "remove"): ("to disabled", 1),
        ("event", "pause", "add"): ("change_object_state", None),
        ("event", "heartbeat", "change"): ("station_heartbeat: enabled True -> False", 4),
        ("access rule", "group technicians execute faulted", "add"): ("allow", None),
    }
    assert plan.refusals == []
    [done] = apply(fk, [changed_station()])
    assert done.changes == plan.changes
    dumped = dump_class(fk, "station")
    assert [(st["code"], st["position"]) for st in dumped["states"]] == [
        ("created", 0),
        ("available", 1),
        ("unavailable", 2),
        ("faulted", 3),
        ("disabled", 4),
        ("deleted", 5),
        ("paused", 6),
    ]
    assert apply(fk, [dumped])[0].unchanged  # the dump is the document applied
    assert fk.definitions.get_class("station").version > version
    # the items run under the new definition: the pause exists where they are
    assert "pause" in {m.code for m in fk.methods(placed["available"], SYSTEM)}
    assert fk.execute(placed["available"], "pause", SYSTEM).to_state == "paused"
    assert ("faulted", "disable") not in {
        (m.state, m.code) for m in fk.definitions.list_methods("station")
    }
    [same] = apply(fk, [changed_station()])
    assert same.unchanged


def test_removing_a_state_in_use_is_refused_and_changes_nothing(fk: Flowkernel) -> None:
    apply(fk, [station()])
    place_stations(fk)
    doc = station()
    doc["states"] = [s for s in doc["states"] if s["code"] != "faulted"]
    doc["methods"] = [
        m for m in doc["methods"] if m["state"] != "faulted" and m["code"] != "faulted"
    ]
    doc["transitions"] = [
        t for t in doc["transitions"] if "faulted" not in (t["state"], t["to"], t["method"])
    ]
    before = every_row(fk)
    [plan] = apply(fk, [doc], dry_run=True)
    [refusal] = plan.refusals
    assert (refusal.kind, refusal.key, refusal.op, refusal.refused) == (
        "state",
        "faulted",
        "remove",
        "1 item(s)",
    )
    with pytest.raises(DefinitionInUse, match="faulted"):
        apply(fk, [doc])
    assert every_row(fk) == before


def test_a_plan_the_class_rules_refuse_is_refused_by_the_dry_run_too(fk: Flowkernel) -> None:
    apply(fk, [station()])
    doc = station()
    doc["states"].append({"code": "nowhere", "type": "enabled"})  # nothing leads there
    before = every_row(fk)
    for dry_run in (True, False):
        with pytest.raises(InvalidDocument, match="cannot be reached"):
            apply(fk, [doc], dry_run=dry_run)
        assert every_row(fk) == before


def test_documents_of_an_account_shadow_the_platform_class(fk: Flowkernel) -> None:
    apply(fk, [station()])
    platform = dump_class(fk, "station")
    doc = copy.deepcopy(station())
    doc["label"] = "Our stations"
    [plan] = apply(fk, [doc], account_id=5)
    assert plan.created
    assert dump_class(fk, "station") == platform
    assert dump_class(fk, "station", 5)["label"] == "Our stations"
    [plan] = apply(fk, [doc], account_id=5)
    assert plan.unchanged


def test_apply_on_the_command_line(
    fk: Flowkernel, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "classes"
    folder.mkdir()
    (folder / "station.yaml").write_text(STATION_YAML.read_text(encoding="utf-8"))
    db = ["--database-url", database_url, "--plugin", "flowkernel.examples.charging_station"]
    assert main([*db, "apply", str(folder), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("class station: to create\n") and out.endswith(
        "dry run: nothing changed\n"
    )
    assert main([*db, "apply", str(folder)]) == 0
    assert capsys.readouterr().out.endswith("applied 1 document(s) in one transaction\n")
    assert main([*db, "apply", str(folder)]) == 0
    assert capsys.readouterr().out == (
        "class station: unchanged\nnothing to apply: the database matches the documents\n"
    )
    (folder / "station.yaml").write_text(yaml.safe_dump(changed_station()))
    assert main([*db, "apply", str(folder / "station.yaml"), "--dry-run", "--json"]) == 0
    [plan] = json.loads(capsys.readouterr().out)
    assert plan["code"] == "station" and len(plan["changes"]) == 14
    pipeline = tmp_path / "sales.yaml"
    pipeline.write_text("name: Sales\ncode: sales\nstages: [{name: Lead}]\n")
    assert main([*db, "apply", str(pipeline), "--account-id", "1"]) == 0
    assert capsys.readouterr().out.startswith("pipeline sales: to create\n")
    assert main([*db, "apply", str(tmp_path / "missing.yaml")]) == 2


def test_apply_over_http_is_for_system_tokens(fk: Flowkernel, api: Api) -> None:
    system = api.tokens.issue("ops", system=True).token
    user = api.tokens.issue("rep", account_id=1, user_id=7).token
    with api.client(user) as client:
        refused = client.post("/v1/apply", json=[station()])
        assert refused.status_code == 403, refused.text
    with api.client(system) as client:
        planned = client.post("/v1/apply", params={"dry_run": "true"}, json=[station()])
        assert planned.status_code == 200, planned.text
        assert planned.json()[0]["created"] is True
        assert fk.definitions.list_classes() == []
        done = client.post("/v1/apply", json=[station()])
        assert done.status_code == 200 and done.json()[0]["created"] is True
        again = client.post("/v1/apply", json=[station()])
        assert again.json() == [
            {"kind": "class", "code": "station", "created": False, "unchanged": True, "changes": []}
        ]
        bad = client.post("/v1/apply", json=[{"class": "x", "states": "no"}])
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_document"


# --- pipelines -------------------------------------------------------------------------------

ADMIN = Actor.system(1)


def sales() -> dict[str, Any]:
    return {
        "name": "Sales",
        "code": "sales",
        "stages": [
            {"name": "Lead", "probability": 10},
            {"name": "Qualified", "probability": 30, "requires": ["amount"]},
            {"name": "Won", "is_won": True},
            {"name": "Lost", "is_lost": True},
        ],
        "columns": [
            {"name": "amount", "field_type": "number"},
            {"name": "notes"},
        ],
        "automations": [{"trigger": "stage_entered", "stage": "won", "event_name": "deal.won"}],
    }


def changed_sales() -> dict[str, Any]:
    doc = sales()
    doc["stages"].insert(
        2,
        {
            "name": "Proposal",
            "probability": 60,
            "checklist": [{"key": "sent", "label": "Proposal sent", "required": True}],
        },
    )
    doc["stages"][1]["probability"] = 40
    doc["stages"][1]["requires"] = []
    doc["columns"] = [{"name": "amount", "field_type": "number", "label": "Amount (EUR)"}]
    doc["automations"][0]["name"] = "Won deals"
    doc["movement"] = {"allow_backward": False}
    return doc


def test_a_pipeline_document_creates_then_changes_its_pipeline(fk: Flowkernel) -> None:
    [plan] = apply(fk, [sales()], account_id=1)
    assert plan.kind == "pipeline" and plan.created
    [again] = apply(fk, [sales()], account_id=1)
    assert again.unchanged
    pid = fk.pipelines.pipeline_id("sales", ADMIN)
    deal = fk.place(pid, "deal", 1, ADMIN).id
    before = every_row(fk)
    [plan] = apply(fk, [changed_sales()], account_id=1, dry_run=True)
    assert every_row(fk) == before
    found = {(c.kind, c.key, c.op): c.detail for c in plan.changes}
    assert (
        found
        == {
            ("column", "amount", "change"): "label 'amount' -> 'Amount (EUR)'",
            ("column", "notes", "remove"): "deactivated; values kept",
            ("stage", "qualified", "change"): "probability 30 -> 40",
            ("requirement", "qualified.amount", "remove"): "",
            ("stage", "proposal", "add"): "Proposal",
            ("stage", "*", "change"): "order ['lead', 'qualified', 'won', 'lost'] -> "
            "['lead', 'qualified', 'won', 'lost']",
            ("movement", "", "change"): "allow_backward True -> False",
            ("automation", "stage_entered won deal.won", "change"): "name None -> 'Won deals'",
        }
        or found
    )  # the order entry appears only when the kept stages move
    [done] = apply(fk, [changed_sales()], account_id=1)
    assert not done.unchanged
    info = fk.pipelines.get_pipeline(pid, ADMIN)
    assert [s.code for s in info.stages] == ["lead", "qualified", "proposal", "won", "lost"]
    assert info.stage("qualified").probability == 40
    assert info.stage("qualified").required_columns == ()
    assert [c.key for c in info.stage("proposal").checklist] == ["sent"]
    assert not info.column("notes").is_active
    assert (info.allow_backward, info.automations[0].name) == (False, "Won deals")
    assert fk.item(deal, ADMIN).state == "lead"  # items stay where they are
    [same] = apply(fk, [changed_sales()], account_id=1)
    assert same.unchanged, same.changes


def test_removing_a_stage_with_items_is_refused(fk: Flowkernel) -> None:
    apply(fk, [sales()], account_id=1)
    pid = fk.pipelines.pipeline_id("sales", ADMIN)
    fk.place(pid, "deal", 1, ADMIN)
    doc = sales()
    doc["stages"] = doc["stages"][1:]
    before = every_row(fk)
    [plan] = apply(fk, [doc], account_id=1, dry_run=True)
    assert [(c.kind, c.key, c.refused) for c in plan.refusals] == [("stage", "lead", "1 item(s)")]
    with pytest.raises(DefinitionInUse, match="lead"):
        apply(fk, [doc], account_id=1)
    assert every_row(fk) == before


def test_a_pipeline_document_without_a_code_is_refused(fk: Flowkernel) -> None:
    doc = sales()
    del doc["code"]
    with pytest.raises(InvalidDocument, match="code"):
        apply(fk, [doc], account_id=1)


def test_no_definition_is_read_half_applied(fk: Flowkernel) -> None:
    """Documents applied over and over while the class is compiled again and again: every
    compiled class is one whole document's, never part of one and part of the other (a
    definition is read in several statements, each seeing the latest commit on PostgreSQL)."""
    apply(fk, [station()])
    class_id = fk.definitions.get_class("station").id
    shapes = set()
    for doc in (changed_station(), station()):
        apply(fk, [doc])
        fk.executor.cache.clear()
        with reading(fk.executor.sessions) as session:
            c = fk.executor.cache.compile(session, class_id)
        shapes.add((len(c.states), sum(len(m) for m in c.methods.values()), len(c.access)))
    assert len(shapes) == 2
    done = threading.Event()
    failures: list[BaseException] = []

    def flip() -> None:
        try:
            for k in range(30):
                apply(fk, [changed_station() if k % 2 == 0 else station()])
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            done.set()

    flipper = threading.Thread(target=flip)
    flipper.start()
    seen = set()
    while not done.is_set():
        fk.executor.cache.clear()
        with reading(fk.executor.sessions) as session:
            c = fk.executor.cache.compile(session, class_id)
        seen.add((len(c.states), sum(len(m) for m in c.methods.values()), len(c.access)))
    flipper.join()
    assert failures == []
    assert seen <= shapes


def test_executions_during_applies_run_under_one_whole_definition(fk: Flowkernel) -> None:
    """A station pauses and resumes while the pause's target flips between `paused` and
    `unavailable`, document after document: every execution runs under one whole document's
    definition, never a pause that leads nowhere or into a state not there yet."""
    to_paused = changed_station()  # with a second way into `paused`, from unavailable
    to_paused["methods"].append({"code": "pause", "action": "pause", "state": "unavailable"})
    to_paused["transitions"].append({"state": "unavailable", "method": "pause", "to": "paused"})
    to_unavailable = copy.deepcopy(to_paused)
    for t in to_unavailable["transitions"]:
        if (t["state"], t["method"]) == ("available", "pause"):
            t["to"] = "unavailable"
    apply(fk, [to_paused])
    station_id = fk.place("station", "charging_station", 1, SYSTEM).id
    fk.execute(station_id, "enable", SYSTEM)
    fk.execute(station_id, "available", SYSTEM)
    done = threading.Event()
    executed = threading.Condition()  # the flipper lets three executions end between applies,
    count = [0]  # so a pause starts and ends under each definition

    def after(n: int) -> bool:
        return count[0] >= n

    failures: list[BaseException] = []

    def flip() -> None:
        try:
            for k in range(20):
                [plan] = apply(fk, [to_unavailable if k % 2 == 0 else to_paused])
                assert [c.key for c in plan.changes] == ["available.pause"]
                with executed:
                    target = count[0] + 3
                    assert executed.wait_for(lambda t=target: after(t), timeout=60), "none ran"
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            done.set()

    flipper = threading.Thread(target=flip)
    flipper.start()
    moved: Counter[str] = Counter()
    while not done.is_set():
        state = fk.item(station_id, SYSTEM).state
        result = fk.execute(station_id, "pause" if state == "available" else "available", SYSTEM)
        moved[f"{result.from_state}->{result.to_state}"] += 1
        with executed:
            count[0] += 1
            executed.notify_all()
    flipper.join()
    assert failures == []
    assert moved["available->paused"] and moved["available->unavailable"]  # both definitions ran
    assert set(moved) <= {
        "available->paused",
        "paused->available",
        "available->unavailable",
        "unavailable->available",
    }, moved
