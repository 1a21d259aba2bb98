"""The per-stage totals of migration 0003 against a fresh GROUP BY, on both backends.

Hypothesis drives a random mix of engine operations (placements, moves, batch moves, soft
deletes, restores, drops, value writes and clears) and the LEO seed's raw SQL (placements of
items of other accounts, moves, value upserts and deletes, also on deleted items); after each
mix the totals the triggers kept must equal what counting the items again gives, and the board
must report them.
"""

from __future__ import annotations

import itertools
import math
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from flowkernel import (
    SYSTEM,
    Actor,
    ColumnSpec,
    Flowkernel,
    FlowkernelError,
    ItemNotFound,
    StageSpec,
)

ADMIN = Actor.user(1, 1)
STAGES = ("lead", "qualified", "proposal", "won")
ACCOUNTS = (1, 2, None)
"""Accounts of the items the raw SQL places (the pipeline belongs to account 1)."""

SEED_PLACE = """INSERT INTO flow_items (
flow_pipeline_id, flow_stage_id,
object_type, object_id,
iam_account_id, iam_user_id, assigned_iam_user_id
)
VALUES (
:pipeline_id, :first_stage_id,
'crm_opportunity', :opportunity_id,
:account_id, :user_id, :assigned_user_id
)
RETURNING id;"""

SEED_MOVE = """-- 1. Update the item
UPDATE flow_items
SET flow_stage_id = :new_stage_id,
last_stage_changed_at = NOW(),
checklist_state = NULL,
updated_at = NOW()
WHERE id = :item_id;"""

SEED_UPSERT_VALUE = """INSERT INTO flow_item_values (flow_item_id, flow_column_id, value)
VALUES (:item_id, :column_id, :value)
ON CONFLICT (flow_item_id, flow_column_id)
DO UPDATE SET value = EXCLUDED.value, updated_at = NOW();"""

object_ids = itertools.count(1)

amounts = st.integers(min_value=-100_000, max_value=100_000).map(lambda c: Decimal(c) / 100)
picks = st.integers(min_value=0, max_value=10_000)
operations = st.one_of(
    st.tuples(st.just("place"), st.sampled_from(STAGES[:3])),
    st.tuples(st.just("move"), picks, st.sampled_from(STAGES)),
    st.tuples(st.just("batch_move"), picks, st.sampled_from(STAGES)),
    st.tuples(st.just("delete"), picks),
    st.tuples(st.just("restore"), picks),
    st.tuples(st.just("drop"), picks),
    st.tuples(st.just("set_value"), picks, st.sampled_from(("amount", "cost")), amounts),
    st.tuples(st.just("clear_value"), picks, st.sampled_from(("amount", "cost"))),
    st.tuples(st.just("seed_place"), st.sampled_from(ACCOUNTS)),
    st.tuples(st.just("seed_move"), picks, st.sampled_from(STAGES)),
    st.tuples(st.just("seed_value"), picks, st.sampled_from(("amount", "note")), amounts),
    st.tuples(st.just("seed_clear"), picks),
)


