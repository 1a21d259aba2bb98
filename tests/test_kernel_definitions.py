"""The authoring API: typed refusals that write nothing, event chains, inheritance, edits."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from sqlalchemy import select

from flowkernel import (
    SYSTEM,
    AbstractClassError,
    Actor,
    DefinitionError,
    DefinitionInUse,
    DefinitionWarning,
    DuplicateCode,
    DuplicateTransition,
    EventContext,
    Flowkernel,
    ForeignReference,
    InvalidDefinition,
    MethodNotAvailable,
    UnknownDefinition,
    UnknownHandler,
    hookimpl,
)
from flowkernel.definition.classes import Definitions
from flowkernel.hookspecs import EventHandler
from flowkernel.store.schema import (
    AccessRuleRow,
    ActionRow,
    EventRow,
    ItemRow,
    MethodRow,
    PipelineRow,
    StageHistoryRow,
    StageRow,
    TransitionRow,
)

ALICE = Actor.user(1, None)
TABLES = [
    PipelineRow.__table__,
    StageRow.__table__,
    ActionRow.__table__,
    MethodRow.__table__,
    TransitionRow.__table__,
    EventRow.__table__,
    AccessRuleRow.__table__,
    ItemRow.__table__,
    StageHistoryRow.__table__,
]


def stored(fk: Flowkernel) -> dict[str, list[tuple[Any, ...]]]:
    """Every definition and item row, to compare before and after a refusal."""
    with fk.engine.connect() as conn:
        return {
            table.name: [tuple(r) for r in conn.execute(select(table).order_by(table.c.id))]
            for table in TABLES
        }


def refused(fk: Flowkernel, error: type[Exception], call: Callable[[], object]) -> Exception:
    """Run `call`, expect `error`, and check that nothing was written."""
    before = stored(fk)
    with pytest.raises(error) as caught:
        call()
    assert stored(fk) == before
    return caught.value


class Recorder:
    """A test plugin: handlers that append their name to `calls`."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.calls: list[str] = []

    def _handler(self, name: str) -> EventHandler:
        def handler(context: EventContext) -> None:
            self.calls.append(name)

        return handler

    @hookimpl
    def flowkernel_event_handlers(self) -> Mapping[str, EventHandler]:
        return {name: self._handler(name) for name in self.names}


@pytest.fixture
def region(fk: Flowkernel) -> Flowkernel:
    fk.definitions.add_class("region", "Region")
    fk.definitions.add_default_methods("region")
    return fk


@pytest.fixture
def two(region: Flowkernel) -> Flowkernel:
    """`region` (the default lifecycle) and `gate`: states open, shut; methods toggle, inspect."""
    d = region.definitions
    d.add_class("gate", "Gate")
    d.add_state("gate", "created", "open", "Open")
    d.add_state("gate", "enabled", "shut", "Shut")
    d.add_method("gate", "open", "close", code="toggle")
    d.add_method("gate", None, "check", code="inspect")
    d.add_event("gate", "close", "change_object_state")
    return region


# --- unknown and foreign references ------------------------------------------------------


def test_unknown_state_in_add_method(two: Flowkernel) -> None:
    error = refused(
        two, UnknownDefinition, lambda: two.definitions.add_method("gate", "ajar", "close")
    )
    assert isinstance(error, UnknownDefinition)
    assert (error.kind, error.key) == ("state", "ajar")
    assert set(error.known) == {"open", "shut"}
    assert "'ajar'" in str(error)


def test_unknown_action_in_add_method(two: Flowkernel) -> None:
    error = refused(
        two, UnknownDefinition, lambda: two.definitions.add_method("gate", "open", "slam")
    )
    assert isinstance(error, UnknownDefinition)
    assert (error.kind, error.key) == ("action", "slam")


def test_unknown_action_in_add_event(two: Flowkernel) -> None:
    error = refused(
        two,
        UnknownDefinition,
        lambda: two.definitions.add_event("gate", "slam", "change_object_state"),
    )
    assert isinstance(error, UnknownDefinition)
    assert (error.kind, error.key) == ("action", "slam")


def test_unknown_state_type(two: Flowkernel) -> None:
    error = refused(
        two, UnknownDefinition, lambda: two.definitions.add_state("gate", "paused", "p", "P")
    )
    assert isinstance(error, UnknownDefinition)
    assert (error.kind, error.key) == ("state type", "paused")


