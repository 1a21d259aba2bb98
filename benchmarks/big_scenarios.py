"""The scenarios of `flowkernel bench` at size: a big class compiled, memory over many
executions, a million items on the board and in the SLA scan."""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from transitions import Machine

from flowkernel import SYSTEM, Actor, StageSpec
from flowkernel.compile.compiler import compile_class
from flowkernel.store.tables import (
    actions,
    items,
    methods,
    sla_breaches,
    sla_due,
    stages,
    transitions,
)

from .baselines import Raw
from .measuring import Context, Measure
from .scratch import load_million, place_rows

# --- compile -----------------------------------------------------------------------------------


def compile_big(ctx: Context) -> list[Measure]:
    """Compile a class of 100 states and 1,000 transitions (10 global methods x 100 states)."""
    fk, scale = ctx.fk, ctx.scale
    d = fk.definitions
    d.add_class("bench_big", "Big class", object_type="bench")
    codes = [f"s{i:03d}" for i in range(100)]
    verbs = [f"bench_go_{j}" for j in range(10)]
    for verb in verbs:
        d.add_action(verb, verb)
    class_id = d.get_class("bench_big").id
    with fk.engine.begin() as conn:
        conn.execute(
            insert(stages),
            [
                {
                    "flow_pipeline_id": class_id,
                    "name": code,
                    "code": code,
                    "state_type": "created" if i == 0 else "enabled",
                    "position": i,
                }
                for i, code in enumerate(codes)
            ],
        )
        state_ids = {
            code: sid
            for code, sid in conn.execute(
                select(stages.c.code, stages.c.id).where(stages.c.flow_pipeline_id == class_id)
            )
        }
        action_ids = {
            code: aid
            for code, aid in conn.execute(
                select(actions.c.code, actions.c.id).where(actions.c.code.in_(verbs))
            )
        }
        conn.execute(
            insert(methods),
            [
                {
                    "class_id": class_id,
                    "state_id": None,
                    "action_id": action_ids[verb],
                    "code": verb,
                    "label": verb,
                    "sequence": j,
                }
                for j, verb in enumerate(verbs)
            ],
        )
        method_ids = {
            code: mid
            for code, mid in conn.execute(
                select(methods.c.code, methods.c.id).where(methods.c.class_id == class_id)
            )
        }
        conn.execute(
            insert(transitions),
            [
                {
                    "class_id": class_id,
                    "state_id": state_ids[code],
                    "method_id": method_ids[verb],
                    "new_state_id": state_ids[codes[(i + j + 1) % len(codes)]],
                }
                for i, code in enumerate(codes)
                for j, verb in enumerate(verbs)
            ],
        )
    graph = [
        (code, verb, codes[(i + j + 1) % len(codes)])
        for i, code in enumerate(codes)
        for j, verb in enumerate(verbs)
    ]

    def engine_op(_i: int) -> None:
        with fk.sessions.begin() as session:
            compiled = compile_class(session, class_id)
        assert sum(len(m) for m in compiled.methods.values()) == 1000

    def machine_op(_i: int) -> None:
        machine = Machine(
            model=None, states=codes, initial=None, auto_transitions=False, send_event=True
        )
        for source, trigger, dest in graph:
            machine.add_transition(trigger, source, dest)

    times: dict[str, list[float]] = {"engine": [], "machine": []}
    engine_op(0)
    machine_op(0)
    sides = (("engine", engine_op), ("machine", machine_op))
    for round_no in range(max(scale.compiles, 1)):
        for name, op in sides[:: 1 if round_no % 2 == 0 else -1]:
            began = time.perf_counter()
            op(round_no)
            times[name].append(time.perf_counter() - began)
    return [
        Measure(
            "compile_100_states_1000_transitions",
            "transitions Machine alone",
            [1 / t for t in times["engine"]],
            [1 / t for t in times["machine"]],
            unit="compiles/s",
            extra={"ms": statistics.median(times["engine"]) * 1000},
        )
    ]


