"""Faults leave the database as it was: a handler raising mid-chain, a webhook receiver that
times out, and the database connection cut in the middle of an execution (PostgreSQL).

Each test compares every row of every table before and after the fault."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rows import every_row
from sqlalchemy import Engine, create_engine, text, update

from flowkernel import (
    Actor,
    DatabaseConnectionLost,
    DatabaseError,
    DatabaseUnreachable,
    EventContext,
    Flowkernel,
    HandlerFailed,
    StageSpec,
    hookimpl,
)
from flowkernel.hookspecs import EventHandler
from flowkernel.plugins.webhook import WebhookPlugin
from flowkernel.store.delivery import DELIVERED, PENDING, DeliveryReport
from flowkernel.store.tables import outbox

ACCOUNT = 10
ALICE = Actor.user(1, ACCOUNT)
WATCHER = 7


def make_deals(fk: Flowkernel, chain: tuple[str, ...] = ()) -> int:
    """Pipeline `deals` (lead, offer, won), a required column for won, an automation on every
    stage entry; `chain` replaces the move methods' handlers."""
    info = fk.pipelines.create_pipeline(
        "Deals",
        ALICE,
        code="deals",
        stages=[StageSpec("Lead"), StageSpec("Offer"), StageSpec("Won")],
    )
    fk.pipelines.add_column(info.id, "amount", ALICE, field_type="number")
    fk.pipelines.require_column(info.id, "won", "amount", ALICE)
    fk.pipelines.add_automation(info.id, "stage_entered", "deal.moved", ALICE)
    for handler in chain:
        fk.definitions.add_event("deals", "move", handler, account_id=ACCOUNT)
    return info.id


def busy_item(fk: Flowkernel, deals: int, object_id: int = 1) -> int:
    """An item with history, a value, a watcher and events (pending after the last move
    unless `fk` delivers right after each commit)."""
    item = fk.place(deals, "deal", object_id, ALICE).id
    fk.items.set_value(item, "amount", 1250, ALICE)
    fk.items.watch(item, WATCHER, ALICE)
    fk.move(item, "offer", ALICE)
    fk.deliver_events()
    fk.move(item, "lead", ALICE)
    return item


# --- a handler raising in the middle of a chain ---------------------------------------------


class Chain:
    """Handlers: `count` records each call, `boom` raises once `armed`."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.armed = False

    def count(self, context: EventContext) -> None:
        self.calls.append(context.method.code)

    def boom(self, context: EventContext) -> None:
        if self.armed:
            raise ValueError("the CRM rejected the deal")

    @hookimpl
    def flowkernel_event_handlers(self) -> Mapping[str, EventHandler]:
        return {"count": self.count, "boom": self.boom}


@pytest.mark.parametrize("key", [None, "once"])
def test_a_handler_raising_mid_chain_changes_nothing(fk: Flowkernel, key: str | None) -> None:
    chain = Chain()
    fk.register_plugin(chain, name="chain")
    # the state change is decided, handlers ran before and after it, then one raises
    deals = make_deals(fk, ("count", "change_object_state", "count", "boom", "count"))
    item = busy_item(fk, deals)
    chain.calls.clear()
    chain.armed = True
    before = every_row(fk)
    with pytest.raises(HandlerFailed) as failed:
        fk.move(item, "won", ALICE, idempotency_key=key)
    assert (failed.value.handler, failed.value.item_id) == ("boom", item)
    assert "the CRM rejected the deal" in failed.value.cause
    assert chain.calls == ["move_to_won", "move_to_won"]  # stopped at the failing handler
    assert every_row(fk) == before  # state, history, values, events, watchers, keys
    chain.armed = False
    assert fk.move(item, "won", ALICE, idempotency_key=key).to_state == "won"


# --- a webhook receiver that times out --------------------------------------------------------


class SlowReceiver:
    """A loopback HTTP server answering 200 after `delay` seconds; records event ids."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.event_ids: list[str] = []
        box = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                box.event_ids.append(self.headers["X-Flowkernel-Event-Id"])
                time.sleep(box.delay)
                with contextlib.suppress(OSError):  # the client gave up waiting
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        host, port = self.server.server_address[:2]
        self.url = f"http://{host!s}:{port}/hook"


