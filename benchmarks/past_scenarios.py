"""The board at a past instant against the present board, on a history of 1,000,000 rows."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from flowkernel import Actor, StageSpec

from .measuring import Context, Measure

ROWS_PER_ITEM = 10
PATH = (0, 1, 0, 1, 2, 1, 2, 3, 2)
"""The open stages (by index) an item's first nine rows move it through; the tenth is won,
lost or the stage it is in."""


def past_board(ctx: Context, rows: int) -> list[Measure]:
    """First page of the board a year into a history of `rows` rows, against the present
    board's first page, rounds alternating."""
    fk, scale = ctx.fk, ctx.scale
    admin = Actor.user(1, 1)
    pipeline = fk.pipelines.create_pipeline(
        "Bench past",
        admin,
        stages=[
            StageSpec("Lead"),
            StageSpec("Qualified"),
            StageSpec("Proposal"),
            StageSpec("Negotiation"),
            StageSpec("Won", is_won=True),
            StageSpec("Lost", is_lost=True),
        ],
    )
    ids = [s.id for s in fk.compiled(pipeline.id, 1).ordered_states]
    now = datetime.now(UTC).replace(microsecond=0)
    count = max(rows // ROWS_PER_ITEM, 1)
    ctx.say(f"  loading {count:,} items with {count * ROWS_PER_ITEM:,} history rows ...")
    began = time.perf_counter()
    with fk.engine.begin() as conn:
        load_history(conn, pipeline.id, ids, count, start=now - timedelta(days=420))
    ctx.say(f"  loaded in {time.perf_counter() - began:.1f} s")
    moment = now - timedelta(days=200)
    per_stage = 50
    t = time.perf_counter()
    first = fk.queries.board(pipeline.id, admin, per_stage=per_stage, as_of=moment)
    counting_s = time.perf_counter() - t
    assert first.count > 0 and all(len(s.items) == min(s.count, per_stage) for s in first.stages)

    def present() -> None:
        fk.queries.board(pipeline.id, admin, per_stage=per_stage)

    def then() -> None:
        fk.queries.board(pipeline.id, admin, per_stage=per_stage, as_of=moment)

    present()
    then()
    times: dict[str, list[float]] = {"past": [], "present": []}
    for round_no in range(max(scale.rounds, 5)):
        sides = (("past", then), ("present", present))
        for name, op in sides[:: 1 if round_no % 2 == 0 else -1]:
            t = time.perf_counter()
            op()
            times[name].append(time.perf_counter() - t)
    return [
        Measure(
            "past_board_first_page_1m_history",
            "present board (same pipeline)",
            [1 / t for t in times["past"]],
            [1 / t for t in times["present"]],
            unit="pages/s",
            extra={
                "ms": statistics.median(times["past"]) * 1000,
                "present_ms": statistics.median(times["present"]) * 1000,
                "history_rows": float(count * ROWS_PER_ITEM),
                "first_counting_s": counting_s,
            },
        )
    ]


def load_history(
    conn: Connection, pipeline_id: int, stage_ids: list[int], count: int, *, start: datetime
) -> None:
    """Insert `count` items set-based, each with ten history rows: item g enters at a point
    of the year after `start` spread by g, and moves every (g % 5 + 1) days along `PATH`,
    then to won, lost or its open stage (by g % 3)."""
    params: dict[str, Any] = {"p": pipeline_id, "n": count, "start": start, "span": 365 * 86400}
    params.update({f"s{i}": sid for i, sid in enumerate(stage_ids)})
    path = " ".join(f"WHEN {k} THEN :s{stage}" for k, stage in enumerate(PATH))
    last = "CASE g % 3 WHEN 0 THEN :s4 WHEN 1 THEN :s5 ELSE :s2 END"
    stage = f"(CASE k {path} ELSE {last} END)"
    before = f"(CASE k - 1 {path} ELSE NULL END)"
    postgresql = conn.dialect.name == "postgresql"

    def seconds(step: str) -> str:  # since `start`: g's entry, then a move every g % 5 + 1 days
        return f"((CAST(g AS BIGINT) * :span / :n) + {step} * (g % 5 + 1) * 86400)"

    if postgresql:
        series, steps = "generate_series(1, :n) AS s(g)", "generate_series(0, 9) AS r(k)"

        def moment(step: str) -> str:
            return f"(CAST(:start AS timestamptz) + make_interval(secs => {seconds(step)}))"

    else:
        params["start"] = start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        series = (
            "(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
            "SELECT g FROM s)"
        )
        steps = (
            "(WITH RECURSIVE r(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM r WHERE k < 9) "
            "SELECT k FROM r)"
        )

        def moment(step: str) -> str:
            return f"strftime('%Y-%m-%d %H:%M:%f', :start, '+' || {seconds(step)} || ' seconds')"

    at, nxt, final_at = moment("k"), moment("(k + 1)"), moment("9")
    conn.execute(
        text(
            "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, object_id,"
            " iam_account_id, position, last_stage_changed_at, created_at, updated_at) "
            f"SELECT :p, {last}, 'deal', g, 1, g, {final_at}, {final_at}, {final_at} FROM {series}"
        ),
        params,
    )
    conn.execute(
        text(
            "INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, from_stage_id,"
            " to_stage_id, moved_by_iam_user_id, moved_at, is_system, iam_account_id, valid_to) "
            f"SELECT i.id, :p, {before}, {stage}, 1, {at}, false, 1, "
            f"CASE WHEN k < 9 THEN {nxt} END "
            f"FROM flow_items AS i JOIN {series} ON i.object_id = g AND i.flow_pipeline_id = :p"
            f" CROSS JOIN {steps} ORDER BY i.id, k"
        ),
        params,
    )
    conn.execute(text("ANALYZE flow_stage_history" if postgresql else "ANALYZE"))
    if postgresql:
        conn.execute(text("ANALYZE flow_items"))
