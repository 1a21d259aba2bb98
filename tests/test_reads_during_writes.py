"""Reads never wait for a write: while one execution holds its transaction open, every read of
the library, the inbox, the event log, the dead letters and the token store answers at once
with the last committed state (on SQLite, reads take no write lock; WAL serves them)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

import pytest

from flowkernel import SYSTEM, Actor, EventContext, ExecutionResult, Flowkernel, StageSpec, hookimpl
from flowkernel.hookspecs import EventHandler
from flowkernel.http import ApiTokens

ACCOUNT = 3
REP = Actor.user(5, ACCOUNT)


class Gate:
    """Handler `hold`: says it has started, then waits until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self, context: EventContext) -> None:
        self.entered.set()
        self.release.wait(60)

    @hookimpl
    def flowkernel_event_handlers(self) -> Mapping[str, EventHandler]:
        return {"hold": self.hold}


@pytest.fixture
def gate(fk: Flowkernel) -> Iterator[Gate]:
    plugin = Gate()
    fk.register_plugin(plugin, name="gate")
    yield plugin
    plugin.release.set()


def test_reads_answer_while_a_write_holds_its_transaction(fk: Flowkernel, gate: Gate) -> None:
    d = fk.definitions
    d.add_class("lamp", "Lamp", account_id=ACCOUNT)
    d.add_state("lamp", "created", "off", "Off", account_id=ACCOUNT)
    d.add_state("lamp", "enabled", "on", "On", account_id=ACCOUNT)
    d.add_method("lamp", "off", "enable", code="switch_on", account_id=ACCOUNT)
    d.add_transition("lamp", "off", "switch_on", "on", account_id=ACCOUNT)
    d.add_event("lamp", "enable", "hold", account_id=ACCOUNT)
    d.add_event("lamp", "enable", "change_object_state", account_id=ACCOUNT)
    held = fk.place("lamp", "lamp", 1, REP).id
    other = fk.place("lamp", "lamp", 2, REP).id
    deals = fk.pipelines.create_pipeline(
        "Deals", REP, stages=[StageSpec("Lead"), StageSpec("Won", is_won=True)]
    ).id
    deal = fk.place(deals, "deal", 1, REP).id
    fk.items.watch(deal, REP.user_id or 0, REP)
    fk.move(deal, "won", REP)
    tokens = ApiTokens(fk.engine, cache_ttl=0, touch_every=3600)
    token = tokens.issue("rep", account_id=ACCOUNT, user_id=5).token
    tokens.resolve(token)  # its last use is written now, not during the reads below

    outcome: list[ExecutionResult | BaseException] = []

    def switch_on() -> None:
        try:
            outcome.append(fk.execute(held, "switch_on", REP))
        except BaseException as exc:
            outcome.append(exc)

    writer = threading.Thread(target=switch_on)
    writer.start()
    assert gate.entered.wait(30), outcome
    try:
        # the write is in its transaction, holding its locks, until the gate opens
        assert fk.item(held, REP).state == "off"  # the last committed state
        assert [h.to_state for h in fk.history(held, REP)] == ["off"]
        assert fk.item(other, REP).state == "off"
        assert [m.code for m in fk.methods(other, REP)] == ["switch_on"]
        assert fk.explain(other, "switch_on", REP).possible
        assert fk.state_at(other, fk.history(other, REP)[0].moved_at, REP) == "off"
        assert fk.compiled("lamp", ACCOUNT).code == "lamp"
        board = fk.queries.board(deals, REP)
        assert [len(s.items) for s in board.stages] == [0, 1]
        assert [m.to_stage for m in fk.queries.item_history(deal, REP)] == ["Lead", "Won"]
        assert fk.queries.time_in_stage(deal, REP) is not None
        assert fk.items.values(deal, REP) == []
        assert fk.items.watchers(deal, REP) == [5]
        assert len(fk.items.inbox(5, REP)) == 1
        assert isinstance(fk.queries.events(REP, item_id=deal), list)
        assert fk.delivery.dead_letters(SYSTEM) == []
        assert tokens.resolve(token) == Actor.user(5, ACCOUNT)
        assert outcome == []  # the write is still waiting at the gate
    finally:
        gate.release.set()
        writer.join(30)
    [result] = outcome
    assert isinstance(result, ExecutionResult) and result.to_state == "on"
    assert fk.item(held, REP).state == "on"
