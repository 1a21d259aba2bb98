"""Building the plugin manager: specs, built-in plugins, then third-party entry points."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import pluggy
from sqlalchemy import Engine

from engine import hookspecs
from engine.errors import InvalidDefinition
from engine.hookspecs import PROJECT, EventHandler


def get_plugin_manager(
    database: Engine | None = None, *, entry_points: bool = True
) -> pluggy.PluginManager:
    """A plugin manager with Flowkernel's specs, its built-in plugins and installed plugins.

    `database` is given to the built-in plugins that keep data (the event log and the inbox).
    """
    from plugins import charging_station, lifecycle
    from plugins.event_log import EventLogPlugin
    from plugins.inbox import InboxPlugin

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(lifecycle, name="lifecycle")
    pm.register(charging_station, name="charging_station")
    if database is not None:
        pm.register(EventLogPlugin(database), name="event_log")
        pm.register(InboxPlugin(database), name="inbox")
    if entry_points:
        pm.load_setuptools_entrypoints(PROJECT)
    return pm


def collect_handlers(pm: pluggy.PluginManager) -> Mapping[str, EventHandler]:
    """All named event handlers the registered plugins provide; a name provided twice is refused."""
    handlers: dict[str, EventHandler] = {}
    owners: dict[str, str] = {}
    for impl in pm.hook.flowkernel_event_handlers.get_hookimpls():
        provided = cast(Mapping[str, EventHandler], impl.function())
        for name, handler in provided.items():
            if name in handlers:
                raise InvalidDefinition(
                    f"handler {name!r} is provided by both {owners[name]!r} and "
                    f"{impl.plugin_name!r}; unregister one of them",
                    handler=name,
                )
            handlers[name] = handler
            owners[name] = impl.plugin_name
    return handlers
