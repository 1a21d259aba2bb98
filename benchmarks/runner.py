"""Running the benchmark: scenarios in order, a table of ratios, the targets, the JSON file."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import text

from flowkernel import Flowkernel
from flowkernel.cli.progress import Progress

from . import big_scenarios, http_scenarios, past_scenarios, scenarios
from .measuring import FLOOR, FULL, PEER, QUICK, SMOKE, UPDATE_ANY, Context, Measure, Scale
from .scratch import scratch

KEYS: Final = ("scenario", "database", "ops_per_s", "baseline", "baseline_ops_per_s", "ratio")
"""The keys of every row of the JSON file's `results`."""


@dataclass(frozen=True)
class Target:
    """A target of the performance issue, evaluated on one run."""

    name: str
    database: str
    measured: float | None
    unit: str
    met: bool | None  # None: not measured in this run

    def row(self) -> dict[str, Any]:
        return {
            "target": self.name,
            "database": self.database,
            "measured": _round(self.measured, 3 if self.unit == "x" else 1),
            "unit": self.unit,
            "met": self.met,
        }


@dataclass(frozen=True)
class Report:
    """Everything one run measured."""

    database: str
    scale: Scale
    machine: dict[str, Any]
    measures: list[Measure]
    targets: list[Target]
    seconds: float

    def rows(self) -> list[dict[str, Any]]:
        """One row per scenario and baseline, with the keys of `KEYS`."""
        rows = []
        for m in self.measures:
            base = m.base_ops
            rows.append(
                {
                    "scenario": m.scenario,
                    "database": self.database,
                    "ops_per_s": _round(m.ops),
                    "baseline": m.baseline,
                    "baseline_ops_per_s": _round(base),
                    "ratio": _round(m.ops / base, 3) if base else None,
                }
            )
        return rows

    def document(self) -> dict[str, Any]:
        """The JSON file: `results` (the rows), plus the targets and the machine."""
        return {
            "results": self.rows(),
            "targets": [t.row() for t in self.targets],
            "machine": self.machine,
            "scale": self.scale.name,
            "notes": [text for _group, text in self.scale.notes],
            "seconds": round(self.seconds, 1),
        }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


OWN_SCHEMA: Final = (
    "The floor and the peer are the anchors' (the seed's SQL on bare tables; ORM + transitions "
    "on tables of its own).\nraw, hand-rolled, raw batched UPDATE and raw batched writes run "
    "on Flowkernel's own schema: they measure the engine against itself."
)
"""What the baselines are, printed under the table."""

STEPS: Final = ("move", "heartbeat", "batch", "http", "compile", "million", "past", "memory")
"""The scenario groups a run can be narrowed to (`million`: the board and SLA scenarios;
`past`: the board at a past instant on 1,000,000 history rows)."""


def run(
    url: str | None,
    *,
    quick: bool = False,
    smoke: bool = False,
    json_path: str | None = None,
    say: Callable[[str], None] = print,
    only: Collection[str] | None = None,
) -> Report:
    """Run every scenario of the chosen scale on a scratch copy of the database at `url`
    (only the groups of `STEPS` named in `only`, when given)."""
    scale = SMOKE if smoke else QUICK if quick else FULL
    unknown = sorted(set(only or ()) - set(STEPS))
    if unknown:
        raise ValueError(f"unknown scenario group(s) {unknown}; choose from {list(STEPS)}")
    chosen = set(STEPS if only is None else only)
    if not scale.million:
        chosen.discard("million")
    past_rows = scale.past_history or (1_000_000 if only is not None and "past" in only else None)
    if past_rows is None:
        chosen.discard("past")
    began = time.perf_counter()
    with scratch(url) as place, ExitStack() as stack:
        fk = Flowkernel(place.url)
        try:
            machine = _machine(fk)
            say(
                f"flowkernel bench: {place.kind} ({machine['database_version']}), {scale.name} run,"
                f" {scale.rounds} round(s) per scenario, medians"
            )
            requested = STEPS if only is None else only
            for group, text in scale.notes:
                if group is None or group in requested:
                    say(f"  note: {text}")
            # Progress goes to a bar on a terminal's standard error, and nowhere when piped.
            bar = Progress(len(chosen), "bench")
            stack.callback(bar.close)

            def note(line: str) -> None:
                if bar.enabled:
                    bar.write(line)

            ctx = Context(fk, place, scale, note)
            measures: list[Measure] = []

            def step(name: str, work: Callable[[], list[Measure]]) -> None:
                if name.split()[0] not in chosen:
                    return
                note(f"- {name} ...")
                t = time.perf_counter()
                measures.extend(work())
                note(f"  done in {time.perf_counter() - t:.1f} s")
                bar.advance()

            station = scenarios.stations(ctx)
            step("move", lambda: scenarios.move(ctx))
            step("heartbeat", lambda: scenarios.heartbeat(ctx, station))
            step(
                "batch",
                lambda: [
                    *scenarios.batch(ctx, station),
                    *scenarios.heartbeat_batches(ctx, station),
                ],
            )
            step("http heartbeat", lambda: http_scenarios.http_heartbeat(ctx, station))
            step("compile", lambda: big_scenarios.compile_big(ctx))
            if scale.million:
                count = scale.million
                step("million items", lambda: big_scenarios.million(ctx, count))
            if past_rows is not None:
                rows = past_rows
                step("past board", lambda: past_scenarios.past_board(ctx, rows))
            step("memory", lambda: big_scenarios.memory(ctx, station))
        finally:
            fk.close()
    report = Report(
        place.kind,
        scale,
        machine,
        measures,
        _targets(place.kind, measures),
        time.perf_counter() - began,
    )
    say("")
    say(_table(report))
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report.document(), indent=2) + "\n", "utf-8")
        say(f"\nwrote {json_path}")
    return report


