"""The `demo` and `bench` commands: the shipped examples and the benchmarks, on the database."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from flowkernel.cli.arguments import Commands
from flowkernel.cli.connection import database_url
from flowkernel.cli.refusals import EXIT_OK
from flowkernel.errors import FlowkernelError


def add_commands(commands: Commands) -> None:
    """Add `demo` and `bench`."""
    demo = commands.add_parser("demo", help="run the shipped examples on the database")
    demo.set_defaults(command=_demo)
    bench = commands.add_parser(
        "bench", help="measure the engine against raw driver SQL and a hand-rolled ORM"
    )
    bench.add_argument("--quick", action="store_true", help="a short run: under a minute")
    bench.add_argument("--smoke", action="store_true", help="a tiny run that checks the output")
    bench.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    bench.add_argument(
        "--scenario",
        action="append",
        choices=("move", "heartbeat", "batch", "http", "compile", "million", "past", "memory"),
        metavar="NAME",
        help="run only this scenario group (repeatable): move, heartbeat, batch, http, compile, "
        "million (the board and SLA scenarios of the full run), past (the board at a past "
        "instant on 1,000,000 history rows), memory",
    )
    bench.set_defaults(command=_bench)


def _demo(args: argparse.Namespace) -> int:
    url = database_url(args)
    try:
        demo = importlib.import_module("flowkernel.examples")
    except ModuleNotFoundError as exc:
        if exc.name != "flowkernel.examples":
            raise
        raise FlowkernelError("this installation has no examples to run") from exc
    run: Callable[[str], object] = demo.run
    status = run(url)
    return status if isinstance(status, int) else EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    # imported here: the benchmarks are not needed by any other command
    bench: Callable[..., int] = importlib.import_module("flowkernel.benchmarks").main
    return bench(
        database_url(args),
        quick=args.quick,
        smoke=args.smoke,
        json_path=args.json,
        only=args.scenario,
    )
