"""The RabbitMQ plugin against the real broker on the loopback: persistent, confirmed messages
with the event id as message id, and nothing lost while the broker is away.

The broker comes from `FLOWKERNEL_TEST_RABBITMQ_URL` (default: guest on 127.0.0.1:5672). When
it is not running, the tests start it (`rabbitmq-server -detached`). Without a reachable broker
they are skipped, except under `CI=true`, where that is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from flowkernel import Actor, Flowkernel, InvalidArgument
from flowkernel.definition.pipelines.admin import StageSpec
from flowkernel.store.delivery import DELIVERED, PENDING, DeliveryReport
from flowkernel.store.tables import outbox

if os.environ.get("CI") == "true":
    import pika  # under CI a missing client is an error, not a skip
else:
    pika = pytest.importorskip("pika")

from flowkernel.plugins.rabbitmq import RabbitMQPlugin

RABBITMQ_URL = os.environ.get(
    "FLOWKERNEL_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"
)
ACCOUNT = 10
ALICE = Actor.user(1, ACCOUNT)


def _broker_answers(url: str) -> str | None:
    try:
        params = pika.URLParameters(url)
        params.socket_timeout = 2
        params.connection_attempts = 1
        pika.BlockingConnection(params).close()
    except Exception as exc:  # the reason goes into the skip or failure message
        return repr(exc)
    return None


def _start_broker(url: str) -> str | None:
    """Start the local RabbitMQ when it is not running; why it is unreachable, or None."""
    problem = _broker_answers(url)
    if problem is None:
        return None
    host = urlsplit(url).hostname
    server = shutil.which("rabbitmq-server")
    if host not in ("127.0.0.1", "localhost") or server is None:
        return problem
    subprocess.run([server, "-detached"], check=False, capture_output=True, timeout=60)
    ctl = shutil.which("rabbitmqctl")
    if ctl is not None:
        subprocess.run(
            [ctl, "await_startup", "--timeout", "60"], check=False, capture_output=True, timeout=90
        )
    deadline = time.monotonic() + 60
    while (problem := _broker_answers(url)) is not None and time.monotonic() < deadline:
        time.sleep(1)
    return problem


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    problem = _start_broker(RABBITMQ_URL)
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"RabbitMQ at {RABBITMQ_URL} is unreachable under CI=true: {problem}")
        pytest.skip(f"RabbitMQ at {RABBITMQ_URL} is unreachable: {problem}")
    return RABBITMQ_URL


class Queue:
    """A temporary queue bound to an exchange, read with basic_get."""

    def __init__(self, url: str, exchange: str, binding: str = "#") -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(exchange, "topic", durable=True)
        self.name = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.name, exchange, routing_key=binding)

    def take(self, count: int, timeout: float = 10.0) -> list[tuple[Any, Any, bytes]]:
        """The next `count` messages (method, properties, body), waiting up to `timeout`."""
        got: list[tuple[Any, Any, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            method, properties, body = self.channel.basic_get(self.name, auto_ack=True)
            if method is None:
                self.connection.sleep(0.05)
                continue
            got.append((method, properties, body))
        return got

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def exchange(rabbitmq_url: str) -> Iterator[str]:
    name = f"fk_test_{uuid.uuid4().hex[:10]}"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        connection.channel().exchange_delete(name)
    finally:
        connection.close()


@pytest.fixture
def queue(rabbitmq_url: str, exchange: str) -> Iterator[Queue]:
    q = Queue(rabbitmq_url, exchange)
    yield q
    q.close()


class Forwarder:
    """A TCP relay to the broker that can be switched off, closing every open connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        self._spawn(self._accept, listener)

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for s in self._open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._open.clear()
        for t in self._threads:
            t.join(5)
        self._threads.clear()

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._open += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def make_deals(fk: Flowkernel) -> None:
    info = fk.pipelines.create_pipeline(
        "Deals",
        ALICE,
        code="deals",
        object_type="crm_opportunity",
        stages=[StageSpec("A", code="a"), StageSpec("B", code="b")],
    )
    fk.pipelines.add_automation(info.id, "item_created", "deal.created", ALICE)
    fk.pipelines.add_automation(info.id, "stage_entered", "deal.moved", ALICE)


def outbox_rows(fk: Flowkernel) -> list[Any]:
    with fk.engine.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)).all())


@pytest.fixture
def broker_plugin(rabbitmq_url: str, exchange: str) -> Iterator[RabbitMQPlugin]:
    plugin = RabbitMQPlugin(rabbitmq_url, exchange=exchange, notifications=True)
    yield plugin
    plugin.close()


