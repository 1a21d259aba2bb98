"""The execution hot path: what it asks the database, compiled classes going stale, lost
connections. Behaviour only; speed is the benchmark's business (`flowkernel bench`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from flowkernel import (
    SYSTEM,
    Actor,
    DatabaseConnectionLost,
    Flowkernel,
    RequirementMissing,
    StageSpec,
)
from flowkernel.store import database as fk_database
from flowkernel.store.tables import history, method_calls

ADMIN = Actor.user(1, 1)


@pytest.fixture
def deals(fk: Flowkernel) -> int:
    pipeline = fk.pipelines.create_pipeline(
        "Deals",
        ADMIN,
        code="deals",
        stages=[StageSpec("Lead"), StageSpec("Qualified"), StageSpec("Won")],
    )
    return pipeline.id


@pytest.fixture
def statements(fk: Flowkernel, backend: str) -> Iterator[list[str]]:
    """Every SQL statement SQLite runs from now on (the driver's own trace)."""
    if backend != "sqlite":
        pytest.skip("SQLite's trace callback shows every statement the driver runs")
    seen: list[str] = []
    fk.engine.dispose()  # new connections get the trace

    @event.listens_for(fk.engine, "connect")
    def trace(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_trace_callback(seen.append)

    yield seen


def touched(seen: list[str], table: str) -> bool:
    return any(table in sql for sql in seen)


def work(seen: list[str]) -> list[str]:
    """The statements that read or write rows; SQLite reports a statement again for each
    trigger it fires, so repeats in a row are one statement."""
    kept = [s for s in seen if s.split()[0] in ("INSERT", "UPDATE", "DELETE", "SELECT")]
    return [s for i, s in enumerate(kept) if i == 0 or kept[i - 1] != s]


def test_a_move_asks_only_what_the_compiled_class_does_not_know(
    fk: Flowkernel, deals: int, statements: list[str]
) -> None:
    item = fk.place(deals, "deal", 1, ADMIN).id
    fk.move(item, "qualified", ADMIN)  # warm: compiled class cached
    statements.clear()
    fk.move(item, "won", ADMIN)
    # load, move, history (the move written once): no requirement, automation or watcher
    # query, no call-log row
    assert [s.split()[0] for s in work(statements)] == ["SELECT", "UPDATE", "INSERT"]
    assert not touched(statements, "fk_method_calls")
    for table in ("flow_stage_required_columns", "flow_item_values", "flow_automations"):
        assert not touched(statements, table)
    assert not any(s.startswith("SELECT flow_item_watchers") for s in statements)

    # a required column and a watcher: now they are asked for
    fk.pipelines.add_column(deals, "budget", ADMIN, field_type="number")
    fk.pipelines.require_column(deals, "lead", "budget", ADMIN)
    fk.items.watch(item, 5, ADMIN)
    statements.clear()
    with pytest.raises(RequirementMissing):
        fk.move(item, "lead", ADMIN)
    assert touched(statements, "flow_item_values")
    fk.items.set_value(item, "budget", 10, ADMIN)
    statements.clear()
    fk.move(item, "lead", ADMIN)
    assert any("FROM flow_item_watchers" in s and "ORDER BY" in s for s in statements)


def test_a_heartbeat_writes_only_the_call_log(fk: Flowkernel, statements: list[str]) -> None:
    from flowkernel.examples.charging_station import build_station_class

    build_station_class(fk)
    item = fk.place("station", "charging_station", 1, ADMIN).id
    fk.execute(item, "enable", ADMIN)
    fk.execute(item, "heartbeat", SYSTEM)
    statements.clear()
    fk.execute(item, "heartbeat", SYSTEM, params={"status": "ok"})
    done = work(statements)
    assert [s.split()[0] for s in done] == ["SELECT", "INSERT"]
    assert "fk_method_calls" in done[1]


def test_a_definition_change_between_executions_is_compiled_in(fk: Flowkernel, deals: int) -> None:
    item = fk.place(deals, "deal", 1, ADMIN).id
    fk.move(item, "qualified", ADMIN)
    before = fk.compiled(deals, 1).version
    fk.pipelines.add_stage(deals, "Proposal", ADMIN)
    result = fk.move(item, "proposal", ADMIN)  # unknown to the cached class
    assert result.to_state == "proposal"
    assert fk.compiled(deals, 1).version > before
    assert [e.to_state for e in fk.history(item, ADMIN)][-1] == "proposal"


def test_the_move_and_its_rows_are_one_transaction(fk: Flowkernel, deals: int) -> None:
    """A failing handler leaves no history, no call log and the old state."""

    class Refuse:
        from flowkernel import hookimpl

        @hookimpl
        def flowkernel_event_handlers(self) -> dict[str, Any]:
            def refuse(context: Any) -> None:
                raise RuntimeError("not today")

            return {"refuse": refuse}

    fk.register_plugin(Refuse(), name="refuse")
    item = fk.place(deals, "deal", 1, ADMIN).id
    with fk.engine.connect() as conn:
        counts = [
            conn.execute(select(func.count()).select_from(t)).scalar()
            for t in (history, method_calls)
        ]
    fk.definitions.add_event("deals", "move", "refuse", account_id=1)
    with pytest.raises(Exception, match="not today"):
        fk.move(item, "qualified", ADMIN)
    assert fk.item(item, ADMIN).state == "lead"
    with fk.engine.connect() as conn:
        assert [
            conn.execute(select(func.count()).select_from(t)).scalar()
            for t in (history, method_calls)
        ] == counts


# --- lost connections (PostgreSQL) ---------------------------------------------------------


def _kill_pooled_backends(fk: Flowkernel, database_url: str) -> None:
    """Terminate the server side of every connection this kernel's pool holds."""
    name = make_url(database_url).database
    admin = create_engine(
        make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with fk.engine.connect() as conn:
        mine = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid = :pid"
            ),
            {"db": name, "pid": mine},
        )
        # the backend is gone once the server no longer lists it
        deadline = time.monotonic() + 30
        while conn.execute(
            text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": mine}
        ).first():
            assert time.monotonic() < deadline, f"backend {mine} still runs"
            time.sleep(0.01)
    admin.dispose()


def test_a_connection_lost_while_idle_is_replaced_at_checkout(
    fk: Flowkernel, deals: int, database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("server-side connection loss")
    item = fk.place(deals, "deal", 1, ADMIN).id
    fk.engine.dispose()  # one pooled connection from here on
    fk.item(item, ADMIN)
    _kill_pooled_backends(fk, database_url)
    monkeypatch.setattr(fk_database, "PING_AFTER", 0.0)  # every checkout pings
    assert fk.move(item, "qualified", ADMIN).to_state == "qualified"


def test_a_connection_lost_in_use_fails_once_then_recovers(
    fk: Flowkernel, deals: int, database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("server-side connection loss")
    # the connection counts as used a moment ago however slow the machine: never pinged
    monkeypatch.setattr(fk_database, "PING_AFTER", 3600.0)
    item = fk.place(deals, "deal", 1, ADMIN).id
    fk.engine.dispose()
    fk.item(item, ADMIN)
    _kill_pooled_backends(fk, database_url)
    with pytest.raises(DatabaseConnectionLost) as lost:  # used a moment ago: not pinged, fails
        fk.move(item, "qualified", ADMIN)
    assert isinstance(lost.value.__cause__, DBAPIError)
    assert lost.value.__cause__.connection_invalidated
    assert fk.item(item, ADMIN).state == "lead"  # a new connection; nothing was written
    assert fk.move(item, "qualified", ADMIN).to_state == "qualified"
