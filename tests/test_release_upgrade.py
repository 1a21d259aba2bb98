"""A database in use under the previous release upgrades to this version's head with nothing
lost, works, and downgrades back.

The previous release (`PREVIOUS`, the last commit before moves were written once) is taken
from the repository's history and run in a subprocess on the test's database: it migrates to
its head and writes what a real installation holds (kernel and pipeline items, moves with
parameters, calls that changed no state, idempotent executions, values, checklist marks,
watchers, outbox rows, soft deletes and a drop, an API token). The upgrade must keep every row
of every table, move each state change's call-log facts into its history row, and leave the
engine working; the downgrade must give the call log its rows back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import textwrap
from collections import Counter
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select, text

from flowkernel import SYSTEM, Actor, Flowkernel, MethodNotAvailable
from flowkernel.store.database import current_revision, downgrade, open_engine, upgrade
from flowkernel.store.tables import history, last_calls, method_calls

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = "f75e21f4c55d0209acd4ad0d91ae84effc4ac568"
"""The previous release: head revision 0005, every move written to history and call log."""
PREVIOUS_HEAD = "0005"

WRITE = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from engine import SYSTEM, Actor, Flowkernel, StageSpec, ColumnSpec
    from engine.database import open_engine, upgrade
    from engine.http.tokens import ApiTokens

    url = sys.argv[2]
    engine = open_engine(url)
    upgrade(engine)
    rep = Actor.user(7, 1)
    with Flowkernel(engine=engine, deliver_events=False) as fk:
        d = fk.definitions
        d.add_class("lamp", "Lamp", object_type="lamp", account_id=1)
        d.add_state("lamp", "created", "off", "Off", account_id=1)
        d.add_state("lamp", "enabled", "on", "On", account_id=1)
        d.add_method("lamp", None, "create", account_id=1)
        d.add_method("lamp", "off", "enable", code="switch_on", account_id=1)
        d.add_method("lamp", None, "edit", account_id=1)
        d.add_transition("lamp", "off", "switch_on", "on", account_id=1)
        lamp = fk.place("lamp", "lamp", 1, rep, params={"serial": "A1"})
        fk.execute(lamp.id, "switch_on", rep, params={"reason": "dark"})
        fk.execute(lamp.id, "edit", rep, params={"note": "checked"})
        fk.execute(lamp.id, "edit", Actor.system(1), idempotency_key="k-1")

        sales = fk.pipelines.create_pipeline(
            "Sales", rep, code="sales",
            stages=[StageSpec("Lead"), StageSpec("Qualified", sla_days=3),
                    StageSpec("Won", is_won=True), StageSpec("Lost", is_lost=True)],
            columns=[ColumnSpec("amount", field_type="number")],
        )
        fk.pipelines.add_automation(sales.id, "stage_entered", "deal.moved", rep)
        deals = [fk.place(sales.id, "deal", n, rep).id for n in range(1, 5)]
        fk.items.set_value(deals[0], "amount", 1200, rep)
        fk.items.watch(deals[0], 9, rep)
        fk.move(deals[0], "qualified", rep, idempotency_key="m-1")
        fk.execute_batch(deals[1:3], "move_to_qualified", rep)
        fk.items.delete(deals[2], rep)
        fk.items.delete(deals[3], rep)
        fk.items.drop(deals[3], rep)
        ApiTokens(engine).issue("gateway", account_id=1, system=True)
        print(json.dumps({"lamp": lamp.id, "deals": deals}))
    """
)


def _previous_release(tmp_path: Path) -> Path:
    """The previous release's source, from the repository's history."""
    run = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", PREVIOUS, "engine", "plugins",
         "migrations"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, (
        f"the previous release {PREVIOUS} is not in this clone's history: "
        f"{run.stderr.decode()}; clone the repository with its history"
    )
    folder = tmp_path / "previous"
    with tarfile.open(fileobj=BytesIO(run.stdout)) as archive:
        archive.extractall(folder, filter="data")
    return folder


def _rows(
    engine: Engine, columns: dict[str, list[str]] | None = None
) -> tuple[dict[str, list[str]], dict[str, Counter[tuple[str, ...]]]]:
    """The columns of every table but the history and the call log, and their rows (of
    `columns` when given: those a table had before), as JSON texts."""
    skipped = ("flow_stage_history", "fk_method_calls", "alembic_version", "fk_method_last_calls")
    inspector = inspect(engine)
    if columns is None:
        columns = {
            name: [c["name"] for c in inspector.get_columns(name)]
            for name in inspector.get_table_names()
            if name not in skipped
        }
    with engine.connect() as conn:
        rows = {
            name: Counter(
                tuple(json.dumps(v, sort_keys=True, default=str) for v in row)
                for row in conn.execute(text(f"SELECT {', '.join(names)} FROM {name}"))
            )
            for name, names in columns.items()
        }
    return columns, rows


