"""What Flowkernel reads from its environment, and the defaults it takes without it."""

from __future__ import annotations

from typing import Final

DATABASE_URL_VAR: Final = "FLOWKERNEL_DATABASE_URL"
"""The database to use when none is given."""
DEFAULT_DATABASE_URL: Final = "sqlite:///flowkernel.db"
"""The database without a URL or the variable: the SQLite file in the current folder."""
PLUGINS_VAR: Final = "FLOWKERNEL_PLUGINS"
"""Plugins the command registers, by module path, comma-separated (before any `--plugin`)."""
SLA_BATCH_SIZE: Final = 1000
"""Due items an SLA scan claims and fires per transaction."""
