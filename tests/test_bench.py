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

from engine.benchmarks.runner import KEYS
from engine.cli import main


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
        ("move", "raw"),
        ("move", "hand-rolled"),
        ("heartbeat", "raw"),
        ("heartbeat", "hand-rolled"),
        ("batch", "raw batched UPDATE"),
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
        "move >= 0.5 x raw",
        "move >= 10 x hand-rolled",
        "heartbeat >= 0.5 x raw",
    }
    assert document["machine"]["database_version"].startswith("SQLite")

    # the benchmark ran in a scratch file of its own and removed it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]


def test_progress_is_a_bar_on_a_terminal_and_silent_when_piped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.benchmarks import runner

    url = f"sqlite:///{tmp_path / 'mine.db'}"
    assert main(["bench", "--smoke", "--database-url", url]) == 0
    piped = capsys.readouterr()
    assert piped.err == "" and "- move ..." not in piped.out

    drawn = io.StringIO()
    terminal = functools.partial(runner.Progress, stream=drawn, enabled=True, width=60)
    monkeypatch.setattr(runner, "Progress", terminal)
    assert main(["bench", "--smoke", "--database-url", url]) == 0
    assert "- move ..." in drawn.getvalue() and "bench [" in drawn.getvalue()
    assert "6/6 100%" in drawn.getvalue()