class Mix:
    """A pipeline of account 1 with two number columns and a text column, and its items."""

    def __init__(self, fk: Flowkernel) -> None:
        self.fk = fk
        info = fk.pipelines.create_pipeline(
            f"Totals {next(object_ids)}",
            ADMIN,
            stages=[StageSpec(s.title(), probability=25 * (i + 1)) for i, s in enumerate(STAGES)],
            columns=[
                ColumnSpec("amount", "Amount", "number"),
                ColumnSpec("cost", "Cost", "number"),
                ColumnSpec("note", "Note", "text"),
            ],
        )
        self.pipeline = info.id
        self.stage = {s.code: s.id for s in info.stages}
        self.column = {c.name: c.id for c in info.columns}
        self.items: list[int] = []

    def pick(self, index: int) -> int | None:
        return self.items[index % len(self.items)] if self.items else None

    def run(self, op: tuple[Any, ...]) -> None:
        fk, kind = self.fk, op[0]
        if kind == "place":
            self.items.append(fk.place(self.pipeline, "deal", next(object_ids), ADMIN).id)
            if op[1] != "lead":
                fk.move(self.items[-1], op[1], ADMIN)
            return
        if kind == "seed_place":
            with fk.engine.begin() as conn:
                self.items.append(
                    conn.execute(
                        text(SEED_PLACE),
                        {
                            "pipeline_id": self.pipeline,
                            "first_stage_id": self.stage["lead"],
                            "opportunity_id": next(object_ids),
                            "account_id": op[1],
                            "user_id": 5,
                            "assigned_user_id": None,
                        },
                    ).scalar_one()
                )
            return
        item = self.pick(op[1])
        if item is None:
            return
        try:
            self._on_item(kind, item, op)
        except ItemNotFound:
            self.items.remove(item)  # dropped
        except Exception as exc:  # a refusal of the engine: the totals must not have moved
            if not isinstance(exc, FlowkernelError):
                raise

    def _on_item(self, kind: str, item: int, op: tuple[Any, ...]) -> None:
        fk = self.fk
        if kind == "move":
            fk.move(item, op[2], SYSTEM)
        elif kind == "batch_move":
            chosen = sorted({item, *(self.pick(op[1] + k) or item for k in (1, 3, 7))})
            fk.execute_batch(chosen, f"move_to_{op[2]}", SYSTEM, on_error="skip")
        elif kind == "delete":
            fk.items.delete(item, SYSTEM)
        elif kind == "restore":
            fk.items.restore(item, SYSTEM)
        elif kind == "drop":
            fk.items.drop(item, SYSTEM)
            self.items.remove(item)
        elif kind == "set_value":
            fk.items.set_value(item, op[2], op[3], SYSTEM)
        elif kind == "clear_value":
            fk.items.clear_value(item, op[2], SYSTEM)
        elif kind == "seed_move":
            with fk.engine.begin() as conn:
                conn.execute(text(SEED_MOVE), {"new_stage_id": self.stage[op[2]], "item_id": item})
        elif kind == "seed_value":
            with fk.engine.begin() as conn:
                conn.execute(
                    text(SEED_UPSERT_VALUE),
                    {"item_id": item, "column_id": self.column[op[2]], "value": str(op[3])},
                )
        elif kind == "seed_clear":
            with fk.engine.begin() as conn:
                conn.execute(
                    text("DELETE FROM flow_item_values WHERE flow_item_id = :i"), {"i": item}
                )


def counted(conn: Connection) -> tuple[dict[Any, int], dict[Any, tuple[int, Any]]]:
    """Items and number values per stage and account, counted again from the rows."""
    counts = {
        (r[0], r[1]): int(r[2])
        for r in conn.execute(
            text(
                "SELECT flow_stage_id, coalesce(iam_account_id, -1), count(*) FROM flow_items "
                "WHERE deleted_at IS NULL GROUP BY 1, 2"
            )
        )
    }
    sums = {
        (r[0], r[1], r[2]): (int(r[3]), r[4])
        for r in conn.execute(
            text(
                "SELECT i.flow_stage_id, v.flow_column_id, coalesce(i.iam_account_id, -1), "
                "count(*), sum(CAST(v.value AS NUMERIC)) "
                "FROM flow_item_values v JOIN flow_items i ON i.id = v.flow_item_id "
                "JOIN flow_columns c ON c.id = v.flow_column_id "
                "WHERE i.deleted_at IS NULL AND c.field_type = 'number' "
                "AND v.value IS NOT NULL AND v.value <> '' GROUP BY 1, 2, 3"
            )
        )
    }
    return counts, sums


def kept(conn: Connection) -> tuple[dict[Any, int], dict[Any, tuple[int, Any]]]:
    """The totals the triggers kept, slots added up, empty totals left out."""
    counts = {
        (r[0], r[1]): int(r[2])
        for r in conn.execute(
            text(
                "SELECT flow_stage_id, account_key, sum(item_count) FROM flow_stage_totals "
                "GROUP BY 1, 2 HAVING sum(item_count) <> 0"
            )
        )
    }
    sums = {
        (r[0], r[1], r[2]): (int(r[3]), r[4])
        for r in conn.execute(
            text(
                "SELECT flow_stage_id, flow_column_id, account_key, sum(value_count), "
                "sum(value_sum) FROM flow_stage_value_totals "
                "GROUP BY 1, 2, 3 HAVING sum(value_count) <> 0"
            )
        )
    }
    return counts, sums


