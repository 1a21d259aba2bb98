"""The Alembic migration on both backends: up, down, up again; models match; catalogue; triggers.

Each test that migrates gets its own empty database (a SQLite file, or a uniquely named
PostgreSQL database dropped afterwards). The last tests build a wheel and migrate a database
from the installed package, and check how the default SQLite database is opened.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from flowkernel import SYSTEM, DatabaseNotMigrated, Flowkernel
from flowkernel.http.tokens import ApiTokens
from flowkernel.store import schema
from flowkernel.store.database import (
    DEFAULT_URL,
    ENV_VAR,
    current_revision,
    downgrade,
    head_revision,
    open_engine,
    upgrade,
)

PG_URL = os.environ.get(
    "FLOWKERNEL_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REPOSITORY = Path(__file__).resolve().parents[1]

STATE_TYPES = [(1, "created"), (2, "enabled"), (3, "disabled"), (4, "deleted")]
STANDARD_ACTIONS = {
    "create",
    "open",
    "edit",
    "save",
    "update",
    "enable",
    "disable",
    "delete",
    "restore",
    "drop",
    "move",
}
COMMON_ACTIONS = {
    "heartbeat",
    "available",
    "unavailable",
    "faulted",
    "submit",
    "confirm",
    "reconfirm",
    "execute",
    "complete",
    "fail",
    "cancel",
    "abort",
}
DEFINITION_TABLES = [
    "flow_stages",
    "flow_columns",
    "flow_automations",
    "flow_stage_moves",
    "flow_stage_required_columns",
    "fk_methods",
    "fk_transitions",
    "fk_events",
    "fk_access_rules",
]
"""Tables whose rows are part of a class definition: changing one bumps the class version."""

pipelines = schema.PipelineRow.__table__
stages = schema.StageRow.__table__
items = schema.ItemRow.__table__
sla_due = schema.SlaDueRow.__table__
sla_breaches = schema.SlaBreachRow.__table__
history = schema.StageHistoryRow.__table__

# --- databases ----------------------------------------------------------------------------------


def _pg_admin() -> Engine:
    url = make_url(PG_URL).set(drivername="postgresql+psycopg")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable under CI=true: {exc!r}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {exc!r}")
    return admin


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty, never migrated database of the test's backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    admin = _pg_admin()
    name = f"fk_migrations_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(PG_URL)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def fresh(fresh_url: str) -> Iterator[Engine]:
    """An engine on an empty, never migrated database."""
    engine = open_engine(fresh_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def migrated(database_url: str) -> Iterator[Engine]:
    """An engine on an empty database migrated to head (from conftest's template)."""
    engine = open_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def database_objects(engine: Engine) -> dict[str, set[str]]:
    """Tables, indexes, triggers, functions and sequences the database holds, by kind."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(
                text("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
            )
            found: dict[str, set[str]] = {"table": set(), "index": set(), "trigger": set()}
            for kind, name in rows:
                found.setdefault(kind, set()).add(name)
            return found
        return {
            "table": set(
                conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                ).scalars()
            ),
            "index": set(
                conn.execute(
                    text("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
                ).scalars()
            ),
            "trigger": set(
                conn.execute(
                    text(
                        "SELECT t.tgname FROM pg_trigger t "
                        "JOIN pg_class c ON c.oid = t.tgrelid "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE NOT t.tgisinternal AND n.nspname = 'public'"
                    )
                ).scalars()
            ),
            "function": set(
                conn.execute(
                    text(
                        "SELECT p.proname FROM pg_proc p "
                        "JOIN pg_namespace n ON n.oid = p.pronamespace "
                        "WHERE n.nspname = 'public'"
                    )
                ).scalars()
            ),
            "sequence": set(
                conn.execute(
                    text(
                        "SELECT sequence_name FROM information_schema.sequences "
                        "WHERE sequence_schema = 'public'"
                    )
                ).scalars()
            ),
        }


TOTALS_TRIGGERS = {
    "flow_items_totals_insert",
    "flow_items_totals_update",
    "flow_items_totals_delete",
    "flow_item_values_totals_insert",
    "flow_item_values_totals_update",
    "flow_item_values_totals_delete",
    "flow_columns_totals_type",
}
"""The triggers of migration 0003 that keep the per-stage totals, on both backends."""


def expected_triggers(dialect: str) -> set[str]:
    """The triggers the migrations create on `dialect`."""
    if dialect == "postgresql":
        return (
            {f"{table}_bump_class_version" for table in DEFINITION_TABLES}
            | {
                "flow_items_sla_due",
                "flow_items_sla_queue_insert",
                "flow_items_sla_queue_update",
                "flow_items_sla_queue_delete",
                "flow_items_truncate",
                "flow_item_values_truncate",
                "flow_stage_history_close",
                "flow_items_history_close",
            }
            | TOTALS_TRIGGERS
        )
    return (
        {
            f"{table}_bump_{op}"
            for table in DEFINITION_TABLES
            for op in ("insert", "update", "delete")
        }
        | {
            "flow_items_sla_due_insert",
            "flow_items_sla_due_update",
            "flow_items_sla_queue",
            "flow_items_sla_forget",
            "flow_items_value_totals_update",
            "flow_stage_history_close",
            "flow_items_history_close",
        }
        | TOTALS_TRIGGERS
    )


def assert_catalogue(engine: Engine) -> None:
    """The four state types and the action catalogue are seeded."""
    with engine.connect() as conn:
        state_types = conn.execute(text("SELECT id, code FROM fk_state_types ORDER BY id")).all()
        actions = {
            code: bool(standard)
            for code, standard in conn.execute(text("SELECT code, is_standard FROM fk_actions"))
        }
    assert [tuple(r) for r in state_types] == STATE_TYPES
    assert {code for code, standard in actions.items() if standard} == STANDARD_ACTIONS
    assert {code for code, standard in actions.items() if not standard} >= COMMON_ACTIONS


# --- upgrade, downgrade, upgrade ---------------------------------------------------------------


def test_upgrade_downgrade_upgrade_round_trip(fresh: Engine) -> None:
    dialect = fresh.dialect.name
    empty = database_objects(fresh)
    assert current_revision(fresh) is None
    assert head_revision() == "0012"

    upgrade(fresh)
    assert current_revision(fresh) == head_revision()
    migrated = database_objects(fresh)
    assert migrated["table"] - empty["table"] == set(schema.metadata.tables) | {"alembic_version"}
    assert migrated["trigger"] - empty.get("trigger", set()) == expected_triggers(dialect)
    if dialect == "postgresql":
        assert migrated["function"] - empty["function"] == {
            "fk_bump_class_version",
            "fk_item_sla_due",
            "fk_item_sla_queue",
            "fk_item_sla_forget",
            "fk_items_sla_queue",
            "fk_number",
            "fk_stage_totals_inserted",
            "fk_stage_totals_updated",
            "fk_stage_totals_deleted",
            "fk_stage_totals_value",
            "fk_stage_totals_column",
            "fk_items_truncated",
            "fk_item_values_truncated",
            "fk_history_close",
            "fk_item_history_close",
        }
    model_indexes = {
        index.name for table in schema.metadata.tables.values() for index in table.indexes
    }
    assert model_indexes <= migrated["index"]
    assert_catalogue(fresh)

    downgrade(fresh, "base")
    assert current_revision(fresh) is None
    inspector = inspect(fresh)
    assert inspector.get_table_names() == ["alembic_version"]
    assert inspector.get_view_names() == []
    assert inspector.get_indexes("alembic_version") == []
    left = database_objects(fresh)
    assert left["table"] == empty["table"] | {"alembic_version"}
    assert left["trigger"] == empty.get("trigger", set())
    if dialect == "postgresql":
        assert left["function"] == empty["function"]
        assert left["sequence"] == empty["sequence"]
        assert left["index"] == empty["index"] | {"alembic_version_pkc"}
    else:
        assert left["index"] == set()

    upgrade(fresh)
    assert current_revision(fresh) == head_revision()
    assert database_objects(fresh) == migrated
    assert_catalogue(fresh)
    with fresh.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM fk_state_types")).scalar_one() == 4


def test_upgrade_to_head_twice_changes_nothing(fresh: Engine) -> None:
    upgrade(fresh)
    with fresh.connect() as conn:
        actions = conn.execute(text("SELECT count(*) FROM fk_actions")).scalar_one()
    upgrade(fresh)
    with fresh.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM fk_actions")).scalar_one() == actions


def test_a_database_behind_the_schema_is_a_typed_error(fresh_url: str) -> None:
    """Using a database never migrated, or migrated to an older revision, raises
    `DatabaseNotMigrated` naming its revision, until it is migrated to the head."""
    with Flowkernel(fresh_url) as fk:
        for call in (
            lambda: fk.execute(1, "heartbeat", SYSTEM),
            lambda: fk.execute_batch([1, 2], "heartbeat", SYSTEM),
            lambda: fk.pipelines.list_pipelines(SYSTEM),
        ):
            with pytest.raises(DatabaseNotMigrated) as never:
                call()
            assert (never.value.current, never.value.head) == (None, head_revision())
            assert "flowkernel db upgrade" in never.value.message
        fk.upgrade("0003")  # a revision behind: refused before any statement runs
        for call in (
            lambda: fk.execute(1, "heartbeat", SYSTEM),
            lambda: fk.pipelines.list_pipelines(SYSTEM),
            lambda: fk.sla.scan(),
        ):
            with pytest.raises(DatabaseNotMigrated) as behind:
                call()
            assert behind.value.current == "0003"
            assert "at revision '0003'" in behind.value.message
        fk.upgrade()
        assert fk.pipelines.list_pipelines(SYSTEM) == []
        with pytest.raises(DBAPIError) as own, fk.engine.connect() as conn:
            conn.execute(text("SELECT * FROM my_own_table"))  # one's own mistake stays as it is
        assert not isinstance(own.value, DatabaseNotMigrated)


def test_models_match_the_migrated_schema(fresh: Engine) -> None:
    upgrade(fresh)
    with fresh.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, schema.metadata) == []


def test_catalogue_is_seeded(migrated: Engine) -> None:
    assert_catalogue(migrated)
    with migrated.connect() as conn:
        labels = dict(conn.execute(text("SELECT code, label FROM fk_actions")).all())
    assert labels["create"] == "Create" and labels["heartbeat"] == "Heartbeat"
    with pytest.raises(IntegrityError), migrated.begin() as conn:
        conn.execute(text("INSERT INTO fk_actions (code, label) VALUES ('move', 'Again')"))


# --- triggers ---------------------------------------------------------------------------------


def version_of(conn: Connection, pipeline_id: int) -> int:
    return int(
        conn.execute(select(pipelines.c.version).where(pipelines.c.id == pipeline_id)).scalar_one()
    )


def new_pipeline(conn: Connection, name: str) -> int:
    return int(
        conn.execute(insert(pipelines).values(name=name).returning(pipelines.c.id)).scalar_one()
    )


def test_definition_rows_bump_the_class_version(migrated: Engine) -> None:
    with migrated.begin() as conn:
        pid = new_pipeline(conn, "Versioned")
        other = new_pipeline(conn, "Bystander")
        action = conn.execute(text("SELECT id FROM fk_actions WHERE code = 'move'")).scalar_one()
    touched: set[str] = set()

    def bump(statement: Any) -> Any:
        """Run one statement on a definition table; it must raise the version by exactly one."""
        with migrated.begin() as conn:
            before = version_of(conn, pid)
            result = conn.execute(statement)
            value = result.scalar_one() if result.returns_rows else None
            assert version_of(conn, pid) == before + 1, str(statement)
        touched.add(statement.table.name)
        return value

    t = schema.metadata.tables
    s1 = bump(insert(stages).values(flow_pipeline_id=pid, name="A").returning(stages.c.id))
    s2 = bump(insert(stages).values(flow_pipeline_id=pid, name="B").returning(stages.c.id))
    bump(update(stages).where(stages.c.id == s1).values(name="A2"))
    columns = t["flow_columns"]
    c1 = bump(
        insert(columns).values(flow_pipeline_id=pid, name="x", label="X").returning(columns.c.id)
    )
    bump(update(columns).where(columns.c.id == c1).values(label="X2"))
    # Required columns name the class only through their stage.
    required = t["flow_stage_required_columns"]
    r1 = bump(insert(required).values(flow_stage_id=s2, flow_column_id=c1).returning(required.c.id))
    bump(update(required).where(required.c.id == r1).values(flow_stage_id=s1))
    bump(delete(required).where(required.c.id == r1))
    automations = t["flow_automations"]
    a1 = bump(
        insert(automations)
        .values(flow_pipeline_id=pid, trigger="stage_entered", event_name="e")
        .returning(automations.c.id)
    )
    bump(update(automations).where(automations.c.id == a1).values(is_active=False))
    bump(delete(automations).where(automations.c.id == a1))
    moves = t["flow_stage_moves"]
    m1 = bump(
        insert(moves)
        .values(flow_pipeline_id=pid, from_stage_id=s1, to_stage_id=s2)
        .returning(moves.c.id)
    )
    bump(update(moves).where(moves.c.id == m1).values(to_stage_id=s1))
    bump(delete(moves).where(moves.c.id == m1))
    methods = t["fk_methods"]
    me = bump(
        insert(methods)
        .values(class_id=pid, action_id=action, code="go", label="Go")
        .returning(methods.c.id)
    )
    bump(update(methods).where(methods.c.id == me).values(visible=False))
    transitions = t["fk_transitions"]
    t1 = bump(
        insert(transitions)
        .values(class_id=pid, state_id=s1, method_id=me, new_state_id=s2)
        .returning(transitions.c.id)
    )
    bump(update(transitions).where(transitions.c.id == t1).values(new_state_id=s1))
    events = t["fk_events"]
    e1 = bump(
        insert(events).values(class_id=pid, action_id=action, handler="h").returning(events.c.id)
    )
    bump(update(events).where(events.c.id == e1).values(enabled=False))
    rules = t["fk_access_rules"]
    x1 = bump(
        insert(rules)
        .values(
            class_id=pid,
            method_code="go",
            subject_kind="user",
            subject="1",
            permission="execute",
            effect="allow",
        )
        .returning(rules.c.id)
    )
    bump(update(rules).where(rules.c.id == x1).values(effect="deny"))
    bump(delete(rules).where(rules.c.id == x1))
    bump(delete(events).where(events.c.id == e1))
    bump(delete(transitions).where(transitions.c.id == t1))
    bump(delete(methods).where(methods.c.id == me))
    bump(delete(columns).where(columns.c.id == c1))
    bump(delete(stages).where(stages.c.id == s2))
    assert touched == set(DEFINITION_TABLES)

    with migrated.begin() as conn:
        assert version_of(conn, other) == 1  # another class's rows never touch it
        before = version_of(conn, pid)
        item = conn.execute(
            insert(items)
            .values(flow_pipeline_id=pid, flow_stage_id=s1, object_type="t", object_id=1)
            .returning(items.c.id)
        ).scalar_one()
        conn.execute(update(items).where(items.c.id == item).values(position=3))
        conn.execute(update(pipelines).where(pipelines.c.id == pid).values(name="Renamed"))
        assert version_of(conn, pid) == before  # items and the header are not definition rows


def test_sla_due_at_follows_the_stage_and_the_entry_time(migrated: Engine) -> None:
    with migrated.begin() as conn:
        pid = new_pipeline(conn, "SLA")

        def stage(name: str, sla: int | None, won: bool = False, lost: bool = False) -> int:
            return int(
                conn.execute(
                    insert(stages)
                    .values(flow_pipeline_id=pid, name=name, sla_days=sla, is_won=won, is_lost=lost)
                    .returning(stages.c.id)
                ).scalar_one()
            )

        week, none, two, won, lost = (
            stage("Week", 7),
            stage("None", None),
            stage("Two", 2),
            stage("Won", 5, won=True),
            stage("Lost", 3, lost=True),
        )

    def place(stage_id: int, object_id: int, entered: datetime | None) -> int:
        values: dict[str, Any] = {
            "flow_pipeline_id": pid,
            "flow_stage_id": stage_id,
            "object_type": "t",
            "object_id": object_id,
        }
        if entered is not None:
            values["last_stage_changed_at"] = entered
        with migrated.begin() as conn:
            return int(
                conn.execute(insert(items).values(**values).returning(items.c.id)).scalar_one()
            )

    def set_(item_id: int, **values: Any) -> None:
        with migrated.begin() as conn:
            conn.execute(update(items).where(items.c.id == item_id).values(**values))

    def sla(item_id: int) -> tuple[datetime | None, datetime | None, datetime | None]:
        """The item's due time, when its breach fired, and its due time on the queue."""
        with migrated.connect() as conn:
            due = conn.execute(select(items.c.sla_due_at).where(items.c.id == item_id)).scalar()
            fired = conn.execute(
                select(sla_breaches.c.breached_at).where(sla_breaches.c.flow_item_id == item_id)
            ).scalar()
            queued = conn.execute(
                select(sla_due.c.due_at).where(sla_due.c.flow_item_id == item_id)
            ).scalar()
        return due, fired, queued

    def fire(item_id: int, moment: datetime) -> None:
        """Claim the breach as a scan does."""
        with migrated.begin() as conn:
            conn.execute(delete(sla_due).where(sla_due.c.flow_item_id == item_id))
            conn.execute(insert(sla_breaches).values(flow_item_id=item_id, breached_at=moment))

    entered = datetime(2026, 1, 28, 23, 59, 59, 123456, tzinfo=UTC)
    item = place(week, 1, entered)
    week_due = entered + timedelta(days=7)
    assert sla(item) == (week_due, None, week_due)  # across a month end, time kept
    assert sla(place(none, 2, entered)) == (None, None, None)
    assert sla(place(won, 3, entered)) == (None, None, None)
    assert sla(place(lost, 4, entered)) == (None, None, None)
    by_default = place(week, 5, None)
    due = sla(by_default)[0]
    assert due is not None and abs(due - (datetime.now(UTC) + timedelta(days=7))) < timedelta(
        minutes=1
    )
    assert sla(by_default)[2] == due

    breached = datetime(2026, 2, 5, tzinfo=UTC)
    fire(item, breached)
    set_(item, position=9)
    set_(item, flow_stage_id=week)  # the same stage again is no new entry
    assert sla(item) == (week_due, breached, None)
    set_(item, deleted_at=breached)  # a soft delete and a restore keep the fired breach
    set_(item, deleted_at=None)
    assert sla(item) == (week_due, breached, None)

    set_(item, flow_stage_id=none)
    assert sla(item) == (None, None, None)

    later = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    set_(item, flow_stage_id=two, last_stage_changed_at=later)
    two_due = later + timedelta(days=2)
    assert sla(item) == (two_due, None, two_due)
    set_(item, deleted_at=later)  # a deleted item is not due; restored, it is again
    assert sla(item) == (two_due, None, None)
    set_(item, deleted_at=None)
    assert sla(item) == (two_due, None, two_due)

    fire(item, breached)
    again = later + timedelta(hours=5)
    set_(item, last_stage_changed_at=again)  # re-entering the same stage restarts the clock
    assert sla(item) == (again + timedelta(days=2), None, again + timedelta(days=2))

    with migrated.begin() as conn:  # a stage's SLA edited: the queue follows the due times
        conn.execute(update(stages).where(stages.c.id == two).values(sla_days=4))
        conn.execute(
            update(items)
            .where(items.c.flow_stage_id == two)
            .values(last_stage_changed_at=items.c.last_stage_changed_at)
        )
    assert sla(item) == (again + timedelta(days=4), None, again + timedelta(days=4))

    set_(item, flow_stage_id=won)
    assert sla(item) == (None, None, None)

    with migrated.begin() as conn:  # dropping an item drops its queue row and its breach
        conn.execute(delete(items).where(items.c.id.in_([by_default, item])))
    assert sla(by_default) == (None, None, None)
    with migrated.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sla_due)).scalar_one() == 0


