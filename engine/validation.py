"""Checks of caller-given arguments, run at the entry of every public operation.

Each check raises a typed error that names the argument and says what it must be, before
anything touches the database: a refused call changes nothing, and no driver ever sees a value
its column cannot hold (a 70-bit id, a NUL character, a string longer than a `VARCHAR`).
Checks that guard definitions raise `InvalidDefinition`, the others `InvalidArgument`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from flowkernel.errors import InvalidArgument, InvalidDefinition, InvalidDocument
from flowkernel.previews import preview

MIN_ID: Final = -(2**63)
MAX_ID: Final = 2**63 - 1
"""Ids (of items, classes, users, accounts, rows) are signed 64-bit integers."""

MIN_INT: Final = -(2**31)
MAX_INT: Final = 2**31 - 1
"""Positions, sequences and other counts are stored in 32-bit integer columns."""

MAX_CODE: Final = 128
"""Longest class or method code (their columns are `VARCHAR(128)`)."""

MAX_STATE_CODE: Final = 120
"""Longest state or stage code: `move_to_<code>` must fit the 128 characters of a method code."""

MAX_ACTION_CODE: Final = 64
"""Longest action code (`fk_actions.code` is `VARCHAR(64)`)."""

MAX_POSITION: Final = 1_000_000
"""Largest position of a state, stage or column (shifting the ones after it must not overflow)."""

MAX_OBJECT_TYPE: Final = 128
"""Longest object type, in characters."""

MAX_NAME: Final = 1000
"""Longest name or label, in characters."""

MAX_TEXT: Final = 64 * 1024
"""Longest description, in characters."""

MAX_PARAMS_BYTES: Final = 1024 * 1024
"""Largest `params` of an execution: 1 MiB of JSON."""

MAX_DOCUMENT: Final = 4 * 1024 * 1024
"""Longest class or pipeline document text, in characters."""

_CODE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

Error = type[InvalidArgument] | type[InvalidDefinition]


def check_id(name: str, value: object, *, error: Error = InvalidArgument) -> int:
    """`value` if it is a signed 64-bit integer (not a bool)."""
    if type(value) is int and MIN_ID <= value <= MAX_ID:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and MIN_ID <= value <= MAX_ID:
        return int(value)
    raise error(f"{name} must be a 64-bit integer id, not {preview(value)}", **{name: value})


def check_item_id(value: object) -> int:
    """An item id: a signed 64-bit integer."""
    if type(value) is int and MIN_ID <= value <= MAX_ID:  # the hot path's common case
        return value
    return check_id("item_id", value)


def check_optional_id(name: str, value: object, *, error: Error = InvalidArgument) -> int | None:
    """None, or a 64-bit integer id."""
    return None if value is None else check_id(name, value, error=error)


def check_object(object_type: object, object_id: object) -> None:
    """An object reference: a type name of at most `MAX_OBJECT_TYPE` characters and a 64-bit id."""
    check_text("object_type", object_type, max_length=MAX_OBJECT_TYPE, error=InvalidArgument)
    check_id("object_id", object_id)


def check_code(
    kind: str, code: object, *, max_length: int = MAX_CODE, error: Error = InvalidDefinition
) -> str:
    """A code: 1 to `max_length` ASCII letters, digits or '_', starting with a letter (a
    leading '_' would name the state machine's internals)."""
    if isinstance(code, str) and len(code) <= max_length and _CODE.fullmatch(code):
        return code
    raise error(
        f"{kind} code {preview(code)} must be 1-{max_length} ASCII letters, digits or '_', "
        "starting with a letter",
        kind=kind,
        key=code,
    )


def check_key(kind: str, value: object, *, error: Error = InvalidDefinition) -> str:
    """A code something is looked up by: a string a database can compare (no NUL, no lone
    surrogate). Whether anything has that code is the lookup's business."""
    if isinstance(value, str) and storable(value):
        return value
    raise error(
        f"a {kind} is named by its code, a string without NUL characters, not {preview(value)}",
        kind=kind,
        key=value,
    )


def check_text(
    name: str,
    value: object,
    *,
    max_length: int = MAX_NAME,
    empty: bool = False,
    error: Error = InvalidDefinition,
) -> str:
    """A string of at most `max_length` characters a database can store (no NUL, no lone
    surrogate); a blank one only with `empty`."""
    if not isinstance(value, str):
        raise error(f"{name} must be a string, not {preview(value)}", **{name: value})
    if not empty and not value.strip():
        raise error(f"{name} must not be empty or blank", **{name: value})
    if len(value) > max_length:
        raise error(
            f"{name} is {len(value)} characters long; the limit is {max_length}",
            **{name: preview(value)},
        )
    if not storable(value):
        raise error(
            f"{name} holds a NUL character or a lone surrogate, which cannot be stored: "
            f"{preview(value)}",
            **{name: preview(value)},
        )
    return value


def check_optional_text(
    name: str,
    value: object,
    *,
    max_length: int = MAX_NAME,
    error: Error = InvalidDefinition,
) -> str | None:
    """None, or a non-blank storable string of at most `max_length` characters."""
    if value is None:
        return None
    return check_text(name, value, max_length=max_length, error=error)


def check_bool(name: str, value: object, *, error: Error = InvalidDefinition) -> bool:
    """`value` if it is True or False (not 0, 1 or "yes")."""
    if value is True or value is False:
        return value
    raise error(f"{name} must be True or False, not {preview(value)}", **{name: value})


def check_int(
    name: str,
    value: object,
    *,
    minimum: int = 0,
    maximum: int = MAX_INT,
    error: Error = InvalidDefinition,
) -> int:
    """An integer (not a bool) from `minimum` to `maximum`."""
    if isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum:
        return int(value)
    raise error(
        f"{name} must be an integer from {minimum} to {maximum}, not {preview(value)}",
        **{name: value},
    )


def check_optional_int(
    name: str,
    value: object,
    *,
    minimum: int = 0,
    maximum: int = MAX_INT,
    error: Error = InvalidDefinition,
) -> int | None:
    """None, or an integer from `minimum` to `maximum`."""
    if value is None:
        return None
    return check_int(name, value, minimum=minimum, maximum=maximum, error=error)


def check_params(
    params: object, name: str = "params", *, error: Error = InvalidArgument
) -> dict[str, Any] | None:
    """The parameters of an execution (or another JSON object) as a dict, or None for none.

    They must be a mapping with string keys whose values are JSON: dicts with string keys,
    lists, tuples, strings, finite numbers, booleans and None, storable as text (no NUL, no
    lone surrogate) and at most `MAX_PARAMS_BYTES` of JSON together.
    """
    if params is None:
        return None
    if not isinstance(params, Mapping):
        raise error(
            f"{name} must be a mapping of names to JSON values, not {preview(params)}",
            **{name: params},
        )
    problem = _json_problem(params)
    if problem is not None:
        raise error(f"{name} is not storable JSON: {problem}", **{name: preview(params)})
    try:
        size = len(json.dumps(params, ensure_ascii=False, allow_nan=False).encode())
    except (TypeError, ValueError, RecursionError) as exc:  # what the walk above let through
        raise error(f"{name} is not JSON: {exc}", **{name: preview(params)}) from None
    if size > MAX_PARAMS_BYTES:
        raise error(
            f"{name} takes {size} bytes of JSON; the limit is {MAX_PARAMS_BYTES}",
            **{name: preview(params)},
        )
    return dict(params)


def check_document_text(text: object) -> str:
    """The text of a class or pipeline document: a string of at most `MAX_DOCUMENT` characters."""
    if not isinstance(text, str):
        raise InvalidDocument("", f"a document is YAML or JSON text, not {preview(text)}")
    if len(text) > MAX_DOCUMENT:
        raise InvalidDocument(
            "", f"the document is {len(text)} characters long; the limit is {MAX_DOCUMENT}"
        )
    return text


def storable(text: str) -> bool:
    """Whether a database text column can hold `text`: no NUL, valid UTF-8 (no surrogates)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_problem(document: object) -> str | None:
    """What keeps `document` from being JSON a database stores as it was given, if anything."""
    stack: list[tuple[object, int]] = [(document, 0)]
    budget = MAX_PARAMS_BYTES  # every node costs a byte or more of JSON; this also stops cycles
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            return f"more than {MAX_PARAMS_BYTES} values"
        if depth > 100:
            return "nested more than 100 levels deep"
        if node is None or isinstance(node, bool):
            continue
        if isinstance(node, str):
            if not storable(node):
                return f"the string {preview(node)} holds a NUL character or a lone surrogate"
        elif isinstance(node, int):
            if node.bit_length() > 1000:
                return "an integer of more than 1000 bits"
        elif isinstance(node, float):
            if not math.isfinite(node):
                return f"{preview(node)} is not a JSON number"
        elif isinstance(node, list | tuple):
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, Mapping):
            for key, child in node.items():
                if not isinstance(key, str) or not storable(key):
                    return f"the key {preview(key)} is not a storable string"
                stack.append((child, depth + 1))
        else:
            return f"{type(node).__name__} {preview(node)} is not a JSON value"
    return None


__all__ = [
    "MAX_ACTION_CODE",
    "MAX_CODE",
    "MAX_DOCUMENT",
    "MAX_ID",
    "MAX_INT",
    "MAX_NAME",
    "MAX_OBJECT_TYPE",
    "MAX_PARAMS_BYTES",
    "MAX_POSITION",
    "MAX_STATE_CODE",
    "MAX_TEXT",
    "MIN_ID",
    "MIN_INT",
    "check_bool",
    "check_code",
    "check_document_text",
    "check_id",
    "check_int",
    "check_item_id",
    "check_key",
    "check_object",
    "check_optional_id",
    "check_optional_int",
    "check_optional_text",
    "check_params",
    "check_text",
    "storable",
]
