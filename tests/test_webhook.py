"""The webhook plugin against a real HTTP server on the loopback: signatures, routes, retries,
timeouts, dead letters."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from flowkernel import SYSTEM, Actor, Flowkernel, InvalidArgument
from flowkernel.definition.pipelines.admin import StageSpec
from flowkernel.errors import DeliveryFailed
from flowkernel.plugins.webhook import WebhookPlugin, WebhookRoute, sign, verify
from flowkernel.snapshots import OutgoingEvent
from flowkernel.store.delivery import DEAD, DELIVERED, PENDING, DeliveryReport
from flowkernel.store.tables import outbox

ACCOUNT = 10
ALICE = Actor.user(1, ACCOUNT)
SECRET = "s3cret-shared-with-the-receiver"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback HTTP server; `plan` holds the answers to the next requests (default 200):
    a status code, ("slow", seconds) to wait before answering 200, or ("drip", seconds) to
    answer 200 at once and then send its 100-byte body one byte per `seconds`."""

    server: ThreadingHTTPServer
    plan: list[int | tuple[str, float]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def next_answer(self) -> int | tuple[str, float]:
        with self.lock:
            return self.plan.pop(0) if self.plan else 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            r = box["r"]
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = r.next_answer()
            with r.lock:
                r.received.append(Received(self.path, dict(self.headers.items()), body))
            if isinstance(answer, tuple) and answer[0] == "drip":
                with contextlib.suppress(OSError):  # until the client hangs up
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    for _ in range(100):
                        self.wfile.write(b".")
                        self.wfile.flush()
                        time.sleep(answer[1])
                return
            if isinstance(answer, tuple):
                time.sleep(answer[1])
                answer = 200
            with contextlib.suppress(OSError):  # a client that gave up waiting is gone
                self.send_response(answer)
                if answer in (301, 302, 307):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box["r"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield box["r"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def make_deals(fk: Flowkernel) -> None:
    info = fk.pipelines.create_pipeline(
        "Deals",
        ALICE,
        code="deals",
        object_type="crm_opportunity",
        stages=[StageSpec("A", code="a"), StageSpec("B", code="b")],
    )
    fk.pipelines.add_automation(info.id, "item_created", "deal.created", ALICE)
    fk.pipelines.add_automation(
        info.id, "stage_entered", "deal.won", ALICE, stage="b", payload_template={"n": 1}
    )


def outbox_rows(fk: Flowkernel) -> list[Any]:
    with fk.engine.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)).all())


def open_kernel(url: str, hook: WebhookPlugin, **options: Any) -> Flowkernel:
    options.setdefault("delivery_backoff", 0)
    fk = Flowkernel(url, plugins=[hook], **options)
    make_deals(fk)
    return fk


def test_each_event_is_posted_signed_with_its_id(database_url: str, receiver: Receiver) -> None:
    hook = WebhookPlugin(url=receiver.url(), secret=SECRET)
    with open_kernel(database_url, hook) as fk:
        item = fk.place("deals", "crm_opportunity", 5, ALICE)
        fk.move(item.id, "b", ALICE)
        rows = outbox_rows(fk)
    assert [r.status for r in rows] == [DELIVERED, DELIVERED]
    assert [r.path for r in receiver.received] == ["/hook", "/hook"]
    for got, row in zip(receiver.received, rows, strict=True):
        expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
        assert got.headers["X-Flowkernel-Signature"] == expected
        assert verify(SECRET, got.body, got.headers["X-Flowkernel-Signature"])
        assert not verify("another secret", got.body, got.headers["X-Flowkernel-Signature"])
        assert not verify(SECRET, got.body + b" ", got.headers["X-Flowkernel-Signature"])
        assert got.headers["X-Flowkernel-Event-Id"] == row.event_id
        assert got.headers["X-Flowkernel-Event"] == row.event_name
        assert got.headers["X-Flowkernel-Attempt"] == "1"
        assert got.headers["Content-Type"] == "application/json"
        assert got.json["event_id"] == row.event_id
    won = receiver.received[1].json
    assert won == {
        "type": "event",
        "event_id": rows[1].event_id,
        "event_name": "deal.won",
        "trigger": "stage_entered",
        "pipeline_id": rows[1].flow_pipeline_id,
        "item_id": item.id,
        "account_id": ACCOUNT,
        "automation_id": rows[1].flow_automation_id,
        "payload": rows[1].payload,
    }
    assert won["payload"]["n"] == 1 and won["payload"]["to_stage"] == "b"


