"""Previews of values for messages: a caller's value shown in an error, whatever it is."""

from __future__ import annotations

from typing import Final

MAX_PREVIEW: Final = 200
"""The longest preview shown whole; a longer one is cut to its start and its length."""


def preview(value: object) -> str:
    """`repr(value)`, cut short when long; a value whose repr fails (nested too deep, or a
    caller's object that raises) is shown by its type."""
    try:
        text = repr(value)
    except Exception:  # RecursionError for deep nesting included
        return f"<{type(value).__name__}>"
    return text if len(text) <= MAX_PREVIEW else f"{text[:80]}... ({len(text)} characters)"