def test_events_are_published_persistent_and_confirmed(
    database_url: str, broker_plugin: RabbitMQPlugin, queue: Queue
) -> None:
    with Flowkernel(database_url, plugins=[broker_plugin]) as fk:
        make_deals(fk)
        item = fk.place("deals", "crm_opportunity", 5, ALICE)
        fk.items.watch(item.id, 7, ALICE)
        fk.move(item.id, "b", ALICE)
        rows = outbox_rows(fk)
    assert [r.status for r in rows] == [DELIVERED] * 3
    # the channel is in confirm mode: each publish returned after the broker's ack
    assert broker_plugin._channel._delivery_confirmation
    got = queue.take(3)
    assert [m.routing_key for m, _, _ in got] == [
        "deal.created",
        "deal.moved",
        "watcher.stage_changed",
    ]
    for (method, props, body), row in zip(got, rows, strict=True):
        assert method.exchange == broker_plugin.exchange
        assert props.message_id == row.event_id
        assert props.delivery_mode == 2  # persistent
        assert props.content_type == "application/json"
        assert props.type == method.routing_key
        assert props.app_id == "flowkernel"
        message = json.loads(body)
        assert message["event_id"] == row.event_id and message["item_id"] == item.id
        assert message["payload"] == row.payload
        assert props.headers["flowkernel-item-id"] == item.id
        assert props.headers["flowkernel-trigger"] == row.trigger
    created = json.loads(got[0][2])
    assert created["type"] == "event" and created["event_name"] == "deal.created"
    assert got[0][1].headers["flowkernel-attempt"] == 1
    note = json.loads(got[2][2])
    assert note["type"] == "notification" and note["user_id"] == 7
    assert queue.take(1, timeout=0.3) == []  # each once


def test_a_broker_that_is_away_loses_nothing(
    database_url: str, rabbitmq_url: str, exchange: str, queue: Queue
) -> None:
    broker = urlsplit(rabbitmq_url)
    relay = Forwarder((broker.hostname or "127.0.0.1", broker.port or 5672))
    url = f"amqp://{broker.username}:{broker.password}@127.0.0.1:{relay.port}/%2F"
    plugin = RabbitMQPlugin(url, exchange=exchange, timeout=2)
    try:
        with Flowkernel(database_url, plugins=[plugin], delivery_backoff=0) as fk:
            make_deals(fk)
            # the broker is unreachable (nothing listens on the port): the placement stands
            item = fk.place("deals", "crm_opportunity", 5, ALICE)
            assert fk.item(item.id, ALICE).state == "a"
            [row] = outbox_rows(fk)
            assert (row.status, row.attempts) == (PENDING, 1)
            assert "broker unavailable" in row.last_error
            assert fk.deliver_events() == DeliveryReport(retried=1)

            relay.start()  # the broker is back
            assert fk.deliver_events() == DeliveryReport(delivered=1)
            [(_, props, _)] = queue.take(1)
            assert props.message_id == row.event_id
            assert props.headers["flowkernel-attempt"] == 3

            relay.stop()  # the connection drops under the plugin
            fk.move(item.id, "b", ALICE)
            moved = outbox_rows(fk)[1]
            assert (moved.status, moved.attempts) == (PENDING, 1)
            assert fk.item(item.id, ALICE).state == "b"

            relay.start()  # the plugin opens a new connection
            assert fk.deliver_events() == DeliveryReport(delivered=1)
            [(method, props, _)] = queue.take(1)
            assert (method.routing_key, props.message_id) == ("deal.moved", moved.event_id)
            assert [r.status for r in outbox_rows(fk)] == [DELIVERED, DELIVERED]
        assert queue.take(1, timeout=0.3) == []
    finally:
        plugin.close()
        relay.stop()


def test_an_unroutable_message_fails_when_mandatory(
    database_url: str, rabbitmq_url: str, exchange: str
) -> None:
    plugin = RabbitMQPlugin(rabbitmq_url, exchange=exchange, mandatory=True)
    try:
        with Flowkernel(database_url, plugins=[plugin]) as fk:
            make_deals(fk)
            fk.place("deals", "crm_opportunity", 5, ALICE)  # no queue is bound yet
            [row] = outbox_rows(fk)
            assert row.status == PENDING
            assert "no queue is bound for routing key 'deal.created'" in row.last_error
            queue = Queue(rabbitmq_url, exchange, "deal.*")
            try:
                with fk.engine.begin() as conn:
                    conn.execute(outbox.update().values(available_at=datetime.now(UTC)))
                assert fk.deliver_events() == DeliveryReport(delivered=1)
                [(_, props, _)] = queue.take(1)
                assert props.message_id == row.event_id
            finally:
                queue.close()
    finally:
        plugin.close()


def test_bad_configuration_is_refused() -> None:
    for bad in (
        {"url": "http://127.0.0.1:5672/"},
        {"exchange_type": "fan"},
        {"timeout": 0},
        {"exchange": 5},
    ):
        with pytest.raises(InvalidArgument):
            RabbitMQPlugin(**bad)
