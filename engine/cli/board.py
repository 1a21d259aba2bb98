"""The `board` command: a pipeline's stages as columns with their items."""

from __future__ import annotations

import argparse
import shutil

from flowkernel.cli.arguments import (
    Commands,
    actor_of,
    add_actor_options,
    add_json_option,
    moment,
    pipeline_id,
    positive_int,
)
from flowkernel.cli.connection import kernel
from flowkernel.cli.output import print_json
from flowkernel.cli.refusals import EPILOG, EXIT_OK


def add_commands(commands: Commands) -> None:
    """Add `board`."""
    board = commands.add_parser(
        "board",
        help="print a pipeline's board: its stages as columns with their items",
        epilog=EPILOG,
    )
    board.add_argument("pipeline", metavar="PIPELINE", help="pipeline id or code")
    board.add_argument(
        "--value-column",
        metavar="COLUMN",
        help="the number column to sum (default: the pipeline's first one; '' for none)",
    )
    board.add_argument(
        "--per-stage", type=positive_int, default=50, metavar="N", help="items per stage"
    )
    board.add_argument(
        "--width", type=positive_int, metavar="N", help="default: the terminal's width"
    )
    board.add_argument(
        "--as-of",
        type=moment,
        metavar="WHEN",
        help="the board at a past instant (ISO 8601, UTC unless it names an offset): each "
        "stage's items then, latest entry first, and their counts; no sums",
    )
    add_actor_options(board)
    add_json_option(board)
    board.set_defaults(command=_board)


def _board(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        from flowkernel.runtime.board_results import FIRST_NUMBER_COLUMN

        column = FIRST_NUMBER_COLUMN if args.value_column is None else args.value_column or None
        board = fk.queries.board(
            pipeline, actor, per_stage=args.per_stage, value_column=column, as_of=args.as_of
        )
    if args.json:
        print_json(board)
    else:
        from flowkernel.views.board import render_board

        print(render_board(board, args.width or shutil.get_terminal_size().columns))
    return EXIT_OK
