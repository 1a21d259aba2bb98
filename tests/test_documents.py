"""Class documents: dump, load, round trips through YAML and JSON, and refused documents."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flowkernel import SYSTEM, Actor, Flowkernel
from flowkernel.documents import dump_class, dumps, load_class, loads
from flowkernel.errors import (
    DefinitionWarning,
    DuplicateCode,
    InvalidDocument,
    MethodNotAvailable,
    UnknownDefinition,
)
from flowkernel.examples.charging_station import build_station_class, register_handlers

STATION_YAML = Path(__file__).resolve().parents[1] / "examples" / "station.yaml"


@pytest.fixture
def fk(fk: Flowkernel) -> Flowkernel:
    """The documents here name the station example's handlers: register them."""
    register_handlers(fk)
    return fk


def build_meter(fk: Flowkernel) -> None:
    """A station-like class under an abstract parent, using every part a document holds."""
    d = fk.definitions
    d.add_class("device", "Device", abstract=True)
    d.add_default_methods("device")
    d.add_action("recalibrate", "Recalibrate")
    d.add_class("meter", "Meter", parent="device", object_type="meter")
    d.add_default_methods("meter")
    d.add_state("meter", "enabled", "available", "Available")
    d.add_state("meter", "enabled", "faulted", "Faulted", position=7)
    d.add_method("meter", "enabled", "available", visible=False)
    d.add_method("meter", "available", "faulted", visible=False)
    d.add_method("meter", "faulted", "recalibrate", label="Recalibrate now", sequence=40)
    d.add_method("meter", None, "heartbeat", code="ping", visible=False)
    d.add_transition("meter", "enabled", "available", "available")
    d.add_transition("meter", "available", "faulted", "faulted")
    d.add_transition("meter", "faulted", "recalibrate", "available")
    d.add_event("meter", "available", "change_object_state", label="Change state")
    d.add_event("meter", "faulted", "change_object_state")
    d.add_event("meter", "recalibrate", "change_object_state")
    d.add_event("meter", "enable", parent=True, label="Device chain")
    d.add_event("meter", "heartbeat", "station_heartbeat")
    d.add_event("meter", "heartbeat", "station_available", enabled=False, sequence=5)
    d.add_access_rule("meter", subject="technicians", subject_kind="group", method="faulted")
    d.add_access_rule("meter", subject="7", permission="visible", effect="deny")


def without_code(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "class"}


def test_dump_holds_every_part(fk: Flowkernel) -> None:
    build_meter(fk)
    doc = dump_class(fk, "meter")
    assert list(doc) == [
        "class", "label", "parent", "abstract", "movement", "object_type",
        "actions", "states", "methods", "transitions", "events", "access",
    ]  # fmt: skip
    assert (doc["class"], doc["label"], doc["parent"], doc["object_type"]) == (
        "meter",
        "Meter",
        "device",
        "meter",
    )
    assert doc["actions"] == [
        {"code": "available", "label": "Available"},
        {"code": "faulted", "label": "Faulted"},
        {"code": "heartbeat", "label": "Heartbeat"},
        {"code": "recalibrate", "label": "Recalibrate"},
    ]
    assert {"code": "faulted", "type": "enabled", "label": "Faulted", "position": 7} in doc[
        "states"
    ]
    assert {
        "code": "ping",
        "action": "heartbeat",
        "state": None,
        "label": "Heartbeat",
        "sequence": 13,
        "visible": False,
    } in doc["methods"]
    assert {"state": "faulted", "method": "recalibrate", "to": "available"} in doc["transitions"]
    assert {
        "action": "enable",
        "parent": True,
        "label": "Device chain",
        "sequence": 0,
        "enabled": True,
    } in doc["events"]
    assert {
        "action": "heartbeat",
        "handler": "station_available",
        "label": "station_available",
        "sequence": 5,
        "enabled": False,
    } in doc["events"]
    assert doc["access"] == [
        {
            "method": "faulted",
            "subject_kind": "group",
            "subject": "technicians",
            "permission": "execute",
            "effect": "allow",
        },
        {
            "method": None,
            "subject_kind": "user",
            "subject": "7",
            "permission": "visible",
            "effect": "deny",
        },
    ]


def test_load_of_a_dump_reproduces_the_class(fk: Flowkernel) -> None:
    build_meter(fk)
    original = dump_class(fk, "meter")
    info = load_class(fk, {**original, "class": "meter_copy"})
    assert (info.code, info.parent, info.label) == ("meter_copy", "device", "Meter")
    copied = dump_class(fk, "meter_copy")
    assert copied["class"] == "meter_copy"
    assert without_code(copied) == without_code(original)