def main(
    url: str | None,
    *,
    quick: bool = False,
    smoke: bool = False,
    json_path: str | None = None,
    only: Collection[str] | None = None,
) -> int:
    """`flowkernel bench`: run and print; the exit status (0)."""
    run(url, quick=quick, smoke=smoke, json_path=json_path, only=only)
    return 0


# --- targets ---------------------------------------------------------------------------------


def _targets(database: str, measures: list[Measure]) -> list[Target]:
    """The issue's targets, as far as this run (database, scale) measured them."""
    by = {(m.scenario, m.baseline): m for m in measures}
    pg = database == "postgresql"
    targets: list[Target] = []

    def ratio(scenario: str, baseline: str, floor: float, name: str) -> None:
        m = by.get((scenario, baseline))
        value = m.ops / m.base_ops if m is not None and m.base_ops else None
        met = None if value is None else value >= floor
        targets.append(Target(name, database, value, "x", met))

    floor, peer = FLOOR, PEER
    ratio("move", floor, 0.9 if pg else 0.5, f"move >= {0.9 if pg else 0.5} x the floor")
    if not pg:
        ratio("move", peer, 10.0, "move >= 10 x the peer")
    sizes = sorted(
        int(m.scenario.rsplit("_", 1)[1]) for m in measures if m.scenario.startswith("heartbeat_b")
    )
    if pg and sizes:
        small = by.get((f"heartbeat_batch_{sizes[0]}", UPDATE_ANY))
        ratio(
            f"heartbeat_batch_{sizes[0]}",
            UPDATE_ANY,
            1 / 3,
            f"heartbeat batch of {sizes[0]:,} >= 1/3 x the floor's UPDATE = ANY",
        )
        if small is not None:
            name = f"heartbeat batch of {sizes[0]:,} >= 50,000 rows/s"
            targets.append(Target(name, database, small.ops, "rows/s", small.ops >= 50_000))
        large = by.get((f"heartbeat_batch_{sizes[-1]}", UPDATE_ANY))
        if small is not None and large is not None and len(sizes) > 1:
            per_row = large.ops / small.ops
            name = f"{sizes[-1]:,} per call at least as fast per row as {sizes[0]:,}"
            targets.append(Target(name, database, per_row, "x", per_row >= 1.0))
    if pg:
        for scenario, limit, name in (
            ("sla_scan_1m", 500.0, "SLA scan over 1,000,000 items < 0.5 s"),
            ("sla_detect_1m", 500.0, "SLA detection over 1,000,000 items < 0.5 s"),
            ("board_first_page_1m", 20.0, "first board page of 1,000,000 items < 20 ms"),
        ):
            m = by.get((scenario, _baseline(scenario)))
            ms = m.extra["ms"] if m is not None else None
            targets.append(Target(name, database, ms, "ms", None if ms is None else ms < limit))
    past = by.get(("past_board_first_page_1m_history", "present board (same pipeline)"))
    if pg and past is not None and past.extra["history_rows"] >= 1_000_000:
        ratio(
            "past_board_first_page_1m_history",
            "present board (same pipeline)",
            1 / 3,
            "past board's first page on 1,000,000 history rows within 3 x the present board's",
        )
    c = by.get(("compile_100_states_1000_transitions", "transitions Machine alone"))
    if c is not None:
        targets.append(
            Target(
                "compile 100 states, 1,000 transitions < 50 ms",
                database,
                c.extra["ms"],
                "ms",
                c.extra["ms"] < 50,
            )
        )
    mem = by.get(("memory_growth", None))
    if mem is not None:
        executions = int(mem.extra["executions"])
        name = f"memory growth over {executions:,} executions < 50 MB"
        targets.append(Target(name, database, mem.extra["mb"], "MB", mem.extra["mb"] < 50))
    return targets


def _baseline(scenario: str) -> str:
    return "raw (seed board query)" if scenario.startswith("board") else "raw (seed SLA query)"


# --- output ----------------------------------------------------------------------------------


def _table(report: Report) -> str:
    lines = [
        _line(("scenario", "engine", "baseline", "baseline ops", "ratio", "unit")),
    ]
    for m in report.measures:
        base = m.base_ops
        lines.append(
            _line(
                (
                    m.scenario,
                    f"{m.ops:,.1f}",
                    m.baseline or "-",
                    f"{base:,.1f}" if base else "-",
                    f"{m.ops / base:.2f}" if base else "-",
                    m.unit,
                )
            )
        )
    lines.append("")
    lines.append(OWN_SCHEMA)
    lines.append("")
    lines.append(_line(("target", "measured", "met"), widths=(52, 20, 8)))
    for t in report.targets:
        if t.measured is None:  # its scenario did not run
            continue
        measured = f"{t.measured:,.2f} {t.unit}"
        met = "-" if t.met is None else "yes" if t.met else "NO"
        lines.append(_line((t.name, measured, met), widths=(52, 20, 8)))
    lines.append(f"\n{report.database}, {report.scale.name} run in {report.seconds:.0f} s")
    return "\n".join(lines)


def _line(cells: tuple[str, ...], widths: tuple[int, ...] = (36, 14, 26, 14, 8, 12)) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()


def _machine(fk: Flowkernel) -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    memory_gb: float | None = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    with fk.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            version = str(conn.execute(text("SHOW server_version")).scalar())
            version = f"PostgreSQL {version}"
        else:
            version = f"SQLite {sqlite3.sqlite_version}"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "database_version": version,
        "load_average": [round(x, 2) for x in load] if load else None,
    }
