"""How `flowkernel bench` measures: scales, measures, and rounds that alternate between sides.

A scenario returns `Measure`s: the engine's operations per second and each baseline's, one
figure per round. Rounds alternate which side runs first, so drift on a busy machine hits
both sides alike; the report takes medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flowkernel import Flowkernel

from .scratch import Scratch

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
    past_history: int | None = None  # history rows of the past-board scenario; None skips it


SMOKE = Scale(
    "smoke",
    1,
    40,
    10,
    2,
    50,
    None,
    2,
    300,
    ((None, "smoke: tiny figures, schema check only"),),
    past_history=2_000,
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
        ("past", "quick: no past board unless asked for (--scenario past)"),
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
    past_history=1_000_000,
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


def rate(op: Op, count: int, start: int = 0) -> float:
    """Operations per second of `count` calls of `op`, from call number `start`."""
    began = time.perf_counter()
    for i in range(start, start + count):
        op(i)
    return count / (time.perf_counter() - began)


def interleave(
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
            rates[name].append(rate(op, count, done[name]))
            done[name] += count
    return rates
