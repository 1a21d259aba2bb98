"""Handlers of the charging-station example class (the Apostol seed's station)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from engine.hookspecs import EventHandler, hookimpl
from engine.snapshots import EventContext

log = logging.getLogger("flowkernel.station")


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
