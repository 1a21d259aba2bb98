"""The `flowkernel` argument parser, and `main`, which runs a command and maps its errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from flowkernel.cli import (
    apply,
    board,
    classes,
    db,
    demo,
    diagram,
    inbox,
    items,
    pipelines,
    serve,
    workers,
)
from flowkernel.cli.arguments import acting_options
from flowkernel.cli.parser import Parser
from flowkernel.cli.refusals import (
    EPILOG,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    refusal_of,
)
from flowkernel.settings import DATABASE_URL_VAR, PLUGINS_VAR

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: the process's); the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command: Command = args.command
    try:
        return command(args)
    except BrokenPipeError:  # the reader of our output went away (`| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:  # Ctrl-C: the user's choice, not a crash
        print("flowkernel: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        refusal = refusal_of(exc, getattr(args, "item", None), acting_options(args))
        if refusal is None:
            raise  # a bug: the traceback is what a report needs
        return _fail(*refusal)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `flowkernel` and its subcommands."""
    parser = Parser(
        prog="flowkernel",
        description="A persistent state-machine and pipeline engine.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"flowkernel {_version()}")
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help=f"database to use (default: ${DATABASE_URL_VAR}, else sqlite:///flowkernel.db)",
    )
    parser.add_argument(
        "--plugin",
        metavar="MODULE",
        action="append",
        default=[],
        help=f"register a plugin by module path (or module:attribute), repeatable; also "
        f"${PLUGINS_VAR}, comma-separated",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    # the order in which the families add their commands is the order `--help` lists them in
    db.add_commands(commands)
    classes.add_commands(commands)
    apply.add_commands(commands)
    diagram.add_commands(commands)
    pipelines.add_commands(commands)
    items.add_commands(commands)
    board.add_commands(commands)
    inbox.add_commands(commands)
    workers.add_commands(commands)
    serve.add_commands(commands)
    demo.add_commands(commands)
    _add_database_option_everywhere(parser)
    return parser


def _add_database_option_everywhere(parser: argparse.ArgumentParser) -> None:
    """Let every command take --database-url after its name too (it wins over the one before)."""
    seen: set[int] = set()

    def visit(node: argparse.ArgumentParser) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        groups = [a for a in node._actions if isinstance(a, argparse._SubParsersAction)]
        for action in groups:
            for child in action._name_parser_map.values():
                visit(child)
        if not groups and "--database-url" not in node._option_string_actions:
            node.add_argument(
                "--database-url",
                metavar="URL",
                default=argparse.SUPPRESS,
                help=f"database to use (default: ${DATABASE_URL_VAR}, else sqlite:///flowkernel.db)",
            )

    visit(parser)


def _fail(family: str, message: str, status: int) -> int:
    line = " ".join(message.split())
    print(f"flowkernel: {family}: {line}", file=sys.stderr)
    return status


def _version() -> str:
    """The installed distribution's version."""
    try:
        return metadata.version("flowkernel")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"
