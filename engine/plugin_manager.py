"""Building the plugin manager: specs, built-in plugins, then third-party entry points.

Built-in plugins are named here and imported by name, the way entry points are: the engine
itself never imports a plugin module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Final, cast

import pluggy
from sqlalchemy import Engine

from flowkernel import hookspecs
from flowkernel.errors import InvalidArgument, InvalidDefinition
from flowkernel.hookspecs import PROJECT, EventHandler
from flowkernel.previews import preview

BUILTIN: Final = ("lifecycle", "flowkernel.plugins.lifecycle")
"""The standard handlers of the default lifecycle: registered in every plugin manager."""
BUILTIN_STORES: Final = (
    ("event_log", "flowkernel.plugins.event_log:EventLogPlugin"),
    ("inbox", "flowkernel.plugins.inbox:InboxPlugin"),
)
"""Built-in plugins that keep data in the database, built with its engine."""


def load_plugin(spec: str) -> object:
    """The plugin named by `spec`: a module path, or `module:attribute` as in entry points."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute) if attribute else module
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidArgument(
            f"plugin {preview(spec)} cannot be loaded ({exc}); name an importable module, or "
            "module:attribute",
            plugin=spec,
        ) from exc


def get_plugin_manager(
    database: Engine | None = None, *, entry_points: bool = True
) -> pluggy.PluginManager:
    """A plugin manager with Flowkernel's specs, its built-in plugins and installed plugins.

    `database` is given to the built-in plugins that keep data (the event log and the inbox).
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    name, spec = BUILTIN
    pm.register(load_plugin(spec), name=name)
    if database is not None:
        for name, spec in BUILTIN_STORES:
            factory = cast(type, load_plugin(spec))
            pm.register(factory(database), name=name)
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
                    f"handler {preview(name)} is provided by both {preview(owners[name])} and "
                    f"{preview(impl.plugin_name)}; unregister one of them",
                    handler=name,
                )
            handlers[name] = handler
            owners[name] = impl.plugin_name
    return handlers