# --- memory ------------------------------------------------------------------------------------


def _rss() -> float:
    """Resident memory of this process in MB."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: the peak, which is what grows anyway
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(ctx: Context, station: tuple[int, dict[str, int]]) -> list[Measure]:
    """Resident memory growth over many heartbeat executions in this process."""
    fk, scale = ctx.fk, ctx.scale
    class_id, state = station
    count = scale.memory
    if ctx.scratch.kind == "postgresql" and scale.memory_postgresql is not None:
        count = scale.memory_postgresql
    pool = 1000
    with fk.engine.begin() as conn:
        ids = place_rows(
            conn,
            class_id,
            [state["unavailable"]],
            "charging_station",
            range(7_000_001, 7_000_001 + pool),
            account_id=None,
        )
    params = {"status": "ok"}
    warmup = min(10_000, max(count // 10, 100))
    for i in range(warmup):
        fk.execute(ids[i % pool], "heartbeat", SYSTEM, params=params)
    gc.collect()
    before = _rss()
    began = time.perf_counter()
    step = max(count // 10, 1)
    for i in range(count):
        fk.execute(ids[i % pool], "heartbeat", SYSTEM, params=params)
        if i and i % step == 0:
            ctx.say(f"  memory: {i:,} executions, +{_rss() - before:.1f} MB")
    rate = count / (time.perf_counter() - began)
    gc.collect()
    growth = _rss() - before
    return [
        Measure(
            "memory_growth",
            None,
            [rate],
            unit="executions/s",
            extra={
                "mb": growth,
                "executions": float(count),
                "rss_before_mb": before,
                "rss_after_mb": before + growth,
            },
        )
    ]


# --- a million items -----------------------------------------------------------------------------


def million(ctx: Context, count: int) -> list[Measure]:
    """First board page and SLA scan of a pipeline with `count` items, 1% of them breached."""
    fk, scale = ctx.fk, ctx.scale
    admin = Actor.user(1, 1)
    pipeline = fk.pipelines.create_pipeline(
        "Bench million",
        admin,
        stages=[
            StageSpec("Open one", sla_days=1),
            StageSpec("Open two", sla_days=1),
            StageSpec("Open three", sla_days=1),
            StageSpec("Won", is_won=True),
            StageSpec("Lost", is_lost=True),
        ],
    )
    open_ids = [s.id for s in fk.compiled(pipeline.id, 1).ordered_states][:3]
    now = datetime.now(UTC)
    ctx.say(f"  loading {count:,} items ...")
    began = time.perf_counter()
    with fk.engine.begin() as conn:
        load_million(
            conn,
            pipeline.id,
            open_ids,
            count,
            account_id=1,
            breached_every=100,
            fresh=now - timedelta(hours=12),
            stale=now - timedelta(days=2),
        )
    ctx.say(f"  loaded in {time.perf_counter() - began:.1f} s")
    raw = Raw(ctx.scratch)
    results: list[Measure] = []
    try:
        board_times: dict[str, list[float]] = {"engine": [], "raw": []}
        per_stage = 50

        def engine_board() -> None:
            page = fk.queries.board(pipeline.id, admin, per_stage=per_stage)
            assert page.count == count

        def raw_board() -> None:
            raw.board(pipeline.id, per_stage * 5)

        def engine_stage() -> None:
            page = fk.queries.stage_items(pipeline.id, open_ids[0], admin, limit=per_stage)
            assert len(page.items) == per_stage

        engine_board()
        raw_board()
        engine_stage()
        board_times["stage"] = []
        for round_no in range(max(scale.rounds, 3)):
            sides = (("engine", engine_board), ("raw", raw_board), ("stage", engine_stage))
            for name, op in sides[:: 1 if round_no % 2 == 0 else -1]:
                t = time.perf_counter()
                op()
                board_times[name].append(time.perf_counter() - t)
        results.append(
            Measure(
                "board_first_page_1m",
                "raw (seed board query)",
                [1 / t for t in board_times["engine"]],
                [1 / t for t in board_times["raw"]],
                unit="pages/s",
                extra={"ms": statistics.median(board_times["engine"]) * 1000},
            )
        )
        results.append(
            Measure(
                "stage_first_page_1m",
                "raw (seed board query)",
                [1 / t for t in board_times["stage"]],
                [1 / t for t in board_times["raw"]],
                unit="pages/s",
                extra={"ms": statistics.median(board_times["stage"]) * 1000},
            )
        )

        detect: dict[str, list[float]] = {"engine": [], "raw": []}
        # the engine's detection: the due queue, in due order (as a scan reads it)
        due = (
            select(sla_due.c.flow_item_id)
            .where(sla_due.c.due_at <= datetime.now(UTC))
            .order_by(sla_due.c.due_at, sla_due.c.flow_item_id)
        )

        def engine_detect() -> int:
            with fk.engine.connect() as conn:
                return len(conn.execute(due).all())

        def raw_detect() -> int:
            return raw.sla_query(pipeline.id)

        expected = count // 100
        assert engine_detect() == expected, "engine detection"
        assert raw_detect() == expected, "seed SLA query"
        for round_no in range(max(scale.rounds, 3)):
            sides2: tuple[tuple[str, Callable[[], int]], ...] = (
                ("engine", engine_detect),
                ("raw", raw_detect),
            )
            for name, op2 in sides2[:: 1 if round_no % 2 == 0 else -1]:
                t = time.perf_counter()
                op2()
                detect[name].append(time.perf_counter() - t)
        results.append(
            Measure(
                "sla_detect_1m",
                "raw (seed SLA query)",
                [1 / t for t in detect["engine"]],
                [1 / t for t in detect["raw"]],
                unit="scans/s",
                extra={"ms": statistics.median(detect["engine"]) * 1000},
            )
        )

        ctx.say(f"  SLA scan: firing {expected:,} breaches, 1,000 per transaction ...")
        seed_sla = 1 / statistics.median(detect["raw"])
        t = time.perf_counter()
        report = fk.sla.scan(pipeline_id=pipeline.id, limit=expected + 1, batch_size=1000)
        scan_s = time.perf_counter() - t
        assert len(report.fired) == expected, len(report.fired)
        results.append(
            Measure(
                "sla_scan_1m",
                "raw (seed SLA query)",
                [1 / scan_s],
                [seed_sla],
                unit="scans/s",
                extra={"ms": scan_s * 1000, "breaches": float(expected)},
            )
        )
        # the same breaches again, one transaction each (the scan's default), for the rate
        with fk.engine.begin() as conn:
            conn.execute(delete(sla_breaches))
            conn.execute(
                insert(sla_due).from_select(
                    ["flow_item_id", "flow_pipeline_id", "flow_stage_id", "due_at"],
                    select(
                        items.c.id,
                        items.c.flow_pipeline_id,
                        items.c.flow_stage_id,
                        items.c.sla_due_at,
                    ).where(
                        items.c.flow_pipeline_id == pipeline.id,
                        items.c.sla_due_at <= datetime.now(UTC),
                    ),
                )
            )
        sample = min(expected, 1000)
        ctx.say(f"  SLA scan: firing {sample:,} breaches, one transaction each ...")
        t = time.perf_counter()
        single = fk.sla.scan(pipeline_id=pipeline.id, limit=sample)
        single_s = time.perf_counter() - t
        assert len(single.fired) == sample
        results.append(
            Measure(
                "sla_scan_per_item_1m",
                None,
                [sample / single_s],
                unit="breaches/s",
                extra={"ms_for_all": expected / (sample / single_s) * 1000},
            )
        )
    finally:
        raw.close()
    return results
