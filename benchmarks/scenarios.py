"""The scenarios of `flowkernel bench` on single operations: moves, heartbeats, batches.

A scenario returns `Measure`s: the engine's operations per second and each baseline's, one
figure per round. Rounds alternate which side runs first, so drift on a busy machine hits
both sides alike; the report takes medians.
"""

from __future__ import annotations

from contextlib import ExitStack

from sqlalchemy import insert

from flowkernel import SYSTEM, Actor, ColumnSpec, StageSpec
from flowkernel.examples.charging_station import TRANSITIONS, build_station_class
from flowkernel.store.tables import (
    item_values,
)

from . import anchors
from .baselines import HandRolled, Raw, handrolled_engine
from .measuring import FLOOR, PEER, UPDATE_ANY, Context, Measure, interleave
from .scratch import bare, place_rows

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

        rates = interleave(
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


def stations(ctx: Context) -> tuple[int, dict[str, int]]:
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
        rates = interleave(
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
        rates = interleave(
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
                rates = interleave(
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
