"""A pipeline's board as text: one column per stage, side by side, fitted to a width.

Each column has the stage name, its item count and value sum, a rule, then one line per item
(`#id object_type:object_id @assignee` and the item's value, the assignee left out first when
the column is narrow; `!` marks an item past its SLA)
and `+N more` when the stage holds more items than the board page. Stages that do not fit the
width side by side continue in further bands below. A value is never left out: when a column
is too narrow the text before it is cut, then the value is written short (`85k`, `1.2M`), each
cut marked `~`, and a last line says that something was shortened.
"""

from __future__ import annotations

import textwrap
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from flowkernel.runtime.board_results import Board, BoardItem, BoardStage

SEPARATOR: Final = " | "
TENTH: Final = Decimal("0.1")
MIN_COLUMN: Final = 16
"""Narrowest stage column, in characters; fewer stages share a band below it."""


def render_board(board: Board, width: int, *, min_column: int = MIN_COLUMN) -> str:
    """The board as lines of at most `width` characters (at least one stage per band)."""
    title = f"{board.pipeline_name}: {_count(board.count)}"
    if board.as_of is not None:
        title += f" as of {board.as_of.strftime('%Y-%m-%d %H:%M:%S')} UTC"
    if board.value_column is not None and board.value_sum is not None:
        title += f", {board.value_column} {format_number(board.value_sum)}"
        if board.weighted_value is not None and any(
            s.probability is not None for s in board.stages
        ):
            title += f" (weighted {format_number(board.weighted_value)})"
    lines = [_fit(title, width)]
    cut = [len(title) > width]
    per_band = max(1, (width + len(SEPARATOR)) // (min_column + len(SEPARATOR)))
    stages = list(board.stages)
    if not stages:
        lines.append("(no stages)")
    across = min(per_band, len(stages)) or 1
    column = max(1, (width - len(SEPARATOR) * (across - 1)) // across)  # one width for all bands
    for start in range(0, len(stages), per_band):
        band = stages[start : start + per_band]
        blocks = [_column(stage, column, board.value_column is not None, cut) for stage in band]
        height = max(len(block) for block in blocks)
        lines.append("")
        for row in range(height):
            cells = [block[row] if row < len(block) else "" for block in blocks]
            lines.append(SEPARATOR.join(cell.ljust(column) for cell in cells).rstrip())
    if any(i.sla_breached_at is not None for s in stages for i in s.items):
        lines.extend(["", "! past its SLA due time"])
    if any(cut):
        note = "~ shortened to fit: a wider --width (or --json) shows every character"
        lines.extend(["", *textwrap.wrap(note, max(width, 1))])
    return "\n".join(lines)


def short_number(value: Decimal) -> str:
    """A number in a few characters: 85000 -> 85k, 1250000 -> 1.2M, 7.5 -> 7.5."""
    magnitude = abs(value)
    for limit, suffix in ((Decimal(10**9), "B"), (Decimal(10**6), "M"), (Decimal(10**3), "k")):
        if magnitude >= limit:
            scaled = (value / limit).quantize(TENTH, rounding=ROUND_HALF_UP).normalize()
            return f"{scaled:f}{suffix}"
    if value == value.to_integral_value():
        return str(int(value))
    return f"{value.quantize(TENTH, rounding=ROUND_HALF_UP).normalize():f}"


def format_number(value: Decimal) -> str:
    """A number with thousands separators and no trailing zeros: 42500.00 -> 42,500."""
    normal = value.normalize()
    if normal == normal.to_integral_value():
        return f"{int(normal):,}"
    return f"{normal:,f}"


def _column(stage: BoardStage, width: int, with_values: bool, cut: list[bool]) -> list[str]:
    flags = " (won)" if stage.is_won else " (lost)" if stage.is_lost else ""
    lines = [_fit(stage.name + flags, width)]
    summary = _count(stage.count)
    if with_values and stage.value_sum is not None:
        summary += f", {format_number(stage.value_sum)}"
        if len(summary) > width:
            summary = f"{_count(stage.count)}, {short_number(stage.value_sum)}~"
    cut.append(len(stage.name + flags) > width or len(summary) > width)
    lines.append(_fit(summary, width))
    lines.append("-" * width)
    lines.extend(_card(item, width, cut) for item in stage.items)
    hidden = stage.count - len(stage.items)
    if hidden > 0:
        lines.append(_fit(f"+{hidden} more", width))
    elif not stage.items:
        lines.append(_fit("(empty)", width))
    return lines


def _card(item: BoardItem, width: int, cut: list[bool]) -> str:
    """`#id type:id @assignee` and the value at the right; the assignee goes first when short,
    then the text is cut and the value written short, so the value always shows."""
    mark = "!" if item.sla_breached_at is not None else ""
    base = f"{mark}#{item.id} {item.object_type}:{item.object_id}"
    full = base if item.assigned_user_id is None else f"{base} @{item.assigned_user_id}"
    if item.value is None:
        cut.append(len(full) > width)
        return _fit(full, width)
    value = format_number(item.value)
    for left in (full, base):
        if len(left) + 1 + len(value) <= width:
            return left + " " * (width - len(left) - len(value)) + value
    cut.append(True)
    for shown in (value, short_number(item.value) + "~"):
        room = width - 1 - len(shown)
        if room >= min(len(base), 4):
            left = _fit(base, room)
            return left + " " * (width - len(left) - len(shown)) + shown
    return _fit(short_number(item.value) + "~", width)


def _fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, ending in `~` when cut."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "~" if width > 1 else text[:width]


def _count(count: int) -> str:
    return f"{count} item{'s' if count != 1 else ''}"