def test_a_non_2xx_answer_is_retried_then_delivered(database_url: str, receiver: Receiver) -> None:
    receiver.plan = [503, 404]
    hook = WebhookPlugin(url=receiver.url(), secret=SECRET)
    with open_kernel(database_url, hook) as fk:
        item = fk.place("deals", "crm_opportunity", 5, ALICE)
        [row] = outbox_rows(fk)
        assert (row.status, row.attempts) == (PENDING, 1)
        assert "HTTP 503" in row.last_error and "DeliveryFailed" in row.last_error
        assert fk.deliver_events() == DeliveryReport(retried=1)
        assert "HTTP 404" in outbox_rows(fk)[0].last_error
        assert fk.deliver_events() == DeliveryReport(delivered=1)
        [row] = outbox_rows(fk)
        assert (row.status, row.attempts) == (DELIVERED, 3)
        assert fk.item(item.id, ALICE).state == "a"
    tries = receiver.received
    assert [r.headers["X-Flowkernel-Attempt"] for r in tries] == ["1", "2", "3"]
    # the same event each time: same id, same bytes, same signature
    assert {r.headers["X-Flowkernel-Event-Id"] for r in tries} == {row.event_id}
    assert {r.body for r in tries} == {tries[0].body}
    assert {r.headers["X-Flowkernel-Signature"] for r in tries} == {sign(SECRET, tries[0].body)}


def test_a_slow_receiver_times_out_and_the_event_is_retried(
    database_url: str, receiver: Receiver
) -> None:
    receiver.plan = [("slow", 8.0)]
    hook = WebhookPlugin(url=receiver.url(), secret=SECRET, timeout=0.3)
    with open_kernel(database_url, hook) as fk:
        started = time.monotonic()
        item = fk.place("deals", "crm_opportunity", 5, ALICE)
        # the client gave up instead of waiting 8 s (room left for a busy machine)
        assert time.monotonic() - started < 6
        # the placement stands; the event waits for the next attempt
        assert fk.item(item.id, ALICE).state == "a"
        [row] = outbox_rows(fk)
        assert (row.status, row.attempts) == (PENDING, 1)
        assert "timed out after 0.3 s" in row.last_error
        assert fk.deliver_events() == DeliveryReport(delivered=1)
        assert outbox_rows(fk)[0].status == DELIVERED
    assert len(receiver.received) == 2


def test_an_event_is_dead_after_the_configured_attempts(
    database_url: str, receiver: Receiver
) -> None:
    receiver.plan = [500] * 10
    hook = WebhookPlugin(url=receiver.url(), secret=SECRET)
    with open_kernel(database_url, hook, delivery_attempts=3) as fk:
        fk.place("deals", "crm_opportunity", 5, ALICE)
        assert fk.deliver_events() == DeliveryReport(retried=1)
        assert fk.deliver_events() == DeliveryReport(dead=1)
        assert fk.deliver_events() == DeliveryReport()
        [letter] = fk.delivery.dead_letters(SYSTEM)
        assert letter.attempts == 3 and "HTTP 500" in (letter.last_error or "")
        assert outbox_rows(fk)[0].status == DEAD
        receiver.plan.clear()
        assert fk.delivery.retry_dead(SYSTEM, [letter.event_id]) == 1
        assert fk.deliver_events() == DeliveryReport(delivered=1)
    assert len(receiver.received) == 4
    assert len({r.headers["X-Flowkernel-Event-Id"] for r in receiver.received}) == 1