def test_unknown_class(two: Flowkernel) -> None:
    error = refused(
        two, UnknownDefinition, lambda: two.definitions.add_state("door", "created", "a", "A")
    )
    assert isinstance(error, UnknownDefinition)
    assert (error.kind, error.key) == ("class", "door")


@pytest.mark.parametrize(
    ("state", "method", "target", "kind", "key"),
    [
        ("ajar", "toggle", "shut", "state", "ajar"),
        ("open", "slam", "shut", "method", "slam"),
        ("open", "toggle", "ajar", "state", "ajar"),
    ],
)
def test_unknown_reference_in_add_transition(
    two: Flowkernel, state: str, method: str, target: str, kind: str, key: str
) -> None:
    error = refused(
        two,
        UnknownDefinition,
        lambda: two.definitions.add_transition("gate", state, method, target),
    )
    assert isinstance(error, UnknownDefinition)
    assert (error.kind, error.key) == (kind, key)


@pytest.mark.parametrize(
    ("state", "method", "target", "kind", "key"),
    [
        ("created", "toggle", "shut", "state", "created"),  # region's state
        ("open", "enable", "shut", "method", "enable"),  # region's method
        ("open", "toggle", "enabled", "state", "enabled"),  # into region's state
    ],
)
def test_foreign_reference_in_add_transition(
    two: Flowkernel, state: str, method: str, target: str, kind: str, key: str
) -> None:
    error = refused(
        two, ForeignReference, lambda: two.definitions.add_transition("gate", state, method, target)
    )
    assert isinstance(error, ForeignReference)
    assert (error.kind, error.key, error.owner, error.expected) == (kind, key, "region", "gate")
    assert repr(key) in str(error) and "'region'" in str(error)


# --- duplicates --------------------------------------------------------------------------


def test_duplicate_class_code(two: Flowkernel) -> None:
    error = refused(two, DuplicateCode, lambda: two.definitions.add_class("gate", "Another gate"))
    assert isinstance(error, DuplicateCode)
    assert (error.kind, error.key) == ("class", "gate")
    # The same code in an account is another class.
    assert two.definitions.add_class("gate", "Tenant gate", account_id=7).account_id == 7


def test_duplicate_state_code(two: Flowkernel) -> None:
    error = refused(
        two, DuplicateCode, lambda: two.definitions.add_state("gate", "enabled", "shut", "S")
    )
    assert isinstance(error, DuplicateCode)
    assert (error.kind, error.key) == ("state", "shut")


def test_duplicate_method_code(two: Flowkernel) -> None:
    error = refused(
        two,
        DuplicateCode,
        lambda: two.definitions.add_method("gate", "open", "open", code="toggle"),
    )
    assert isinstance(error, DuplicateCode)
    assert (error.kind, error.key) == ("method", "toggle")
    # The same code in another state, or as a global method, is a different method.
    two.definitions.add_method("gate", "shut", "open", code="toggle")
    two.definitions.add_method("gate", None, "open", code="toggle")
    error = refused(
        two, DuplicateCode, lambda: two.definitions.add_method("gate", None, "close", code="toggle")
    )
    assert "global" in str(error)


def test_duplicate_action_code(two: Flowkernel) -> None:
    two.definitions.add_action("ping")
    error = refused(two, DuplicateCode, lambda: two.definitions.add_action("ping"))
    assert isinstance(error, DuplicateCode)
    assert (error.kind, error.key) == ("action", "ping")


def test_second_target_is_a_duplicate_transition(two: Flowkernel) -> None:
    two.definitions.add_transition("gate", "open", "toggle", "shut")
    error = refused(
        two,
        DuplicateTransition,
        lambda: two.definitions.add_transition("gate", "open", "toggle", "open"),
    )
    assert isinstance(error, DuplicateTransition)
    assert (error.state, error.method, error.existing) == ("open", "toggle", "shut")


def test_second_global_target_is_a_duplicate_transition(region: Flowkernel) -> None:
    error = refused(
        region,
        DuplicateTransition,
        lambda: region.definitions.add_transition("region", None, "create", "enabled"),
    )
    assert isinstance(error, DuplicateTransition)
    assert (error.state, error.method, error.existing) == (None, "create", "created")


