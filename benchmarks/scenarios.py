"""The scenarios of `flowkernel bench`, each against its baselines, rounds interleaved.

A scenario returns `Measure`s: the engine's operations per second and each baseline's, one
figure per round. Rounds alternate which side runs first, so drift on a busy machine hits
both sides alike; the report takes medians.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from transitions import Machine

from flowkernel import SYSTEM, Actor, ColumnSpec, Flowkernel, StageSpec
from flowkernel.compile.compiler import compile_class
from flowkernel.examples.charging_station import TRANSITIONS, build_station_class
from flowkernel.store.tables import (
    actions,
    item_values,
    items,
    methods,
    sla_breaches,
    sla_due,
    stages,
    transitions,
)

from . import anchors
from .baselines import HandRolled, Raw, handrolled_engine
from .scratch import Scratch, bare, load_million, place_rows

Op = Callable[[int], None]

FLOOR = "floor (seed SQL, bare tables)"
"""The anchors' floor: the seed's statements on the seed's bare tables, through the driver."""
PEER = "peer (ORM + transitions)"
"""The anchors' hand-rolled peer: one Session, a Machine per loaded row, commit per move."""
UPDATE_ANY = "floor UPDATE = ANY (bare table)"
"""The floor's batch: one UPDATE of the batch's rows of the bare `flow_items`."""


@dataclass(frozen=True)
class Scale:
    """How much work a run does."""

    name: str
    rounds: int
    moves: int  # engine and raw operations per round (move, heartbeat)
    handrolled: int  # hand-rolled operations per round
    batches: int  # batch calls per round
    batch_size: int
    million: int | None  # items of the SLA and board scenarios; None skips them
    compiles: int
    memory: int  # executions of the memory scenario
    # what to tell about the scale: (the scenario group a note is about, or None, its text)
    notes: tuple[tuple[str | None, str], ...] = ()
    memory_postgresql: int | None = None  # fewer on PostgreSQL, where each costs a commit


SMOKE = Scale(
    "smoke", 1, 40, 10, 2, 50, None, 2, 300, ((None, "smoke: tiny figures, schema check only"),)
)
QUICK = Scale(
    "quick",
    5,
    1000,
    200,
    10,
    1000,
    None,
    5,
    10_000,
    (
        ("million", "quick: no million-item scenarios"),
        ("memory", "quick: memory growth over 10,000 executions, not 1,000,000"),
    ),
)
FULL = Scale(
    "full",
    5,
    3000,
    400,
    30,
    1000,
    1_000_000,
    20,
    1_000_000,
    (
        (
            "memory",
            "full: on PostgreSQL memory growth over 100,000 executions (1,000,000 on SQLite)",
        ),
    ),
    memory_postgresql=100_000,
)


@dataclass
class Measure:
    """One scenario against one baseline: ops/s per round on each side, or a single value."""

    scenario: str
    baseline: str | None
    engine: list[float] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    unit: str = "ops/s"
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def ops(self) -> float:
        return statistics.median(self.engine)

    @property
    def base_ops(self) -> float | None:
        return statistics.median(self.base) if self.base else None


@dataclass
class Context:
    fk: Flowkernel
    scratch: Scratch
    scale: Scale
    say: Callable[[str], None]


def _rate(op: Op, count: int, start: int = 0) -> float:
    began = time.perf_counter()
    for i in range(start, start + count):
        op(i)
    return count / (time.perf_counter() - began)


def _interleave(
    ctx: Context, sides: Sequence[tuple[str, Op, int]], *, warmup: int
) -> dict[str, list[float]]:
    """Run every side `rounds` times, alternating which goes first; ops/s per side and round."""
    done = {name: 0 for name, _op, _n in sides}
    for name, op, _n in sides:
        for i in range(warmup):
            op(i)
        done[name] = warmup
    rates: dict[str, list[float]] = {name: [] for name, _op, _n in sides}
    for round_no in range(ctx.scale.rounds):
        order = list(sides) if round_no % 2 == 0 else list(reversed(sides))
        for name, op, count in order:
            rates[name].append(_rate(op, count, done[name]))
            done[name] += count
    return rates


# --- single moves ------------------------------------------------------------------------------


