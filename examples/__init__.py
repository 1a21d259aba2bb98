"""Runnable examples, shipped as `flowkernel.examples`; `flowkernel demo` runs them all."""

from __future__ import annotations

import importlib
from typing import Final

EXAMPLES: Final = ("charging_station", "sales_pipeline", "support_ticket")


def run(database_url: str) -> None:
    """Run every example on `database_url`, printing what happened."""
    for name in EXAMPLES:
        module = importlib.import_module(f"flowkernel.examples.{name}")
        print(f"\n=== {name.replace('_', ' ')} ===")
        module.main(database_url)
