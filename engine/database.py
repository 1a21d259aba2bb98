"""Opening a database: URL resolution, SQLite pragmas, migrations."""

from __future__ import annotations

import importlib.util
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

ENV_VAR: Final = "FLOWKERNEL_DATABASE_URL"
DEFAULT_URL: Final = "sqlite:///flowkernel.db"


def _migrations_dir() -> Path:
    """The Alembic scripts: `engine/migrations` when installed, `migrations/` in a checkout."""
    spec = importlib.util.find_spec("engine.migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "migrations"


MIGRATIONS: Final = _migrations_dir()


def resolve_url(url: str | None = None) -> str:
    """The database URL: the argument, else `FLOWKERNEL_DATABASE_URL`, else `flowkernel.db`."""
    chosen = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    parsed = make_url(chosen)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Take the write lock at BEGIN so two writers queue instead of failing at upgrade time.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for `url`; SQLite files open in WAL mode with foreign keys on."""
    resolved = resolve_url(url)
    if make_url(resolved).get_backend_name() == "sqlite":
        engine = create_engine(resolved, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(resolved, pool_pre_ping=True, **kwargs)


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


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this version of Flowkernel."""
    return ScriptDirectory.from_config(
        _alembic_config(create_engine("sqlite://"))
    ).get_current_head()