def move(ctx: Context) -> list[Measure]:
    """A stage move, one commit per move, as a user of the account, beside the floor and the
    peer of the anchors: five stages, the third requiring a column every item has filled,
    10,000 items, each move taking a random item one stage on (the last back to the first).

    The engine's pipeline has no automation: the floor only reads the automation the seed's
    tables hold, firing nothing, and an engine without one fires nothing either. Two more
    baselines run the same moves on Flowkernel's own migrated schema (its indexes, triggers
    and columns): the seed's SQL (`raw`) and a hand-rolled ORM (`hand-rolled`); they measure
    the engine against itself."""
    fk, scale = ctx.fk, ctx.scale
    admin = Actor.user(1, 1)
    codes = [f"s{n}" for n in range(anchors.STAGES)]
    pipeline = fk.pipelines.create_pipeline(
        "Bench moves",
        admin,
        stages=[StageSpec(code.upper(), code=code) for code in codes],
        columns=[ColumnSpec("close_date", label="Expected Close", field_type="date")],
    )
    fk.pipelines.require_column(pipeline.id, codes[2], "close_date", admin)
    compiled = fk.compiled(pipeline.id, 1)
    stage = {s.code: s.id for s in compiled.ordered_states}
    count = anchors.ITEMS
    with fk.engine.begin() as conn:
        pools = [
            place_rows(
                conn,
                pipeline.id,
                [stage[codes[0]]],
                "deal",
                range(base + 1, base + count + 1),
                account_id=1,
            )
            for base in (0, 1_000_000, 2_000_000)
        ]
        column = compiled.columns["close_date"].id
        conn.execute(
            insert(item_values),
            [
                {"flow_item_id": item, "flow_column_id": column, "value": "2026-07-01"}
                for pool in pools
                for item in pool
            ],
        )
    picks = [anchors.random_items() for _ in pools]
    at: list[dict[int, int]] = [{} for _ in pools]

    def step(side: int) -> tuple[int, int, int]:
        item = pools[side][picks[side]() - 1]
        old = at[side].get(item, 0)
        new = (old + 1) % anchors.STAGES
        at[side][item] = new
        return item, old, new

    with ExitStack() as stack:
        floor_space = stack.enter_context(bare(ctx.scratch, "floor"))
        peer_space = stack.enter_context(bare(ctx.scratch, "peer"))
        floor = anchors.floor(floor_space)
        stack.callback(floor.close)
        peer = anchors.Peer(handrolled_engine(peer_space))
        stack.callback(peer.close)
        raw = Raw(ctx.scratch)
        stack.callback(raw.close)
        hand = HandRolled(handrolled_engine(ctx.scratch), stage)
        stack.callback(hand.sessions.kw["bind"].dispose)
        floor_pick, peer_pick = anchors.random_items(), anchors.random_items()

        def engine_op(_i: int) -> None:
            item, _old, new = step(0)
            fk.move(item, codes[new], admin)

        def raw_op(_i: int) -> None:
            item, old, new = step(1)
            raw.move(item, pipeline.id, stage[codes[old]], stage[codes[new]], 1)

        def hand_op(_i: int) -> None:
            item, _old, new = step(2)
            hand.move(item, codes[new], 1)

        rates = _interleave(
            ctx,
            [
                ("engine", engine_op, scale.moves),
                ("floor", lambda _i: floor.move(floor_pick()), scale.moves),
                ("peer", lambda _i: peer.move(peer_pick()), scale.handrolled),
                ("raw", raw_op, scale.moves),
                ("hand-rolled", hand_op, scale.handrolled),
            ],
            warmup=min(50, scale.moves),
        )
    return [
        Measure("move", FLOOR, rates["engine"], rates["floor"]),
        Measure("move", PEER, rates["engine"], rates["peer"]),
        Measure("move", "raw", rates["engine"], rates["raw"]),
        Measure("move", "hand-rolled", rates["engine"], rates["hand-rolled"]),
    ]


# --- heartbeats --------------------------------------------------------------------------------


def _stations(ctx: Context) -> tuple[int, dict[str, int]]:
    """The example's charging-station class (platform-wide) and its state ids."""
    fk = ctx.fk
    build_station_class(fk, "bench_station")
    compiled = fk.compiled("bench_station")
    return compiled.id, {s.code: s.id for s in compiled.ordered_states}


STATION_TRANSITIONS = [
    *((source, method, target) for source, method, target in TRANSITIONS if source is not None),
    *((state, "heartbeat", None) for state in ("available", "unavailable", "faulted")),
]


def heartbeat(ctx: Context, station: tuple[int, dict[str, int]]) -> list[Measure]:
    """The hidden no-transition heartbeat on a station, one commit per call, system actor."""
    fk, scale = ctx.fk, ctx.scale
    class_id, state = station
    pool = max(1, min(scale.moves, 1000))
    with fk.engine.begin() as conn:
        pools = [
            place_rows(
                conn,
                class_id,
                [state["unavailable"]],
                "charging_station",
                range(base + 1, base + pool + 1),
                account_id=None,
            )
            for base in (0, 1_000_000, 2_000_000)
        ]
    raw = Raw(ctx.scratch)
    hand = HandRolled(handrolled_engine(ctx.scratch), state)
    params = {"status": "ok"}

    def engine_op(i: int) -> None:
        fk.execute(pools[0][i % pool], "heartbeat", SYSTEM, params=params)

    def raw_op(i: int) -> None:
        raw.heartbeat(pools[1][i % pool], class_id, state["unavailable"], None)

    def hand_op(i: int) -> None:
        hand.heartbeat(pools[2][i % pool], STATION_TRANSITIONS)

    try:
        rates = _interleave(
            ctx,
            [
                ("engine", engine_op, scale.moves),
                ("raw", raw_op, scale.moves),
                ("hand-rolled", hand_op, scale.handrolled),
            ],
            warmup=min(50, pool),
        )
    finally:
        raw.close()
        hand.sessions.kw["bind"].dispose()
    return [
        Measure("heartbeat", "raw", rates["engine"], rates["raw"]),
        Measure("heartbeat", "hand-rolled", rates["engine"], rates["hand-rolled"]),
    ]