@pytest.mark.parametrize("code", ["", "9lives", "has space", "dash-ed", "é", "x" * 129])
def test_malformed_codes(two: Flowkernel, code: str) -> None:
    error = refused(
        two, InvalidDefinition, lambda: two.definitions.add_state("gate", "enabled", code, "X")
    )
    assert isinstance(error, InvalidDefinition)
    assert error.details()["key"] == code


# --- handlers and events -----------------------------------------------------------------


def test_handler_no_plugin_provides(two: Flowkernel) -> None:
    error = refused(
        two, UnknownHandler, lambda: two.definitions.add_event("gate", "close", "slam_door")
    )
    assert isinstance(error, UnknownHandler)
    assert error.handler == "slam_door"
    assert "change_object_state" in error.known


def test_registered_plugin_handler_is_accepted(two: Flowkernel) -> None:
    two.register_plugin(Recorder("slam_door"), name="recorder")
    event = two.definitions.add_event("gate", "check", "slam_door")
    assert (event.action, event.handler, event.sequence) == ("check", "slam_door", 0)


def test_event_is_a_handler_or_a_parent_splice(two: Flowkernel) -> None:
    refused(
        two,
        InvalidDefinition,
        lambda: two.definitions.add_event("gate", "close", "change_object_state", parent=True),
    )
    refused(two, InvalidDefinition, lambda: two.definitions.add_event("gate", "close"))
    # gate has no parent whose chain could be spliced in.
    refused(two, InvalidDefinition, lambda: two.definitions.add_event("gate", "close", parent=True))


@pytest.mark.parametrize(
    ("child_rows", "expected"),
    [
        (["c1", "parent", "c2"], ["c1", "p1", "change_object_state", "p2", "c2"]),
        (["parent", "c1"], ["p1", "change_object_state", "p2", "c1"]),
        # enable is a standard action: its own chain still ends with its state change
        (["c1"], ["c1", "change_object_state"]),
        ([], ["p1", "change_object_state", "p2"]),
    ],
)
def test_parent_splice_runs_the_parent_chain_at_its_position(
    region: Flowkernel, child_rows: list[str], expected: list[str]
) -> None:
    recorder = Recorder("p1", "p2", "c1", "c2")
    region.register_plugin(recorder, name="recorder")
    d = region.definitions
    for handler in ("p1", "change_object_state", "p2"):
        d.add_event("region", "enable", handler)
    d.add_class("city", "City", parent="region")
    for row in child_rows:
        if row == "parent":
            d.add_event("city", "enable", parent=True)
        else:
            d.add_event("city", "enable", row)
    item = region.place("city", "city", 1, ALICE)
    result = region.execute(item.id, "enable", ALICE)
    assert list(result.handlers) == expected
    assert recorder.calls == [h for h in expected if h != "change_object_state"]
    assert result.to_state == "enabled"


def test_event_sequence_orders_the_chain(region: Flowkernel) -> None:
    recorder = Recorder("a", "b")
    region.register_plugin(recorder, name="recorder")
    d = region.definitions
    first = d.add_event("region", "edit", "a")
    d.add_event("region", "edit", "b")
    d.edit_event(first.id, sequence=5)
    item = region.place("region", "region", 1, ALICE)
    assert region.execute(item.id, "edit", ALICE).handlers == ("b", "a")
    d.edit_event(first.id, enabled=False)
    assert region.execute(item.id, "edit", ALICE).handlers == ("b",)
    assert recorder.calls == ["b", "a", "b"]


# --- inheritance -------------------------------------------------------------------------


def test_subclass_without_states_uses_the_parent_definition(region: Flowkernel) -> None:
    region.definitions.add_class("city", "City", parent="region")
    item = region.place("city", "city", 1, ALICE)
    assert (item.class_code, item.state) == ("city", "created")
    assert region.execute(item.id, "enable", ALICE).to_state == "enabled"
    assert region.execute(item.id, "disable", ALICE).to_state == "disabled"
    town = region.place("region", "region", 1, SYSTEM, state="disabled")
    assert region.methods(item.id, ALICE) == region.methods(town.id, ALICE)


def test_subclass_method_overrides_the_parent_method(region: Flowkernel) -> None:
    d = region.definitions
    d.add_method("region", None, "submit")
    d.add_class("city", "City", parent="region")
    d.add_method("city", None, "submit", label="Amend", visible=False)
    city = region.place("city", "city", 1, ALICE)
    town = region.place("region", "region", 1, ALICE)
    assert "submit" in {m.code for m in region.methods(town.id, ALICE)}
    assert "submit" not in {m.code for m in region.methods(city.id, ALICE)}
    [own] = [m for m in region.methods(city.id, SYSTEM) if m.code == "submit"]
    assert (own.label, own.visible, own.target) == ("Amend", False, None)
    with pytest.raises(MethodNotAvailable):
        region.execute(city.id, "submit", ALICE)
    assert not region.execute(city.id, "submit", SYSTEM).changed
    assert region.execute(town.id, "enable", ALICE).to_state == "enabled"


