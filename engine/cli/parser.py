"""The argument parser class of every `flowkernel` command."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from flowkernel.cli.refusals import EXIT_USAGE


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description or epilog to the terminal, and keeps a paragraph
    with indented lines (a list, such as the exit statuses) as it is written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        filled = []
        for paragraph in text.strip("\n").split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines):
                filled.append("\n".join(indent + line for line in lines))
            else:
                filled.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(filled)


class Parser(argparse.ArgumentParser):
    """An argument parser whose help keeps its lists, and whose usage mistakes are one line on
    standard error (`flowkernel: usage error: ...`, exit status 2), like every other refusal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(
            EXIT_USAGE,
            f"flowkernel: usage error: {self.prog}: {message}; "
            f"`{self.prog} --help` shows the usage\n",
        )
