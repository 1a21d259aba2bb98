"""What the database refuses reaches callers as typed errors with the next step: a lock not
granted in time (PostgreSQL's lock_timeout, SQLite's busy timeout), a statement timeout, a pool
with no free connection, a full disk. Nothing of a refused call is kept, and HTTP answers 503
with `Retry-After` where a retry helps."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_fixtures import serve
from rows import every_row
from sqlalchemy import Engine, event

from flowkernel import (
    SYSTEM,
    Actor,
    DatabaseBusy,
    DatabaseError,
    DatabaseFull,
    DatabasePoolExhausted,
    DatabaseTimeout,
    EventContext,
    ExecutionResult,
    Flowkernel,
    StageSpec,
    hookimpl,
)
from flowkernel.hookspecs import EventHandler
from flowkernel.http import ApiTokens, create_app
from flowkernel.store.database import database_error, open_engine

ACCOUNT = 4
REP = Actor.user(2, ACCOUNT)


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


class Held:
    """Pipeline `deals` whose `won` stage runs `hold`; `hold()` keeps a move to won open."""

    def __init__(self, fk: Flowkernel) -> None:
        self.fk = fk
        self.gate = Gate()
        fk.register_plugin(self.gate, name="gate")
        self.pipeline = fk.pipelines.create_pipeline(
            "Deals",
            REP,
            code="deals",
            stages=[StageSpec("Lead"), StageSpec("Offer"), StageSpec("Won", is_won=True)],
        ).id
        for handler in ("hold", "change_object_state"):  # a chain replaces the default one
            fk.definitions.add_event("deals", "move", handler, account_id=ACCOUNT)
        self.deal = fk.place(self.pipeline, "deal", 1, REP).id
        self.other = fk.place(self.pipeline, "deal", 2, REP).id
        self.gate.entered.clear()
        self.gate.release.set()
        fk.move(self.deal, "offer", REP)  # compiled and cached: the move below only waits
        self.gate.release.clear()
        self.gate.entered.clear()
        self.outcome: list[ExecutionResult | BaseException] = []
        self._thread: threading.Thread | None = None

    def hold(self) -> None:
        """Start a move of `deal` that holds its transaction (and locks) until `release`."""

        def move() -> None:
            try:
                self.outcome.append(self.fk.move(self.deal, "won", REP))
            except BaseException as exc:
                self.outcome.append(exc)

        self._thread = threading.Thread(target=move)
        self._thread.start()
        assert self.gate.entered.wait(30), self.outcome

    def release(self) -> ExecutionResult:
        self.gate.release.set()
        assert self._thread is not None
        self._thread.join(30)
        [result] = self.outcome
        assert isinstance(result, ExecutionResult), result
        return result


@pytest.fixture
def held(fk: Flowkernel) -> Iterator[Held]:
    state = Held(fk)
    yield state
    state.gate.release.set()


def impatient(url: str, backend: str, setting: str = "lock_timeout") -> Engine:
    """An engine on `url` that waits 200 ms for a lock (SQLite: for the write lock)."""
    if backend == "postgresql":
        return open_engine(url, connect_args={"options": f"-c {setting}=200"})
    engine = open_engine(url)

    def short_busy_timeout(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=200")

    event.listen(engine, "connect", short_busy_timeout)
    return engine


def writes(other: Flowkernel, held: Held) -> dict[str, Callable[[], object]]:
    """Every kind of write the probes found raw driver errors in, on the held item."""
    deal = held.deal
    return {
        "move": lambda: other.move(deal, "lead", REP),
        "keyed move": lambda: other.move(deal, "lead", REP, idempotency_key="k1"),
        "assign": lambda: other.items.assign(deal, 5, REP),
        "batch": lambda: other.execute_batch([deal], "move_to_lead", REP),
    }


def test_a_lock_not_granted_in_time_is_database_busy(
    fk: Flowkernel, held: Held, database_url: str, backend: str
) -> None:
    other = Flowkernel(engine=impatient(database_url, backend))
    other.register_plugin(held.gate, name="gate")
    try:
        held.hold()
        before = every_row(fk)  # reads answer while the move holds its locks
        for name, call in writes(other, held).items():
            with pytest.raises(DatabaseBusy) as busy:
                call()
            error = busy.value
            assert isinstance(error, DatabaseError), name
            assert error.code == "database_busy" and error.retry_after == 1
            assert "rolled back: retry it" in error.message, error.message
            if backend == "sqlite":
                assert "write lock" in error.message
        assert every_row(fk) == before
        assert held.release().to_state == "won"
        # once the lock is free, the same calls work
        assert other.move(held.deal, "lead", REP, idempotency_key="k1").to_state == "lead"
    finally:
        other.close()


def test_a_statement_timeout_is_database_timeout(
    fk: Flowkernel, held: Held, database_url: str, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no statement timeout")
    other = Flowkernel(engine=impatient(database_url, backend, "statement_timeout"))
    other.register_plugin(held.gate, name="gate")
    try:
        held.hold()
        before = every_row(fk)
        for name, call in writes(other, held).items():
            with pytest.raises(DatabaseTimeout) as cancelled:
                call()
            assert cancelled.value.retry_after == 5, name
            assert "statement_timeout" in cancelled.value.message
        assert every_row(fk) == before
        held.release()
    finally:
        other.close()


def test_a_pool_with_no_free_connection_is_database_pool_exhausted(
    held: Held, database_url: str
) -> None:
    small = Flowkernel(
        engine=open_engine(database_url, pool_size=2, max_overflow=0, pool_timeout=0.2)
    )
    small.register_plugin(held.gate, name="gate")
    held.fk = small  # the held move takes one of the small pool's two connections
    blocker = None
    try:
        held.hold()
        blocker = small.engine.raw_connection()  # and this one the other
        for call in (
            lambda: small.item(held.other, REP),  # the driver-level path
            lambda: small.move(held.other, "offer", REP),
            lambda: small.definitions.list_classes(ACCOUNT),  # the ORM path
            lambda: small.pipelines.list_pipelines(REP),
        ):
            with pytest.raises(DatabasePoolExhausted) as exhausted:
                call()
            error = exhausted.value
            assert (error.pool_size, error.max_overflow, error.pool_timeout) == (2, 0, 0.2)
            assert "pool_size" in error.message and "retry" in error.message
            assert error.retry_after == 1
        blocker.close()
        assert held.release().to_state == "won"
        assert small.item(held.other, REP).state == "lead"
    finally:
        if blocker is not None:
            blocker.close()
        small.close()


def test_a_full_sqlite_file_is_database_full(tmp_path: Path, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("a size limit on the file stands in for a full disk")
    engine = open_engine(database_url)
    with Flowkernel(engine=engine) as fk:
        deals = fk.pipelines.create_pipeline("Deals", REP, stages=[StageSpec("Lead")]).id
        fk.pipelines.add_column(deals, "notes", REP, field_type="text")
        placed = fk.place(deals, "deal", 1, REP).id
        with engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()

        def capped(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f"PRAGMA max_page_count={pages + 8}")

        engine.dispose()
        event.listen(engine, "connect", capped)
        before = every_row(fk)
        with pytest.raises(DatabaseFull) as full:
            for n in range(2, 200):
                item = fk.place(deals, "deal", n, REP).id
                fk.items.set_values(item, {"notes": "x" * 60_000}, REP)
        assert "free disk space" in full.value.message
        assert full.value.retry_after is None
        assert fk.item(placed, REP).state == "lead"  # reads still work
        assert len(every_row(fk)) >= len(before)

    # a driver error from opening a connection on a full disk is DatabaseFull too, not
    # DatabaseUnreachable ("check the file's path")
    raw = sqlite3.connect(tmp_path / "tiny.db")
    raw.execute("PRAGMA max_page_count=2")
    with pytest.raises(sqlite3.OperationalError) as refused:
        raw.execute("CREATE TABLE t (v TEXT)")
        raw.executemany("INSERT INTO t VALUES (?)", [("x" * 5000,)] * 10)
    raw.close()
    typed = database_error(refused.value, engine)
    assert isinstance(typed, DatabaseFull) and "full" in typed.message


def test_http_answers_503_with_retry_after_when_a_retry_helps(
    fk: Flowkernel, held: Held, database_url: str, backend: str
) -> None:
    other = Flowkernel(engine=impatient(database_url, backend))
    other.register_plugin(held.gate, name="gate")
    token = ApiTokens(fk.engine).issue("rep", account_id=ACCOUNT, user_id=2).token
    try:
        with (
            serve(create_app(other)) as url,
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client,
        ):
            assert client.get("/v1/me").status_code == 200
            held.hold()
            response = client.post(f"/v1/items/{held.deal}/move", json={"stage": "lead"})
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            problem = response.json()["error"]
            assert problem["code"] == "database_busy"
            assert "retry" in problem["message"]
            read = client.get(f"/v1/items/{held.deal}")  # reads do not wait
            assert read.status_code == 200 and read.json()["state"] == "offer"
            held.release()
            again = client.post(f"/v1/items/{held.deal}/move", json={"stage": "lead"})
            assert again.status_code == 200
        assert fk.item(held.deal, SYSTEM).state == "lead"
    finally:
        other.close()
