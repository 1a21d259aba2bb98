"""The `flowkernel` command: migrate a database, load and show classes and pipelines, work on
items, run the workers and serve the HTTP API. `main` runs it; `build_parser` describes it."""

from flowkernel.cli.command import build_parser, main
from flowkernel.cli.refusals import (
    EXIT_DATABASE,
    EXIT_DEFINITION,
    EXIT_ERROR,
    EXIT_EXECUTION,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    refusal_of,
)

__all__ = [
    "EXIT_DATABASE",
    "EXIT_DEFINITION",
    "EXIT_ERROR",
    "EXIT_EXECUTION",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "main",
    "refusal_of",
]