def test_an_overriding_global_method_keeps_the_default_transition(region: Flowkernel) -> None:
    """The child's own enable has no transition: DefaultTransition gives it one."""
    d = region.definitions
    d.add_class("city", "City", parent="region")
    d.add_method("city", None, "enable", label="Switch on", visible=False)
    city = region.place("city", "city", 1, ALICE)
    assert "enable" not in {m.code for m in region.methods(city.id, ALICE)}
    assert region.execute(city.id, "enable", SYSTEM).to_state == "enabled"


def test_an_override_that_would_cut_off_a_state_is_refused(region: Flowkernel) -> None:
    """Enable bound to created and disabled with no transition: nothing leads to enabled."""
    d = region.definitions
    before = d.get_class("region").version
    methods = d.list_methods("region")

    def cut_off() -> None:
        with d.transaction():
            for state in ("created", "disabled"):
                d.add_method("region", state, "enable", label="Switch on")

    error = refused(region, InvalidDefinition, cut_off)
    assert isinstance(error, InvalidDefinition)
    assert "'enabled' of class 'region' cannot be reached from 'created'" in error.message
    assert error.details()["problems"] == [
        {
            "class": "region",
            "rule": "unreachable_state",
            "state": "enabled",
            "message": error.details()["problems"][0]["message"],
        }
    ]
    assert d.list_methods("region") == methods
    assert d.get_class("region").version == before


def test_subclass_access_rules_add_to_the_parent(region: Flowkernel) -> None:
    d = region.definitions
    d.add_access_rule("region", subject="1", method="disable", effect="deny")
    d.add_class("city", "City", parent="region")
    city = region.place("city", "city", 1, ALICE)
    assert "disable" not in {m.code for m in region.methods(city.id, ALICE)}


def test_parent_change_recompiles_the_subclass(region: Flowkernel) -> None:
    d = region.definitions
    d.add_class("city", "City", parent="region")
    city = region.place("city", "city", 1, ALICE)
    before = d.get_class("city").version
    d.edit_method("region", None, "enable", visible=False)
    assert d.get_class("city").version > before
    assert "enable" not in {m.code for m in region.methods(city.id, ALICE)}


# --- abstract classes --------------------------------------------------------------------


def test_abstract_class_holds_no_items(region: Flowkernel) -> None:
    d = region.definitions
    d.add_class("vehicle", "Vehicle", abstract=True)
    d.add_default_methods("vehicle")
    error = refused(region, AbstractClassError, lambda: region.place("vehicle", "car", 1, ALICE))
    assert isinstance(error, AbstractClassError)
    assert error.class_code == "vehicle"
    d.add_class("car", "Car", parent="vehicle")
    assert region.place("car", "car", 1, ALICE).state == "created"


def test_class_with_items_cannot_become_abstract(region: Flowkernel) -> None:
    region.place("region", "region", 1, ALICE)
    region.place("region", "region", 2, ALICE)
    error = refused(
        region, AbstractClassError, lambda: region.definitions.edit_class("region", abstract=True)
    )
    assert isinstance(error, AbstractClassError)
    assert (error.class_code, error.items) == ("region", 2)
    assert "2 item(s)" in str(error)


def test_empty_class_can_become_abstract_and_back(region: Flowkernel) -> None:
    assert region.definitions.edit_class("region", abstract=True).is_abstract
    assert not region.definitions.edit_class("region", abstract=False).is_abstract
    assert region.place("region", "region", 1, ALICE).state == "created"


# --- editing and deleting ----------------------------------------------------------------


def test_edit_class(region: Flowkernel) -> None:
    d = region.definitions
    d.add_class("area", "Area")
    before = d.get_class("region").version
    info = d.edit_class("region", label="Regions", parent="area")
    assert (info.label, info.parent) == ("Regions", "area")
    assert info.version > before
    assert d.edit_class("region", parent=None).parent is None


