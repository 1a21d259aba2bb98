"""A delivery worker process for the multi-process delivery tests.

Runs `Delivery.run_forever` with a plugin that appends one line per delivered event to a shared
log file (`<pid> <unix time> <event id> <item id>`), until no pending event is left. With
`--block-event-id` it writes `--marker` and sleeps forever when that event comes up, before
recording it: the test then kills it with SIGKILL. With `--webhook` and `--rabbitmq` the worker
also posts each event to that receiver and publishes it to that broker, before recording it.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from flowkernel import Flowkernel, hookimpl
from flowkernel.plugins.rabbitmq import RabbitMQPlugin
from flowkernel.plugins.webhook import WebhookPlugin
from flowkernel.snapshots import OutgoingEvent, WatcherNotification
from flowkernel.store.tables import outbox


class FileRecorder:
    """Appends each delivered event to a file shared by all workers (O_APPEND, one write)."""

    def __init__(self, path: str, delay: float, block: str | None, marker: str | None) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._delay = delay
        self._block = block
        self._marker = marker

    def _record(self, event_id: str, item_id: int) -> None:
        if event_id == self._block:
            Path(self._marker or "blocked").write_text(str(os.getpid()))
            while True:
                time.sleep(60)
        time.sleep(self._delay)
        os.write(self._fd, f"{os.getpid()} {time.time():.6f} {event_id} {item_id}\n".encode())

    @hookimpl
    def flowkernel_deliver_event(self, event: OutgoingEvent) -> None:
        self._record(event.event_id, event.item_id)

    @hookimpl
    def flowkernel_notify_watcher(self, notification: WatcherNotification) -> None:
        self._record(notification.event_id, notification.item_id)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--ready", help="create this file once connected")
    parser.add_argument("--go", help="wait until this file exists before starting")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--lease", type=float, default=60.0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--block-event-id")
    parser.add_argument("--marker")
    parser.add_argument("--deadline", type=float, default=90.0)
    parser.add_argument("--webhook", help="also POST each event to this URL")
    parser.add_argument("--rabbitmq", help="also publish each event to this broker")
    parser.add_argument("--exchange", default="flowkernel")
    args = parser.parse_args()

    # the hooks run in reverse order of registration: the recorder runs last
    plugins: list[object] = [FileRecorder(args.log, args.delay, args.block_event_id, args.marker)]
    if args.rabbitmq:
        plugins.append(RabbitMQPlugin(args.rabbitmq, exchange=args.exchange))
    if args.webhook:
        plugins.append(WebhookPlugin(args.webhook, secret="worker-secret", timeout=5))
    fk = Flowkernel(
        args.url,
        plugins=plugins,
        entry_points=False,
        deliver_events=False,
        delivery_lease=timedelta(seconds=args.lease),
    )
    with fk.engine.connect() as conn:
        conn.execute(select(1))
    if args.ready:
        Path(args.ready).touch()
    if args.go:
        while not Path(args.go).exists():
            time.sleep(0.01)
    stop = threading.Event()
    ends = time.monotonic() + args.deadline

    def watch() -> None:
        # stop once nothing is pending any more (or at the deadline)
        while not stop.is_set():
            with fk.engine.connect() as conn:
                pending = conn.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.status == "pending")
                ).scalar_one()
            if pending == 0 or time.monotonic() > ends:
                stop.set()
            stop.wait(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    fk.delivery.run_forever(0.05, stop, limit=args.limit)
    watcher.join()
    fk.close()
    return 0 if time.monotonic() <= ends else 3


if __name__ == "__main__":
    raise SystemExit(main())
