"""The Apostol seed's charging station, built with `fk.definitions`, and a device integration.

`build_station_class` mirrors the seed's AddStationMethods: the ten global methods, then one
state per state type except `enabled`, which holds three states (available, unavailable,
faulted), their methods (hidden ones for the device), the transitions and the event chains.

The station's own handlers (`station_available`, `station_heartbeat`) are defined here: this
module is a plugin, registered on a `Flowkernel` when the example is loaded
(`build_station_class` does it), or by name (`flowkernel --plugin
flowkernel.examples.charging_station ...`, `Flowkernel(plugins=[...])`).

Run `python examples/charging_station.py [DATABASE_URL]` (default: `flowkernel.db` in the
current folder). Every run tells the whole story again with new stations.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Final

from flowkernel import (
    Actor,
    EventContext,
    ExecutionResult,
    Flowkernel,
    MethodNotAvailable,
    ObjectAlreadyPlaced,
    UnknownDefinition,
    hookimpl,
)
from flowkernel.definition.classes import DEFAULT_METHODS
from flowkernel.hookspecs import EventHandler

OBJECT_TYPE: Final = "charging_station"
PLUGIN: Final = "charging_station"
"""The name this module registers under as a plugin."""

log = logging.getLogger("flowkernel.station")

STATES: Final = (
    # (state type, state code, label, ((action, visible), ...)), in the seed's order
    ("created", "created", "Created", (("enable", True), ("delete", True))),
    (
        "enabled",
        "available",
        "Available",
        (("unavailable", False), ("faulted", False), ("disable", True), ("heartbeat", False)),
    ),
    (
        "enabled",
        "unavailable",
        "Unavailable",
        (("available", False), ("faulted", False), ("disable", True), ("heartbeat", False)),
    ),
    (
        "enabled",
        "faulted",
        "Faulted",
        (("available", False), ("disable", True), ("heartbeat", False)),
    ),
    ("disabled", "disabled", "Disabled", (("enable", True), ("delete", True))),
    ("deleted", "deleted", "Deleted", (("restore", True), ("drop", True))),
)
"""The station's states and their own methods; heartbeat is hidden and has no transition."""

TRANSITIONS: Final = (
    ("created", "enable", "unavailable"),
    ("created", "delete", "deleted"),
    ("available", "unavailable", "unavailable"),
    ("available", "faulted", "faulted"),
    ("available", "disable", "disabled"),
    ("unavailable", "available", "available"),
    ("unavailable", "faulted", "faulted"),
    ("unavailable", "disable", "disabled"),
    ("faulted", "available", "available"),
    ("faulted", "disable", "disabled"),
    ("disabled", "enable", "unavailable"),
    ("disabled", "delete", "deleted"),
    ("deleted", "restore", "created"),
)
"""The station diagram's own arrows: (state, method, new state). The global methods'
transitions come from DefaultTransition (create into created, delete into deleted, ...);
`drop` from deleted has no transition: its chain removes the item.
"""

EVENTS: Final = (
    ("available", "station_available", "Station available"),
    ("available", "change_object_state", "Change state"),
    ("unavailable", "change_object_state", "Change state"),
    ("faulted", "change_object_state", "Change state"),
    ("heartbeat", "station_heartbeat", "Station heartbeat"),
)
"""The seed's AddStationEvents: custom actions change state only through change_object_state."""

DEVICE_STATES: Final = ("available", "unavailable", "faulted")
"""States the device reports; each is also the action that leads into it."""


# --- the station's handlers (a plugin) --------------------------------------------------------


def station_available(context: EventContext) -> None:
    """The seed's EventStationAvailable(): record that the station reports itself available."""
    log.info("station %s available (was %s)", context.item.object_id, context.from_state)


def station_heartbeat(context: EventContext) -> None:
    """Accept a heartbeat; refuse one whose `status` parameter is not a string."""
    status = context.params.get("status", "ok")
    if not isinstance(status, str):
        raise ValueError(f"heartbeat status must be a string, got {status!r}")


@hookimpl
def flowkernel_event_handlers() -> Mapping[str, EventHandler]:
    return {"station_available": station_available, "station_heartbeat": station_heartbeat}


def register_handlers(fk: Flowkernel) -> None:
    """Register this module's handlers on `fk`, unless a plugin already provides them."""
    if fk.plugin_manager.get_plugin(PLUGIN) is None and "station_available" not in fk.handlers:
        fk.register_plugin(sys.modules[__name__], name=PLUGIN)


# --- the class -------------------------------------------------------------------------------


def build_station_class(fk: Flowkernel, code: str = "station") -> None:
    """Create the charging-station class `code` as the seed's AddStationMethods does; the
    station's handlers are registered on `fk` first."""
    register_handlers(fk)
    d = fk.definitions
    with d.transaction():  # the whole-class rules hold at the end, as in one SQL function
        d.add_class(code, "Charging station", object_type=OBJECT_TYPE)
        d.default_methods(code)
        for state_type, state, label, methods in STATES:
            d.add_state(code, state_type, state, label)
            for action, visible in methods:
                d.add_method(code, state, action, visible=visible)
        d.default_transitions(code)
        for source, method, target in TRANSITIONS:
            d.add_transition(code, source, method, target)
        for action, handler, label in EVENTS:
            d.add_event(code, action, handler, label=label)