def test_class_cannot_become_its_own_ancestor(region: Flowkernel) -> None:
    d = region.definitions
    d.add_class("city", "City", parent="region")
    d.add_class("street", "Street", parent="city")
    error = refused(region, InvalidDefinition, lambda: d.edit_class("region", parent="street"))
    assert "ancestor" in str(error)
    refused(region, InvalidDefinition, lambda: d.edit_class("region", parent="region"))


def test_delete_class(region: Flowkernel) -> None:
    d = region.definitions
    d.add_class("city", "City", parent="region")
    error = refused(region, DefinitionInUse, lambda: d.delete_class("region"))
    assert "city" in str(error)
    d.delete_class("city")
    with pytest.raises(UnknownDefinition):
        d.get_class("city")
    item = region.place("region", "region", 1, ALICE)
    error = refused(region, DefinitionInUse, lambda: d.delete_class("region"))
    assert isinstance(error, DefinitionInUse)
    assert (error.kind, error.key) == ("class", "region")
    assert "1 item(s)" in str(error)
    region.execute(item.id, "delete", ALICE)
    region.execute(item.id, "drop", ALICE)
    # The item is gone but its history still names the class and its states.
    error = refused(region, DefinitionInUse, lambda: d.delete_class("region"))
    assert "history" in str(error)
    assert [e.to_state for e in region.history(item.id, ALICE)] == ["created", "deleted"]


def test_delete_unused_class_removes_its_definition(region: Flowkernel) -> None:
    region.definitions.delete_class("region")
    after = stored(region)
    for table in ("flow_pipelines", "flow_stages", "fk_methods", "fk_transitions"):
        assert after[table] == []
    # The code is free again.
    region.definitions.add_class("region", "Region")


def test_edit_state(two: Flowkernel) -> None:
    d = two.definitions
    info = d.edit_state("gate", "shut", label="Closed", position=9, new_code="closed")
    assert (info.code, info.label, info.position) == ("closed", "Closed", 9)
    assert [s.code for s in d.list_states("gate")] == ["open", "closed"]
    error = refused(two, DuplicateCode, lambda: d.edit_state("gate", "closed", new_code="open"))
    assert isinstance(error, DuplicateCode)
    refused(two, UnknownDefinition, lambda: d.edit_state("gate", "shut", label="x"))


def test_delete_state(two: Flowkernel) -> None:
    d = two.definitions
    d.add_transition("gate", "open", "toggle", "shut")
    item = two.place("gate", "gate", 1, ALICE)
    error = refused(two, DefinitionInUse, lambda: d.delete_state("gate", "open"))
    assert isinstance(error, DefinitionInUse)
    assert (error.kind, error.key) == ("state", "open")
    two.execute(item.id, "toggle", ALICE)
    # No item sits in `open` any more, but the history names it.
    error = refused(two, DefinitionInUse, lambda: d.delete_state("gate", "open"))
    assert "history" in str(error)
    d.add_state("gate", "disabled", "spare", "Spare")
    d.add_method("gate", "spare", "close", code="toggle")
    d.add_transition("gate", "spare", "toggle", "shut")
    d.delete_state("gate", "spare")
    assert [s.code for s in d.list_states("gate")] == ["open", "shut"]
    # Its methods and transitions went with it.
    assert [(m.state, m.code) for m in d.list_methods("gate")] == [
        ("open", "toggle"),
        (None, "inspect"),
    ]
    assert [(t.state, t.method) for t in d.list_transitions("gate")] == [("open", "toggle")]


def test_edit_method(two: Flowkernel) -> None:
    d = two.definitions
    info = d.edit_method("gate", "open", "toggle", label="Close it", sequence=7, visible=False)
    assert (info.state, info.label, info.sequence, info.visible) == ("open", "Close it", 7, False)
    refused(two, UnknownDefinition, lambda: d.edit_method("gate", "shut", "toggle", label="x"))


def test_delete_method_takes_its_transitions(two: Flowkernel) -> None:
    d = two.definitions
    d.add_transition("gate", "open", "toggle", "shut")
    _second_way_to_shut(d)
    d.add_access_rule("gate", subject="1", method="toggle")
    d.delete_method("gate", "open", "toggle")
    assert [m.code for m in d.list_methods("gate")] == ["inspect", "slam"]
    assert [(t.state, t.method) for t in d.list_transitions("gate")] == [("open", "slam")]
    assert d.list_access_rules("gate") == []
    refused(two, UnknownDefinition, lambda: d.delete_method("gate", "open", "toggle"))


