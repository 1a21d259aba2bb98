"""Definitions are scoped to accounts, codes clear of the machine, composite calls atomic."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from flowkernel import (
    Actor,
    DuplicateCode,
    Flowkernel,
    InvalidArgument,
    InvalidDefinition,
    MethodNotAvailable,
    UnknownDefinition,
)
from flowkernel.store.tables import events, items, methods, pipelines, stages, transitions

OWNER = Actor.user(1, 10)
STRANGER = Actor.user(2, 20)


def snapshot(fk: Flowkernel) -> dict[str, list[tuple[Any, ...]]]:
    with fk.engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(t.c.id))]
            for t in (pipelines, stages, methods, transitions, events)
        }


@pytest.fixture
def secret(fk: Flowkernel) -> int:
    info = fk.definitions.add_class("secret", "Secret", account_id=10)
    fk.definitions.add_default_methods("secret", account_id=10)
    fk.definitions.add_event("secret", "edit", "change_object_state", account_id=10)
    return info.id


@pytest.mark.parametrize(
    "call",
    [
        lambda fk, cid: fk.definitions.get_class(cid, 20),
        lambda fk, cid: fk.definitions.delete_class(cid, 20),
        lambda fk, cid: fk.definitions.edit_class(cid, label="Mine", account_id=20),
        lambda fk, cid: fk.definitions.list_states(cid, 20),
        lambda fk, cid: fk.definitions.add_state(cid, "enabled", "hack", "Hack", account_id=20),
        lambda fk, cid: fk.definitions.add_method(cid, None, "open", code="peek", account_id=20),
        lambda fk, cid: fk.definitions.get_class(cid),  # the platform scope holds no account's
        lambda fk, cid: fk.place(cid, "doc", 1, STRANGER),
    ],
)
def test_another_accounts_class_is_unknown_by_id(fk: Flowkernel, secret: int, call: Any) -> None:
    before = snapshot(fk)
    with pytest.raises(UnknownDefinition):
        call(fk, secret)
    assert snapshot(fk) == before
    assert fk.definitions.get_class(secret, 10).label == "Secret"


def test_event_and_rule_ids_are_scoped(fk: Flowkernel, secret: int) -> None:
    (event,) = fk.definitions.list_events("secret", 10)
    rule = fk.definitions.add_access_rule("secret", subject="7", account_id=10)
    before = snapshot(fk)
    with pytest.raises(UnknownDefinition):
        fk.definitions.edit_event(event.id, enabled=False, account_id=20)
    with pytest.raises(UnknownDefinition):
        fk.definitions.delete_event(event.id, 20)
    with pytest.raises(UnknownDefinition):
        fk.definitions.delete_access_rule(rule.id, 20)
    assert snapshot(fk) == before
    fk.definitions.delete_event(event.id, 10)
    fk.definitions.delete_access_rule(rule.id, 10)
    assert fk.definitions.list_events("secret", 10) == []


def test_the_platform_system_actor_places_into_any_account_by_id(
    fk: Flowkernel, secret: int
) -> None:
    item = fk.place(secret, "doc", 1, Actor.system(), account_id=10)
    assert (item.account_id, item.state) == (10, "created")
    # without an account the item takes the class's; another account's is refused
    assert fk.place(secret, "doc", 2, Actor.system()).account_id == 10
    with fk.engine.connect() as conn:
        before = conn.execute(select(items).order_by(items.c.id)).all()
    with pytest.raises(InvalidArgument, match="belongs to account 10") as refused:
        fk.place(secret, "doc", 3, Actor.system(), account_id=20)
    assert refused.value.details()["account_id"] == 20
    with fk.engine.connect() as conn:
        assert conn.execute(select(items).order_by(items.c.id)).all() == before


@pytest.mark.parametrize("code", ["state", "guard", "trigger", "machine", "_hidden", "9lives"])
def test_method_codes_that_would_break_the_machine_are_refused(fk: Flowkernel, code: str) -> None:
    fk.definitions.add_class("r", "R")
    fk.definitions.add_default_methods("r")
    before = snapshot(fk)
    with pytest.raises(InvalidDefinition, match=repr(code)):
        fk.definitions.add_method("r", None, "open", code=code)
    assert snapshot(fk) == before
    item = fk.place("r", "doc", 1, OWNER)
    assert fk.execute(item.id, "enable", OWNER).to_state == "enabled"


def test_add_default_methods_is_all_or_nothing(fk: Flowkernel) -> None:
    fk.definitions.add_class("x", "X")
    fk.definitions.add_state("x", "enabled", "enabled", "Enabled")
    before = snapshot(fk)
    with pytest.raises(DuplicateCode, match="enabled"):
        fk.definitions.add_default_methods("x")
    assert snapshot(fk) == before
    assert [s.code for s in fk.definitions.list_states("x")] == ["enabled"]


def test_methods_of_abstract_ancestors_are_not_inherited(fk: Flowkernel) -> None:
    d = fk.definitions
    d.add_class("base", "Base", abstract=True)
    d.add_method("base", None, "submit", code="submit")
    d.add_class("middle", "Middle", parent="base")
    d.add_method("middle", None, "confirm", code="confirm")
    d.add_class("leaf", "Leaf", parent="middle")
    d.add_default_methods("leaf")
    item = fk.place("leaf", "doc", 1, OWNER)
    codes = {m.code for m in fk.methods(item.id, OWNER)}
    assert "confirm" in codes and "submit" not in codes
    with pytest.raises(MethodNotAvailable):
        fk.execute(item.id, "submit", OWNER)
    assert fk.execute(item.id, "confirm", OWNER).changed is False
