"""What the commands print: aligned tables, and results as JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal


def section(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A table under its title and row count."""
    return f"{title} ({len(rows)})\n{table(headers, rows)}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; `-` for empty values."""
    cells = [[cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def cell(value: object) -> str:
    """A value as a table shows it: `-` for None, yes or no for a bool."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def print_json(value: object) -> None:
    """Print a result as indented JSON."""
    print(json.dumps(jsonable(value), indent=2, ensure_ascii=False))


def jsonable_dict(value: object) -> dict[str, object]:
    """The JSON object of a dataclass or a mapping."""
    data = jsonable(value)
    assert isinstance(data, dict)
    return data


def jsonable(value: object) -> object:
    """Plain JSON data of a result: dataclasses as objects, times as ISO text, Decimal as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(str(v) for v in value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    return value