def test_loaded_class_runs_like_the_original(fk: Flowkernel) -> None:
    build_meter(fk)
    load_class(fk, {**dump_class(fk, "meter"), "class": "meter_copy"})
    tech = Actor.user(3, None, groups=("technicians",))
    item = fk.place("meter_copy", "meter", 1, tech)
    assert item.state == "created"
    assert fk.execute(item.id, "enable", tech).to_state == "enabled"
    with pytest.raises(MethodNotAvailable):  # hidden from users without a rule
        fk.execute(item.id, "available", Actor.user(4, None))
    assert fk.execute(item.id, "available", SYSTEM).to_state == "available"
    ping = fk.execute(item.id, "ping", SYSTEM, params={"status": "ok"})
    assert (ping.changed, ping.handlers) == (False, ("station_heartbeat",))
    assert fk.execute(item.id, "faulted", tech).to_state == "faulted"  # the access rule
    assert fk.execute(item.id, "recalibrate", tech).to_state == "available"


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_file_round_trip(fk: Flowkernel, tmp_path: Path, fmt: str) -> None:
    build_meter(fk)
    original = dump_class(fk, "meter")
    path = tmp_path / f"meter.{fmt}"
    path.write_text(dumps(original, fmt), encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    assert loads(text) == original  # the format is guessed from the text
    assert loads(text, fmt) == original
    load_class(fk, {**loads(text), "class": "meter_file"})
    assert without_code(dump_class(fk, "meter_file")) == without_code(original)


def test_station_example_is_the_seed_station(fk: Flowkernel) -> None:
    info = load_class(fk, loads(STATION_YAML.read_text(encoding="utf-8")))
    assert info.code == "station"
    build_station_class(fk, "station_built")
    assert without_code(dump_class(fk, "station")) == without_code(dump_class(fk, "station_built"))
    operator = Actor.user(1, None)
    item = fk.place("station", "charging_station", 1, operator)
    assert fk.execute(item.id, "enable", operator).to_state == "unavailable"
    assert fk.execute(item.id, "available", SYSTEM).to_state == "available"
    beat = fk.execute(item.id, "heartbeat", SYSTEM)
    assert (beat.changed, beat.to_state) == (False, "available")
    assert fk.execute(item.id, "faulted", SYSTEM).to_state == "faulted"
    assert fk.execute(item.id, "disable", operator).to_state == "disabled"


def test_minimal_document_takes_defaults(fk: Flowkernel) -> None:
    door = """
    class: door
    states: [{code: shut, type: created}, {code: open_wide, type: enabled}]
    methods: [{action: create}, {action: open, state: shut}]
    transitions: [{method: create, to: shut}, {state: shut, method: open, to: open_wide}]
    access: [{subject: 12, method: open}]
    """
    # open_wide has no way out: accepted, with a warning (strict_states would refuse it)
    with pytest.warns(DefinitionWarning, match="'open_wide'"):
        info = load_class(fk, loads(textwrap.dedent(door)))
    assert (info.label, info.movement, info.is_abstract, info.parent) == (
        "Door",
        "explicit",
        False,
        None,
    )
    doc = dump_class(fk, "door")
    assert doc["states"][1] == {
        "code": "open_wide",
        "type": "enabled",
        "label": "Open wide",
        "position": 1,
    }
    assert doc["methods"][1]["label"] == "Open"
    assert doc["access"][0]["subject"] == "12"
    item = fk.place("door", "door", 1, Actor.user(12, None))
    assert fk.execute(item.id, "open", Actor.user(12, None)).to_state == "open_wide"


def test_load_into_an_account_is_invisible_to_others(fk: Flowkernel) -> None:
    build_meter(fk)
    doc = {**dump_class(fk, "meter"), "class": "tenant_meter"}
    info = load_class(fk, doc, account_id=5)
    assert info.account_id == 5
    with pytest.raises(UnknownDefinition):
        dump_class(fk, "tenant_meter")
    with pytest.raises(UnknownDefinition):
        dump_class(fk, "tenant_meter", account_id=6)
    assert without_code(dump_class(fk, "tenant_meter", account_id=5)) == without_code(doc)
    shadow = load_class(fk, {**doc, "class": "meter"}, account_id=5)  # shadows the platform's
    assert (shadow.account_id, fk.definitions.get_class("meter").account_id) == (5, None)
    with pytest.raises(UnknownDefinition):
        fk.place("tenant_meter", "meter", 1, Actor.user(1, 6))
    assert fk.place("tenant_meter", "meter", 1, Actor.user(1, 5)).class_code == "tenant_meter"


# --- refused documents -------------------------------------------------------------------


def _station() -> dict[str, Any]:
    doc = loads(STATION_YAML.read_text(encoding="utf-8"))
    doc["class"] = "station_try"
    return doc


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


REFUSALS = [
    (("states", 2, "type"), "enabld", "states[2].type"),
    (("colour",), "blue", "colour"),
    (("states", 0, "colour"), "blue", "states[0].colour"),
    (("methods", 0, "visible"), "yes", "methods[0].visible"),
    (("methods", 1, "sequence"), True, "methods[1].sequence"),
    (("methods", 3, "action"), "fly", "methods[3].action"),
    (("methods", 12, "state"), "nowhere", "methods[12].state"),
    (("methods", 4, "code"), "4th", "methods[4].code"),
    (("transitions", 1, "to"), "nowhere", "transitions[1].to"),
    (("transitions", 2, "method"), "teleport", "transitions[2].method"),
    (("events", 0, "handler"), "no_such_handler", "events[0].handler"),
    (("events", 1, "parent"), True, "events[1]"),
    (("parent",), "ghost", "parent"),
    (("abstract",), "no", "abstract"),
    (("movement",), "sideways", "movement"),
    (("states",), {"code": "x"}, "states"),
    (("actions", 0), "available", "actions[0]"),
    (("access",), [{"subject": "x", "method": "nope"}], "access[0].method"),
    (("access",), [{"subject": "x", "effect": "maybe"}], "access[0].effect"),
    (("access",), [{"method": "enable"}], "access[0].subject"),
    (("class",), None, "class"),
    (("class",), "9lives", "class"),
]


@pytest.mark.parametrize(("where", "value", "path"), REFUSALS, ids=[r[2] for r in REFUSALS])
def test_refused_document_names_the_path_and_writes_nothing(
    fk: Flowkernel, where: tuple[Any, ...], value: Any, path: str
) -> None:
    doc = _station()
    doc["actions"].append({"code": "brand_new", "label": "Brand new"})
    _set(doc, where, value)
    before = (fk.definitions.list_classes(), fk.definitions.list_actions())
    with pytest.raises(InvalidDocument) as caught:
        load_class(fk, doc)
    assert caught.value.path == path
    assert caught.value.message.startswith(f"{path}: ")
    assert (fk.definitions.list_classes(), fk.definitions.list_actions()) == before


def test_every_problem_is_reported(fk: Flowkernel) -> None:
    doc = _station()
    doc["states"][0]["type"] = "bogus"
    doc["methods"][2]["label"] = 3
    doc["extra"] = 1
    with pytest.raises(InvalidDocument) as caught:
        load_class(fk, doc)
    assert [p for p, _ in caught.value.problems] == [
        "extra",
        "states[0].type",
        "methods[2].label",
    ]
    assert "(and 2 more problems)" in caught.value.message
    assert fk.definitions.list_classes() == []


def test_duplicate_class_code_is_refused_and_the_class_kept(fk: Flowkernel) -> None:
    doc = loads(STATION_YAML.read_text(encoding="utf-8"))
    load_class(fk, doc)
    before = dump_class(fk, "station"), fk.definitions.get_class("station")
    with pytest.raises(DuplicateCode):
        load_class(fk, doc)
    assert (dump_class(fk, "station"), fk.definitions.get_class("station")) == before


def test_failure_after_writes_began_rolls_everything_back(fk: Flowkernel) -> None:
    # Every row is valid on its own, but the parent's transition a -m-> b leads to a state
    # the subclass (with its own states) lacks: only compiling the whole class finds it.
    d = fk.definitions
    d.add_class("base", "Base")
    d.add_state("base", "created", "a", "A")
    d.add_state("base", "enabled", "b", "B")
    d.add_method("base", "a", "enable", code="m")
    d.add_transition("base", "a", "m", "b")
    before = (d.get_class("base"), d.list_actions())
    doc = {
        "class": "child",
        "parent": "base",
        "actions": [{"code": "zap", "label": "Zap"}],
        "states": [{"code": "a", "type": "created"}],
        "methods": [{"action": "zap", "state": "a"}],
    }
    with pytest.raises(InvalidDocument, match="does not have"):
        load_class(fk, doc)
    with pytest.raises(UnknownDefinition):
        d.get_class("child")
    assert (d.get_class("base"), d.list_actions()) == before
    assert [c.code for c in d.list_classes()] == ["base"]


@pytest.mark.parametrize(
    ("text", "fmt", "problem"),
    [
        ("class: [unclosed", None, "not valid YAML"),
        ('{"class": "x",}', None, "not valid JSON"),
        ("class: x", "json", "not valid JSON"),
        ("- a\n- b\n", None, "a class document is a mapping, not a list"),
        ("", None, "a class document is a mapping, not null"),
        ("class: x", "toml", "unknown format 'toml'"),
    ],
)
def test_unreadable_text_is_refused(text: str, fmt: str | None, problem: str) -> None:
    with pytest.raises(InvalidDocument, match=problem):
        loads(text, fmt)


def test_unknown_dump_format_is_refused() -> None:
    with pytest.raises(InvalidDocument, match="unknown format 'xml'"):
        dumps({"class": "x"}, "xml")


def test_yaml_dump_is_one_line_per_row(fk: Flowkernel) -> None:
    build_meter(fk)
    text = dumps(dump_class(fk, "meter"))
    assert "- {code: faulted, type: enabled, label: Faulted, position: 7}" in text.splitlines()
    json_lines = [line.rstrip(",") for line in dumps(dump_class(fk, "meter"), "json").splitlines()]
    assert '    {"state": "faulted", "method": "recalibrate", "to": "available"}' in json_lines


def test_documents_do_not_alias_the_input(fk: Flowkernel) -> None:
    doc = _station()
    kept = copy.deepcopy(doc)
    load_class(fk, doc)
    assert doc == kept