def test_step_0004_moves_breaches_to_the_queue_tables_and_back(fresh: Engine) -> None:
    upgrade(fresh, "0003")
    now = datetime.now(UTC).replace(microsecond=0)
    with fresh.begin() as conn:
        pid = new_pipeline(conn, "Due")
        open_ = conn.execute(
            insert(stages)
            .values(flow_pipeline_id=pid, name="Open", sla_days=1)
            .returning(stages.c.id)
        ).scalar_one()
        placed = [
            conn.execute(
                text(
                    "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, "
                    "object_id, last_stage_changed_at, deleted_at) "
                    "VALUES (:p, :s, 'deal', :o, :t, :d) RETURNING id"
                ),
                {"p": pid, "s": open_, "o": n, "t": now, "d": now if n == 2 else None},
            ).scalar_one()
            for n in range(3)
        ]
        conn.execute(
            text("UPDATE flow_items SET sla_breached_at = :t WHERE id = :i"),
            {"t": now + timedelta(days=2), "i": placed[1]},
        )
    upgrade(fresh, "0004")
    with fresh.connect() as conn:
        queued = conn.execute(select(sla_due.c.flow_item_id, sla_due.c.due_at)).all()
        fired = conn.execute(select(sla_breaches.c.flow_item_id, sla_breaches.c.breached_at)).all()
    assert [tuple(r) for r in queued] == [(placed[0], now + timedelta(days=1))]
    assert [tuple(r) for r in fired] == [(placed[1], now + timedelta(days=2))]
    assert "sla_breached_at" not in {c["name"] for c in inspect(fresh).get_columns("flow_items")}
    downgrade(fresh, "0003")
    names = set(inspect(fresh).get_table_names())
    assert not names & {"flow_sla_due", "flow_sla_breaches"}
    with fresh.connect() as conn:
        rows = conn.execute(text("SELECT id, sla_breached_at FROM flow_items ORDER BY id")).all()
    moments = [
        None
        if r[1] is None
        else _utc(r[1] if isinstance(r[1], datetime) else datetime.fromisoformat(r[1]))
        for r in rows
    ]
    assert moments == [
        None,
        now + timedelta(days=2),
        None,
    ]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- packaging -------------------------------------------------------------------------------


