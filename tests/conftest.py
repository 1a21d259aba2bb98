"""Test databases: every `fk` test runs on SQLite and on PostgreSQL.

PostgreSQL comes from `FLOWKERNEL_TEST_POSTGRESQL_URL` (default: the local server, database
`test`). Each test run migrates one fresh database per backend once, and every test starts
from an empty copy. Without a reachable PostgreSQL its tests are skipped, except under
`CI=true`, where that is a failure. `--databases sqlite` (or `postgresql`) narrows the run.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from flowkernel import Flowkernel
from flowkernel.store.database import open_engine, upgrade

PG_URL = os.environ.get(
    "FLOWKERNEL_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")
KEEP = ("fk_state_types", "alembic_version")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--databases",
        default=os.environ.get("FLOWKERNEL_TEST_DATABASES", "sqlite,postgresql"),
        help="comma-separated backends to test: sqlite, postgresql",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        chosen = [b.strip() for b in metafunc.config.getoption("--databases").split(",")]
        params = [b for b in BACKENDS if b in chosen]
        marks = {"postgresql": [pytest.mark.postgresql]}
        metafunc.parametrize(
            "backend", [pytest.param(b, marks=marks.get(b, [])) for b in params], scope="session"
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgresql: runs against PostgreSQL")


def _pg_admin_url() -> str:
    return make_url(PG_URL).set(drivername="postgresql+psycopg").render_as_string(False)


def _pg_available() -> str | None:
    try:
        engine = create_engine(_pg_admin_url())
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # the reason is shown in the skip or failure message
        return repr(exc)
    return None


@pytest.fixture(scope="session")
def database_template(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to head, once per run and backend; yields its URL."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "template.db"
        engine = open_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()  # the last connection to close folds the WAL into the file
        yield f"sqlite:///{path}"
        return
    problem = _pg_available()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable under CI=true: {problem}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {problem}")
    name = f"fk_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(_pg_admin_url()).set(database=name).render_as_string(False)
    engine = open_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _reset_postgresql(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            if r[0] not in KEEP and r[0] != "fk_actions"
        ]
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        conn.execute(
            text(
                "DELETE FROM fk_actions WHERE NOT is_standard AND created_at > "
                "(SELECT min(created_at) FROM fk_actions)"
            )
        )
    engine.dispose()


@pytest.fixture
def database_url(database_template: str, backend: str, tmp_path: Path) -> str:
    """A URL of an empty, migrated database of the test's backend."""
    if backend == "sqlite":
        source = Path(make_url(database_template).database or "")
        target = tmp_path / "flowkernel.db"
        shutil.copyfile(source, target)
        return f"sqlite:///{target}"
    _reset_postgresql(database_template)
    return database_template


@pytest.fixture
def fk(database_url: str) -> Iterator[Flowkernel]:
    """A Flowkernel on an empty, migrated database."""
    kernel = Flowkernel(database_url)
    try:
        yield kernel
    finally:
        kernel.close()
