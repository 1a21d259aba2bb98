"""Opening the database a command works on: its URL, an engine on it, a `Flowkernel`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from flowkernel.cli.refusals import UsageError
from flowkernel.errors import DatabaseNotMigrated, DatabaseUnreachable, InvalidArgument
from flowkernel.settings import PLUGINS_VAR

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from flowkernel.kernel import Flowkernel

# The database, the engine and the plugins load when a command opens them, not before: the
# parser, `--help` and `--version` need none of them.


def database_url(args: argparse.Namespace) -> str:
    """The URL of `--database-url`, else of the environment, else the default file."""
    from flowkernel.store import database

    try:
        return database.resolve_url(args.database_url)
    except InvalidArgument as exc:
        raise UsageError(f"{exc.message}; see `flowkernel --help`") from exc


def missing_sqlite_file(url: str) -> bool:
    """Whether `url` names a SQLite file that does not exist."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return False
    return not name.startswith("file:") and not Path(name).exists()


def connect(args: argparse.Namespace, *, migrated: bool = True, create: bool = False) -> Engine:
    """An engine on the chosen database, refused when unreachable or (`migrated`) not at head.

    A missing SQLite file is created only when `create` is set, so a mistyped URL does not
    leave empty database files behind.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from flowkernel.store import database

    url = database_url(args)
    shown = make_url(url).render_as_string(hide_password=True)
    if not create and missing_sqlite_file(url):
        raise DatabaseNotMigrated(shown, None, database.head_revision())
    try:
        engine = database.open_engine(url)
    except ArgumentError as exc:  # an unknown dialect or driver
        raise UsageError(f"cannot open {shown}: {exc}") from exc
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:  # untyped by `database`: a non-SQLite file, a bad URL option
        engine.dispose()
        raise DatabaseUnreachable(shown, database.first_line(exc)) from exc
    if migrated:
        current = database.current_revision(engine)
        head = database.head_revision()
        if current != head:
            engine.dispose()
            raise DatabaseNotMigrated(shown, current, head)
    return engine


def plugins(args: argparse.Namespace) -> list[str]:
    """The plugins to register: those of the environment, then every `--plugin`."""
    from flowkernel.plugin_manager import load_plugin

    named = [p.strip() for p in os.environ.get(PLUGINS_VAR, "").split(",") if p.strip()]
    specs = list(dict.fromkeys([*named, *getattr(args, "plugin", ())]))
    for spec in specs:
        try:
            load_plugin(spec)
        except InvalidArgument as exc:
            raise UsageError(exc.message) from exc
    return specs


@contextmanager
def kernel(args: argparse.Namespace, *, deliver_events: bool = True) -> Iterator[Flowkernel]:
    """A `Flowkernel` on the chosen, migrated database, closed after the block."""
    from flowkernel.kernel import Flowkernel

    named = plugins(args)  # refused before a connection is opened
    fk = Flowkernel(engine=connect(args), deliver_events=deliver_events, plugins=named)
    try:
        yield fk
    finally:
        fk.close()
