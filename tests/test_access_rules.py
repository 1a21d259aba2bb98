"""Access rules: every public operation that takes an actor checks the account and the rules.

The sweep calls each operation, with arguments that are valid for a user of the world's
account, as:

(a) a user of another account: the class, pipeline or item is unknown to it (`ItemNotFound`,
    `UnknownDefinition`), so that nothing tells it what exists elsewhere; `AccessDenied` only
    where the caller names the account or user itself (creating in another account, another
    user's inbox) or the operation is the system actor's. Lists simply leave the rows out.
(b) a user of the right account without the right: a class-wide deny rule for the user, and a
    deny rule for one of its groups while an allow rule names the user (deny wins), each for
    both permissions: `AccessDenied`, and lists leave the class out.
(c) a user firing a hidden method: `MethodHidden`, which is an `AccessDenied`.

Every refusal leaves the database as it was. The table of operations is checked against the
public API, so that a new operation without an entry fails here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sweep import (
    API_CLASSES,
    AUTOMATION,
    DEAL,
    FK,
    GONE,
    PIPELINE,
    TEMPLATE,
    Call,
    World,
    X,
    define_lamp,
    snapshot,
)

import flowkernel.documents
from flowkernel import (
    SYSTEM,
    AccessDenied,
    Actor,
    Flowkernel,
    FlowkernelError,
    ItemNotFound,
    MethodHidden,
    MethodNotAvailable,
    StageSpec,
    UnknownDefinition,
)
from flowkernel.errors import EventNotFound

ACCOUNT, OTHER_ACCOUNT = 1, 2
ALICE = Actor.user(1, ACCOUNT, groups=("sales",))
BOB = Actor.user(2, ACCOUNT, groups=("sales",))
"""The user the rules deny."""
MALLORY = Actor.user(3, OTHER_ACCOUNT, groups=("sales",))
"""A user of another account, in a group of the same name."""
NOT_FOUND = (ItemNotFound, UnknownDefinition, EventNotFound)


@pytest.fixture
def world(fk: Flowkernel) -> World:
    define_lamp(fk, ACCOUNT)
    pipeline = fk.pipelines.create_pipeline(
        "Deals",
        ALICE,
        code="deals",
        stages=[
            StageSpec("Lead", code="lead", checklist=[{"key": "call", "label": "Call"}]),
            StageSpec("Won", code="won", is_won=True),
            StageSpec("Lost", code="lost", is_lost=True),
        ],
        columns=[{"name": "title"}],
    )
    template = fk.pipelines.create_pipeline(
        "Template", ALICE, is_template=True, stages=[StageSpec("Open")]
    )
    automation = fk.pipelines.add_automation(
        pipeline.id, "stage_entered", "deal.won", ALICE, stage="won"
    )
    deal = fk.place(pipeline.id, "deal", 1, ALICE).id
    fk.items.set_value(deal, "title", "First", ALICE)
    fk.items.watch(deal, BOB.user_id, ALICE)
    won = fk.place(pipeline.id, "deal", 2, ALICE).id
    fk.items.watch(won, BOB.user_id, ALICE)
    fk.move(won, "won", ALICE)  # an event in the log, a notification in Bob's inbox
    gone = fk.place(pipeline.id, "deal", 3, ALICE).id
    fk.items.delete(gone, ALICE)
    lamp = fk.place("lamp", "lamp", 1, ALICE).id
    # what the lists below must leave out is there to be seen
    assert [e.pipeline_id for e in fk.queries.events(ALICE)] == [pipeline.id]
    assert pipeline.id in {p.id for p in fk.pipelines.list_pipelines(ALICE)}
    assert fk.items.inbox(BOB.user_id, BOB)
    return World(fk, pipeline.id, template.id, automation.id, deal, gone, lamp)


def deny_user(world: World) -> None:
    """Class-wide deny rules for Bob, on the pipeline, the template and the lamp class."""
    _rules(world, [("user", "2", "deny")])


def deny_group_over_allowed_user(world: World) -> None:
    """Allow rules for Bob and deny rules for his group: deny wins."""
    _rules(world, [("user", "2", "allow"), ("group", "sales", "deny")])


def _rules(
    world: World,
    rules: list[tuple[str, str, str]],
    permissions: tuple[str, ...] = ("execute", "visible"),
) -> None:
    for class_code in (world.pipeline, world.template, "lamp"):
        for kind, subject, effect in rules:
            for permission in permissions:
                world.fk.definitions.add_access_rule(
                    class_code,
                    subject=subject,
                    subject_kind=kind,
                    permission=permission,
                    effect=effect,
                    account_id=ACCOUNT,
                )


# --- the operations ----------------------------------------------------------------------

READ, WRITE, LIST, SYSTEM_ONLY, OWN, NEW = "read", "write", "list", "system", "own", "new"
NAME = "name"
"""Finds a definition by its code: one hidden from the actor is unknown to it, as elsewhere."""
"""What an operation does with the class: reads or changes it (or its items), lists classes
(leaving out what the actor may not see), is the system actor's, reads the actor's own
notifications, or creates a new class (no rule of it can exist yet)."""


@dataclass(frozen=True)
class Operation:
    """A public operation, called with valid arguments and the actor under test in `X`."""

    kind: str
    call: Call
    other_account: type[FlowkernelError] | tuple[type[FlowkernelError], ...]
    """What a user of another account gets (lists: nothing of the world's account)."""

    @property
    def name(self) -> str:
        return self.call.operation


def op(kind: str, operation: str, *args: Any, _other: Any = NOT_FOUND, **kwargs: Any) -> Operation:
    return Operation(kind, Call(operation, args, kwargs), _other)


def _without_world(world: World, result: Any) -> bool:
    """Whether a list result holds nothing of the world's pipeline."""
    ids = {getattr(row, "id", None) for row in result} | {
        getattr(row, "pipeline_id", None) for row in result
    }
    return world.pipeline not in ids


NOW = datetime.now(UTC)
p, i, q = "pipelines.", "items.", "queries."
OPERATIONS = [
    op(WRITE, "place", PIPELINE, "deal", 9, X),
    op(WRITE, "execute", DEAL, "move_to_lost", X),
    op(WRITE, "execute_action", DEAL, "delete", X),
    op(WRITE, "execute_batch", [DEAL], "move_to_won", X),
    op(WRITE, "move", DEAL, "lost", X),
    op(READ, "item", DEAL, X),
    op(READ, "methods", DEAL, X),
    op(READ, "history", DEAL, X),
    op(READ, "state_at", DEAL, NOW, X),
    op(READ, "explain", DEAL, "won", X),
    op(NEW, p + "create_pipeline", "New", X, account_id=ACCOUNT, _other=AccessDenied),
    op(READ, p + "get_pipeline", PIPELINE, X),
    op(NAME, p + "pipeline_id", "deals", X, _other=UnknownDefinition),
    op(LIST, p + "list_pipelines", X),
    op(WRITE, p + "edit_pipeline", PIPELINE, X, name="Renamed"),
    op(WRITE, p + "delete_pipeline", PIPELINE, X),
    op(WRITE, p + "add_stage", PIPELINE, "New", X),
    op(WRITE, p + "edit_stage", PIPELINE, "lead", X, name="First"),
    op(WRITE, p + "reorder_stages", PIPELINE, ["won", "lead", "lost"], X),
    op(WRITE, p + "remove_stage", PIPELINE, "lost", X),
    op(WRITE, p + "set_movement", PIPELINE, X, allow_backward=False),
    op(WRITE, p + "add_column", PIPELINE, "notes", X),
    op(WRITE, p + "edit_column", PIPELINE, "title", X, label="Name"),
    op(WRITE, p + "deactivate_column", PIPELINE, "title", X),
    op(WRITE, p + "activate_column", PIPELINE, "title", X),
    op(WRITE, p + "require_column", PIPELINE, "won", "title", X),
    op(WRITE, p + "unrequire_column", PIPELINE, "won", "title", X),
    op(WRITE, p + "add_automation", PIPELINE, "item_created", "deal.new", X),
    op(READ, p + "list_automations", PIPELINE, X),
    op(WRITE, p + "edit_automation", AUTOMATION, X, name="Won"),
    op(WRITE, p + "deactivate_automation", AUTOMATION, X),
    op(WRITE, p + "activate_automation", AUTOMATION, X),
    op(WRITE, p + "delete_automation", AUTOMATION, X),
    # it reads the template; a copy is a new class (Mallory names the account: refused)
    op(READ, p + "clone_template", TEMPLATE, ACCOUNT, X, code="copy", _other=AccessDenied),
    op(WRITE, i + "set_value", DEAL, "title", "x", X),
    op(WRITE, i + "set_values", DEAL, {"title": "x"}, X),
    op(WRITE, i + "clear_value", DEAL, "title", X),
    op(READ, i + "values", DEAL, X),
    op(WRITE, i + "complete_checklist_item", DEAL, "call", X),
    op(WRITE, i + "reopen_checklist_item", DEAL, "call", X),
    op(READ, i + "checklist", DEAL, X),
    op(WRITE, i + "assign", DEAL, 7, X),
    op(WRITE, i + "reorder", DEAL, 0, X),
    op(WRITE, i + "delete", DEAL, X),
    op(WRITE, i + "restore", GONE, X),
    op(WRITE, i + "drop", GONE, X),
    op(WRITE, i + "watch", DEAL, 7, X),
    op(WRITE, i + "unwatch", DEAL, 2, X),
    op(READ, i + "watchers", DEAL, X),
    op(OWN, i + "inbox", 2, X, _other=AccessDenied),
    op(OWN, i + "mark_read", 2, X, _other=AccessDenied),
    op(READ, q + "board", PIPELINE, X),
    op(READ, q + "stage_items", PIPELINE, "lead", X),
    op(READ, q + "item_history", DEAL, X),
    op(READ, q + "calls", DEAL, X),
    op(READ, q + "time_in_stage", DEAL, X),
    op(LIST, q + "pipelines_of", "deal", 1, X),
    op(LIST, i + "find", "deal", 1, X),
    op(READ, q + "conversion", PIPELINE, "lead", "won", X),
    op(READ, q + "stage_times", PIPELINE, X),
    op(READ, q + "forecast", PIPELINE, X),
    op(READ, q + "items_at", PIPELINE, "lead", NOW, X),
    op(LIST, q + "events", X),
    op(READ, q + "events", X, item_id=DEAL),
    op(SYSTEM_ONLY, "delivery.dead_letters", X, _other=AccessDenied),
    op(SYSTEM_ONLY, "delivery.retry_dead", X, _other=AccessDenied),
    op(
        NEW,
        "documents.load_pipeline",
        FK,
        {"name": "New"},
        X,
        account_id=ACCOUNT,
        _other=AccessDenied,
    ),
    op(
        NEW,
        "documents.apply",
        FK,
        [{"name": "New", "code": "new"}],
        account_id=ACCOUNT,
        actor=X,
        _other=AccessDenied,
    ),
]


def run_refused(world: World, operation: Operation, actor: Actor, error: Any) -> FlowkernelError:
    """Run `operation` as `actor`: it must raise `error` and change nothing."""
    before = snapshot(world.fk)
    try:
        operation.call.run(world, actor)
    except error as exc:
        refused: FlowkernelError = exc
    else:
        raise AssertionError(f"{operation.name} as {actor} was not refused")
    assert snapshot(world.fk) == before, f"{operation.name} changed the database"
    assert refused.message, operation.name
    return refused


def run_listed(world: World, operation: Operation, actor: Actor) -> None:
    """Run a list `operation` as `actor`: nothing of the world's pipeline, nothing changed."""
    before = snapshot(world.fk)
    result = operation.call.run(world, actor)
    assert _without_world(world, result), f"{operation.name} showed the pipeline to {actor}"
    assert snapshot(world.fk) == before


# --- (a) another account -------------------------------------------------------------------


def test_a_user_of_another_account_is_refused(world: World) -> None:
    for operation in OPERATIONS:
        if operation.kind == LIST:
            run_listed(world, operation, MALLORY)
            continue
        error = run_refused(world, operation, MALLORY, operation.other_account)
        if isinstance(error, NOT_FOUND):
            assert "Deals" not in error.message, operation.name  # nothing of it is named


# --- (b) a user without the right ----------------------------------------------------------

DENIALS = {"user denied": deny_user, "group denied, user allowed": deny_group_over_allowed_user}

NOT_A_CLASS_RIGHT = {
    NEW: "it creates a class: no rule of that class exists yet (the account is checked)",
    OWN: "a user's notifications are theirs (another user's are refused)",
}


@pytest.mark.parametrize("denial", DENIALS.values(), ids=DENIALS.keys())
def test_a_user_without_the_right_is_refused(world: World, denial: Callable[[World], None]) -> None:
    denial(world)
    refused = []
    for operation in OPERATIONS:
        if operation.kind in NOT_A_CLASS_RIGHT:
            continue
        if operation.kind == LIST:
            run_listed(world, operation, BOB)
            continue
        if operation.kind == NAME:
            hidden = run_refused(world, operation, BOB, UnknownDefinition)
            assert "Deals" not in hidden.message, operation.name
            continue
        error = run_refused(world, operation, BOB, AccessDenied)
        if operation.kind != SYSTEM_ONLY:
            assert "access rule" in error.message, (operation.name, error.message)
        if getattr(error, "permission", None) == "visible":  # nothing of it is named
            assert "Deals" not in error.message and "deals" not in error.message, operation.name
        refused.append(operation.name)
    assert len(refused) > 50


def test_execute_denied_still_reads_and_visible_denied_reads_nothing(world: World) -> None:
    _rules(world, [("user", "2", "deny")], permissions=("execute",))
    for operation in OPERATIONS:
        if operation.kind in (READ, NAME) and operation.name != "pipelines.clone_template":
            operation.call.run(world, BOB)  # allowed
        elif operation.kind == WRITE:
            run_refused(world, operation, BOB, AccessDenied)
    _rules(world, [("user", "2", "deny")], permissions=("visible",))
    for operation in OPERATIONS:
        if operation.kind == READ:
            run_refused(world, operation, BOB, AccessDenied)
        elif operation.kind == NAME:
            run_refused(world, operation, BOB, UnknownDefinition)
        elif operation.kind == LIST:
            run_listed(world, operation, BOB)


def test_the_system_actor_is_not_subject_to_rules(world: World) -> None:
    deny_user(world)
    world.fk.definitions.add_access_rule(
        world.pipeline, subject="*", permission="execute", effect="deny", account_id=ACCOUNT
    )
    assert world.fk.move(world.deal, "won", SYSTEM).to_state == "won"
    assert world.fk.items.values(world.deal, Actor.system(ACCOUNT))


# --- (c) hidden methods --------------------------------------------------------------------


def test_a_user_firing_a_hidden_method_is_refused(world: World) -> None:
    fk = world.fk
    for fire in (
        lambda: fk.execute(world.lamp, "inspect", BOB),
        lambda: fk.execute_action(world.lamp, "check", BOB),
        lambda: fk.execute_batch([world.lamp], "inspect", BOB),
    ):
        before = snapshot(fk)
        with pytest.raises(MethodHidden) as refused:
            fire()
        assert isinstance(refused.value, AccessDenied)
        assert isinstance(refused.value, MethodNotAvailable)  # it is not offered to users
        assert "hidden" in refused.value.message and "system actor" in refused.value.message
        assert snapshot(fk) == before
    assert "inspect" not in {m.code for m in fk.methods(world.lamp, BOB)}
    assert not fk.explain(world.lamp, "inspect", BOB).possible
    # a method-level deny of a visible method is refused too, and only for that method
    fk.definitions.add_access_rule(
        "lamp", subject="2", method="switch_on", effect="deny", account_id=ACCOUNT
    )
    before = snapshot(fk)
    with pytest.raises(AccessDenied):
        fk.execute(world.lamp, "switch_on", BOB)
    assert snapshot(fk) == before
    # the system actor runs it; an allow rule lets a group run it
    assert fk.execute(world.lamp, "inspect", SYSTEM).method == "inspect"
    fk.definitions.add_access_rule(
        "lamp", subject="ops", subject_kind="group", method="inspect", account_id=ACCOUNT
    )
    assert fk.execute(world.lamp, "inspect", Actor.user(4, ACCOUNT, ("ops",))).method == "inspect"


# --- every operation is in the table --------------------------------------------------------


def operations_taking_an_actor() -> set[str]:
    """Public functions of the facade, its APIs and the documents that take an actor."""
    members = [("", Flowkernel, inspect.getmembers(Flowkernel, inspect.isfunction))]
    members += [
        (f"{n}.", api, inspect.getmembers(api, inspect.isfunction))
        for n, api in API_CLASSES.items()
    ]
    documents = flowkernel.documents  # its functions load on first use: ask for each
    public = [(name, getattr(documents, name)) for name in documents.__all__]
    members += [("documents.", documents, [(n, f) for n, f in public if inspect.isfunction(f)])]
    return {
        prefix + name
        for prefix, owner, functions in members
        for name, function in functions
        if name[0] != "_"
        and (inspect.isclass(owner) or function.__module__.startswith(owner.__name__))
        and "actor" in inspect.signature(function).parameters
    }


def test_every_operation_taking_an_actor_is_swept() -> None:
    swept = {o.name for o in OPERATIONS}
    assert operations_taking_an_actor() == swept


def test_definitions_take_no_actor() -> None:
    """The authoring API is the platform's administration: no call takes an actor (see
    docs/decisions.md); a new one that does must join the sweep above."""
    assert not {n for n in operations_taking_an_actor() if n.startswith("definitions.")}