# --- batches -----------------------------------------------------------------------------------


def batch(ctx: Context, station: tuple[int, dict[str, int]]) -> list[Measure]:
    """A hidden method on `batch_size` stations per call: half heartbeats (no transition), half
    availability reports that change state, every item's handlers run; items per second.

    Two baselines: a batched UPDATE of one timestamp on as many rows, and the batch's own
    writes (state changes, history, call log) as hand-written set-based SQL."""
    fk, scale = ctx.fk, ctx.scale
    class_id, state = station
    size = scale.batch_size
    with fk.engine.begin() as conn:
        mine, touched, written = (
            place_rows(
                conn,
                class_id,
                [state["unavailable"]],
                "charging_station",
                range(first, first + size),
                account_id=None,
            )
            for first in (5_000_001, 6_000_001, 8_000_001)  # object ids no other scenario uses
        )
    raw = Raw(ctx.scratch)
    params = {"status": "ok"}
    # each side's stations: odd ones report a change of availability, even ones a heartbeat
    flips = {"engine": [False] * size, "raw": [False] * size}

    def reports(side: str) -> list[tuple[str, int, int | None]]:
        """(method, stage, new stage or None) per station; flips the odd ones' availability."""
        available = flips[side]
        out: list[tuple[str, int, int | None]] = []
        for k in range(size):
            if k % 2 == 0:
                out.append(("heartbeat", state["unavailable"], None))
                continue
            was = "available" if available[k] else "unavailable"
            now = "unavailable" if available[k] else "available"
            out.append((now, state[was], state[now]))
            available[k] = not available[k]
        return out

    def engine_op(_i: int) -> None:
        methods = [method for method, _old, _new in reports("engine")]
        assert fk.execute_batch(mine, methods, SYSTEM, params=params).ok

    def writes_op(_i: int) -> None:
        calls = [(item, *report) for item, report in zip(written, reports("raw"), strict=True)]
        raw.batch_writes(class_id, calls)

    def update_op(_i: int) -> None:
        raw.batch_update(touched)

    try:
        rates = _interleave(
            ctx,
            [
                ("engine", engine_op, scale.batches),
                ("update", update_op, scale.batches),
                ("writes", writes_op, scale.batches),
            ],
            warmup=1,
        )
    finally:
        raw.close()
    engine = [r * size for r in rates["engine"]]
    return [
        Measure(
            "batch", "raw batched UPDATE", engine, [r * size for r in rates["update"]], "items/s"
        ),
        Measure(
            "batch", "raw batched writes", engine, [r * size for r in rates["writes"]], "items/s"
        ),
    ]


def heartbeat_batches(ctx: Context, station: tuple[int, dict[str, int]]) -> list[Measure]:
    """Device heartbeats in batches of `batch_size` and ten times as many stations per call,
    as a gateway sends them (the system actor; the heartbeat keeps only its last call per
    station), beside the floor's batch: one `UPDATE ... WHERE id = ANY(...)` of as many rows of
    the bare `flow_items`. Rows per second."""
    fk, scale = ctx.fk, ctx.scale
    class_id, state = station
    for code in ("available", "unavailable", "faulted"):
        fk.definitions.edit_method("bench_station", code, "heartbeat", call_log="last")
    sizes = [scale.batch_size, min(10 * scale.batch_size, anchors.ITEMS)]
    with fk.engine.begin() as conn:
        stations = place_rows(
            conn,
            class_id,
            [state["unavailable"]],
            "charging_station",
            range(9_000_001, 9_000_001 + sizes[-1]),
            account_id=None,
        )
    params = {"status": "ok"}
    measures: list[Measure] = []
    with bare(ctx.scratch, "floor") as space:
        floor = anchors.floor(space)
        try:
            for size in sizes:
                mine, rows = stations[:size], list(range(1, size + 1))

                def engine_op(_i: int, mine: list[int] = mine) -> None:
                    assert fk.execute_batch(mine, "heartbeat", SYSTEM, params=params).ok

                def floor_op(_i: int, rows: list[int] = rows) -> None:
                    floor.batch_update(rows)

                calls = max(1, scale.batches * scale.batch_size // size)
                rates = _interleave(
                    ctx, [("engine", engine_op, calls), ("floor", floor_op, calls)], warmup=1
                )
                measures.append(
                    Measure(
                        f"heartbeat_batch_{size}",
                        UPDATE_ANY,
                        [r * size for r in rates["engine"]],
                        [r * size for r in rates["floor"]],
                        "rows/s",
                    )
                )
        finally:
            floor.close()
    return measures


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
