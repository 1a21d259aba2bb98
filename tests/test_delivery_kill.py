"""A delivery worker killed with SIGKILL in the middle of a delivery, with a real webhook
receiver and a real RabbitMQ broker behind it: the next worker delivers everything, at least
once and in order per item, and what went out twice went out under the same id (PostgreSQL,
several processes)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

from test_delivery import make_backlog, needs_postgresql, producer, read_log, rows, worker
from test_rabbitmq import Queue, exchange, queue, rabbitmq_url
from test_webhook import Receiver, receiver

from flowkernel import Flowkernel
from flowkernel.store.delivery import DELIVERED

__all__ = ["exchange", "producer", "queue", "rabbitmq_url", "receiver"]


def in_order_per_item(ids: list[str], item_of: dict[str, int], position: dict[str, int]) -> bool:
    """Whether each item's events first arrived in the order they were written."""
    first: dict[int, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for event_id in ids:
        if event_id not in seen:
            seen.add(event_id)
            first[item_of[event_id]].append(position[event_id])
    return all(p == sorted(p) for p in first.values())


def test_a_worker_killed_mid_delivery_loses_nothing_at_a_webhook_and_a_broker(
    backend: str,
    producer: Flowkernel,
    database_url: str,
    tmp_path: Path,
    receiver: Receiver,
    rabbitmq_url: str,
    exchange: str,
    queue: Queue,
) -> None:
    needs_postgresql(backend)
    make_backlog(producer, 4)
    expected = rows(producer)
    position = {r.event_id: n for n, r in enumerate(expected)}
    item_of = {r.event_id: r.flow_item_id for r in expected}
    victim = expected[9]  # sent to the receiver and the broker, then the worker hangs
    log, marker = tmp_path / "delivered.log", tmp_path / "blocked"
    outlets = ["--webhook", receiver.url(), "--rabbitmq", rabbitmq_url, "--exchange", exchange]
    first = worker(
        database_url,
        log,
        "--lease",
        "2",
        "--block-event-id",
        victim.event_id,
        "--marker",
        str(marker),
        *outlets,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            assert first.poll() is None, "the first worker exited early"
            time.sleep(0.05)
        assert marker.exists()
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    second = worker(database_url, log, *outlets)
    assert second.wait(120) == 0
    assert {r.status for r in rows(producer)} == {DELIVERED}

    posted = [r.headers["X-Flowkernel-Event-Id"] for r in receiver.received]
    published = [
        properties.message_id for _method, properties, _body in queue.take(len(expected) + 1)
    ]
    for outlet, ids in (("webhook", posted), ("broker", published)):
        counts = Counter(ids)
        assert set(counts) == set(position), f"{outlet}: an event was lost"
        assert counts[victim.event_id] == 2, outlet  # sent, then sent again after the kill
        assert max(c for e, c in counts.items() if e != victim.event_id) == 1, outlet
        assert in_order_per_item(ids, item_of, position), f"{outlet}: an item's events reordered"
    assert len(read_log(log)) == len(expected)  # recorded once each: after the sends
    bodies = {json.loads(r.body)["event_id"] for r in receiver.received}
    assert bodies == set(position)