def test_wheel_ships_the_migrations_and_migrates_a_database(tmp_path: Path) -> None:
    """A non-editable install finds its migrations inside the package (takes a few seconds)."""
    source = tmp_path / "source"
    shutil.copytree(
        REPOSITORY,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".venv",
            ".*_cache",
            ".hypothesis",
            "*.db",
            "*.db-*",
        ),
    )
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("flowkernel-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "installed")
    assert {
        "flowkernel/py.typed",
        "flowkernel/__main__.py",
        "flowkernel/plugins/lifecycle.py",
        "flowkernel/examples/station.yaml",
        "flowkernel/migrations/__init__.py",
        "flowkernel/migrations/env.py",
        "flowkernel/migrations/script.py.mako",
        "flowkernel/migrations/versions/__init__.py",
        "flowkernel/migrations/versions/0001_initial_schema.py",
        "flowkernel/migrations/versions/0002_idempotency_and_api_tokens.py",
        "flowkernel/migrations/versions/0003_stage_totals.py",
        "flowkernel/migrations/versions/0004_sla_queue.py",
        "flowkernel/migrations/versions/0005_truncate_triggers.py",
        "flowkernel/migrations/versions/0006_moves_written_once.py",
        "flowkernel/migrations/versions/0007_token_expiry.py",
        "flowkernel/migrations/versions/0008_history_validity.py",
        "flowkernel/migrations/versions/0009_host_keys.py",
        "flowkernel/migrations/versions/0010_last_calls_fillfactor.py",
        "flowkernel/migrations/versions/0011_past_boards.py",
        "flowkernel/migrations/versions/0012_dropped_items.py",
        "flowkernel/store/schema/__init__.py",
        "flowkernel/store/schema/items.py",
    } <= names
    # one package at the top level of site-packages, beside its distribution metadata
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"flowkernel"}, tops

    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path

        import flowkernel
        from flowkernel.store.database import MIGRATIONS, current_revision, head_revision
        from flowkernel.store.database import open_engine
        from flowkernel.store.database import upgrade

        root = Path(sys.argv[1]).resolve()
        assert Path(flowkernel.__file__).resolve().is_relative_to(root), flowkernel.__file__
        assert MIGRATIONS.resolve() == root / "flowkernel" / "migrations", MIGRATIONS
        db = open_engine("sqlite:///" + sys.argv[2])
        upgrade(db)
        print(current_revision(db), head_revision())
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "installed"), str(tmp_path / "fk.db")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "installed")},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split() == ["0012", "0012"]
    check = create_engine(f"sqlite:///{tmp_path / 'fk.db'}")
    with check.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM fk_state_types")).scalar_one() == 4
    check.dispose()


