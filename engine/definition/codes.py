"""Codes of definitions: the code a stage written without one answers to, and the codes a
method may not take."""

from __future__ import annotations

from typing import Final, Protocol


class _Stage(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def code(self) -> str | None: ...


def state_code(row: _Stage) -> str:
    """A stage's code; stages written without one (the seed's SQL) get `stage_<id>`."""
    return row.code or f"stage_{row.id}"


RESERVED_METHOD_CODES: Final = frozenset({"state", "guard", "trigger", "machine"})
"""Codes a method may not take: method codes are machine triggers fired on a small model
object whose attributes are these (`flowkernel.compile`)."""
