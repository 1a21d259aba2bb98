"""History with validity periods: each row holds the period its state held, kept in the
move's transaction (by the engine and by the seed's own SQL), read by index."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rows import every_row
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from flowkernel import Actor, Flowkernel, InvalidArgument, UnknownDefinition
from flowkernel.definition.pipelines.admin import StageSpec

REP = Actor.user(1, 1)
OTHER = Actor.user(1, 2)


@pytest.fixture
def pipeline(fk: Flowkernel) -> int:
    stages = [StageSpec("Lead"), StageSpec("Qualified"), StageSpec("Won", is_won=True)]
    return fk.pipelines.create_pipeline("Sales", REP, stages=stages).id


def test_each_move_closes_the_period_it_ends(fk: Flowkernel, pipeline: int) -> None:
    deal = fk.place(pipeline, "deal", 1, REP).id
    fk.move(deal, "qualified", REP)
    fk.move(deal, "won", REP)
    rows = fk.history(deal, REP)
    assert [r.to_state for r in rows] == ["lead", "qualified", "won"]
    assert [r.valid_to for r in rows] == [rows[1].moved_at, rows[2].moved_at, None]
    # the state at an instant: the row whose period holds it
    before = rows[0].moved_at - timedelta(microseconds=1)
    assert fk.state_at(deal, before, REP) is None
    for row in rows:
        assert fk.state_at(deal, row.moved_at, REP) == row.to_state
    assert fk.state_at(deal, rows[2].moved_at + timedelta(days=1), REP) == "won"
    # the items in a state at an instant
    assert fk.queries.items_at(pipeline, "lead", rows[0].moved_at, REP) == [deal]
    assert fk.queries.items_at(pipeline, "lead", rows[1].moved_at, REP) == []
    assert fk.queries.items_at(pipeline, "qualified", rows[1].moved_at, REP) == [deal]


def test_a_drop_closes_the_last_period(fk: Flowkernel, pipeline: int) -> None:
    deal = fk.place(pipeline, "deal", 1, REP).id
    fk.items.delete(deal, REP)
    fk.items.drop(deal, REP)
    [row] = fk.history(deal, REP)
    assert row.valid_to is not None and row.valid_to >= row.moved_at
    assert fk.state_at(deal, row.moved_at, REP) == "lead"
    assert fk.state_at(deal, row.valid_to, REP) is None  # gone since
    assert fk.queries.items_at(pipeline, "lead", row.moved_at, REP) == [deal]


def test_the_seeds_own_move_closes_the_open_period(fk: Flowkernel, pipeline: int) -> None:
    deal = fk.place(pipeline, "deal", 1, REP).id
    [placed] = fk.history(deal, REP)
    later = placed.moved_at + timedelta(minutes=5)
    # SQLite keeps UTC text without an offset; PostgreSQL a timestamptz
    written = later if fk.engine.dialect.name == "postgresql" else later.replace(tzinfo=None)
    info = fk.pipelines.get_pipeline(pipeline, REP)
    lead, qualified = info.stage("lead").id, info.stage("qualified").id
    with fk.engine.begin() as conn:  # the seed's statements, as a host's SQL writes them
        conn.execute(
            text("UPDATE flow_items SET flow_stage_id = :s WHERE id = :i"),
            {"s": qualified, "i": deal},
        )
        conn.execute(
            text(
                "INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, from_stage_id, "
                "to_stage_id, moved_by_iam_user_id, moved_at) VALUES (:i, :p, :f, :t, 1, :m)"
            ),
            {"i": deal, "p": pipeline, "f": lead, "t": qualified, "m": written},
        )
    rows = fk.history(deal, REP)
    assert [(r.to_state, r.valid_to) for r in rows] == [("lead", later), ("qualified", None)]
    assert fk.state_at(deal, later - timedelta(seconds=1), REP) == "lead"
    assert fk.state_at(deal, later, REP) == "qualified"


def test_an_item_has_one_open_period(fk: Flowkernel, pipeline: int) -> None:
    deal = fk.place(pipeline, "deal", 1, REP).id
    fk.move(deal, "qualified", REP)
    before = every_row(fk)
    with pytest.raises(IntegrityError), fk.engine.begin() as conn:
        conn.execute(
            text("UPDATE flow_stage_history SET valid_to = NULL WHERE flow_item_id = :i"),
            {"i": deal},
        )
    assert every_row(fk) == before


def test_periods_are_read_by_index(fk: Flowkernel, pipeline: int) -> None:
    deal = fk.place(pipeline, "deal", 1, REP).id
    postgresql = fk.engine.dialect.name == "postgresql"
    explain = "EXPLAIN " if postgresql else "EXPLAIN QUERY PLAN "
    state_at = (
        "SELECT to_stage_id FROM flow_stage_history WHERE flow_item_id = :i "
        "AND moved_at <= :t AND (valid_to IS NULL OR valid_to > :t) "
        "ORDER BY moved_at DESC, id DESC LIMIT 1"
    )
    in_state = (
        "SELECT flow_item_id FROM flow_stage_history WHERE flow_pipeline_id = :p "
        "AND to_stage_id = :s "
        "AND moved_at <= :t AND (valid_to IS NULL OR valid_to > :t) ORDER BY flow_item_id"
    )
    [row] = fk.history(deal, REP)
    stage = fk.pipelines.get_pipeline(pipeline, REP).stage("lead").id
    with fk.engine.connect() as conn:
        if postgresql:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
        plans = [
            " ".join(
                str(line[-1])
                for line in conn.execute(
                    text(explain + sql),
                    {"i": deal, "p": pipeline, "s": stage, "t": row.moved_at},
                )
            )
            for sql in (state_at, in_state)
        ]
    assert "ix_flow_stage_history_item" in plans[0], plans[0]
    assert "ix_flow_stage_history_pipeline_to" in plans[1], plans[1]


def test_items_at_keeps_tenancy_and_refuses_bad_input(fk: Flowkernel, pipeline: int) -> None:
    deal = fk.place(pipeline, "deal", 1, REP).id
    [row] = fk.history(deal, REP)
    with pytest.raises(UnknownDefinition):
        fk.queries.items_at(pipeline, "lead", row.moved_at, OTHER)
    with pytest.raises(UnknownDefinition):
        fk.queries.items_at(pipeline, "nowhere", row.moved_at, REP)
    for bad in ({"limit": 0}, {"after": "x"}, {"after": True}):
        with pytest.raises(InvalidArgument):
            fk.queries.items_at(pipeline, "lead", row.moved_at, REP, **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        fk.queries.items_at(pipeline, "lead", "yesterday", REP)  # type: ignore[arg-type]
    assert fk.queries.items_at(pipeline, "lead", row.moved_at, REP, after=deal) == []
