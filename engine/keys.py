"""The host's own key of an object: a 64-bit integer (the seed's `object_id BIGINT`), a UUID or
a short text key.

An integer key is `flow_items.object_id` itself, so the seed's SQL reads it unchanged. A UUID
(kept in its canonical lowercase form) or a text key is `flow_items.object_key`, and
`object_id` then holds a negative 62-bit digest of it, which keeps the unique constraint on
(pipeline, object type, object id) and the object index serving every key.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Final, TypeAlias

from flowkernel.errors import InvalidArgument
from flowkernel.previews import preview

HostKey: TypeAlias = "int | str | uuid.UUID"
"""What a host may key an object by."""

MIN_ID: Final = -(2**63)
MAX_ID: Final = 2**63 - 1
MAX_KEY: Final = 128
"""The longest text key."""
_INTEGER = re.compile(r"-?[0-9]{1,19}")


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """A host key as stored: the object id, and the UUID or text key (None for an integer)."""

    object_id: int
    text: str | None

    @property
    def value(self) -> int | str:
        """The key as the host gave it: the integer, or the UUID or text."""
        return self.object_id if self.text is None else self.text


def object_key(value: object, name: str = "object_id") -> ObjectKey:
    """The stored form of a host key; `InvalidArgument` for anything else. Decimal text is the
    integer it spells, so `"42"` and `42` name one object."""
    if isinstance(value, bool):
        raise _bad(name, value)
    if isinstance(value, int):
        if MIN_ID <= value <= MAX_ID:
            return ObjectKey(int(value), None)
        raise _bad(name, value)
    if isinstance(value, uuid.UUID):
        return _text(str(value))
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY:
        raise _bad(name, value)
    if value != value.strip() or not value.isprintable():
        raise _bad(name, value)
    if _INTEGER.fullmatch(value) and MIN_ID <= int(value) <= MAX_ID:
        return ObjectKey(int(value), None)
    try:
        return _text(str(uuid.UUID(value)))
    except ValueError:
        return _text(value)


def _text(text: str) -> ObjectKey:
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 2
    return ObjectKey(-1 - digest, text)


def _bad(name: str, value: object) -> InvalidArgument:
    return InvalidArgument(
        f"{name} must be a 64-bit integer, a UUID or a text key of 1-{MAX_KEY} printable "
        f"characters without spaces at its ends, not {preview(value)}",
        **{name: value},
    )
