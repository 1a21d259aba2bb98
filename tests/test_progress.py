"""The progress bar: silent unless its stream is a terminal (or it is forced), drawn in place."""

from __future__ import annotations

import io
import os
import pty

from flowkernel.cli.progress import Progress


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_silent_when_the_stream_is_not_a_terminal() -> None:
    stream = io.StringIO()
    with Progress(3, "placing", stream=stream) as bar:
        assert not bar.enabled
        for _ in range(3):
            bar.advance()
        bar.write("line 2: refused")
    assert stream.getvalue() == "line 2: refused\n"  # messages still go out, the bar does not


def test_draws_on_a_terminal_in_place_and_ends_the_line() -> None:
    stream = Terminal()
    with Progress(4, "placing", stream=stream, width=40, interval=0) as bar:
        assert bar.enabled
        bar.advance()
        bar.advance(3)
    text = stream.getvalue()
    frames = text.rstrip("\n").split("\r")[1:]
    assert frames[0].rstrip() == "placing [#####...............] 1/4  25%"
    assert frames[-1].rstrip() == "placing [####################] 4/4 100%"
    assert all(len(frame) <= 39 for frame in frames)
    assert text.endswith("\n") and text.count("\n") == 1


def test_forced_on_and_off() -> None:
    forced = io.StringIO()
    with Progress(2, "moving", stream=forced, enabled=True, width=30, interval=0) as bar:
        bar.advance(2)
    assert "2/2 100%" in forced.getvalue()
    quiet = Terminal()
    with Progress(2, "moving", stream=quiet, enabled=False) as bar:
        bar.advance(2)
    assert quiet.getvalue() == ""


def test_messages_appear_above_the_bar() -> None:
    stream = Terminal()
    with Progress(2, "placing", stream=stream, width=40, interval=0) as bar:
        bar.advance()
        bar.write("line 3: refused")
        bar.advance()
    lines = stream.getvalue().split("\n")
    # the bar is blanked, the message printed on its own line, and the bar redrawn below it
    assert lines[0].endswith("\rline 3: refused")
    assert lines[0].split("\r")[-2].strip() == ""
    assert "2/2 100%" in lines[1]


def test_throttled_redraws_and_narrow_or_unknown_totals() -> None:
    stream = Terminal()
    with Progress(1000, "placing", stream=stream, width=60, interval=3600) as bar:
        for _ in range(1000):
            bar.advance()
    assert stream.getvalue().count("\r") == 2  # the first step and the final state
    assert Progress(None, "scanning", stream=io.StringIO()).render(40) == "scanning 0"
    narrow = Progress(10, "a long label", stream=io.StringIO())
    assert narrow.render(20) == "a long label 0/10 0%"  # no room for a bar: the numbers only
    assert narrow.render(8) == "a long l"
    assert Progress(0, "nothing", stream=io.StringIO()).render(40) == "nothing 0"


def test_a_real_pseudo_terminal_is_detected() -> None:
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as stream:
            assert Progress(1, "x", stream=stream).enabled
    finally:
        os.close(leader)
        os.close(follower)
