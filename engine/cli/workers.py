"""The worker commands: `sla scan` fires SLA breaches, `events deliver` delivers the outbox;
once, or every SECONDS until a signal stops them."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING

from flowkernel.actors import SYSTEM
from flowkernel.cli.arguments import (
    Commands,
    add_json_option,
    pipeline_id,
    positive_float,
    positive_int,
)
from flowkernel.cli.connection import kernel
from flowkernel.cli.dead_letters import add_commands as add_dead_letter_commands
from flowkernel.cli.output import jsonable, jsonable_dict
from flowkernel.cli.refusals import EPILOG, EXIT_OK
from flowkernel.settings import SLA_BATCH_SIZE

if TYPE_CHECKING:
    from flowkernel.runtime.sla import SlaReport
    from flowkernel.store.delivery import DeliveryReport


def add_commands(commands: Commands) -> None:
    """Add `sla scan` and `events deliver`."""
    sla = commands.add_parser("sla", help="find items past their SLA due time", epilog=EPILOG)
    sla_commands = sla.add_subparsers(title="sla commands", required=True, metavar="COMMAND")
    scan = sla_commands.add_parser(
        "scan",
        help="fire sla_breach on the items past their due time, once or every SECONDS",
        description=(
            "Once: scan until no due item is left and print what was found. With --every: "
            "scan every SECONDS until interrupted (Ctrl-C or SIGTERM end it cleanly), "
            "printing the scans that found something."
        ),
    )
    scan.add_argument("--every", type=positive_float, metavar="SECONDS")
    scan.add_argument("--pipeline", metavar="PIPELINE", help="only this pipeline (id or code)")
    scan.add_argument(
        "--limit", type=positive_int, default=1000, metavar="N", help="items per scan"
    )
    scan.add_argument(
        "--batch-size",
        type=positive_int,
        default=SLA_BATCH_SIZE,
        metavar="N",
        help=f"breaches fired per transaction, through batch execution (default {SLA_BATCH_SIZE})",
    )
    scan.add_argument("--max-runs", type=positive_int, metavar="N", help="stop after N scans")
    scan.add_argument(
        "--no-deliver",
        action="store_true",
        help="leave the events a breach writes to `flowkernel events deliver`",
    )
    add_json_option(scan, "print one JSON object per scan")
    scan.set_defaults(command=_sla_scan)

    events = commands.add_parser(
        "events", help="deliver outgoing events; list and requeue dead ones", epilog=EPILOG
    )
    events_commands = events.add_subparsers(
        title="events commands", required=True, metavar="COMMAND"
    )
    deliver = events_commands.add_parser(
        "deliver",
        help="deliver pending events and watcher notifications, once or every SECONDS",
        description=(
            "Once: deliver until nothing is due. With --every: deliver every SECONDS until "
            "interrupted (Ctrl-C or SIGTERM end it cleanly), printing the passes that "
            "handled something."
        ),
    )
    deliver.add_argument("--every", type=positive_float, metavar="SECONDS")
    deliver.add_argument(
        "--limit", type=positive_int, default=500, metavar="N", help="rows per pass"
    )
    deliver.add_argument("--max-runs", type=positive_int, metavar="N", help="stop after N passes")
    add_json_option(deliver, "print one JSON object per pass")
    deliver.set_defaults(command=_events_deliver)
    add_dead_letter_commands(events_commands)


def _sla_scan(args: argparse.Namespace) -> int:
    def show(report: SlaReport, always: bool = False) -> None:
        for failure in report.failures:
            print(
                f"flowkernel: item {failure.item_id}: sla_breach refused ({failure.error}): "
                f"{' '.join(failure.message.split())}",
                file=sys.stderr,
            )
        if args.json:
            data = {**jsonable_dict(report), "fired": report.fired, "skipped": report.skipped}
            print(json.dumps(jsonable(data)), flush=True)
        elif always or report.breaches or report.failures:
            print(
                f"{report.now:%Y-%m-%d %H:%M:%S} sla scan: {len(report.fired)} breached, "
                f"{len(report.skipped)} without an sla_breach method, {len(report.failures)} "
                f"refused; {report.events} event(s) written",
                flush=True,
            )

    with kernel(args, deliver_events=not args.no_deliver) as fk:
        pipeline = pipeline_id(fk, args.pipeline, SYSTEM) if args.pipeline else None
        if args.every is None:
            runs = 0
            while True:  # a full scan means more items may be due: scan again
                report = fk.sla.scan(
                    pipeline_id=pipeline, limit=args.limit, batch_size=args.batch_size
                )
                show(report, always=runs == 0)
                runs += 1
                if not (report.limit_reached and report.breaches):
                    break
                if args.max_runs is not None and runs >= args.max_runs:
                    break
        else:
            with stop_on_signals() as stop:
                _scheduled("sla scan", args.every)
                fk.sla.run_forever(
                    args.every,
                    stop=stop,
                    pipeline_id=pipeline,
                    limit=args.limit,
                    batch_size=args.batch_size,
                    max_runs=args.max_runs,
                    on_report=show,
                )
    return EXIT_OK


def _events_deliver(args: argparse.Namespace) -> int:
    def show(report: DeliveryReport, always: bool = False) -> int:
        handled = report.delivered + report.retried + report.dead
        if args.json:
            print(json.dumps(jsonable(report)), flush=True)
        elif always or handled:
            print(
                f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} delivered {report.delivered}, "
                f"retried later {report.retried}, dead {report.dead}",
                flush=True,
            )
        return handled

    runs = 0
    with kernel(args, deliver_events=False) as fk, stop_on_signals() as stop:
        if args.every is not None:
            _scheduled("events deliver", args.every)
        while not stop.is_set():
            report = fk.delivery.deliver(limit=args.limit)
            handled = show(report, always=args.every is None and runs == 0)
            runs += 1
            if args.max_runs is not None and runs >= args.max_runs:
                break
            if handled >= args.limit:
                continue  # a backlog: the next pass at once
            if args.every is None:
                break
            stop.wait(args.every)
    return EXIT_OK


def _scheduled(command: str, every: float) -> None:
    """Say on standard error that a scheduled worker runs, once it listens for signals."""
    print(
        f"flowkernel {command}: a pass every {every:g} s; SIGTERM or Ctrl-C stops after the "
        "current pass",
        file=sys.stderr,
        flush=True,
    )


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs, so a worker ends its pass."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be installed by the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