# --- the default SQLite database ------------------------------------------------------------------


def test_default_sqlite_opens_in_wal_mode_with_foreign_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    engine = open_engine()
    try:
        assert engine.url.render_as_string() == DEFAULT_URL
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        upgrade(engine)
        assert (tmp_path / "flowkernel.db").exists()
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                insert(stages).values(flow_pipeline_id=999, name="Orphan")
            )  # no pipeline 999: refused because foreign keys are enforced
        with engine.connect() as conn:
            assert conn.execute(select(stages.c.id)).all() == []
    finally:
        engine.dispose()


def test_every_pooled_sqlite_connection_gets_the_pragmas(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'pooled.db'}")
    seen: list[tuple[Any, Any]] = []

    @event.listens_for(engine, "connect")
    def record(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode")
        journal = cursor.fetchone()[0]
        cursor.execute("PRAGMA foreign_keys")
        seen.append((journal, cursor.fetchone()[0]))
        cursor.close()

    try:
        with engine.connect(), engine.connect():  # two connections at once: two opened
            pass
    finally:
        engine.dispose()
    assert seen == [("wal", 1), ("wal", 1)]


def test_step_0002_keeps_existing_data_up_and_down(fresh: Engine) -> None:
    upgrade(fresh, "0001")
    with fresh.begin() as conn:
        conn.execute(text("INSERT INTO flow_pipelines (name, iam_account_id) VALUES ('kept', 7)"))
    upgrade(fresh, "0002")
    assert {"fk_idempotency_keys", "fk_api_tokens"} <= set(inspect(fresh).get_table_names())
    with fresh.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO fk_api_tokens (token_hash, prefix, name, groups) "
                "VALUES ('h', 'p', 'n', '[]')"
            )
        )
    downgrade(fresh, "0001")
    names = set(inspect(fresh).get_table_names())
    assert not names & {"fk_idempotency_keys", "fk_api_tokens"}
    assert current_revision(fresh) == "0001"
    with fresh.connect() as conn:
        assert conn.execute(text("SELECT name FROM flow_pipelines")).scalar_one() == "kept"


