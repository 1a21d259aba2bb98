"""Custom column values: validating, normalising and reading back the seven field types.

`flow_item_values.value` is TEXT; a column's `field_type` is the contract for that text (the
LEO seed's table). `normalize` turns an accepted input into the one canonical text stored;
`parse` turns stored text back into a Python value. A `str` input is always read as the text
form of the type (for `multi_select` and `json`: JSON text); other inputs are Python values.

- text: the non-empty string as given; parses to `str`.
- number: fixed-point decimal text such as "42500" or "-3.75" (no exponent, no trailing zeros);
  accepts int, finite float or Decimal, or a numeric string; parses to `Decimal`.
- date: ISO 8601 "2026-07-01"; accepts `datetime.date` (not a datetime) or that string;
  parses to `date`.
- boolean: "true" or "false"; accepts bool or those strings; parses to `bool`.
- select: one of the column's options; parses to `str`.
- multi_select: a compact JSON array of distinct options such as '["High","Urgent"]', in the
  given order; accepts a non-empty list or tuple, or its JSON text; parses to `list[str]`.
- json: compact JSON; accepts JSON text, or a value of dicts (string keys), lists, tuples,
  strings, finite numbers, booleans and nested None; parses to the JSON value.

Stored text is at most `MAX_VALUE_BYTES` (64 KiB) of UTF-8 without NUL characters.
`None` (for json too: pass the text "null") and empty values are refused: clearing a value is
its own operation, and an empty string or array would otherwise count as "filled" for a
stage's required columns.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol

from flowkernel.errors import InvalidValue, UnknownDefinition
from flowkernel.previews import preview

TEXT: Final = "text"
NUMBER: Final = "number"
DATE: Final = "date"
BOOLEAN: Final = "boolean"
SELECT: Final = "select"
MULTI_SELECT: Final = "multi_select"
JSON: Final = "json"
FIELD_TYPES: Final = (TEXT, NUMBER, DATE, BOOLEAN, SELECT, MULTI_SELECT, JSON)
"""The seed's seven field types."""

MAX_VALUE_BYTES: Final = 64 * 1024
"""The largest stored value: 64 KiB of UTF-8 text."""

