"""A Hypothesis state machine drives stations and compares them with a model of the diagram."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Final

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from flowkernel import (
    SYSTEM,
    Actor,
    ExecutionResult,
    Flowkernel,
    ItemNotFound,
    MethodNotAvailable,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "charging_station.py"

# --- the model: the seed's station diagram, written out independently ---------------------

DROP: Final = "<dropped>"
GLOBAL: Final = (
    "open", "edit", "save", "update", "enable", "disable", "delete", "restore", "drop",
)  # fmt: skip
"""DefaultMethods' methods; the tenth, create, only places items (into created) and is no
method of a placed item."""
TYPES: Final = {
    "created": "created",
    "available": "enabled",
    "unavailable": "enabled",
    "faulted": "enabled",
    "disabled": "disabled",
    "deleted": "deleted",
}
GLOBAL_TARGETS: Final = {
    "enable": "available",
    "disable": "disabled",
    "delete": "deleted",
    "restore": "created",
}
"""DefaultTransition from any state: into the first state of the action's type. Open, edit,
save and update have no transition and no handler: they do nothing, and are offered nowhere;
drop is offered in deleted only."""

OWN: Final[dict[str, dict[str, tuple[str | None, bool]]]] = {
    # state: {method: (target or None for no transition, visible)}
    "created": {"enable": ("unavailable", True), "delete": ("deleted", True)},
    "available": {
        "unavailable": ("unavailable", False),
        "faulted": ("faulted", False),
        "disable": ("disabled", True),
        "heartbeat": (None, False),
    },
    "unavailable": {
        "available": ("available", False),
        "faulted": ("faulted", False),
        "disable": ("disabled", True),
        "heartbeat": (None, False),
    },
    "faulted": {
        "available": ("available", False),
        "disable": ("disabled", True),
        "heartbeat": (None, False),
    },
    "disabled": {"enable": ("unavailable", True), "delete": ("deleted", True)},
    "deleted": {"restore": ("created", True), "drop": (DROP, True)},
}
GRANTED: Final = frozenset({"available"})
"""Hidden methods the technicians' group may execute (granted, still not listed)."""

ACTORS: Final = {
    "user": Actor.user(1, None),
    "technician": Actor.user(2, None, groups=("technicians",)),
    "system": SYSTEM,
}
METHODS: Final = sorted(
    {*GLOBAL, *(m for own in OWN.values() for m in own)} | {"teleport", "create"}
)


def model_methods(state: str, actor: str) -> dict[str, tuple[str | None, bool]]:
    """The methods of `state` (target, visible), the state's own winning over global ones."""
    methods: dict[str, tuple[str | None, bool]] = {}
    if state != "deleted":  # a deleted item offers only its own restore and drop
        methods.update(
            {m: (t, True) for m, t in GLOBAL_TARGETS.items() if TYPES[t] != TYPES[state]}
        )
    methods.update(OWN[state])
    if actor == "system":
        return methods
    return {m: v for m, v in methods.items() if v[1] or (actor == "technician" and m in GRANTED)}


def model_listed(state: str, actor: str) -> set[str]:
    """What `methods()` lists: hidden methods only for the system actor."""
    return {
        m for m, (_, visible) in model_methods(state, actor).items() if visible or actor == "system"
    }


@dataclass
class ModelItem:
    id: int
    state: str
    history: list[tuple[str | None, str, str, bool]] = field(default_factory=list)

    @property
    def dropped(self) -> bool:
        return self.state == DROP


def load_example() -> ModuleType:
    name = "charging_station_example"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def station_machine(fk: Flowkernel) -> type[RuleBasedStateMachine]:
    """A state machine class bound to `fk`, whose station class is already built."""
    object_ids = itertools.count(1)

    class Stations(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.items: list[ModelItem] = []
            self._place("user")

        def _place(self, actor: str) -> None:
            placed = fk.place("station", "charging_station", next(object_ids), ACTORS[actor])
            item = ModelItem(placed.id, "created", [(None, "create", "created", actor == "system")])
            self.items.append(item)
            self._check(item)

        def _check(self, item: ModelItem) -> None:
            viewer = ACTORS["system"]
            stored = [
                (e.from_state, e.method, e.to_state, e.is_system)
                for e in fk.history(item.id, viewer)
            ]
            assert stored == item.history
            # Replaying the history from its first row gives the current state.
            current: str | None = None
            for source, _, target, _ in stored:
                assert source == current
                current = target
            if item.dropped:
                try:
                    fk.item(item.id, viewer)
                except ItemNotFound:
                    return
                raise AssertionError(f"item {item.id} was dropped but still exists")
            snapshot = fk.item(item.id, viewer)
            assert snapshot.state == item.state == current
            assert snapshot.deleted == (item.state == "deleted")
            for actor in ACTORS:
                listed = fk.methods(item.id, ACTORS[actor])
                assert {m.code for m in listed} == model_listed(item.state, actor)
                assert [m.sequence for m in listed] == sorted(m.sequence for m in listed)

        @precondition(lambda self: len([i for i in self.items if not i.dropped]) < 4)
        @rule(actor=st.sampled_from(["user", "system"]))
        def place(self, actor: str) -> None:
            self._place(actor)

        @rule(
            index=st.integers(0, 7),
            method=st.sampled_from(METHODS),
            actor=st.sampled_from(sorted(ACTORS)),
            by_action=st.booleans(),
        )
        def execute(self, index: int, method: str, actor: str, by_action: bool) -> None:
            item = self.items[index % len(self.items)]
            run = fk.execute_action if by_action else fk.execute
            if item.dropped:
                try:
                    run(item.id, method, ACTORS[actor])
                except ItemNotFound:
                    return
                raise AssertionError(f"dropped item {item.id} ran {method}")
            allowed = model_methods(item.state, actor)
            result: ExecutionResult | None = None
            try:
                result = run(item.id, method, ACTORS[actor])
            except MethodNotAvailable as exc:
                assert method not in allowed, f"{method} refused in {item.state} to {actor}"
                assert exc.state.startswith(item.state)
                # the hint leads somewhere: its methods run one after another, then the method
                reached = item.state
                for step in exc.path:
                    assert step in model_methods(reached, actor), (step, reached, exc.path)
                    reached = model_methods(reached, actor)[step][0] or reached
                if exc.path:
                    assert method in model_methods(reached, actor), (method, exc.path)
            else:
                assert method in allowed, f"{method} ran in {item.state} for {actor}"
                target = allowed[method][0]
                if target == DROP:
                    assert result.dropped
                    item.state = DROP
                elif target is not None and target != item.state:
                    assert (result.from_state, result.to_state, result.changed) == (
                        item.state,
                        target,
                        True,
                    )
                    item.history.append((item.state, method, target, actor == "system"))
                    item.state = target
                else:
                    assert not result.changed
                    assert result.to_state == item.state
            self._check(item)

        def teardown(self) -> None:
            for item in self.items:
                self._check(item)

    return Stations


def test_stations_follow_the_model(fk: Flowkernel) -> None:
    load_example().build_station_class(fk)
    fk.definitions.add_access_rule(
        "station", subject="technicians", subject_kind="group", method="available"
    )
    run_state_machine_as_test(
        station_machine(fk),
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