def test_step_0003_backfills_the_stage_totals_and_goes_down_again(fresh: Engine) -> None:
    upgrade(fresh, "0002")
    with fresh.begin() as conn:
        pid = new_pipeline(conn, "Filled")
        open_, won = (
            conn.execute(
                insert(stages).values(flow_pipeline_id=pid, name=name).returning(stages.c.id)
            ).scalar_one()
            for name in ("Open", "Won")
        )
        amount = conn.execute(
            text(
                "INSERT INTO flow_columns (flow_pipeline_id, name, label, field_type) "
                "VALUES (:p, 'amount', 'Amount', 'number') RETURNING id"
            ),
            {"p": pid},
        ).scalar_one()
        placed = []
        for object_id, (stage, account, deleted) in enumerate(
            [(open_, 7, False), (open_, 7, False), (open_, None, False), (won, 7, True)]
        ):
            placed.append(
                conn.execute(
                    insert(items)
                    .values(
                        flow_pipeline_id=pid,
                        flow_stage_id=stage,
                        object_type="deal",
                        object_id=object_id,
                        iam_account_id=account,
                        deleted_at=datetime.now(UTC) if deleted else None,
                    )
                    .returning(items.c.id)
                ).scalar_one()
            )
        for item, value in zip(placed, ("10.5", "2", "", "99"), strict=True):
            conn.execute(
                text(
                    "INSERT INTO flow_item_values (flow_item_id, flow_column_id, value) "
                    "VALUES (:i, :c, :v)"
                ),
                {"i": item, "c": amount, "v": value},
            )
    upgrade(fresh, "0003")
    with fresh.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT flow_stage_id, account_key, sum(item_count) FROM flow_stage_totals "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            )
        ).all()
        sums = conn.execute(
            text(
                "SELECT flow_stage_id, account_key, sum(value_count), sum(value_sum) "
                "FROM flow_stage_value_totals GROUP BY 1, 2 ORDER BY 1, 2"
            )
        ).all()
    assert [tuple(r) for r in counts] == [(open_, -1, 1), (open_, 7, 2)]
    assert [(s, a, n, float(v)) for s, a, n, v in sums] == [(open_, 7, 2, 12.5)]
    downgrade(fresh, "0002")
    names = set(inspect(fresh).get_table_names())
    assert not names & {"flow_stage_totals", "flow_stage_value_totals"}
    assert current_revision(fresh) == "0002"
    with fresh.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM flow_items")).scalar_one() == 4


