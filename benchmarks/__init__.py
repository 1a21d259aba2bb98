"""`flowkernel bench`: Flowkernel measured against raw driver SQL and a hand-rolled ORM.

Every scenario runs the engine and its baselines side by side, in the same process and on the
same database, in a scratch area that is removed afterwards (a schema on PostgreSQL, a file
next to the database on SQLite), so the figures are ratios first and absolute numbers second.
"""

from .runner import main, run

__all__ = ["main", "run"]
