"""The `diagram` command: a class's or pipeline's state machine as Mermaid, dot or SVG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowkernel.actors import Actor
from flowkernel.cli.arguments import Commands, positive_int
from flowkernel.cli.connection import kernel
from flowkernel.cli.refusals import EPILOG, EXIT_OK, UsageError
from flowkernel.views.formats import DIAGRAM_FORMATS


def add_commands(commands: Commands) -> None:
    """Add `diagram`."""
    diagram = commands.add_parser(
        "diagram", help="draw a class's state machine as Mermaid, dot or SVG", epilog=EPILOG
    )
    diagram.add_argument("code", metavar="CODE", help="class or pipeline code, or its id")
    diagram.add_argument(
        "--format", choices=DIAGRAM_FORMATS, default="mermaid", help="default: mermaid"
    )
    diagram.add_argument("--counts", action="store_true", help="show item counts per state")
    diagram.add_argument(
        "--account",
        type=positive_int,
        metavar="N",
        help="the tenant account (default: platform-wide classes, items of every account)",
    )
    diagram.add_argument("--output", metavar="FILE", help="write to FILE, not standard output")
    diagram.set_defaults(command=_diagram)


def _diagram(args: argparse.Namespace) -> int:
    ref: str | int = int(args.code) if args.code.isdigit() else args.code
    with kernel(args) as fk:
        from flowkernel.views.diagram import draw

        text = draw(fk, ref, Actor.system(args.account), args.format, counts=args.counts)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    return EXIT_OK