def test_step_0007_keeps_tokens_working_without_an_expiry_and_goes_down_again(
    fresh: Engine,
) -> None:
    upgrade(fresh, "0006")
    with fresh.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO fk_api_tokens (token_hash, prefix, name, groups, is_system) "
                "VALUES ('h', 'p', 'kept', '[]', true)"
            )
        )
    upgrade(fresh, "0007")
    [kept] = ApiTokens(fresh).list()
    assert (kept.name, kept.is_system, kept.expires_at) == ("kept", True, None)
    issued = ApiTokens(fresh).issue("dated", system=True, expires_in=timedelta(days=1))
    assert ApiTokens(fresh).resolve(issued.token).is_system
    downgrade(fresh, "0006")
    assert "expires_at" not in {c["name"] for c in inspect(fresh).get_columns("fk_api_tokens")}
    with fresh.connect() as conn:
        names = conn.execute(text("SELECT name FROM fk_api_tokens ORDER BY id")).scalars().all()
    assert names == ["kept", "dated"]


def test_step_0008_closes_every_period_but_the_current_and_goes_down_again(
    fresh: Engine,
) -> None:
    upgrade(fresh, "0007")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with fresh.begin() as conn:
        pid = new_pipeline(conn, "Periods")
        a, b, c = (
            conn.execute(
                insert(stages).values(flow_pipeline_id=pid, name=name).returning(stages.c.id)
            ).scalar_one()
            for name in ("A", "B", "C")
        )
        live = conn.execute(
            text(
                "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, object_id) "
                "VALUES (:p, :s, 'deal', 1) RETURNING id"
            ),
            {"p": pid, "s": c},
        ).scalar_one()
        gone = live + 100  # dropped: only its history and its logged drop are left
        moves = [
            (live, None, a, start),
            (live, a, b, start + timedelta(hours=1)),
            (live, b, c, start + timedelta(hours=2)),
            (gone, None, a, start),
            (gone, a, b, start + timedelta(hours=3)),
        ]
        for item, source, target, moment in moves:
            conn.execute(
                text(
                    "INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, "
                    "from_stage_id, to_stage_id, moved_at) VALUES (:i, :p, :f, :t, :m)"
                ),
                {"i": item, "p": pid, "f": source, "t": target, "m": moment},
            )
        conn.execute(
            text(
                "INSERT INTO fk_method_calls (flow_item_id, flow_pipeline_id, method_code, "
                "action_code, from_stage_id, is_system, called_at) "
                "VALUES (:i, :p, 'drop', 'drop', :s, true, :m)"
            ),
            {"i": gone, "p": pid, "s": b, "m": start + timedelta(hours=5)},
        )
    upgrade(fresh, "0008")
    with fresh.connect() as conn:
        rows = conn.execute(
            select(history.c.flow_item_id, history.c.to_stage_id, history.c.valid_to).order_by(
                history.c.id
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (live, a, start + timedelta(hours=1)),
        (live, b, start + timedelta(hours=2)),
        (live, c, None),  # the current state holds
        (gone, a, start + timedelta(hours=3)),
        (gone, b, start + timedelta(hours=5)),  # until the item was dropped
    ]
    with fresh.begin() as conn:  # the seed's own move closes the open period
        conn.execute(
            text(
                "INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, from_stage_id, "
                "to_stage_id, moved_at) VALUES (:i, :p, :f, :t, :m)"
            ),
            {"i": live, "p": pid, "f": c, "t": a, "m": start + timedelta(hours=9)},
        )
    with fresh.connect() as conn:
        closed = conn.execute(
            select(history.c.valid_to).where(
                history.c.flow_item_id == live, history.c.to_stage_id == c
            )
        ).scalar_one()
    assert closed == start + timedelta(hours=9)
    downgrade(fresh, "0007")
    assert "valid_to" not in {c["name"] for c in inspect(fresh).get_columns("flow_stage_history")}
    with fresh.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM flow_stage_history")).scalar_one() == 6


def test_step_0009_keeps_integer_keys_and_refuses_to_lose_text_keys_going_down(
    fresh: Engine,
) -> None:
    upgrade(fresh, "0008")
    with fresh.begin() as conn:
        pid = new_pipeline(conn, "Keys")
        stage = conn.execute(
            insert(stages).values(flow_pipeline_id=pid, name="Open").returning(stages.c.id)
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, object_id) "
                "VALUES (:p, :s, 'deal', 42)"
            ),
            {"p": pid, "s": stage},
        )
    upgrade(fresh, "0009")
    with fresh.connect() as conn:
        keys = conn.execute(text("SELECT object_id, object_key FROM flow_items")).all()
        assert [tuple(k) for k in keys] == [(42, None)]
    upgrade(fresh)  # the library runs on the newest schema
    with Flowkernel(engine=fresh, deliver_events=False) as fk:
        [kept] = fk.items.find("deal", 42, SYSTEM)
        assert (kept.object_id, kept.object_key, kept.key) == (42, None, 42)
        placed = fk.place(pid, "deal", "9f1c2d3e-0000-4000-8000-000000000001", SYSTEM)
        with pytest.raises(RuntimeError, match="1 item"):
            downgrade(fresh, "0008")
        # refused at 0009's step: PostgreSQL rolls the whole downgrade back, SQLite keeps the
        # steps done before it (0012's, 0011's and 0010's)
        stopped = head_revision() if fresh.dialect.name == "postgresql" else "0009"
        assert current_revision(fresh) == stopped
        fk.items.delete(placed.id, SYSTEM)
        fk.items.drop(placed.id, SYSTEM)
    downgrade(fresh, "0008")
    assert "object_key" not in {c["name"] for c in inspect(fresh).get_columns("flow_items")}
    with fresh.connect() as conn:
        assert conn.execute(text("SELECT object_id FROM flow_items")).scalars().all() == [42]


