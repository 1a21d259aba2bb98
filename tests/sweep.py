"""Helpers of the sweeps over the public API (bad input, access rules).

A `Call` names a public operation (`"pipelines.add_stage"`, `"documents.load_class"`) with its
arguments, in which `Slot`s stand for ids of the sweep's world and `X` for the value under
test (a bad argument, or the actor). `snapshot` reads the whole database, to show that a
refused call changed nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from flowkernel import Flowkernel
from flowkernel.definition.classes import Definitions
from flowkernel.definition.pipelines.admin import PipelineAdmin
from flowkernel.documents.applying import apply
from flowkernel.documents.classes import dump_class, dumps, load_class, loads
from flowkernel.documents.pipelines import load_pipeline, parse_pipeline_text
from flowkernel.runtime.items import ItemOps
from flowkernel.runtime.queries import Queries
from flowkernel.runtime.sla import SlaScanner
from flowkernel.store.delivery import Delivery
from flowkernel.store.schema import Base

API_CLASSES: dict[str, type] = {
    "definitions": Definitions,
    "pipelines": PipelineAdmin,
    "items": ItemOps,
    "queries": Queries,
    "sla": SlaScanner,
    "delivery": Delivery,
}
"""The APIs of the facade, by the attribute that holds them (`fk.pipelines`)."""

MODULE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "documents.loads": loads,
    "documents.dumps": dumps,
    "documents.load_class": load_class,
    "documents.dump_class": dump_class,
    "documents.parse_pipeline_text": parse_pipeline_text,
    "documents.load_pipeline": load_pipeline,
    "documents.apply": apply,
}
"""Public functions outside the facade, by module and name."""


@dataclass(frozen=True)
class World:
    """What a sweep runs against: the engine and the ids its calls refer to by `Slot`."""

    fk: Flowkernel
    pipeline: int
    template: int
    automation: int
    deal: int
    gone: int
    """A deleted item."""
    lamp: int
    """An item of the kernel class `lamp` (see `define_lamp`)."""
    event: int | None = None
    rule: int | None = None


@dataclass(frozen=True)
class Slot:
    """A placeholder in a call's arguments: the value under test, or an id of the world."""

    name: str


X = Slot("value under test")
FK = Slot("fk")
PIPELINE, TEMPLATE, AUTOMATION = Slot("pipeline"), Slot("template"), Slot("automation")
DEAL, GONE, LAMP = Slot("deal"), Slot("gone"), Slot("lamp")
EVENT, RULE = Slot("event"), Slot("rule")


@dataclass(frozen=True)
class Call:
    """A public operation and its arguments; `run` fills the slots."""

    operation: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def function(self) -> Callable[..., Any]:
        """The operation's function, unbound (for its signature)."""
        if self.operation in MODULE_FUNCTIONS:
            return MODULE_FUNCTIONS[self.operation]
        owner: Any = Flowkernel
        *path, name = self.operation.split(".")
        for part in path:
            owner = API_CLASSES[part]
        return getattr(owner, name)  # type: ignore[no-any-return]

    @property
    def argument(self) -> str:
        """The name of the parameter `X` stands for."""
        for key, value in self.kwargs.items():
            if value is X:
                return key
        names = [p for p in inspect.signature(self.function()).parameters if p != "self"]
        return names[self.args.index(X)]

    def run(self, world: World, value: Any) -> Any:
        """Call the operation on `world.fk`, `value` in place of `X`."""

        def fill(arg: Any) -> Any:
            if arg is X:
                return value
            if isinstance(arg, Slot):
                return world.fk if arg is FK else getattr(world, arg.name)
            if isinstance(arg, list):
                return [fill(a) for a in arg]
            return arg

        target: Any = world.fk
        if self.operation in MODULE_FUNCTIONS:
            target = MODULE_FUNCTIONS[self.operation]
        else:
            for part in self.operation.split("."):
                target = getattr(target, part)
        return target(*map(fill, self.args), **{k: fill(v) for k, v in self.kwargs.items()})


def define_lamp(fk: Flowkernel, account_id: int | None = None) -> None:
    """The kernel class `lamp`: off (created) and on, `switch_on` between them, and the hidden
    global method `inspect` (action `check`), which no user may run without a rule."""
    d = fk.definitions
    d.add_class("lamp", "Lamp", object_type="lamp", account_id=account_id)
    d.add_state("lamp", "created", "off", "Off", account_id=account_id)
    d.add_state("lamp", "enabled", "on", "On", account_id=account_id)
    d.add_method("lamp", None, "create", account_id=account_id)
    d.add_method("lamp", "off", "enable", code="switch_on", account_id=account_id)
    d.add_method("lamp", None, "check", code="inspect", visible=False, account_id=account_id)
    d.add_transition("lamp", None, "create", "off", account_id=account_id)
    d.add_transition("lamp", "off", "switch_on", "on", account_id=account_id)


def _quoted(name: str) -> str:
    return f'"{name}"'


def _snapshot_statement(dialect: str) -> str:
    """One SELECT returning every table's rows, ordered by primary key, as JSON text."""
    parts = []
    for table in Base.metadata.sorted_tables:
        keys = [_quoted(c.name) for c in table.primary_key.columns]
        if dialect == "postgresql":
            order = ", ".join(f"x.{k}" for k in keys)
            parts.append(
                f"(SELECT coalesce(json_agg(x ORDER BY {order}), '[]')::text "
                f"FROM {_quoted(table.name)} x)"
            )
        else:
            values = ", ".join(_quoted(c.name) for c in table.columns)
            parts.append(
                f"(SELECT json_group_array(json_array({values})) "
                f"FROM (SELECT * FROM {_quoted(table.name)} ORDER BY {', '.join(keys)}))"
            )
    return "SELECT " + ", ".join(parts)


def snapshot(fk: Flowkernel) -> dict[str, str]:
    """Every row of every table, ordered by primary key, in one round trip."""
    with fk.engine.connect() as conn:
        row = conn.execute(text(_snapshot_statement(fk.engine.dialect.name))).one()
    return {t.name: value for t, value in zip(Base.metadata.sorted_tables, row, strict=True)}
