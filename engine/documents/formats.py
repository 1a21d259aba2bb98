"""The text formats documents are written in."""

from __future__ import annotations

from typing import Final

FORMATS: Final = ("yaml", "json")
