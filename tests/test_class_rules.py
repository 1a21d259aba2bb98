"""Whole-class rules, checked when a definition is written: where items start, states no
transition reaches, active states with no way out (traps warn unless `strict_states`)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from http_fixtures import World, api, world

from flowkernel import (
    SYSTEM,
    DefinitionWarning,
    Flowkernel,
    InvalidDefinition,
    InvalidDocument,
    UnknownDefinition,
)
from flowkernel.cli import main
from flowkernel.definition.pipelines.specs import StageSpec
from flowkernel.documents import dump_class, load_class, loads
from flowkernel.examples.charging_station import build_station_class

__all__ = ["api", "world"]


def gate(fk: Flowkernel) -> None:
    """open (created) -toggle-> shut (enabled) -reopen-> open; shut -retire-> gone (disabled)."""
    d = fk.definitions
    d.add_class("gate", "Gate")
    d.add_state("gate", "created", "open", "Open")
    d.add_state("gate", "enabled", "shut", "Shut")
    d.add_state("gate", "disabled", "gone", "Gone")
    d.add_method("gate", "open", "close", code="toggle")
    d.add_method("gate", "shut", "open", code="reopen")
    d.add_method("gate", "shut", "disable", code="retire")
    d.add_transition("gate", "open", "toggle", "shut")
    d.add_transition("gate", "shut", "reopen", "open")
    d.add_transition("gate", "shut", "retire", "gone")
    d.add_event("gate", "close", "change_object_state")
    d.add_event("gate", "open", "change_object_state")


@pytest.fixture
def sound(fk: Flowkernel) -> Flowkernel:
    gate(fk)
    assert fk.definitions.problems("gate") == []
    return fk


def definition(fk: Flowkernel, code: str = "gate") -> tuple[object, ...]:
    d = fk.definitions
    return (
        d.get_class(code).version,
        d.list_states(code),
        d.list_methods(code),
        d.list_transitions(code),
    )


def refused(fk: Flowkernel, call: Callable[[], object], *fragments: str) -> InvalidDefinition:
    """Run `call`, expect `InvalidDefinition` naming `fragments`, and nothing written."""
    before = definition(fk)
    with pytest.raises(InvalidDefinition) as caught:
        call()
    for fragment in fragments:
        assert fragment in caught.value.message
    assert definition(fk) == before
    return caught.value


# --- a class under construction ---------------------------------------------------------------


def test_a_class_is_built_a_call_at_a_time_and_lists_what_it_still_lacks(fk: Flowkernel) -> None:
    d = fk.definitions
    d.add_class("lamp", "Lamp")
    [start] = d.problems("lamp")
    assert (start.class_code, start.rule, start.state) == ("lamp", "no_start", None)
    assert "nowhere to start" in start.message
    d.add_state("lamp", "created", "off", "Off")
    d.add_state("lamp", "enabled", "on", "On")
    assert [(p.rule, p.state) for p in d.problems("lamp")] == [
        ("trap_state", "off"),
        ("unreachable_state", "on"),
        ("trap_state", "on"),
    ]
    d.add_method("lamp", "off", "enable", code="switch_on")
    d.add_transition("lamp", "off", "switch_on", "on")
    d.add_method("lamp", "on", "disable", code="switch_off")
    d.add_transition("lamp", "on", "switch_off", "off")
    assert d.problems("lamp") == []
    with pytest.raises(UnknownDefinition):
        d.problems("nope")


def test_the_default_lifecycle_the_examples_and_pipelines_keep_every_rule(fk: Flowkernel) -> None:
    d = fk.definitions
    d.add_class("region", "Region")
    d.add_default_methods("region")
    assert d.problems("region") == []
    d.add_class("place", "Place", abstract=True)
    assert d.problems("place") == []  # holds no items: nothing to check
    build_station_class(fk)
    assert d.problems("station") == []
    pipeline = fk.pipelines.create_pipeline(
        "Deals", SYSTEM, account_id=1, stages=[StageSpec("Lead"), StageSpec("Won", is_won=True)]
    )
    assert d.problems(pipeline.id, 1) == []


# --- writes that would break a rule that held ------------------------------------------------


def test_a_write_that_cuts_a_state_off_is_refused(sound: Flowkernel) -> None:
    d = sound.definitions
    error = refused(
        sound,
        lambda: d.delete_transition("gate", "open", "toggle"),
        "state 'shut' of class 'gate' cannot be reached from 'open'",
    )
    assert error.details()["problems"][0]["rule"] == "unreachable_state"
    refused(sound, lambda: d.delete_method("gate", "open", "toggle"), "'shut'")
    refused(sound, lambda: d.delete_state("gate", "open"), "nowhere to start")


def test_a_new_state_of_type_created_that_moves_the_start_is_refused(sound: Flowkernel) -> None:
    d = sound.definitions
    d.add_state("gate", "created", "draft", "Draft")  # under construction: may be unreached
    assert [(p.rule, p.state) for p in d.problems("gate")] == [
        ("unreachable_state", "draft"),
        ("trap_state", "draft"),
    ]
    # Placed first, draft would be where items start, and nothing would lead on from it.
    refused(
        sound,
        lambda: d.edit_state("gate", "draft", position=-1),
        "'open' of class 'gate' cannot be reached from 'draft'",
    )


def test_a_subclass_is_kept_sound_by_writes_to_its_parent(sound: Flowkernel) -> None:
    d = sound.definitions
    d.add_class("wicket", "Wicket", parent="gate")
    assert d.problems("wicket") == []
    d.add_method("gate", "open", "check", code="inspect")  # harmless: both stay sound
    error = refused(sound, lambda: d.delete_transition("gate", "open", "toggle"), "'wicket'")
    assert {p["class"] for p in error.details()["problems"]} == {"gate", "wicket"}


def test_a_write_that_leaves_a_trap_warns_or_with_strict_states_is_refused(
    sound: Flowkernel, database_url: str
) -> None:
    d = sound.definitions
    d.add_method("gate", "open", "disable", code="retire_now")
    d.add_transition("gate", "open", "retire_now", "gone")  # gone stays reachable without shut

    def strand_shut(fk: Flowkernel) -> None:
        with fk.definitions.transaction():
            fk.definitions.delete_method("gate", "shut", "reopen")
            fk.definitions.delete_method("gate", "shut", "retire")

    with Flowkernel(database_url, strict_states=True) as strict:
        refused(
            strict, lambda: strand_shut(strict), "state 'shut' of class 'gate'", "no transition out"
        )
    with pytest.warns(DefinitionWarning, match="state 'shut' of class 'gate' .* no transition out"):
        strand_shut(sound)
    assert [m.code for m in d.list_methods("gate")] == ["toggle", "retire_now"]


def test_a_transaction_is_checked_once_at_its_end(sound: Flowkernel) -> None:
    d = sound.definitions
    # Rerouting shut through a new state takes steps that alone would each break a rule.
    with d.transaction():
        d.delete_transition("gate", "open", "toggle")
        d.add_state("gate", "enabled", "ajar", "Ajar")
        d.add_method("gate", "open", "edit", code="nudge")
        d.add_transition("gate", "open", "nudge", "ajar")
        d.add_method("gate", "ajar", "close", code="push")
        d.add_transition("gate", "ajar", "push", "shut")
    assert d.problems("gate") == []
    before = definition(sound)
    cut_off = "'shut' of class 'gate' cannot be reached"
    with pytest.raises(InvalidDefinition, match=cut_off), d.transaction():
        d.add_state("gate", "disabled", "broken", "Broken")
        d.delete_transition("gate", "ajar", "push")
    assert definition(sound) == before  # the added state went with the refusal


def test_items_keep_running_after_a_refused_write(sound: Flowkernel) -> None:
    item = sound.place("gate", "gate", 1, SYSTEM)
    refused(sound, lambda: sound.definitions.delete_transition("gate", "open", "toggle"))
    assert sound.execute(item.id, "toggle", SYSTEM).to_state == "shut"


# --- documents --------------------------------------------------------------------------------

DOOR = """
class: door
states:
- {code: shut, type: created}
- {code: ajar, type: enabled}
- {code: stuck, type: enabled}
methods:
- {action: open, state: shut}
- {action: close, state: ajar}
- {action: close, state: stuck}
transitions:
- {state: shut, method: open, to: ajar}
- {state: ajar, method: close, to: shut}
- {state: stuck, method: close, to: shut}
"""


def door(**changes: object) -> dict[str, object]:
    document = loads(textwrap.dedent(DOOR))
    document.update(changes)
    return document


def test_a_document_with_an_unreachable_state_is_refused_at_its_path(fk: Flowkernel) -> None:
    with pytest.raises(InvalidDocument) as caught:
        load_class(fk, door())
    assert caught.value.path == "states[2]"
    assert "'stuck' of class 'door' cannot be reached from 'shut'" in caught.value.problem
    with pytest.raises(UnknownDefinition):
        fk.definitions.get_class("door")


def test_a_document_whose_items_have_nowhere_to_start_is_refused(fk: Flowkernel) -> None:
    states = [{"code": "ajar", "type": "enabled"}]
    with pytest.raises(InvalidDocument, match="nowhere to start"):
        load_class(fk, {"class": "door", "states": states})
    with pytest.raises(UnknownDefinition):
        fk.definitions.get_class("door")


def test_a_document_with_a_trap_warns_or_with_strict_states_is_refused(database_url: str) -> None:
    document = door(
        methods=[{"action": "open", "state": "shut"}],
        transitions=[{"state": "shut", "method": "open", "to": "ajar"}],
        states=[{"code": "shut", "type": "created"}, {"code": "ajar", "type": "enabled"}],
    )
    with Flowkernel(database_url, strict_states=True) as strict:
        with pytest.raises(InvalidDocument) as caught:
            load_class(strict, document)
        assert caught.value.path == "states[1]"
        with pytest.raises(UnknownDefinition):
            strict.definitions.get_class("door")
    with Flowkernel(database_url) as fk:
        with pytest.warns(DefinitionWarning, match="'ajar' .* no transition out"):
            load_class(fk, document)
        assert dump_class(fk, "door")["states"][1]["code"] == "ajar"


# --- the command line and HTTP ----------------------------------------------------------------


def test_class_check_show_and_load_on_the_command_line(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--database-url", database_url]
    with Flowkernel(database_url) as fk:
        gate(fk)
        fk.definitions.add_class("lamp", "Lamp")
    assert main([*db, "class", "check", "gate"]) == 0
    assert capsys.readouterr().out == "class 'gate' keeps every whole-class rule\n"
    assert main([*db, "class", "check", "lamp"]) == 3
    assert "no_start" in capsys.readouterr().out
    assert main([*db, "class", "show", "lamp"]) == 0
    assert "problems" in capsys.readouterr().out

    path = tmp_path / "bulb.yaml"
    path.write_text("class: bulb\nstates: [{code: lit, type: created}]\n")
    assert main([*db, "class", "load", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("loaded class 'bulb'")
    assert captured.err == (
        "warning: state 'lit' of class 'bulb' is of type created and has no transition out: "
        "its items could never leave it; add a transition out, or make it a disabled or "
        "deleted state\n"
    )
    assert main([*db, "class", "check", "bulb"]) == 0  # a trap alone warns
    assert "trap_state" in capsys.readouterr().out
    path.write_text("class: dim\nstates: [{code: low, type: enabled}]\n")
    assert main([*db, "class", "load", str(path)]) == 3
    assert "nowhere to start" in capsys.readouterr().err


def test_class_problems_over_http(world: World) -> None:
    fk = world.api.fk
    assert world.user.get("/v1/classes/station/problems").json() == []
    fk.definitions.add_class("kiosk", "Kiosk", account_id=1)
    fk.definitions.add_state("kiosk", "created", "idle", "Idle", account_id=1)
    problems = world.user.get("/v1/classes/kiosk/problems")
    assert problems.status_code == 200
    assert problems.json() == [
        {
            "rule": "trap_state",
            "state": "idle",
            "message": "state 'idle' of class 'kiosk' is of type created and has no transition "
            "out: its items could never leave it; add a transition out, or make it a disabled "
            "or deleted state",
        }
    ]
    assert world.stranger.get("/v1/classes/kiosk/problems").status_code == 404
    broken = world.system.post(
        "/v1/classes", json={"class": "dim", "states": [{"code": "low", "type": "enabled"}]}
    )
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_document"
    assert "nowhere to start" in broken.json()["error"]["message"]