def test_step_0010_leaves_room_for_the_next_last_call_and_keeps_the_calls(fresh: Engine) -> None:
    upgrade(fresh, "0009")
    with fresh.begin() as conn:
        pid = new_pipeline(conn, "Lamps")
        stage = conn.execute(
            insert(stages).values(flow_pipeline_id=pid, name="Off").returning(stages.c.id)
        ).scalar_one()
        lamp = conn.execute(
            text(
                "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, object_id) "
                "VALUES (:p, :s, 'lamp', 1) RETURNING id"
            ),
            {"p": pid, "s": stage},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO fk_method_last_calls (flow_item_id, method_code, flow_pipeline_id, "
                "action_code, from_stage_id, is_system, called_at, call_count) "
                "VALUES (:i, 'ping', :p, 'heartbeat', :s, true, :at, 3)"
            ),
            {"i": lamp, "p": pid, "s": stage, "at": datetime(2026, 12, 1, tzinfo=UTC)},
        )

    def options() -> Any:
        with fresh.connect() as conn:
            return conn.execute(
                text("SELECT reloptions FROM pg_class WHERE relname = 'fk_method_last_calls'")
            ).scalar_one()

    def kept() -> list[tuple[Any, ...]]:
        with fresh.connect() as conn:
            rows = conn.execute(
                text("SELECT flow_item_id, method_code, call_count FROM fk_method_last_calls")
            )
            return [tuple(r) for r in rows]

    postgresql = fresh.dialect.name == "postgresql"
    assert kept() == [(lamp, "ping", 3)]
    assert not postgresql or options() is None
    upgrade(fresh, "0010")
    assert kept() == [(lamp, "ping", 3)]
    assert not postgresql or options() == ["fillfactor=50"]
    downgrade(fresh, "0009")
    assert not postgresql or options() is None
    assert kept() == [(lamp, "ping", 3)]


