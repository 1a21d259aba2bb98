"""`flowkernel bench`: the command runs end to end and writes the documented JSON.

Only the shape of the output is checked: figures are measured by the benchmark itself, side by
side with its baselines, never asserted by a timed test.
"""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from flowkernel import SYSTEM, Flowkernel
from flowkernel.benchmarks.baselines import Raw
from flowkernel.benchmarks.runner import KEYS
from flowkernel.benchmarks.scratch import Scratch, place_rows
from flowkernel.cli import main
from flowkernel.examples.charging_station import build_station_class
from flowkernel.store.tables import history, items, method_calls


def test_smoke_run_writes_the_documented_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "mine.db"
    out = tmp_path / "bench.json"
    status = main(
        ["bench", "--smoke", "--json", str(out), "--database-url", f"sqlite:///{database}"]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "ratio" in printed and "target" in printed

    document = json.loads(out.read_text())
    results = document["results"]
    assert results and all(tuple(row) == KEYS for row in results)
    assert {row["database"] for row in results} == {"sqlite"}
    scenarios = {(row["scenario"], row["baseline"]) for row in results}
    assert {
        ("move", "floor (seed SQL, bare tables)"),
        ("move", "peer (ORM + transitions)"),
        ("move", "raw"),
        ("move", "hand-rolled"),
        ("heartbeat", "raw"),
        ("heartbeat", "hand-rolled"),
        ("batch", "raw batched UPDATE"),
        ("batch", "raw batched writes"),
        ("heartbeat_batch_50", "floor UPDATE = ANY (bare table)"),
        ("heartbeat_batch_500", "floor UPDATE = ANY (bare table)"),
        ("http_heartbeat_batch", "execute_batch in process"),
        ("compile_100_states_1000_transitions", "transitions Machine alone"),
        ("memory_growth", None),
    } <= scenarios
    for row in results:
        assert isinstance(row["ops_per_s"], float) and row["ops_per_s"] > 0
        if row["baseline_ops_per_s"] is None:
            assert row["ratio"] is None
        else:
            assert row["baseline_ops_per_s"] > 0
            assert row["ratio"] == pytest.approx(
                row["ops_per_s"] / row["baseline_ops_per_s"], rel=0.01, abs=1e-3
            )
    assert {t["target"] for t in document["targets"]} >= {
        "move >= 0.5 x the floor",
        "move >= 10 x the peer",
    }
    assert document["machine"]["database_version"].startswith("SQLite")

    # the benchmark ran in a scratch file of its own and removed it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]


def test_progress_is_a_bar_on_a_terminal_and_silent_when_piped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowkernel.benchmarks import runner

    url = f"sqlite:///{tmp_path / 'mine.db'}"
    assert main(["bench", "--smoke", "--database-url", url]) == 0
    piped = capsys.readouterr()
    assert piped.err == "" and "- move ..." not in piped.out

    drawn = io.StringIO()
    terminal = functools.partial(runner.Progress, stream=drawn, enabled=True, width=60)
    monkeypatch.setattr(runner, "Progress", terminal)
    assert main(["bench", "--smoke", "--database-url", url]) == 0
    assert "- move ..." in drawn.getvalue() and "bench [" in drawn.getvalue()
    assert "7/7 100%" in drawn.getvalue()


def test_the_batch_baseline_writes_what_the_engine_writes(
    fk: Flowkernel, database_url: str
) -> None:
    """`raw batched writes` leaves the same stages, history and call log as `execute_batch`."""
    build_station_class(fk, "bench_station")
    compiled = fk.compiled("bench_station")
    state = {s.code: s.id for s in compiled.ordered_states}
    with fk.engine.begin() as conn:
        mine, theirs = (
            place_rows(
                conn,
                compiled.id,
                [state["unavailable"]],
                "charging_station",
                range(first, first + 4),
                account_id=None,
            )
            for first in (1, 101)
        )
    methods = ["heartbeat", "available", "heartbeat", "available"]
    assert fk.execute_batch(mine, methods, SYSTEM, params={"status": "ok"}).ok
    url = make_url(database_url)
    kind = url.get_backend_name()
    scratch = Scratch(database_url, kind, path=url.database, schema="public")
    raw = Raw(scratch)
    try:
        unavailable = state["unavailable"]
        raw.batch_writes(
            compiled.id,
            [
                (item, method, unavailable, None if method == "heartbeat" else state[method])
                for item, method in zip(theirs, methods, strict=True)
            ],
        )
    finally:
        raw.close()

    def written(ids: list[int]) -> list[tuple[object, ...]]:
        rank = {item: n for n, item in enumerate(ids)}
        with fk.engine.connect() as conn:
            moved = conn.execute(
                select(items.c.id, items.c.flow_stage_id, items.c.version).where(
                    items.c.id.in_(ids)
                )
            )
            logged = conn.execute(
                select(
                    history.c.flow_item_id,
                    history.c.from_stage_id,
                    history.c.to_stage_id,
                    history.c.method_code,
                    history.c.is_system,
                    history.c.action_code,
                    history.c.params,
                ).where(history.c.flow_item_id.in_(ids))
            )
            calls = conn.execute(
                select(
                    method_calls.c.flow_item_id,
                    method_calls.c.method_code,
                    method_calls.c.action_code,
                    method_calls.c.from_stage_id,
                    method_calls.c.to_stage_id,
                    method_calls.c.is_system,
                    method_calls.c.params,
                ).where(method_calls.c.flow_item_id.in_(ids))
            )
            return sorted(
                (kind, rank[row[0]], *row[1:])
                for kind, rows in (("item", moved), ("history", logged), ("call", calls))
                for row in rows
            )

    assert written(mine) == written(theirs)
    assert len(written(mine)) == 4 + 2 + 2  # items, state changes (history), calls without one