def assert_totals_match(fk: Flowkernel) -> None:
    with fk.engine.connect() as conn:
        expected_counts, expected_sums = counted(conn)
        counts, sums = kept(conn)
    assert counts == expected_counts
    assert sums.keys() == expected_sums.keys()
    for key, (number, total) in expected_sums.items():
        assert sums[key][0] == number, key
        if fk.engine.dialect.name == "postgresql":
            assert sums[key][1] == total, key  # NUMERIC: exact
        else:  # SQLite adds REALs, in whatever order the rows came
            assert math.isclose(float(sums[key][1]), float(total), abs_tol=1e-6), key


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(operations, min_size=10, max_size=60))
def test_totals_equal_a_fresh_count_after_any_mix(
    fk: Flowkernel, ops: list[tuple[Any, ...]]
) -> None:
    mix = Mix(fk)
    for op in [("place", "lead"), ("seed_place", 2), ("seed_place", None), *ops]:
        mix.run(op)
    assert_totals_match(fk)
    board = fk.queries.board(mix.pipeline, SYSTEM, per_stage=1, value_column="amount")
    with fk.engine.connect() as conn:
        expected_counts, expected_sums = counted(conn)
    for stage in board.stages:
        assert stage.count == sum(n for (s, _a), n in expected_counts.items() if s == stage.id)
        total = sum(
            (
                Decimal(str(v))
                for (s, c, _a), (_n, v) in expected_sums.items()
                if s == stage.id and c == mix.column["amount"]
            ),
            Decimal(0),
        )
        assert stage.value_sum is not None
        assert math.isclose(float(stage.value_sum), float(total), abs_tol=1e-6)


def test_a_user_of_an_account_sees_the_totals_of_their_items(fk: Flowkernel) -> None:
    """On a platform pipeline (no account) an account's user counts the account's items and
    the platform's own, never another account's."""
    with fk.engine.begin() as conn:
        pipeline = conn.execute(
            text("INSERT INTO flow_pipelines (name) VALUES ('Platform') RETURNING id")
        ).scalar_one()
        stage = conn.execute(
            text(
                "INSERT INTO flow_stages (flow_pipeline_id, name) VALUES (:p, 'Open') RETURNING id"
            ),
            {"p": pipeline},
        ).scalar_one()
        column = conn.execute(
            text(
                "INSERT INTO flow_columns (flow_pipeline_id, name, label, field_type) "
                "VALUES (:p, 'amount', 'Amount', 'number') RETURNING id"
            ),
            {"p": pipeline},
        ).scalar_one()
        for account, amount in ((1, "10"), (1, "5"), (2, "100"), (None, "1")):
            item = conn.execute(
                text(SEED_PLACE),
                {
                    "pipeline_id": pipeline,
                    "first_stage_id": stage,
                    "opportunity_id": next(object_ids),
                    "account_id": account,
                    "user_id": 5,
                    "assigned_user_id": None,
                },
            ).scalar_one()
            conn.execute(
                text(SEED_UPSERT_VALUE), {"item_id": item, "column_id": column, "value": amount}
            )
    mine = fk.queries.board(pipeline, Actor.user(3, 1), value_column="amount").stages[0]
    theirs = fk.queries.board(pipeline, Actor.user(4, 2), value_column="amount").stages[0]
    nobody = fk.queries.board(pipeline, Actor.user(6, None), value_column="amount").stages[0]
    everyone = fk.queries.board(pipeline, SYSTEM, value_column="amount").stages[0]
    assert (mine.count, mine.value_sum) == (3, 16)
    assert (theirs.count, theirs.value_sum) == (2, 101)
    assert (nobody.count, nobody.value_sum) == (1, 1)
    assert (everyone.count, everyone.value_sum) == (4, 116)
    assert_totals_match(fk)


