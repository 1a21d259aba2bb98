"""`flowkernel demo`: run the shipped examples against one database and print what happened."""

from __future__ import annotations

import importlib
from typing import Final

from flowkernel.database import resolve_url

EXAMPLES: Final = ("charging_station", "sales_pipeline", "support_ticket")


def run(database_url: str | None = None) -> None:
    """Run every example on `database_url` (default: the embedded SQLite file)."""
    url = resolve_url(database_url)
    for name in EXAMPLES:
        module = importlib.import_module(f"flowkernel.examples.{name}")
        print(f"\n=== {name.replace('_', ' ')} ===")
        module.main(url)
