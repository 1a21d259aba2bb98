"""A progress bar for long commands: drawn on a terminal, silent when the output is piped.

    with Progress(len(rows), "placing") as bar:
        for row in rows:
            ...
            bar.advance()

The bar is one line on standard error, redrawn in place (`\\r`) at most every `interval`
seconds and once more at the end; whether to draw is `stream.isatty()` unless `enabled` says
otherwise. Lines written through `write` appear above the bar, so per-row messages and the bar
do not garble each other.
"""

from __future__ import annotations

import shutil
import sys
import time
from types import TracebackType
from typing import Final, TextIO

MIN_BAR: Final = 10
"""Narrowest bar worth drawing, in characters."""


class Progress:
    """A progress bar of `total` steps labelled `label` on `stream` (default: standard error)."""

    def __init__(
        self,
        total: int | None,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        interval: float = 0.1,
        width: int | None = None,
    ) -> None:
        self.total = total if total is None or total >= 0 else 0
        self.label = label
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = _is_terminal(self._stream) if enabled is None else enabled
        self._interval = interval
        self._width = width
        self._drawn_at: float | None = None
        self._shown = 0  # length of the line on screen, to blank it out

    def advance(self, steps: int = 1) -> None:
        """Count `steps` more done; redraw when the last drawing is old enough."""
        self.done += steps
        if not self.enabled:
            return
        now = time.monotonic()
        if self._drawn_at is None or now - self._drawn_at >= self._interval:
            self._draw(now)

    def write(self, line: str) -> None:
        """Print `line` on the stream above the bar (the bar is redrawn below it)."""
        if self.enabled and self._shown:
            self._blank()
        self._stream.write(line.rstrip("\n") + "\n")
        if self.enabled and self._drawn_at is not None:
            self._draw(time.monotonic())
        self._stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line; nothing when disabled."""
        if self.enabled and (self._drawn_at is not None or self.done):
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()
            self._shown = 0
            self._drawn_at = None

    def render(self, width: int) -> str:
        """The bar's text at `width` columns: label, bar, count and percentage."""
        if self.total:
            percent = 100 * min(self.done, self.total) // self.total
            counts = f"{self.done}/{self.total} {percent:3d}%"
        else:
            counts = str(self.done)
        room = width - len(self.label) - len(counts) - 4  # two spaces and the brackets
        if self.total and room >= MIN_BAR:
            filled = room * min(self.done, self.total) // self.total
            return f"{self.label} [{'#' * filled}{'.' * (room - filled)}] {counts}"
        return f"{self.label} {' '.join(counts.split())}"[: max(width, 1)]

    def _draw(self, now: float) -> None:
        width = self._width or shutil.get_terminal_size((80, 24)).columns
        text = self.render(width - 1)  # the last column would wrap on some terminals
        pad = " " * max(self._shown - len(text), 0)
        self._stream.write(f"\r{text}{pad}")
        self._stream.flush()
        self._shown = len(text)
        self._drawn_at = now

    def _blank(self) -> None:
        self._stream.write("\r" + " " * self._shown + "\r")
        self._shown = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream is no terminal
        return False