def test_routes_pick_urls_by_event_name(database_url: str, receiver: Receiver) -> None:
    hook = WebhookPlugin(
        secret=SECRET,
        routes=[("deal.won", receiver.url("/won")), WebhookRoute("deal.*", receiver.url("/all"))],
    )
    assert hook.urls_for("deal.won") == [receiver.url("/won"), receiver.url("/all")]
    assert hook.urls_for("deal.created") == [receiver.url("/all")]
    assert hook.urls_for("crm.created") == []
    with open_kernel(database_url, hook) as fk:
        item = fk.place("deals", "crm_opportunity", 5, ALICE)
        fk.move(item.id, "b", ALICE)
    got = [(r.path, r.json["event_name"]) for r in receiver.received]
    assert got == [("/all", "deal.created"), ("/won", "deal.won"), ("/all", "deal.won")]


def test_a_receiver_dripping_its_answer_is_cut_at_the_deadline(receiver: Receiver) -> None:
    """`timeout` bounds the whole request: a receiver that answers 200 and then sends its body
    a byte at a time (each byte well within the timeout) is cut off when the time is up."""
    event = OutgoingEvent("e-2", "deal.created", "item_created", 1, 2, 3, None, {}, 1)
    receiver.plan = [("drip", 0.2)]  # 100 bytes: 20 s in all
    started = time.monotonic()
    with pytest.raises(DeliveryFailed) as cut:
        WebhookPlugin(url=receiver.url(), secret=SECRET, timeout=1).flowkernel_deliver_event(event)
    assert time.monotonic() - started < 10  # cut near 1 s, far from the 20 s of the drip
    assert "timed out after 1 s" in cut.value.message
    assert len(receiver.received) == 1
    # the next request is a fresh connection, answered as usual
    WebhookPlugin(url=receiver.url(), secret=SECRET, timeout=1).flowkernel_deliver_event(event)
    assert len(receiver.received) == 2


def test_redirects_and_refused_connections_are_failures(receiver: Receiver) -> None:
    event = OutgoingEvent("e-1", "deal.created", "item_created", 1, 2, 3, None, {}, 1)
    receiver.plan = [302]
    with pytest.raises(DeliveryFailed) as refused:
        WebhookPlugin(url=receiver.url(), secret=SECRET).flowkernel_deliver_event(event)
    assert "HTTP 302" in refused.value.message and refused.value.event_id == "e-1"
    assert [r.path for r in receiver.received] == ["/hook"]  # the redirect was not followed
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens there once the socket is closed
    with pytest.raises(DeliveryFailed) as down:
        WebhookPlugin(url=f"http://127.0.0.1:{port}/", secret=SECRET).flowkernel_deliver_event(
            event
        )
    assert "connection failed" in down.value.message


def test_notifications_are_posted_only_when_asked(database_url: str, receiver: Receiver) -> None:
    quiet = WebhookPlugin(url=receiver.url("/events"), secret=SECRET)
    chatty = WebhookPlugin(url=receiver.url("/notes"), secret=SECRET, notifications=True)
    with open_kernel(database_url, quiet) as fk:
        fk.register_plugin(chatty)
        item = fk.place("deals", "crm_opportunity", 5, ALICE)
        fk.items.watch(item.id, 7, ALICE)
        fk.move(item.id, "b", ALICE)
    notes = [r for r in receiver.received if r.json["type"] == "notification"]
    assert [r.path for r in notes] == ["/notes"]
    assert notes[0].json["user_id"] == 7 and notes[0].json["event_name"] == "watcher.stage_changed"
    assert notes[0].headers["X-Flowkernel-Event"] == "watcher.stage_changed"
    assert verify(SECRET, notes[0].body, notes[0].headers["X-Flowkernel-Signature"])


def test_bad_configuration_is_refused() -> None:
    for bad in (
        {"url": "ftp://example.org/", "secret": SECRET},
        {"url": "http:///nohost", "secret": SECRET},
        {"url": "http://127.0.0.1/", "secret": ""},
        {"url": "http://127.0.0.1/", "secret": SECRET, "timeout": 0},
        {"url": "http://127.0.0.1/", "secret": SECRET, "timeout": float("inf")},
        {"secret": SECRET},
        {"secret": SECRET, "routes": [("", "http://127.0.0.1/")]},
        {"secret": SECRET, "routes": ["http://127.0.0.1/"]},
    ):
        with pytest.raises(InvalidArgument):
            WebhookPlugin(**bad)