@pytest.fixture
def receiver() -> Iterator[SlowReceiver]:
    slow = SlowReceiver()
    thread = threading.Thread(target=slow.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield slow
    finally:
        slow.server.shutdown()
        slow.server.server_close()
        thread.join(5)


def test_a_webhook_timing_out_changes_only_its_outbox_row(
    database_url: str, receiver: SlowReceiver
) -> None:
    with Flowkernel(database_url, deliver_events=False) as fk:
        deals = make_deals(fk)
        item = busy_item(fk, deals)
        webhook_times_out(fk, database_url, receiver, item)


def webhook_times_out(fk: Flowkernel, database_url: str, receiver: SlowReceiver, item: int) -> None:
    before = every_row(fk)
    pending = [r for r in before["fk_outbox"] if r["status"] == PENDING]
    assert len(pending) == 2  # the move's automation event and its watcher notification
    hook = WebhookPlugin(url=receiver.url, secret="s", timeout=0.2, notifications=True)
    receiver.delay = 1.0  # longer than the timeout
    worker = Flowkernel(database_url, plugins=[hook], deliver_events=False, delivery_backoff=60)
    try:
        # the first pending event times out; its item's later event waits behind it
        assert worker.deliver_events() == DeliveryReport(retried=1, deferred=1)
        after = every_row(fk)
        assert {t for t in before if before[t] != after[t]} == {"fk_outbox"}
        old = {r["id"]: r for r in before["fk_outbox"]}
        retry = ("attempts", "last_error", "available_at")
        for row in after["fk_outbox"]:
            kept = {k: v for k, v in row.items() if k not in retry}
            assert kept == {k: v for k, v in old[row["id"]].items() if k not in retry}
            if row["id"] != pending[0]["id"]:  # untouched but for its claim's lease
                assert {k: v for k, v in row.items() if k != "available_at"} == {
                    k: v for k, v in old[row["id"]].items() if k != "available_at"
                }
        timed_out = next(r for r in after["fk_outbox"] if r["id"] == pending[0]["id"])
        assert (timed_out["status"], timed_out["attempts"]) == (PENDING, 1)
        assert "timed out after 0.2 s" in timed_out["last_error"]
        assert timed_out["available_at"] > datetime.now(UTC) + timedelta(seconds=30)
        assert fk.item(item, ALICE).state == "lead"

        receiver.delay = 0.0
        with fk.engine.begin() as conn:  # the backoff is over
            conn.execute(update(outbox).values(available_at=datetime.now(UTC)))
        assert worker.deliver_events() == DeliveryReport(delivered=2)
    finally:
        worker.close()
    rows = every_row(fk)["fk_outbox"]
    assert {r["status"] for r in rows} == {DELIVERED}
    # at least once: the timed-out event was sent again under the same id, nothing lost
    assert receiver.event_ids == [pending[0]["event_id"], *(p["event_id"] for p in pending)]


# --- the database connection cut mid-transaction (PostgreSQL) ----------------------------------


class Cut:
    """Handler `cut`: once `armed`, terminates the backend of the execution's own transaction
    from a second connection and waits until it is gone."""

    def __init__(self, admin: Engine) -> None:
        self.admin = admin
        self.armed = False
        self.killed: list[int] = []

    def cut(self, context: EventContext) -> None:
        if not self.armed:
            return
        self.armed = False
        with self.admin.connect() as conn:
            # the pool's other connections are idle; the execution's waits in its transaction
            [pid] = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
                )
            ).scalars()
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            deadline = time.monotonic() + 10
            while (
                time.monotonic() < deadline
                and conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar_one()
            ):
                time.sleep(0.01)
        self.killed.append(pid)

    @hookimpl
    def flowkernel_event_handlers(self) -> Mapping[str, EventHandler]:
        return {"cut": self.cut}