MAX_NUMBER_DIGITS: Final = 1000
"""At most this many digits before, and this many after, the decimal point."""

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class FieldColumn(Protocol):
    """What validation needs of a column: its name, field type and options."""

    @property
    def name(self) -> str: ...

    @property
    def field_type(self) -> str: ...

    @property
    def options(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A column description for validating values outside a pipeline."""

    name: str
    field_type: str
    options: tuple[str, ...] = ()


def expected(column: FieldColumn) -> str:
    """The accepted format of `column`, as error messages name it."""
    kind = column.field_type
    if kind == TEXT:
        return "a non-empty string (clear the value to empty it)"
    if kind == NUMBER:
        return (
            'a finite number such as 42500 or "-3.75" (int, float, Decimal or numeric string, '
            f"at most {MAX_NUMBER_DIGITS} digits before and after the point)"
        )
    if kind == DATE:
        return 'an ISO 8601 date such as "2026-07-01" (a datetime.date or a YYYY-MM-DD string)'
    if kind == BOOLEAN:
        return 'true or false (a bool or the string "true" or "false")'
    if kind == SELECT:
        return f"one of the options: {_listed(column.options)}"
    if kind == MULTI_SELECT:
        return (
            "a non-empty list of distinct options (or its JSON array text) from: "
            f"{_listed(column.options)}"
        )
    if kind == JSON:
        return (
            "valid JSON: a JSON text, or a value of dicts with string keys, lists, strings, "
            "finite numbers, booleans and nulls"
        )
    raise UnknownDefinition("field type", kind, f"column {preview(column.name)}", FIELD_TYPES)


def normalize(column: FieldColumn, value: object) -> str:
    """The canonical stored text of `value` for `column`; `InvalidValue` when it does not fit."""
    kind = column.field_type
    if kind not in FIELD_TYPES:
        raise UnknownDefinition("field type", kind, f"column {preview(column.name)}", FIELD_TYPES)
    if value is None:
        raise InvalidValue(column.name, None, f"{expected(column)}; to empty it, clear the value")
    if isinstance(value, str) and len(value) > MAX_VALUE_BYTES:
        raise _too_large(column, value)
    try:
        text = _NORMALIZERS[kind](column, value)
    except (ValueError, TypeError, OverflowError, InvalidOperation, RecursionError):
        text = None
    if text is None:
        raise InvalidValue(column.name, _shown(value), expected(column))
    return _storable(column, text)


def parse(column: FieldColumn, text: str) -> Any:
    """The Python value of stored `text`; `InvalidValue` when the text does not fit `column`."""
    if not isinstance(text, str):
        raise InvalidValue(column.name, _shown(text), f"stored text for {expected(column)}")
    canonical = normalize(column, text)
    kind = column.field_type
    if kind == NUMBER:
        return Decimal(canonical)
    if kind == DATE:
        return date.fromisoformat(canonical)
    if kind == BOOLEAN:
        return canonical == "true"
    if kind in (MULTI_SELECT, JSON):
        return json.loads(canonical)
    return canonical


# --- per type: return the canonical text, or None to refuse ------------------------------


def _text(column: FieldColumn, value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(column: FieldColumn, value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        number = Decimal(repr(value))  # the shortest text that reads back as this float
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str) and _NUMBER.fullmatch(value):
        number = Decimal(value)
    else:
        return None
    if not number.is_finite():
        return None
    if number == 0:
        return "0"
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    # Bound the size before formatting: "1e999999999" must not expand into a gigabyte.
    if number.adjusted() >= MAX_NUMBER_DIGITS or -(exponent + trailing) > MAX_NUMBER_DIGITS:
        return None
    text = format(number, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _date(column: FieldColumn, value: object) -> str | None:
    if isinstance(value, datetime):  # a datetime is a date too, but its time would be lost
        return None
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _DATE.fullmatch(value):
        return date.fromisoformat(value).isoformat()
    return None


def _boolean(column: FieldColumn, value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value in ("true", "false"):
        assert isinstance(value, str)
        return value
    return None


def _select(column: FieldColumn, value: object) -> str | None:
    return value if isinstance(value, str) and value in column.options else None


def _multi_select(column: FieldColumn, value: object) -> str | None:
    chosen = _load_json(value) if isinstance(value, str) else value
    if not isinstance(chosen, (list, tuple)) or not chosen:
        return None
    if not all(isinstance(v, str) and v in column.options for v in chosen):
        return None
    if len(set(chosen)) != len(chosen):
        return None
    return _dump_json(list(chosen))


def _json(column: FieldColumn, value: object) -> str | None:
    document = _load_json(value) if isinstance(value, str) else value
    if value is None or not _json_value(document):
        return None
    return _dump_json(document)


_NORMALIZERS: Final = {
    TEXT: _text,
    NUMBER: _number,
    DATE: _date,
    BOOLEAN: _boolean,
    SELECT: _select,
    MULTI_SELECT: _multi_select,
    JSON: _json,
}


# --- helpers -----------------------------------------------------------------------------


class _Refused(Exception):
    """A JSON text that is not valid JSON (or uses NaN/Infinity)."""


_NOT_JSON: Final = object()


def _refuse_constant(name: str) -> object:
    raise _Refused(name)


def _load_json(text: str) -> object:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (_Refused, ValueError, RecursionError):
        return _NOT_JSON


def _dump_json(document: object) -> str:
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _json_value(document: object) -> bool:
    """Whether `document` is JSON as it will read back: string keys, finite numbers."""
    stack = [document]
    budget = MAX_VALUE_BYTES  # each node takes a byte or more; this also stops cycles
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            return False
        if node is None or isinstance(node, (str, bool, int)):
            continue
        if isinstance(node, float):
            if not math.isfinite(node):
                return False
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, dict):
            if not all(isinstance(key, str) for key in node):
                return False
            stack.extend(node.values())
        else:
            return False
    return True


def _storable(column: FieldColumn, text: str) -> str:
    """Refuse text a database column cannot hold: NUL, lone surrogates, over the size limit."""
    if "\x00" in text:
        raise InvalidValue(column.name, _shown(text), "text without NUL characters")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValue(
            column.name, _shown(text), "text encodable as UTF-8 (no lone surrogates)"
        ) from None
    if size > MAX_VALUE_BYTES:
        raise _too_large(column, text)
    return text


def _too_large(column: FieldColumn, text: str) -> InvalidValue:
    return InvalidValue(column.name, _shown(text), f"at most {MAX_VALUE_BYTES} bytes of UTF-8 text")


def _shown(value: object) -> object:
    """The value as an error keeps it: long strings are cut so messages stay readable."""
    if isinstance(value, str) and len(value) > 200:
        return f"{value[:80]}... ({len(value)} characters)"
    return value


def _listed(options: Sequence[str]) -> str:
    return ", ".join(options) if options else "(none: the column has no options)"
