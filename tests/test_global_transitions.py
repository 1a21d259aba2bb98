"""DefaultTransition and no silent no-ops: every (state, method) pair of the seed's default
lifecycle and of its charging station either moves where the seed says or is refused, and a
refusal's hint leads somewhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import pytest
from http_fixtures import Api, api
from rows import every_row

from flowkernel import (
    SYSTEM,
    Actor,
    EventContext,
    Flowkernel,
    ItemNotDeleted,
    MethodNotAvailable,
    hookimpl,
)
from flowkernel.definition.pipelines.admin import StageSpec
from flowkernel.examples.charging_station import build_station_class
from flowkernel.hookspecs import EventHandler

__all__ = ["api"]

USER: Final = Actor.user(1, None)
DROPPED: Final = "<dropped>"
STAY: Final = "<stays>"
GLOBAL: Final = (
    "open", "edit", "save", "update", "enable", "disable", "delete", "restore", "drop",
)  # fmt: skip

# Written out from the seed, not from the engine: state -> {method: where it leads}; every
# method of `GLOBAL` (and of the station's own) not named is refused in that state.
DEFAULT_LIFECYCLE: Final[Mapping[str, Mapping[str, str]]] = {
    "created": {"enable": "enabled", "disable": "disabled", "delete": "deleted"},
    "enabled": {"disable": "disabled", "delete": "deleted", "restore": "created"},
    "disabled": {"enable": "enabled", "delete": "deleted", "restore": "created"},
    "deleted": {"restore": "created", "drop": DROPPED},
}
DEFAULT_REACH: Final = {
    "created": (),
    "enabled": ("enable",),
    "disabled": ("disable",),
    "deleted": ("delete",),
}

STATION: Final[Mapping[str, Mapping[str, str]]] = {
    "created": {"enable": "unavailable", "disable": "disabled", "delete": "deleted"},
    "available": {
        "unavailable": "unavailable",
        "faulted": "faulted",
        "disable": "disabled",
        "heartbeat": STAY,
        "delete": "deleted",
        "restore": "created",
    },
    "unavailable": {
        "available": "available",
        "faulted": "faulted",
        "disable": "disabled",
        "heartbeat": STAY,
        "delete": "deleted",
        "restore": "created",
    },
    "faulted": {
        "available": "available",
        "disable": "disabled",
        "heartbeat": STAY,
        "delete": "deleted",
        "restore": "created",
    },
    "disabled": {"enable": "unavailable", "delete": "deleted", "restore": "created"},
    "deleted": {"restore": "created", "drop": DROPPED},
}
STATION_REACH: Final = {
    "created": (),
    "unavailable": ("enable",),
    "available": ("enable", "available"),
    "faulted": ("enable", "faulted"),
    "disabled": ("disable",),
    "deleted": ("delete",),
}
STATION_METHODS: Final = (*GLOBAL, "available", "unavailable", "faulted", "heartbeat")


@pytest.fixture
def region(fk: Flowkernel) -> Flowkernel:
    fk.definitions.add_class("region", "Region")
    fk.definitions.add_default_methods("region")
    return fk


@pytest.fixture
def station(fk: Flowkernel) -> Flowkernel:
    build_station_class(fk)
    return fk


def _placed(fk: Flowkernel, cls: str, object_type: str, reach: Sequence[str]) -> int:
    _placed.count += 1  # type: ignore[attr-defined]
    item = fk.place(cls, object_type, _placed.count, SYSTEM)  # type: ignore[attr-defined]
    for method in reach:
        fk.execute(item.id, method, SYSTEM)
    return item.id


_placed.count = 0  # type: ignore[attr-defined]


def _walk(
    fk: Flowkernel,
    cls: str,
    object_type: str,
    table: Mapping[str, Mapping[str, str]],
    reach: Mapping[str, Sequence[str]],
    methods: Sequence[str],
) -> None:
    for state, moves in table.items():
        for method in methods:
            item = _placed(fk, cls, object_type, reach[state])
            assert fk.item(item, SYSTEM).state == state
            offered = {m.code for m in fk.methods(item, SYSTEM)}
            expected = moves.get(method)
            if expected is None:
                assert method not in offered, (state, method)
                before = every_row(fk)
                with pytest.raises(MethodNotAvailable) as refused:
                    fk.execute(item, method, SYSTEM)
                assert every_row(fk) == before, (state, method)  # a refusal changes nothing
                assert not fk.explain(item, method, SYSTEM).possible
                _follow(fk, item, method, refused.value)
                continue
            assert method in offered, (state, method)
            result = fk.execute(item, method, SYSTEM)
            if expected == DROPPED:
                assert result.dropped, (state, method)
            elif expected == STAY:
                assert (result.to_state, result.changed) == (state, False), (state, method)
            else:
                assert (result.from_state, result.to_state, result.changed) == (
                    state,
                    expected,
                    True,
                ), (state, method)


def _follow(fk: Flowkernel, item: int, method: str, error: MethodNotAvailable) -> None:
    """A refusal that names a way leads somewhere: its steps run, then the method does."""
    if not error.path:
        return
    for step in error.path:
        fk.execute(item, step, SYSTEM)
    assert fk.item(item, SYSTEM).state in error.applies_in
    fk.execute(item, method, SYSTEM)


def test_every_pair_of_the_default_lifecycle(region: Flowkernel) -> None:
    _walk(region, "region", "region", DEFAULT_LIFECYCLE, DEFAULT_REACH, GLOBAL)


def test_every_pair_of_the_station(station: Flowkernel) -> None:
    _walk(station, "station", "charging_station", STATION, STATION_REACH, STATION_METHODS)


def test_an_operators_delete_on_an_available_station_deletes_it(station: Flowkernel) -> None:
    item = _placed(station, "station", "charging_station", STATION_REACH["available"])
    operator = Actor.user(5, None)
    listed = [m.code for m in station.methods(item, operator)]
    assert listed == ["delete", "restore", "disable"]  # hidden device methods are not listed
    assert station.execute(item, "delete", operator).to_state == "deleted"
    assert station.execute(item, "drop", operator).dropped


def test_the_hints_name_the_way_and_never_circle(station: Flowkernel) -> None:
    item = _placed(station, "station", "charging_station", STATION_REACH["available"])
    with pytest.raises(MethodNotAvailable) as refused:
        station.execute(item, "drop", USER)
    error = refused.value
    assert (error.applies_in, error.path) == (("deleted",), ("delete",))
    assert "it runs in deleted: run delete first" in str(error)
    with pytest.raises(MethodNotAvailable) as refused:
        station.execute(item, "enable", USER)
    assert refused.value.applies_in == ("created", "disabled")
    assert len(refused.value.path) == 1  # restore into created, or disable
    # a deleted item runs nothing but restore and drop: restore first
    station.execute(item, "delete", USER)
    with pytest.raises(MethodNotAvailable) as refused:
        station.execute(item, "disable", USER)
    assert refused.value.path == ("restore",)
    _follow(station, item, "disable", refused.value)


def test_a_method_that_does_nothing_anywhere_says_so(region: Flowkernel) -> None:
    item = _placed(region, "region", "region", ())
    with pytest.raises(MethodNotAvailable) as refused:
        region.execute(item, "edit", USER)
    assert "does nothing in any state of class 'region'" in str(refused.value)
    assert refused.value.path == ()


class EditLog:
    """A plugin whose handler records edits."""

    def __init__(self) -> None:
        self.edits: list[int] = []

    def note_edit(self, context: EventContext) -> None:
        self.edits.append(context.item.id)

    @hookimpl
    def flowkernel_event_handlers(self) -> Mapping[str, EventHandler]:
        return {"note_edit": self.note_edit}


def test_edit_is_offered_once_it_has_a_handler(region: Flowkernel) -> None:
    log = EditLog()
    region.register_plugin(log, name="edit_log")
    region.definitions.add_event("region", "edit", "note_edit")
    item = _placed(region, "region", "region", ("enable",))
    assert "edit" in {m.code for m in region.methods(item, USER)}
    result = region.execute(item, "edit", USER)
    assert (result.to_state, result.changed, log.edits) == ("enabled", False, [item])
    region.execute(item, "delete", USER)
    assert "edit" not in {m.code for m in region.methods(item, USER)}  # deleted: restore first


def test_default_transitions_resolve_targets_by_state_type(fk: Flowkernel) -> None:
    d = fk.definitions
    with d.transaction():
        d.add_class("pump", "Pump")
        d.default_methods("pump")
        for state_type, code in (
            ("created", "new"),
            ("enabled", "running"),
            ("enabled", "idle"),
            ("disabled", "stopped"),
            ("deleted", "scrapped"),
        ):
            d.add_state("pump", state_type, code, code.title())
        written = d.default_transitions("pump")
    assert sorted((t.state, t.method, t.new_state) for t in written) == sorted(
        [
            (None, "create", "new"),
            (None, "enable", "running"),
            (None, "disable", "stopped"),
            (None, "delete", "scrapped"),
            (None, "restore", "new"),
        ]
    )
    item = fk.place("pump", "pump", 1, USER)
    assert fk.execute(item.id, "enable", USER).to_state == "running"
    with pytest.raises(MethodNotAvailable):
        fk.execute(item.id, "enable", USER)  # already of type enabled


def test_refusals_over_http_name_the_way(station: Flowkernel, api: Api) -> None:
    item = _placed(station, "station", "charging_station", STATION_REACH["available"])
    token = api.tokens.issue("gateway", system=True).token
    with api.client(token) as client:
        listed = client.get(f"/v1/items/{item}/methods").json()
        assert "drop" not in {m["code"] for m in listed}
        refused = client.post(f"/v1/items/{item}/methods/drop", json={})
        assert refused.status_code == 422, refused.text
        body = refused.json()["error"]
        assert body["code"] == "method_not_available"
        assert body["details"]["path"] == ["delete"]
        assert body["details"]["applies_in"] == ["deleted"]
    assert station.item(item, SYSTEM).state == "available"


def test_a_pipeline_offers_restore_and_drop_to_deleted_items_only(fk: Flowkernel) -> None:
    rep = Actor.user(1, 1)
    sales = fk.pipelines.create_pipeline(
        "Sales", rep, stages=[StageSpec("Lead"), StageSpec("Won", is_won=True)]
    )
    deal = fk.place(sales.id, "deal", 1, rep).id
    assert {"restore", "drop"}.isdisjoint(m.code for m in fk.methods(deal, rep))
    for method in ("restore", "drop"):
        before = every_row(fk)
        with pytest.raises(ItemNotDeleted) as refused:
            fk.execute(deal, method, rep)
        assert (refused.value.method, refused.value.path) == (method, ("delete",))
        assert every_row(fk) == before
    fk.execute(deal, "delete", rep)
    assert [m.code for m in fk.methods(deal, rep)] == ["restore", "drop"]
    assert not fk.execute(deal, "restore", rep).changed
    assert not fk.item(deal, rep).deleted
