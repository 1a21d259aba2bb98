"""The scratch database a benchmark runs in, and loading many items into it quickly.

On PostgreSQL the benchmark creates a schema of its own in the given database and reaches it
through `search_path`; on SQLite it uses a file of its own next to the given one (so on the
same disk). Both are removed when the benchmark ends, whatever happened.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, insert, text
from sqlalchemy.engine import make_url

from flowkernel.store import database
from flowkernel.store.tables import items


@dataclass(frozen=True)
class Scratch:
    """A migrated scratch database: its SQLAlchemy URL and how to open a bare driver connection."""

    url: str
    kind: str  # "sqlite" or "postgresql"
    path: str | None = None  # the SQLite file
    schema: str | None = None  # the PostgreSQL schema

    def driver(self) -> Any:
        """A new connection of the bare driver (sqlite3 or psycopg), set up as the engine's."""
        if self.kind == "sqlite":
            assert self.path is not None
            conn = sqlite3.connect(self.path)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.create_function("now", 0, _utc_now)
            return conn
        import psycopg

        parsed = make_url(self.url)
        args = {
            key: value
            for key, value in parsed.translate_connect_args(
                username="user", database="dbname"
            ).items()
            if value is not None
        }
        return psycopg.connect(options=f"-c search_path={self.schema}", **args)


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@contextmanager
def scratch(url: str | None) -> Iterator[Scratch]:
    """A migrated scratch database beside the one `url` names; removed afterwards."""
    resolved = make_url(database.resolve_url(url))
    if resolved.get_backend_name() == "sqlite":
        name = resolved.database
        folder = (
            Path(name).resolve().parent
            if name and name != ":memory:" and not name.startswith("file:")
            else Path(tempfile.gettempdir())
        )
        path = folder / f"flowkernel-bench-{uuid.uuid4().hex[:8]}.db"
        found = Scratch(f"sqlite:///{path}", "sqlite", path=str(path))
        try:
            _migrate(found.url)
            yield found
        finally:
            for suffix in ("", "-wal", "-shm"):
                with suppress(FileNotFoundError):
                    os.remove(f"{path}{suffix}")
        return
    if resolved.get_backend_name() != "postgresql":
        raise ValueError(f"benchmarks run on SQLite or PostgreSQL, not {resolved.drivername}")
    schema = f"flowkernel_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(resolved, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        scoped = resolved.update_query_dict({"options": f"-c search_path={schema}"})
        found = Scratch(scoped.render_as_string(hide_password=False), "postgresql", schema=schema)
        try:
            _migrate(found.url)
            yield found
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


@contextmanager
def bare(place: Scratch, label: str) -> Iterator[Scratch]:
    """An empty space beside the scratch database, for baselines with tables of their own: a
    file in the same folder on SQLite, a schema in the same database on PostgreSQL; removed
    afterwards."""
    tag = f"flowkernel_{label}_{uuid.uuid4().hex[:8]}"
    if place.kind == "sqlite":
        assert place.path is not None
        path = Path(place.path).parent / f"{tag}.db"
        try:
            yield Scratch(f"sqlite:///{path}", "sqlite", path=str(path))
        finally:
            for suffix in ("", "-wal", "-shm"):
                with suppress(FileNotFoundError):
                    os.remove(f"{path}{suffix}")
        return
    base = make_url(place.url)
    query = {k: v for k, v in base.query.items() if k != "options"}
    admin = create_engine(base.set(query=query), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{tag}"'))
        scoped = base.update_query_dict({"options": f"-c search_path={tag}"})
        try:
            yield Scratch(scoped.render_as_string(hide_password=False), "postgresql", schema=tag)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE'))
    finally:
        admin.dispose()


def _migrate(url: str) -> None:
    engine = database.open_engine(url)
    try:
        database.upgrade(engine)
    finally:
        engine.dispose()


def place_rows(
    conn: Connection,
    pipeline_id: int,
    stage_ids: Sequence[int],
    object_type: str,
    object_ids: Sequence[int],
    *,
    account_id: int | None,
) -> list[int]:
    """Insert items straight into stages (round robin), as the seed's SQL does; their ids."""
    now = datetime.now(UTC)
    rows = [
        {
            "flow_pipeline_id": pipeline_id,
            "flow_stage_id": stage_ids[index % len(stage_ids)],
            "object_type": object_type,
            "object_id": object_id,
            "iam_account_id": account_id,
            "position": index,
            "last_stage_changed_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for index, object_id in enumerate(object_ids)
    ]
    stmt = insert(items).returning(items.c.id, sort_by_parameter_order=True)
    return list(conn.execute(stmt, rows).scalars())


def load_million(
    conn: Connection,
    pipeline_id: int,
    stage_ids: Sequence[int],
    count: int,
    *,
    account_id: int,
    breached_every: int,
    fresh: datetime,
    stale: datetime,
) -> None:
    """Insert `count` items set-based, spread over `stage_ids`; every `breached_every`-th one
    entered its stage at `stale`, the others at `fresh`."""
    params: dict[str, Any] = {
        "p": pipeline_id,
        "n": count,
        "a": account_id,
        "k": breached_every,
        "stages": len(stage_ids),
        **{f"s{i}": sid for i, sid in enumerate(stage_ids)},
    }
    stage = (
        "CASE "
        + " ".join(f"WHEN g % :stages = {i} THEN :s{i}" for i in range(len(stage_ids)))
        + " END"
    )
    if conn.dialect.name == "postgresql":
        params.update(fresh=fresh, stale=stale)
        conn.execute(
            text(
                "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, object_id,"
                " iam_account_id, position, last_stage_changed_at, created_at, updated_at) "
                f"SELECT :p, {stage}, 'deal', g, :a, g, "
                "CASE WHEN g % :k = 0 THEN CAST(:stale AS timestamptz) "
                "ELSE CAST(:fresh AS timestamptz) END, now(), now() "
                "FROM generate_series(1, :n) AS g"
            ),
            params,
        )
        conn.execute(text("ANALYZE flow_items"))
        conn.execute(text("ANALYZE flow_sla_due"))
        return
    params.update(fresh=_sqlite_time(fresh), stale=_sqlite_time(stale))
    conn.execute(
        text(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
            "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, object_id,"
            " iam_account_id, position, last_stage_changed_at, created_at, updated_at) "
            f"SELECT :p, {stage}, 'deal', g, :a, g, "
            "CASE WHEN g % :k = 0 THEN :stale ELSE :fresh END, :fresh, :fresh FROM s"
        ),
        params,
    )
    conn.execute(text("ANALYZE"))


def _sqlite_time(moment: datetime) -> str:
    """A timestamp as the engine stores it on SQLite (naive UTC text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
