"""The `db` commands: migrate the database schema up and down, print its revision."""

from __future__ import annotations

import argparse

from flowkernel.cli.arguments import Commands
from flowkernel.cli.connection import connect, database_url, missing_sqlite_file
from flowkernel.cli.refusals import EPILOG, EXIT_OK, UsageError
from flowkernel.previews import preview


def add_commands(commands: Commands) -> None:
    """Add `db upgrade`, `db downgrade` and `db current`."""
    db = commands.add_parser("db", help="migrate the database schema", epilog=EPILOG)
    db_commands = db.add_subparsers(title="db commands", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser("upgrade", help="migrate up to REV (default: head)")
    upgrade.add_argument("revision", nargs="?", default="head", metavar="REV")
    upgrade.set_defaults(command=_db_upgrade)
    downgrade = db_commands.add_parser("downgrade", help="migrate down to REV (base: empty)")
    downgrade.add_argument("revision", metavar="REV")
    downgrade.set_defaults(command=_db_downgrade)
    current = db_commands.add_parser("current", help="print the revision of the database")
    current.set_defaults(command=_db_current)


def _db_upgrade(args: argparse.Namespace) -> int:
    return _migrate(args, up=True)


def _db_downgrade(args: argparse.Namespace) -> int:
    return _migrate(args, up=False)


def _migrate(args: argparse.Namespace, *, up: bool) -> int:
    """Migrate up (creating a missing SQLite file) or down to `args.revision`; print where."""
    from flowkernel.store import database

    _check_revision(args.revision)
    engine = connect(args, migrated=False, create=up)
    try:
        _refuse_wrong_way(args.revision, database.current_revision(engine), up=up)
        (database.upgrade if up else database.downgrade)(engine, args.revision)
        revision = database.current_revision(engine)
        print(f"{database.shown_url(engine)}: at revision {_describe(revision)}")
    finally:
        engine.dispose()
    return EXIT_OK


def _db_current(args: argparse.Namespace) -> int:
    from flowkernel.store import database

    url = database_url(args)
    if missing_sqlite_file(url):
        print(_describe(None))
        return EXIT_OK
    engine = connect(args, migrated=False)
    try:
        print(_describe(database.current_revision(engine)))
    finally:
        engine.dispose()
    return EXIT_OK


def _describe(revision: str | None) -> str:
    from flowkernel.store import database

    head = database.head_revision()
    if revision is None:
        return f"none (not migrated; head is {head})"
    return f"{revision} (head)" if revision == head else f"{revision} (head is {head})"


def _positions() -> dict[str, int]:
    """Where each revision name this version knows stands, `base` (-1) and `head` included."""
    from flowkernel.store import database

    known = database.revisions()
    return {"base": -1, **{rev: n for n, rev in enumerate(known)}, "head": len(known) - 1}


def _check_revision(revision: str) -> None:
    """Refuse a revision this version does not ship."""
    from flowkernel.store import database

    if revision not in _positions():
        known = ", ".join(database.revisions())
        raise UsageError(
            f"unknown revision {preview(revision)}; this version knows {known} (and head, base)"
        )


def _refuse_wrong_way(target: str, current: str | None, *, up: bool) -> None:
    """Refuse an upgrade to a revision older than the database's, and the reverse."""
    positions = _positions()
    at = positions.get(current or "base")
    if at is None:  # a revision this version does not ship: Alembic says what it can
        return
    goal = positions[target]
    if up and goal < at:
        raise UsageError(
            f"the database is at revision {current}, past {target}; "
            f"`flowkernel db downgrade {target}` goes back"
        )
    if not up and goal > at:
        raise UsageError(
            f"the database is at revision {current or 'none'}, before {target}; "
            f"`flowkernel db upgrade {target}` goes forward"
        )