def _second_way_to_shut(d: Definitions) -> None:
    """A method `slam` from open to shut, so that shut stays reachable without toggle."""
    d.add_method("gate", "open", "close", code="slam", sequence=9)
    d.add_transition("gate", "open", "slam", "shut")


def test_delete_transition(two: Flowkernel) -> None:
    d = two.definitions
    d.add_transition("gate", "open", "toggle", "shut")
    _second_way_to_shut(d)
    item = two.place("gate", "gate", 1, ALICE)
    d.delete_transition("gate", "open", "toggle")
    assert [(t.state, t.method) for t in d.list_transitions("gate")] == [("open", "slam")]
    # The method stays and runs without a target.
    assert not two.execute(item.id, "toggle", ALICE).changed
    error = refused(two, UnknownDefinition, lambda: d.delete_transition("gate", "open", "toggle"))
    assert isinstance(error, UnknownDefinition)
    assert error.kind == "transition"


def test_edit_and_delete_event(two: Flowkernel) -> None:
    d = two.definitions
    kept = d.list_events("gate")
    event = d.add_event("gate", "check", "change_object_state", label="Change state")
    edited = d.edit_event(event.id, label="Move", enabled=False, sequence=3)
    assert (edited.label, edited.enabled, edited.sequence) == ("Move", False, 3)
    assert edited in d.list_events("gate")
    d.delete_event(event.id)
    assert d.list_events("gate") == kept
    refused(two, UnknownDefinition, lambda: d.delete_event(event.id))
    refused(two, UnknownDefinition, lambda: d.edit_event(event.id, label="x"))


def test_delete_action(two: Flowkernel) -> None:
    d = two.definitions
    error = refused(two, DefinitionInUse, lambda: d.delete_action("enable"))
    assert isinstance(error, DefinitionInUse)
    assert (error.kind, error.key) == ("action", "enable")
    error = refused(two, DefinitionInUse, lambda: d.delete_action("close"))
    assert "method" in str(error)
    d.add_action("ping")
    d.add_event("gate", "ping", "change_object_state")
    refused(two, DefinitionInUse, lambda: d.delete_action("ping"))
    d.add_action("pong", "Pong", "answers a ping")
    d.delete_action("pong")
    assert "pong" not in {a.code for a in d.list_actions()}
    refused(two, UnknownDefinition, lambda: d.delete_action("pong"))


def test_access_rule_validation(two: Flowkernel) -> None:
    d = two.definitions
    for kwargs in (
        {"subject_kind": "role"},
        {"permission": "own"},
        {"effect": "maybe"},
    ):
        refused(
            two, InvalidDefinition, lambda kw=kwargs: d.add_access_rule("gate", subject="1", **kw)
        )
    refused(two, UnknownDefinition, lambda: d.add_access_rule("gate", subject="1", method="nope"))
    rule = d.add_access_rule("gate", subject="1", method="toggle", effect="deny")
    assert d.list_access_rules("gate") == [rule]
    d.delete_access_rule(rule.id)
    assert d.list_access_rules("gate") == []
    refused(two, UnknownDefinition, lambda: d.delete_access_rule(rule.id))


def test_every_definition_write_bumps_the_class_version(two: Flowkernel) -> None:
    d = two.definitions
    versions = [d.get_class("gate").version]
    for write in (
        lambda: d.add_state("gate", "deleted", "gone", "Gone"),
        lambda: d.add_method("gate", "shut", "open", code="toggle"),
        lambda: d.add_transition("gate", "shut", "toggle", "open"),
        lambda: d.add_event("gate", "open", "change_object_state"),
        lambda: d.add_access_rule("gate", subject="1"),
        lambda: d.edit_state("gate", "gone", label="Gone away"),
        lambda: d.delete_transition("gate", "shut", "toggle"),
    ):
        # the last write leaves shut with no way out again: a trap, which warns
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DefinitionWarning)
            write()
        versions.append(d.get_class("gate").version)
    assert versions == sorted(set(versions))


def test_definition_errors_share_a_base() -> None:
    for error in (
        UnknownDefinition,
        DuplicateCode,
        DuplicateTransition,
        ForeignReference,
        UnknownHandler,
        AbstractClassError,
        InvalidDefinition,
        DefinitionInUse,
    ):
        assert issubclass(error, DefinitionError)