def test_step_0011_reads_past_boards_from_the_history_already_there(fresh: Engine) -> None:
    upgrade(fresh, "0010")
    long_ago = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    with fresh.begin() as conn:
        pid = new_pipeline(conn, "Deals")
        lead, won = (
            conn.execute(
                insert(stages).values(flow_pipeline_id=pid, name=name).returning(stages.c.id)
            ).scalar_one()
            for name in ("Lead", "Won")
        )
        deal = conn.execute(
            text(
                "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, object_id) "
                "VALUES (:p, :s, 'deal', 1) RETURNING id"
            ),
            {"p": pid, "s": won},
        ).scalar_one()
        for moved_at, stage in ((long_ago, lead), (long_ago + timedelta(days=3), won)):
            conn.execute(
                text(
                    "INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, "
                    "to_stage_id, moved_at, is_system) VALUES (:i, :p, :s, :at, false)"
                ),
                {"i": deal, "p": pid, "s": stage, "at": moved_at},
            )
    upgrade(fresh, "0011")
    names = set(inspect(fresh).get_table_names())
    assert {"flow_stage_hour_counts", "flow_stage_count_marks"} <= names
    upgrade(fresh)
    with Flowkernel(engine=fresh, deliver_events=False) as fk:
        then = fk.queries.board(pid, SYSTEM, as_of=long_ago + timedelta(days=1))
        assert [(s.name, s.count, [i.id for i in s.items]) for s in then.stages] == [
            ("Lead", 1, [deal]),
            ("Won", 0, []),
        ]
        assert (
            fk.queries.board(pid, SYSTEM, as_of=long_ago + timedelta(days=4)).stages[1].count == 1
        )
    with fresh.connect() as conn:  # the hours it needed were counted from the history: the
        # lead's entry and exit, the won's entry, each for no account and for all accounts
        assert conn.execute(text("SELECT count(*) FROM flow_stage_hour_counts")).scalar_one() == 6
    downgrade(fresh, "0010")
    names = set(inspect(fresh).get_table_names())
    assert not {"flow_stage_hour_counts", "flow_stage_count_marks"} & names
    history_indexes = {i["name"] for i in inspect(fresh).get_indexes("flow_stage_history")}
    assert "ix_flow_stage_history_ended" not in history_indexes
    with fresh.connect() as conn:
        rows = conn.execute(text("SELECT to_stage_id FROM flow_stage_history ORDER BY id"))
        assert rows.scalars().all() == [lead, won]


def test_step_0012_keeps_what_a_dropped_item_leaves(fresh: Engine) -> None:
    upgrade(fresh, "0011")
    with fresh.begin() as conn:
        pid = new_pipeline(conn, "Deals")
        lead = conn.execute(
            insert(stages).values(flow_pipeline_id=pid, name="Lead").returning(stages.c.id)
        ).scalar_one()

        def place(n: int) -> int:
            item = conn.execute(
                text(
                    "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, "
                    "object_id, deleted_at) VALUES (:p, :s, 'deal', :n, :at) RETURNING id"
                ),
                {"p": pid, "s": lead, "n": n, "at": datetime(2026, 11, 1, tzinfo=UTC)},
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, "
                    "to_stage_id, moved_at, is_system) VALUES (:i, :p, :s, :at, false)"
                ),
                {"i": item, "p": pid, "s": lead, "at": datetime(2026, 10, 1, tzinfo=UTC)},
            )
            return int(item)

        before, after, later = place(1), place(2), place(3)
        conn.execute(text("DELETE FROM flow_items WHERE id = :i"), {"i": before})

    def kept() -> list[tuple[Any, ...]]:
        with fresh.connect() as conn:
            rows = conn.execute(
                text("SELECT flow_item_id, object_type, object_id FROM flow_dropped_items")
            )
            return [tuple(r) for r in rows]

    upgrade(fresh, "0012")
    assert kept() == []  # a drop before the revision left nothing
    with fresh.begin() as conn:  # a drop now keeps the object and the deletion mark
        conn.execute(text("DELETE FROM flow_items WHERE id = :i"), {"i": after})
    assert kept() == [(after, "deal", 2)]
    with Flowkernel(engine=fresh, deliver_events=False) as fk:
        board = fk.queries.board(pid, SYSTEM, as_of=datetime(2026, 10, 15, tzinfo=UTC))
        assert sorted(i.id for i in board.stages[0].items) == [after, later]
        deleted = fk.queries.board(pid, SYSTEM, as_of=datetime(2026, 11, 15, tzinfo=UTC))
        assert deleted.stages[0].count == 1  # the item dropped before the revision, no card
    downgrade(fresh, "0011")
    assert "flow_dropped_items" not in set(inspect(fresh).get_table_names())
    with fresh.begin() as conn:  # the trigger is the one of before: it still closes history
        conn.execute(text("DELETE FROM flow_items WHERE id = :i"), {"i": later})
        open_rows = conn.execute(
            text("SELECT count(*) FROM flow_stage_history WHERE valid_to IS NULL")
        ).scalar_one()
    assert open_rows == 0
