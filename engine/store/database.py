"""Opening a database: URL resolution, SQLite pragmas, migrations."""

from __future__ import annotations

import functools
import importlib.util
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, Pool, QueuePool

from flowkernel.errors import (
    DatabaseBusy,
    DatabaseConnectionLost,
    DatabaseError,
    DatabaseFull,
    DatabaseNotMigrated,
    DatabasePoolExhausted,
    DatabaseTimeout,
    DatabaseUnreachable,
    InvalidArgument,
)
from flowkernel.previews import preview
from flowkernel.settings import DATABASE_URL_VAR, DEFAULT_DATABASE_URL
from flowkernel.store.prepared import run_sql

ENV_VAR: Final = DATABASE_URL_VAR
DEFAULT_URL: Final = DEFAULT_DATABASE_URL
SUPPORTED_DRIVERS: Final = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")


def _migrations_dir() -> Path:
    """The Alembic scripts: the `flowkernel.migrations` package (`migrations/` in a checkout)."""
    spec = importlib.util.find_spec("flowkernel.migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "migrations"


MIGRATIONS: Final = _migrations_dir()


def resolve_url(url: str | None = None) -> str:
    """The database URL: the argument, else `FLOWKERNEL_DATABASE_URL`, else `flowkernel.db`."""
    chosen = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    try:
        parsed = make_url(chosen)
    except ArgumentError as exc:
        raise InvalidArgument(
            f"invalid database URL {preview(chosen)}: {exc}", url=chosen
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in SUPPORTED_DRIVERS:
        shown = parsed.render_as_string(hide_password=True)
        raise InvalidArgument(
            f"cannot open {shown}: driver {preview(parsed.drivername)} is not supported; use "
            "sqlite:///FILE or postgresql://USER@HOST/DB",
            url=shown,
        )
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # A checkpoint every 10,000 WAL pages (about 40 MB) instead of every 1,000: a page many
    # commits rewrite (the end of the history, a stage's total, the end of a stage in the
    # board's index) is copied into the database once per checkpoint, and the checkpoint's
    # fsyncs come a tenth as often. The WAL file is cut back to 64 MB after a checkpoint.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.execute("PRAGMA journal_size_limit=67108864")
    cursor.close()


READ_ONLY: Final = "flowkernel_read_only"
"""The execution option of a connection whose transaction only reads (see `reading`)."""


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock at BEGIN so two writers queue instead of failing at
    # upgrade time; a reader begins deferred and reads WAL's last commit without waiting.
    # Straight on the driver: SQLAlchemy's statement execution costs more than the BEGIN.
    reads = conn.get_execution_options().get(READ_ONLY, False)
    try:
        run_sql(conn, "BEGIN" if reads else "BEGIN IMMEDIATE", ())
    except DBAPIError as exc:  # raised in an event, where `handle_error` does not see it
        typed = database_error(exc, conn.engine)
        if typed is None:
            raise
        raise typed from exc


def reader(engine: Engine) -> Engine:
    """`engine` for transactions that only read: on SQLite they take no write lock (see
    `reading`). It shares the engine's pool."""
    return engine.execution_options(**{READ_ONLY: True})


@contextmanager
def reading(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction only reads: on SQLite it takes no write lock, so it reads
    the last committed state while a writer works, instead of queueing behind it."""
    with sessions.begin() as session:
        session.connection(execution_options={READ_ONLY: True})
        yield session


def open_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for `url`; SQLite files open in WAL mode with foreign keys on."""
    resolved = resolve_url(url)
    engine = create_engine(resolved, **kwargs)
    if type(engine.pool) is QueuePool and "poolclass" not in kwargs:  # typed when exhausted
        engine.dispose()
        engine = create_engine(resolved, poolclass=TypedQueuePool, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        _typed_connection_errors(engine)
        return engine
    _ping_when_idle(engine)
    _typed_connection_errors(engine)
    return engine


def _typed_connection_errors(engine: Engine) -> None:
    """Raise `database_error`'s typed error wherever SQLAlchemy meets a failed connection.

    This covers every session and connection of the engine; the hot path, which talks to
    the driver directly, converts its own errors in `Runtime.transact`.
    """

    def handle(context: ExceptionContext) -> None:
        if context.is_pre_ping:  # the pool reconnects on its own
            return
        error = context.sqlalchemy_exception or context.original_exception
        typed = database_error(error, engine)
        if typed is not None:
            raise typed from context.original_exception

    event.listen(engine, "handle_error", handle)


PING_AFTER: Final = 1.0
"""Seconds a pooled connection may sit idle before it is pinged at checkout."""


def _ping_when_idle(engine: Engine) -> None:
    """Ping a connection at checkout only when it has been idle for `PING_AFTER` seconds.

    SQLAlchemy's `pool_pre_ping` pings at every checkout: a round trip per transaction, about
    a tenth of a move on PostgreSQL. A connection in use a moment ago is alive; one that
    died meanwhile fails its statement and is invalidated, like any lost connection.
    """

    def stamp(_dbapi_conn: Any, record: Any, *_: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_AFTER:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool then connects anew
            raise DisconnectionError(f"connection lost while idle: {exc}") from exc

    event.listen(engine, "connect", stamp)
    event.listen(engine, "checkin", stamp)
    event.listen(engine, "checkout", checkout)


def database_error(exc: BaseException, engine: Engine) -> DatabaseError | None:
    """The typed error for a database that failed an operation, else None.

    A connection that broke in use (the pool invalidated it and opens new ones) gives
    `DatabaseConnectionLost`; a lock not granted in time, a deadlock or SQLite's busy timeout,
    `DatabaseBusy`; a statement timeout, `DatabaseTimeout`; a full disk, `DatabaseFull`; no
    free connection in the pool, `DatabasePoolExhausted`; a connection that could not be
    opened, `DatabaseUnreachable`. Other errors (a constraint, a statement the database
    refused) give None.
    """
    if isinstance(exc, PoolTimeout):
        return pool_exhausted(engine.pool)
    driver_error = exc.orig if isinstance(exc, DBAPIError) else exc
    if not isinstance(exc, DBAPIError | engine.dialect.loaded_dbapi.Error):
        return None
    url, cause = shown_url(engine), first_line(exc)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return DatabaseConnectionLost(url, cause)
    refusal = _refusal(driver_error)
    if refusal == "busy":
        return DatabaseBusy(url, cause, sqlite=engine.dialect.name == "sqlite")
    if refusal == "timeout":
        return DatabaseTimeout(url, cause)
    if refusal == "full":
        return DatabaseFull(url, cause)
    if not isinstance(exc, DBAPIError):  # raised by the pool at checkout
        return DatabaseUnreachable(url, cause)
    if isinstance(exc, OperationalError | InterfaceError) and exc.statement is None:
        return DatabaseUnreachable(url, cause)  # wrapped by `Engine.connect`
    return None


_SQLSTATES: Final = {
    "55P03": "busy",  # lock_not_available: lock_timeout, NOWAIT
    "40P01": "busy",  # deadlock_detected
    "40001": "busy",  # serialization_failure
    "57014": "timeout",  # query_canceled: statement_timeout, pg_cancel_backend
    "53100": "full",  # disk_full
}
_SQLITE_CODES: Final = {5: "busy", 6: "busy", 13: "full"}  # SQLITE_BUSY, _LOCKED, _FULL


def _refusal(driver_error: BaseException | None) -> str | None:
    """ "busy", "timeout" or "full" for a driver's error of that kind, else None."""
    sqlstate = getattr(driver_error, "sqlstate", None)
    if isinstance(sqlstate, str):
        return _SQLSTATES.get(sqlstate)
    code = getattr(driver_error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE_CODES.get(code & 0xFF)  # the primary code of an extended one
    return None


def pool_exhausted(pool: Pool) -> DatabasePoolExhausted:
    """The typed error for `pool` having no connection free within its timeout."""
    if isinstance(pool, QueuePool):
        return DatabasePoolExhausted(pool.size(), pool._max_overflow, pool.timeout())
    return DatabasePoolExhausted(0, 0, 0.0)


class TypedQueuePool(QueuePool):
    """A `QueuePool` whose exhaustion raises `DatabasePoolExhausted`, on every path."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except PoolTimeout as exc:
            raise pool_exhausted(self) from exc


def shown_url(engine: Engine) -> str:
    """The engine's URL as shown to users: the password, if any, as `***`."""
    return engine.url.render_as_string(hide_password=True)


def first_line(exc: BaseException) -> str:
    """The first line of the error's message, or its type's name when the message is empty.

    For a SQLAlchemy `DBAPIError`, the message of the driver's error it wraps.
    """
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_connect(dbapi_conn: Any, record: Any) -> None:
    # Let SQLAlchemy, not the driver, issue BEGIN (see the SQLAlchemy pysqlite notes).
    dbapi_conn.isolation_level = None
    _sqlite_pragmas(dbapi_conn, record)
    # NOW() as in PostgreSQL, so SQL written for the seed's tables runs here too.
    dbapi_conn.create_function("now", 0, _utc_now)


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to `revision`."""
    command.upgrade(_alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to `revision` (`base` empties it)."""
    command.downgrade(_alembic_config(engine), revision)


class SchemaGuard:
    """Refuses the engine's connections while its database is not at this version's head.

    Until a connection has found the head revision, each checkout reads `alembic_version`
    and raises `DatabaseNotMigrated` when it differs; once found, checkouts cost nothing
    more. Migrating through `migrating()` lifts the guard for its duration.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.head = head_revision()
        self.ok = False
        self.lifted = False
        event.listen(engine, "checkout", self._check)

    def _check(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if self.ok or self.lifted:
            return
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("SELECT version_num FROM alembic_version")
            row = cursor.fetchone()
        except self.engine.dialect.loaded_dbapi.Error:  # no version table: never migrated
            row = None
        finally:
            cursor.close()
            dbapi_conn.rollback()  # the connection goes out as it came: outside a transaction
        current = None if row is None else str(row[0])
        if current != self.head:
            raise DatabaseNotMigrated(shown_url(self.engine), current, self.head)
        self.ok = True

    @contextmanager
    def migrating(self) -> Iterator[None]:
        """Let connections through while the schema is migrated; checked again afterwards."""
        self.lifted, self.ok = True, False
        try:
            yield
        finally:
            self.lifted = False


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def revisions() -> list[str]:
    """The revisions shipped with this version of Flowkernel, oldest first."""
    return list(_shipped())


def head_revision() -> str | None:
    """The newest revision shipped with this version of Flowkernel."""
    shipped = _shipped()
    return shipped[-1] if shipped else None


@functools.cache
def _shipped() -> tuple[str, ...]:
    """The shipped revisions, read once per process: the scripts do not change under it, and
    reading them costs more than opening a `Flowkernel` otherwise does."""
    script = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://")))
    return tuple(r.revision for r in reversed(list(script.walk_revisions())))