@pytest.fixture
def admin(database_url: str, backend: str) -> Iterator[Engine]:
    if backend != "postgresql":
        pytest.skip("cuts a PostgreSQL server connection with pg_terminate_backend")
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.mark.parametrize("path", ["cached", "compiling"])
@pytest.mark.parametrize("key", [None, "cut-once"])
def test_a_connection_cut_mid_execution_is_a_typed_error_and_changes_nothing(
    database_url: str, admin: Engine, path: str, key: str | None
) -> None:
    cut = Cut(admin)
    with Flowkernel(database_url, plugins=[cut], deliver_events=False) as setup:
        deals = make_deals(setup, ("change_object_state", "cut"))
        item = busy_item(setup, deals)
    fk = Flowkernel(database_url, plugins=[cut], deliver_events=False)
    try:
        if path == "cached":  # the class is compiled: the execution runs on prepared statements
            fk.item(item, ALICE)
            fk.move(item, "offer", ALICE)
            fk.move(item, "lead", ALICE)
        # else this process compiles the class in the execution's own transaction
        before = every_row(fk)
        cut.armed = True
        with pytest.raises(DatabaseConnectionLost) as lost:
            fk.move(item, "offer", ALICE, idempotency_key=key)
        assert isinstance(lost.value, DatabaseError)
        assert len(cut.killed) == 1
        assert "terminating connection" in lost.value.cause or "closed" in lost.value.cause
        assert lost.value.url == fk.engine.url.render_as_string(hide_password=True)
        assert every_row(fk) == before
        # the pool recovers: the next calls on the same engine work
        assert fk.item(item, ALICE).state == "lead"
        result = fk.move(item, "offer", ALICE, idempotency_key=key)
        assert result.to_state == "offer"
        if key is not None:
            assert fk.move(item, "offer", ALICE, idempotency_key=key) == result
        assert [h.to_state for h in fk.history(item, ALICE)][-1] == "offer"
    finally:
        fk.close()


@pytest.mark.parametrize(
    ("url", "step"),
    [
        ("postgresql://postgres@127.0.0.1:1/nowhere", "start the server"),
        (
            "postgresql://postgres@127.0.0.1:5432/fk_no_such_database",
            "create the database (createdb fk_no_such_database)",
        ),
        ("sqlite:////nonexistent-folder/flowkernel.db", "check the file's path and its folder"),
    ],
)
def test_a_database_out_of_reach_is_a_typed_error(url: str, step: str) -> None:
    with Flowkernel(url) as fk:
        for call in (
            lambda: fk.execute(1, "edit", ALICE),
            lambda: fk.move(1, "won", ALICE, idempotency_key="k"),
            lambda: fk.item(1, ALICE),
        ):
            with pytest.raises(DatabaseUnreachable) as unreachable:
                call()
            assert unreachable.value.url.endswith(url.rsplit("/", 1)[1])
            assert f"; {step}, or pass another --database-url" in unreachable.value.message


def _cut_idle_connections(admin: Engine) -> None:
    """Terminate every other backend of the test database: the pool's idle connections."""
    with admin.connect() as conn:
        pids = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ).scalars()
        for pid in list(pids):
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


SESSION_OPERATIONS: dict[str, Any] = {
    "place": lambda fk, deals, item: fk.place(deals, "deal", 99, ALICE),
    "set_value": lambda fk, deals, item: fk.items.set_value(item, "amount", 7, ALICE),
    "watch": lambda fk, deals, item: fk.items.watch(item, 8, ALICE),
    "add_stage": lambda fk, deals, item: fk.pipelines.add_stage(deals, "Lost", ALICE),
    "board": lambda fk, deals, item: fk.queries.board(deals, ALICE),
}


@pytest.mark.parametrize("operation", sorted(SESSION_OPERATIONS))
def test_a_lost_connection_under_any_operation_is_a_typed_error_and_changes_nothing(
    database_url: str, admin: Engine, operation: str
) -> None:
    call = SESSION_OPERATIONS[operation]
    with Flowkernel(database_url, deliver_events=False) as fk:
        deals = make_deals(fk)
        item = busy_item(fk, deals)
        before = every_row(fk)
        _cut_idle_connections(admin)  # the pool does not know yet: its next statement fails
        with pytest.raises(DatabaseConnectionLost):
            call(fk, deals, item)
        assert every_row(fk) == before
        call(fk, deals, item)  # the pool reconnects: a retry succeeds
