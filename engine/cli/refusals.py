"""Exit statuses of the `flowkernel` command, and the user errors each one stands for."""

from __future__ import annotations

from typing import Final

from flowkernel.errors import (
    DatabaseError,
    DefinitionError,
    ExecutionError,
    FlowkernelError,
    InvalidDocument,
    ItemNotFound,
    MethodNotAvailable,
    StageNotEmpty,
    UnknownDefinition,
    UnknownHandler,
)
from flowkernel.previews import preview
from flowkernel.settings import DATABASE_URL_VAR, PLUGINS_VAR

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_DEFINITION: Final = 3
EXIT_EXECUTION: Final = 4
EXIT_DATABASE: Final = 5
EXIT_INTERRUPTED: Final = 130

EPILOG: Final = f"""\
database:
  --database-url, else ${DATABASE_URL_VAR}, else the SQLite file flowkernel.db in the
  current folder. PostgreSQL: postgresql://user@host:5432/name (driver psycopg).

exit status:
  {EXIT_OK}  success
  {EXIT_ERROR}  another Flowkernel error
  {EXIT_USAGE}  usage error: bad arguments, unreadable file, invalid database URL
  {EXIT_DEFINITION}  definition error: invalid class document, unknown class, state or method
  {EXIT_EXECUTION}  execution error: an operation on items was refused
  {EXIT_DATABASE}  database unreachable, or not migrated (run `flowkernel db upgrade`)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""
"""The closing text of `flowkernel --help` and of each command family's help."""


class UsageError(Exception):
    """A mistake on the command line; the command exits with status 2."""


def refusal_of(
    exc: BaseException, item: int | None = None, acting: str = ""
) -> tuple[str, str, int] | None:
    """A user error as (kind, message naming the next step, exit status); None for a bug.

    `item` is the item the command was about and `acting` its actor options (`--account 1
    --as 7`), both repeated in hints.
    """
    if isinstance(exc, UsageError):
        return "usage error", str(exc), EXIT_USAGE
    if isinstance(exc, UnknownDefinition):
        listing = {"class": "class", "pipeline": "pipeline"}.get(exc.kind)
        hint = ""
        if listing:
            shown = " ".join(("flowkernel", listing, "list", acting)).strip()
            hint = f"; `{shown}` shows them"
            if "--account" not in acting:
                hint += " (an account's own need --account ID)"
        return "definition error", exc.message + hint, EXIT_DEFINITION
    if isinstance(exc, StageNotEmpty):
        message = (
            f"stage {preview(exc.stage)} holds {exc.count} item(s); --target STAGE moves them "
            f"there "
            "while removing it (--dry-run lists them)"
        )
        return "definition error", message, EXIT_DEFINITION
    if isinstance(exc, DefinitionError):
        return "definition error", exc.message + _plugin_hint(exc), EXIT_DEFINITION
    if isinstance(exc, MethodNotAvailable):
        command = " ".join(("flowkernel item explain", str(item or "ITEM"), exc.method, acting))
        hint = f"; `{command.strip()}` tells why"
        return "execution error", exc.message + hint, EXIT_EXECUTION
    if isinstance(exc, ItemNotFound):
        return "execution error", exc.message + " (`--account ID` sets it)", EXIT_EXECUTION
    if isinstance(exc, ExecutionError):
        return "execution error", exc.message, EXIT_EXECUTION
    if isinstance(exc, DatabaseError):
        return "database error", exc.message, EXIT_DATABASE
    if isinstance(exc, FlowkernelError):
        return "error", exc.message, EXIT_ERROR
    from sqlalchemy.exc import OperationalError  # loaded once something went wrong

    if isinstance(exc, OperationalError):  # a statement failed: database locked, read-only
        from flowkernel.store.database import first_line

        cause = first_line(exc)
        return "database error", f"{cause}; {_next_step(cause)}", EXIT_DATABASE
    return None


def _plugin_hint(exc: DefinitionError) -> str:
    """How to register a plugin, when `exc` is about a handler no plugin provides."""
    unknown = isinstance(exc, UnknownHandler) or (
        isinstance(exc, InvalidDocument)
        and any(path.endswith(".handler") for path, _ in exc.problems)
    )
    if not unknown:
        return ""
    return f"; register the plugin that provides it: --plugin MODULE, or ${PLUGINS_VAR}"


def _next_step(cause: str) -> str:
    """What to do about a statement the database refused, from the driver's message."""
    if "locked" in cause or "lock timeout" in cause:
        return "another process holds a lock on it; retry when that process is done"
    if "readonly" in cause or "read-only" in cause:
        return "it (for SQLite, its file or folder) is read-only; check its permissions"
    return "check that the database is reachable and writable"