def test_a_column_turned_into_a_number_column_is_summed(fk: Flowkernel) -> None:
    info = fk.pipelines.create_pipeline(
        "Typed", ADMIN, stages=[StageSpec("Open")], columns=[ColumnSpec("size", "Size", "text")]
    )
    item = fk.place(info.id, "deal", next(object_ids), ADMIN)
    fk.items.set_value(item.id, "size", "12.5", ADMIN)
    with fk.engine.begin() as conn:
        conn.execute(text("UPDATE flow_columns SET field_type = 'number' WHERE name = 'size'"))
    assert fk.queries.board(info.id, ADMIN, value_column="size").stages[0].value_sum == Decimal(
        "12.5"
    )
    assert_totals_match(fk)
    with fk.engine.begin() as conn:
        conn.execute(text("UPDATE flow_columns SET field_type = 'text' WHERE name = 'size'"))
    assert_totals_match(fk)


def test_concurrent_moves_between_two_stages_keep_the_totals(
    fk: Flowkernel, database_url: str
) -> None:
    """Moves in both directions at once, by item and in batches, each in its own
    transaction: the totals rows are taken in key order, so none deadlocks and none is lost
    (on SQLite the writers take turns)."""
    info = fk.pipelines.create_pipeline(
        "Busy", ADMIN, stages=[StageSpec("Left"), StageSpec("Right")]
    )
    placed = [fk.place(info.id, "deal", next(object_ids), ADMIN).id for _ in range(48)]
    for item in placed[1::2]:
        fk.move(item, "right", ADMIN)
    kernels = [Flowkernel(database_url) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(kernels))

    def run(index: int, kernel: Flowkernel) -> None:
        mine = placed[index::4]
        try:
            start.wait()
            for turn in range(6):
                for item in mine:
                    here = kernel.item(item, ADMIN).state
                    kernel.move(item, "left" if here == "right" else "right", ADMIN)
                targets = ["move_to_left" if turn % 2 else "move_to_right"] * len(mine)
                kernel.execute_batch(mine, targets, ADMIN, on_error="skip")
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, k)) for i, k in enumerate(kernels)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        for k in kernels:
            k.close()
    assert errors == []
    assert_totals_match(fk)
    assert sum(s.count for s in fk.queries.board(info.id, ADMIN).stages) == len(placed)


def test_truncating_items_or_values_empties_what_their_triggers_keep(fk: Flowkernel) -> None:
    """`TRUNCATE` fires no row trigger; statement triggers empty the totals, the value totals
    and the SLA due queue and breaches (SQLite has no TRUNCATE: its DELETE runs the row ones)."""
    info = fk.pipelines.create_pipeline(
        "Cleared",
        ADMIN,
        stages=[StageSpec("Open", sla_days=1)],
        columns=[ColumnSpec("amount", "Amount", "number")],
    )
    for n in range(3):
        item = fk.place(info.id, "deal", next(object_ids), ADMIN)
        fk.items.set_value(item.id, "amount", n + 1, ADMIN)
    postgresql = fk.engine.dialect.name == "postgresql"
    truncate = "TRUNCATE {}" if postgresql else "DELETE FROM {}"
    assert len(fk.sla.scan(now=datetime.now(UTC) + timedelta(days=2), limit=2).fired) == 2
    with fk.engine.begin() as conn:  # two breaches fired, one still queued
        conn.execute(text(truncate.format("flow_item_values")))
    assert_totals_match(fk)
    assert fk.queries.board(info.id, ADMIN, value_column="amount").stages[0].value_sum == 0
    with fk.engine.begin() as conn:
        conn.execute(text(truncate.format("flow_items CASCADE" if postgresql else "flow_items")))
        left = [
            conn.execute(text(sql)).scalar_one()
            for sql in (
                "SELECT coalesce(sum(item_count), 0) FROM flow_stage_totals",
                "SELECT coalesce(sum(value_count), 0) FROM flow_stage_value_totals",
                "SELECT count(*) FROM flow_sla_due",
                "SELECT count(*) FROM flow_sla_breaches",
            )
        ]
    assert left == [0, 0, 0, 0]
    assert_totals_match(fk)
    assert fk.queries.board(info.id, ADMIN).stages[0].count == 0
    assert fk.sla.scan(now=datetime.now(UTC) + timedelta(days=2)).fired == ()