def ensure_station_class(fk: Flowkernel, code: str = "station") -> bool:
    """Build the class `code` unless it exists; whether it was built now. The station's
    handlers are registered on `fk` either way."""
    register_handlers(fk)
    try:
        fk.definitions.get_class(code)
    except UnknownDefinition:
        build_station_class(fk, code)
        return True
    return False


class DeviceIntegration:
    """A device gateway: reports station availability and heartbeats as the system actor."""

    def __init__(self, fk: Flowkernel, stations: Iterable[int], actor: Actor | None = None) -> None:
        self.fk = fk
        self.stations = tuple(stations)
        self.actor = actor if actor is not None else Actor.system()

    def heartbeat(self, status: str = "ok") -> list[ExecutionResult]:
        """Fire the hidden heartbeat on every station that accepts one now."""
        results = []
        for item_id in self.stations:
            try:
                results.append(
                    self.fk.execute(item_id, "heartbeat", self.actor, params={"status": status})
                )
            except MethodNotAvailable:
                continue  # created, disabled or deleted stations take no heartbeat
        return results

    def report(self, item_id: int, status: str) -> ExecutionResult | None:
        """Fire the hidden method for a reported status; None when there is no such move now.

        A station already in `status`, or one that is not enabled, has no method for it.
        """
        if status not in DEVICE_STATES:
            raise ValueError(f"status must be one of {DEVICE_STATES}, not {status!r}")
        try:
            return self.fk.execute_action(item_id, status, self.actor)
        except MethodNotAvailable:
            return None

    def sync(self, statuses: Mapping[int, str]) -> list[ExecutionResult]:
        """Report a batch of statuses (item id -> status); the moves that happened."""
        moved = []
        for item_id, status in statuses.items():
            result = self.report(item_id, status)
            if result is not None:
                moved.append(result)
        return moved


def _place_new(fk: Flowkernel, code: str, actor: Actor, count: int) -> list[int]:
    """Place `count` stations under object ids that no earlier run used."""
    placed: list[int] = []
    for object_id in itertools.count(1):
        if len(placed) == count:
            break
        try:
            placed.append(fk.place(code, OBJECT_TYPE, object_id, actor).id)
        except ObjectAlreadyPlaced:
            continue
    return placed


def _show(fk: Flowkernel, actor: Actor, item_ids: Iterable[int]) -> None:
    for item_id in item_ids:
        item = fk.item(item_id, actor)
        methods = ", ".join(m.code for m in fk.methods(item_id, actor))
        print(f"  station {item.object_id} (item {item_id}): {item.state} [{item.state_type}]")
        print(f"    operator may run: {methods}")


def _fired(result: ExecutionResult | None) -> None:
    if result is None:
        return
    who = "system" if result.actor.is_system else f"user {result.actor.user_id}"
    move = f"{result.from_state} -> {result.to_state}" if result.changed else "no state change"
    if result.dropped:
        move = "dropped"
    print(f"  {who} ran {result.method} on item {result.item_id}: {move}")


def main(database_url: str | None = None) -> None:
    """Tell the station story on `database_url` (default `flowkernel.db` in the current folder)."""
    with Flowkernel(database_url) as fk:
        fk.upgrade()
        code = "station"
        if ensure_station_class(fk, code):
            print(
                f"class {code!r} built: {len(DEFAULT_METHODS)} global methods, "
                f"{len(STATES)} states, {len(TRANSITIONS)} transitions"
            )
        else:
            print(f"class {code!r} already exists; placing new stations")
        operator = Actor.user(1, None, groups=("operators",))
        first, second, third = _place_new(fk, code, operator, 3)
        stations = (first, second, third)
        print("placed:")
        _show(fk, operator, stations)

        print("operator enables the stations:")
        for item_id in stations:
            _fired(fk.execute(item_id, "enable", operator))

        device = DeviceIntegration(fk, stations)
        print("device reports (hidden methods, system actor):")
        for result in device.sync({first: "available", second: "available", third: "faulted"}):
            _fired(result)
        print("device heartbeats (no transition: state and history stay):")
        for result in device.heartbeat():
            _fired(result)

        try:
            fk.execute(third, "available", operator)
        except MethodNotAvailable as exc:
            print(f"operator tries the hidden 'available': refused ({exc.code}): {exc}")

        print("device: station 3 repaired, station 2 lost its link:")
        for result in device.sync({third: "available", second: "unavailable"}):
            _fired(result)

        print("operator retires station 2: disable, delete, restore, delete, drop:")
        for method in ("disable", "delete", "restore", "delete", "drop"):
            _fired(fk.execute(second, method, operator))

        print("now:")
        _show(fk, operator, (first, third))
        print("history:")
        for item_id in stations:
            for entry in fk.history(item_id, operator):
                who = "system" if entry.is_system else f"user {entry.user_id}"
                print(
                    f"  item {item_id}: {entry.from_state or '-'} -{entry.method}-> "
                    f"{entry.to_state} by {who} at {entry.moved_at:%H:%M:%S.%f}"
                )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
