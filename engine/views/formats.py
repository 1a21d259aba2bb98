"""The formats a class's state diagram is drawn in."""

from __future__ import annotations

from typing import Final

DIAGRAM_FORMATS: Final = ("mermaid", "dot", "svg")