CALL_FACTS = (
    method_calls.c.flow_item_id,
    method_calls.c.flow_pipeline_id,
    method_calls.c.iam_account_id,
    method_calls.c.method_code,
    method_calls.c.action_code,
    method_calls.c.from_stage_id,
    method_calls.c.to_stage_id,
    method_calls.c.actor_iam_user_id,
    method_calls.c.is_system,
    method_calls.c.params,
    method_calls.c.called_at,
)


def _calls(engine: Engine) -> list[tuple[Any, ...]]:
    """The call log's rows (parameters as JSON text), by moment and method."""
    with engine.connect() as conn:
        rows = [
            (*row[:9], json.dumps(row[9], sort_keys=True), row[10])
            for row in conn.execute(select(*CALL_FACTS))
        ]
    return sorted(rows, key=lambda row: (row[-1], row[3]))


def test_a_previous_release_database_upgrades_with_nothing_lost_and_back(
    database_url: str, backend: str, tmp_path: Path
) -> None:
    engine = open_engine(database_url)
    try:
        downgrade(engine, "base")  # an empty database, for the previous release to migrate
        written = subprocess.run(
            [sys.executable, "-c", WRITE, str(_previous_release(tmp_path)), database_url],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert written.returncode == 0, written.stdout + written.stderr
        made = json.loads(written.stdout.splitlines()[-1])
        assert current_revision(engine) == PREVIOUS_HEAD
        columns, rows_before = _rows(engine)
        calls_before = _calls(engine)
        with engine.connect() as conn:
            history_before = conn.execute(
                select(history.c.id, history.c.flow_item_id, history.c.to_stage_id,
                       history.c.method_code, history.c.moved_at).order_by(history.c.id)
            ).all()  # fmt: skip
        assert len([c for c in calls_before if c[6] is not None]) == len(history_before)

        upgrade(engine)
        assert _rows(engine, columns)[1] == rows_before
        with engine.connect() as conn:
            moved = conn.execute(
                select(
                    history.c.id, history.c.flow_item_id, history.c.to_stage_id,
                    history.c.method_code, history.c.moved_at, history.c.action_code,
                    history.c.params, history.c.iam_account_id, history.c.moved_by_iam_user_id,
                ).order_by(history.c.id)
            ).all()  # fmt: skip
            assert conn.execute(select(last_calls)).all() == []
        # the history keeps its rows and gains each state change's action, params and account
        assert [tuple(r[:5]) for r in moved] == [tuple(r) for r in history_before]
        changes = {(c[0], c[3], c[6], c[10]): c for c in calls_before if c[6] is not None}
        for row in moved:
            call = changes[(row.flow_item_id, row.method_code, row.to_stage_id, row.moved_at)]
            params = json.dumps(row.params, sort_keys=True)
            assert (row.action_code, params, row.iam_account_id) == (call[4], call[9], 1)
        # the call log keeps the executions that changed no state, as they were
        assert _calls(engine) == [c for c in calls_before if c[6] is None]

        with Flowkernel(database_url) as fk:
            rep = Actor.user(7, 1)
            lamp, deals = made["lamp"], made["deals"]
            assert [e.to_state for e in fk.history(lamp, rep)] == ["off", "on"]
            assert [e.to_state for e in fk.history(deals[3], rep)] == ["lead"]  # dropped
            assert fk.move(deals[0], "won", rep).to_state == "won"
            assert fk.move(deals[0], "qualified", rep, idempotency_key="m-1").to_state == (
                "qualified"
            )  # the key's first result, replayed
            # a global edit with no handler does nothing, so it is no longer offered; the
            # call the previous release answered still replays under its key
            with pytest.raises(MethodNotAvailable):
                fk.execute(lamp, "edit", SYSTEM)
            replayed = fk.execute(lamp, "edit", Actor.system(1), idempotency_key="k-1")
            assert (replayed.method, replayed.changed) == ("edit", False)
            assert fk.items.values(deals[0], rep)[0].value == "1200"

        downgrade(engine, PREVIOUS_HEAD)
        assert current_revision(engine) == PREVIOUS_HEAD
        restored = _calls(engine)
        assert Counter(restored) >= Counter(calls_before)  # plus the new executions' rows
        kept = _rows(engine, columns)[1]
        assert kept["flow_pipelines"] == rows_before["flow_pipelines"]
        assert kept["fk_api_tokens"] == rows_before["fk_api_tokens"]
    finally:
        upgrade(engine)
        engine.dispose()
