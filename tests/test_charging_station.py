"""The Apostol seed's two diagrams, arrow by arrow, and the station's hidden methods."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import func, select

from flowkernel import (
    SYSTEM,
    AccessDenied,
    Actor,
    Flowkernel,
    ItemNotFound,
    MethodNotAvailable,
)
from flowkernel.store.schema import ItemRow, MethodCallRow, StageHistoryRow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "charging_station.py"


def load_example() -> ModuleType:
    """The example script as a module (`examples/` is a folder of scripts, not installed)."""
    name = "charging_station_example"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


example = load_example()
DeviceIntegration = example.DeviceIntegration
build_station_class = example.build_station_class
ensure_station_class = example.ensure_station_class
main = example.main

ALICE = Actor.user(1, None)
BOB = Actor.user(2, None, groups=("technicians",))

# The seed's first diagram (AddDefaultMethods), written out arrow by arrow.
DEFAULT_ARROWS = [
    ("created", "enable", "enabled"),
    ("created", "disable", "disabled"),
    ("created", "delete", "deleted"),
    ("enabled", "disable", "disabled"),
    ("enabled", "delete", "deleted"),
    ("disabled", "enable", "enabled"),
    ("disabled", "delete", "deleted"),
    ("deleted", "restore", "created"),
]

# The station diagram: (from, method, to, hidden).
STATION_ARROWS = [
    ("created", "enable", "unavailable", False),
    ("created", "delete", "deleted", False),
    ("available", "unavailable", "unavailable", True),
    ("available", "faulted", "faulted", True),
    ("available", "disable", "disabled", False),
    ("unavailable", "available", "available", True),
    ("unavailable", "faulted", "faulted", True),
    ("unavailable", "disable", "disabled", False),
    ("faulted", "available", "available", True),
    ("faulted", "disable", "disabled", False),
    ("disabled", "enable", "unavailable", False),
    ("disabled", "delete", "deleted", False),
    ("deleted", "restore", "created", False),
]
HIDDEN = {"available": ("unavailable", "faulted", "heartbeat"),
          "unavailable": ("available", "faulted", "heartbeat"),
          "faulted": ("available", "heartbeat")}  # fmt: skip


def history_rows(fk: Flowkernel, item_id: int) -> int:
    history = StageHistoryRow.__table__
    with fk.engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).where(history.c.flow_item_id == item_id)).scalar_one()
        )


def call_rows(fk: Flowkernel, item_id: int) -> list[Any]:
    calls = MethodCallRow.__table__
    with fk.engine.connect() as conn:
        return list(
            conn.execute(
                select(calls).where(calls.c.flow_item_id == item_id).order_by(calls.c.id)
            ).all()
        )


def item_exists(fk: Flowkernel, item_id: int) -> bool:
    items = ItemRow.__table__
    with fk.engine.connect() as conn:
        return conn.execute(select(items.c.id).where(items.c.id == item_id)).first() is not None


@pytest.fixture
def station(fk: Flowkernel) -> Flowkernel:
    build_station_class(fk)
    return fk


# --- the default lifecycle ---------------------------------------------------------------


@pytest.fixture
def region(fk: Flowkernel) -> Flowkernel:
    fk.definitions.add_class("region", "Region")
    fk.definitions.add_default_methods("region")
    return fk


def test_default_create_lands_in_created(region: Flowkernel) -> None:
    item = region.place("region", "region", 1, ALICE)
    assert item.state == "created"
    assert item.state_type == "created"
    [entry] = region.history(item.id, ALICE)
    assert (entry.from_state, entry.method, entry.to_state) == (None, "create", "created")


@pytest.mark.parametrize(("source", "method", "target"), DEFAULT_ARROWS)
def test_default_arrow(region: Flowkernel, source: str, method: str, target: str) -> None:
    item = region.place("region", "region", 1, SYSTEM, state=source)
    result = region.execute(item.id, method, ALICE)
    assert (result.from_state, result.to_state, result.changed) == (source, target, True)
    stored = region.item(item.id, ALICE)
    assert stored.state == target
    assert stored.deleted == (target == "deleted")
    last = region.history(item.id, ALICE)[-1]
    assert (last.from_state, last.method, last.to_state) == (source, method, target)


def test_default_drop_removes_a_deleted_item(region: Flowkernel) -> None:
    item = region.place("region", "region", 1, ALICE)
    region.execute(item.id, "delete", ALICE)
    result = region.execute(item.id, "drop", ALICE)
    assert result.dropped
    assert not item_exists(region, item.id)
    with pytest.raises(ItemNotFound):
        region.item(item.id, ALICE)
    # The history outlives the item.
    assert [e.to_state for e in region.history(item.id, ALICE)] == ["created", "deleted"]


def test_default_drop_refused_before_delete_names_the_way(region: Flowkernel) -> None:
    item = region.place("region", "region", 1, ALICE)
    assert "drop" not in {m.code for m in region.methods(item.id, ALICE)}
    with pytest.raises(MethodNotAvailable) as refused:
        region.execute(item.id, "drop", ALICE)
    error = refused.value
    assert (error.state, error.applies_in, error.path) == ("created", ("deleted",), ("delete",))
    assert "it runs in deleted: run delete first" in str(error)
    assert region.item(item.id, ALICE).state == "created"
    assert call_rows(region, item.id) == []  # the create is in the history, the drop refused
    for method in error.path:
        region.execute(item.id, method, ALICE)
    assert region.execute(item.id, "drop", ALICE).dropped


# --- the station diagram -----------------------------------------------------------------


def test_station_create_lands_in_created(station: Flowkernel) -> None:
    item = station.place("station", "charging_station", 1, ALICE)
    assert (item.state, item.state_type) == ("created", "created")


def test_station_states_and_types(station: Flowkernel) -> None:
    states = [(s.code, s.state_type) for s in station.definitions.list_states("station")]
    assert states == [
        ("created", "created"),
        ("available", "enabled"),
        ("unavailable", "enabled"),
        ("faulted", "enabled"),
        ("disabled", "disabled"),
        ("deleted", "deleted"),
    ]


@pytest.mark.parametrize(("source", "method", "target", "hidden"), STATION_ARROWS)
def test_station_arrow(
    station: Flowkernel, source: str, method: str, target: str, hidden: bool
) -> None:
    item = station.place("station", "charging_station", 1, SYSTEM, state=source)
    actor = SYSTEM if hidden else ALICE
    if hidden:
        with pytest.raises(MethodNotAvailable):
            station.execute(item.id, method, ALICE)
        assert station.item(item.id, ALICE).state == source
    result = station.execute(item.id, method, actor)
    assert (result.from_state, result.to_state, result.changed) == (source, target, True)
    assert station.item(item.id, ALICE).state == target
    last = station.history(item.id, ALICE)[-1]
    assert (last.from_state, last.method, last.to_state) == (source, method, target)
    assert last.is_system == hidden


def test_station_drop_removes_a_deleted_station(station: Flowkernel) -> None:
    item = station.place("station", "charging_station", 1, SYSTEM, state="deleted")
    assert item.deleted
    assert station.execute(item.id, "drop", ALICE).dropped
    assert not item_exists(station, item.id)


@pytest.mark.parametrize("source", ["available", "unavailable", "faulted"])
def test_heartbeat_changes_nothing_but_is_logged(station: Flowkernel, source: str) -> None:
    item = station.place("station", "charging_station", 1, SYSTEM, state=source)
    before = history_rows(station, item.id)
    result = station.execute(item.id, "heartbeat", SYSTEM, params={"status": "ok"})
    assert (result.changed, result.to_state, result.handlers) == (
        False,
        source,
        ("station_heartbeat",),
    )
    assert station.item(item.id, ALICE).state == source
    assert history_rows(station, item.id) == before
    last = call_rows(station, item.id)[-1]
    assert (last.method_code, last.action_code, last.to_stage_id) == (
        "heartbeat",
        "heartbeat",
        None,
    )
    assert last.from_stage_id == item.state_id
    assert last.is_system and last.actor_iam_user_id is None
    assert last.params == {"status": "ok"}


def test_available_runs_station_available_then_change_object_state(station: Flowkernel) -> None:
    item = station.place("station", "charging_station", 1, SYSTEM, state="unavailable")
    result = station.execute(item.id, "available", SYSTEM)
    assert result.handlers == ("station_available", "change_object_state")
    assert result.to_state == "available"


@pytest.mark.parametrize("action", ["available", "faulted"])
def test_custom_action_without_change_object_state_keeps_the_state(
    station: Flowkernel, action: str
) -> None:
    event = next(
        e
        for e in station.definitions.list_events("station")
        if e.action == action and e.handler == "change_object_state"
    )
    station.definitions.delete_event(event.id)
    item = station.place("station", "charging_station", 1, SYSTEM, state="unavailable")
    result = station.execute(item.id, action, SYSTEM)
    assert not result.changed
    assert "change_object_state" not in result.handlers
    assert station.item(item.id, ALICE).state == "unavailable"
    assert history_rows(station, item.id) == 1
    assert call_rows(station, item.id)[-1].method_code == action
    # The transition is still defined: it needs the handler to be taken.
    assert any(
        t.state == "unavailable" and t.method == action
        for t in station.definitions.list_transitions("station")
    )


def test_standard_action_changes_state_without_events(station: Flowkernel) -> None:
    assert not [e for e in station.definitions.list_events("station") if e.action == "disable"]
    item = station.place("station", "charging_station", 1, SYSTEM, state="faulted")
    assert station.execute(item.id, "disable", ALICE).handlers == ("change_object_state",)


def test_failing_heartbeat_handler_rolls_back_the_call_log(station: Flowkernel) -> None:
    from flowkernel import HandlerFailed

    item = station.place("station", "charging_station", 1, SYSTEM, state="available")
    calls = len(call_rows(station, item.id))
    with pytest.raises(HandlerFailed) as failed:
        station.execute(item.id, "heartbeat", SYSTEM, params={"status": 5})
    assert failed.value.handler == "station_heartbeat"
    assert len(call_rows(station, item.id)) == calls


# --- hidden methods and access rules -----------------------------------------------------


@pytest.mark.parametrize("state", sorted(HIDDEN))
def test_hidden_methods_are_listed_only_to_the_system(station: Flowkernel, state: str) -> None:
    item = station.place("station", "charging_station", 1, SYSTEM, state=state)
    user_codes = {m.code for m in station.methods(item.id, ALICE)}
    system_codes = {m.code for m in station.methods(item.id, SYSTEM)}
    assert not user_codes & set(HIDDEN[state])
    assert set(HIDDEN[state]) <= system_codes
    assert system_codes - user_codes == set(HIDDEN[state])
    assert "disable" in user_codes


@pytest.mark.parametrize("state", sorted(HIDDEN))
def test_hidden_methods_are_refused_to_users(station: Flowkernel, state: str) -> None:
    item = station.place("station", "charging_station", 1, SYSTEM, state=state)
    for method in HIDDEN[state]:
        with pytest.raises(MethodNotAvailable) as refused:
            station.execute(item.id, method, ALICE)
        assert refused.value.state == state
        assert method not in refused.value.available
    assert station.item(item.id, ALICE).state == state
    assert history_rows(station, item.id) == 1
    assert call_rows(station, item.id) == []  # the placement is in the history only


def test_refusal_by_action_is_the_same(station: Flowkernel) -> None:
    item = station.place("station", "charging_station", 1, SYSTEM, state="unavailable")
    with pytest.raises(MethodNotAvailable):
        station.execute_action(item.id, "available", ALICE)
    assert station.execute_action(item.id, "available", SYSTEM).to_state == "available"


def test_access_rule_grants_a_hidden_method_to_a_user(station: Flowkernel) -> None:
    station.definitions.add_access_rule("station", subject="1", method="faulted")
    item = station.place("station", "charging_station", 1, SYSTEM, state="unavailable")
    # Granted to execute, still not listed: listing needs a `visible` grant.
    assert "faulted" not in {m.code for m in station.methods(item.id, ALICE)}
    result = station.execute(item.id, "faulted", ALICE)
    assert (result.to_state, result.actor) == ("faulted", ALICE)
    assert station.history(item.id, ALICE)[-1].user_id == 1
    # Another user stays refused.
    other = station.place("station", "charging_station", 2, SYSTEM, state="unavailable")
    with pytest.raises(MethodNotAvailable):
        station.execute(other.id, "faulted", Actor.user(3, None))


def test_group_rule_grants_execute_and_visibility(station: Flowkernel) -> None:
    for permission in ("execute", "visible"):
        station.definitions.add_access_rule(
            "station",
            subject="technicians",
            subject_kind="group",
            permission=permission,
            method="available",
        )
    item = station.place("station", "charging_station", 1, SYSTEM, state="faulted")
    assert "available" in {m.code for m in station.methods(item.id, BOB)}
    assert "available" not in {m.code for m in station.methods(item.id, ALICE)}
    assert station.execute(item.id, "available", BOB).to_state == "available"


def test_deny_wins_over_allow_on_a_hidden_method(station: Flowkernel) -> None:
    station.definitions.add_access_rule(
        "station", subject="technicians", subject_kind="group", method="available"
    )
    station.definitions.add_access_rule("station", subject="2", method="available", effect="deny")
    item = station.place("station", "charging_station", 1, SYSTEM, state="faulted")
    with pytest.raises(MethodNotAvailable):
        station.execute(item.id, "available", BOB)
    assert station.item(item.id, BOB).state == "faulted"
    assert call_rows(station, item.id) == []  # refused: nothing logged beside the placement
    assert history_rows(station, item.id) == 1
    # A technician without the deny rule is allowed.
    carol = Actor.user(3, None, groups=("technicians",))
    assert station.execute(item.id, "available", carol).to_state == "available"


def test_deny_wins_over_allow_on_a_visible_method(station: Flowkernel) -> None:
    station.definitions.add_access_rule(
        "station", subject="technicians", subject_kind="group", method="disable"
    )
    station.definitions.add_access_rule("station", subject="2", method="disable", effect="deny")
    item = station.place("station", "charging_station", 1, SYSTEM, state="available")
    assert "disable" not in {m.code for m in station.methods(item.id, BOB)}
    with pytest.raises(AccessDenied) as denied:
        station.execute(item.id, "disable", BOB)
    assert denied.value.details()["method"] == "disable"
    assert station.item(item.id, BOB).state == "available"
    assert call_rows(station, item.id) == []  # refused: nothing logged beside the placement
    assert history_rows(station, item.id) == 1
    assert station.execute(item.id, "disable", ALICE).to_state == "disabled"


def test_system_actor_ignores_deny_rules(station: Flowkernel) -> None:
    station.definitions.add_access_rule("station", subject="*", effect="deny")
    item = station.place("station", "charging_station", 1, SYSTEM, state="available")
    with pytest.raises(AccessDenied):
        station.execute(item.id, "disable", ALICE)
    assert station.execute(item.id, "faulted", SYSTEM).to_state == "faulted"


# --- the device integration and the runnable example -------------------------------------


def test_device_integration(station: Flowkernel) -> None:
    ids = [station.place("station", "charging_station", n, ALICE).id for n in (1, 2, 3)]
    for item_id in ids:
        station.execute(item_id, "enable", ALICE)
    device = DeviceIntegration(station, ids)
    moved = device.sync({ids[0]: "available", ids[1]: "faulted", ids[2]: "unavailable"})
    assert [(r.item_id, r.to_state) for r in moved] == [(ids[0], "available"), (ids[1], "faulted")]
    assert device.report(ids[1], "unavailable") is None  # faulted has no such arrow
    station.execute(ids[2], "disable", ALICE)
    beats = device.heartbeat()
    assert [r.item_id for r in beats] == ids[:2]  # the disabled station takes none
    assert all(r.actor.is_system and not r.changed for r in beats)
    assert [e.to_state for e in station.history(ids[0], ALICE)] == [
        "created",
        "unavailable",
        "available",
    ]
    with pytest.raises(ValueError, match="status"):
        device.report(ids[0], "exploded")


def test_ensure_station_class_builds_once(fk: Flowkernel) -> None:
    assert ensure_station_class(fk)
    assert not ensure_station_class(fk)
    assert len(fk.definitions.list_states("station")) == 6


def test_main_runs_twice_on_a_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'stations.db'}"
    main(url)
    first = capsys.readouterr().out
    main(url)
    second = capsys.readouterr().out
    assert "class 'station' built" in first
    assert "already exists" in second
    for out in (first, second):
        assert "system ran heartbeat" in out
        assert "refused (method_not_available)" in out
        assert "dropped" in out
    with Flowkernel(url) as fk:
        items = ItemRow.__table__
        with fk.engine.connect() as conn:
            # Two runs, three stations each, one dropped per run.
            assert conn.execute(select(func.count()).select_from(items)).scalar_one() == 4


def test_script_runs_in_an_empty_folder(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "flowkernel.db").exists()
    assert "unavailable -> available" in done.stdout
