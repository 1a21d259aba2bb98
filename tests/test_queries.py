"""The read side: board, item history, pipelines of an object, funnel, time in stage, events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text, update

from flowkernel import (
    SYSTEM,
    Actor,
    Flowkernel,
    InvalidArgument,
    ItemNotFound,
    UnknownDefinition,
)
from flowkernel.store.tables import (
    automations,
    columns,
    history,
    item_values,
    items,
    method_calls,
    stages,
)

ACCOUNT = 10
ALICE = Actor.user(1, ACCOUNT)
MALLORY = Actor.user(66, 20)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

SALES = (
    ("lead", "Lead", {"probability": 10, "sla_days": 7}),
    ("qualified", "Qualified", {"probability": 30, "sla_days": 14}),
    ("proposal", "Proposal", {"probability": 60, "sla_days": 10}),
    ("won", "Won", {"probability": 100, "is_won": True, "state_type": "disabled"}),
    ("lost", "Lost", {"probability": 0, "is_lost": True, "state_type": "disabled"}),
)


def make_pipeline(
    fk: Flowkernel,
    code: str = "sales",
    account: int | None = ACCOUNT,
    spec: tuple[tuple[str, str, Mapping[str, Any]], ...] = SALES,
) -> tuple[int, dict[str, int]]:
    """A LEO pipeline built through the authoring API, stage attributes set by SQL."""
    info = fk.definitions.add_class(code, code.title(), movement="free", account_id=account)
    ids: dict[str, int] = {}
    for stage_code, label, attrs in spec:
        state = fk.definitions.add_state(code, "enabled", stage_code, label, account_id=account)
        ids[stage_code] = state.id
        if attrs:
            with fk.engine.begin() as conn:
                conn.execute(update(stages).where(stages.c.id == state.id).values(**attrs))
    return info.id, ids


def add_number_column(fk: Flowkernel, pipeline_id: int, name: str = "contract_value") -> int:
    with fk.engine.begin() as conn:
        return int(
            conn.execute(
                insert(columns)
                .values(flow_pipeline_id=pipeline_id, name=name, label=name, field_type="number")
                .returning(columns.c.id)
            ).scalar_one()
        )


def set_value(fk: Flowkernel, item_id: int, column_id: int, value: str | None) -> None:
    with fk.engine.begin() as conn:
        conn.execute(
            insert(item_values).values(flow_item_id=item_id, flow_column_id=column_id, value=value)
        )


def set_history_times(fk: Flowkernel, item_id: int, *moments: datetime) -> None:
    """Rewrite an item's history rows (oldest first) to happen at `moments`."""
    with fk.engine.begin() as conn:
        ids = (
            conn.execute(
                select(history.c.id).where(history.c.flow_item_id == item_id).order_by(history.c.id)
            )
            .scalars()
            .all()
        )
        assert len(ids) == len(moments)
        for row_id, moment in zip(ids, moments, strict=True):
            conn.execute(update(history).where(history.c.id == row_id).values(moved_at=moment))
        conn.execute(
            update(items).where(items.c.id == item_id).values(last_stage_changed_at=moments[-1])
        )


# --- board -------------------------------------------------------------------------------------


def test_board_lists_stages_items_counts_and_sums(fk: Flowkernel) -> None:
    pid, _stage = make_pipeline(fk)
    value = add_number_column(fk, pid)
    placed = [fk.place("sales", "crm_opportunity", n, ALICE) for n in range(1, 6)]
    for item, amount in zip(placed, ("1000", "2500.50", "4000", None, "300"), strict=True):
        if amount is not None:
            set_value(fk, item.id, value, amount)
    fk.move(placed[2].id, "qualified", ALICE)
    fk.move(placed[4].id, "won", ALICE)
    fk.execute(placed[3].id, "delete", ALICE)  # deleted items leave the board

    board = fk.queries.board(pid, ALICE, value_column="contract_value")

    assert [s.code for s in board.stages] == ["lead", "qualified", "proposal", "won", "lost"]
    lead, qualified, proposal, won, lost = board.stages
    assert [i.id for i in lead.items] == [placed[0].id, placed[1].id]
    assert lead.count == 2
    assert lead.value_sum == Decimal("3500.50")
    assert lead.weighted_value == Decimal("350.05")
    assert [i.value for i in lead.items] == [Decimal("1000"), Decimal("2500.50")]
    assert (qualified.count, qualified.value_sum, qualified.weighted_value) == (
        1,
        Decimal(4000),
        Decimal(1200),
    )
    assert (proposal.count, proposal.value_sum, proposal.items) == (0, Decimal(0), ())
    assert (won.count, won.value_sum, won.weighted_value) == (1, Decimal(300), Decimal(300))
    assert (lost.count, lost.weighted_value) == (0, Decimal(0))
    assert board.count == 4
    assert board.value_sum == Decimal("7800.50")
    assert board.weighted_value == Decimal("1850.05")
    assert board.next_cursor is None
    card = lead.items[0]
    assert (card.object_type, card.object_id, card.position) == ("crm_opportunity", 1, 0)
    assert card.last_stage_changed_at is not None
    assert card.sla_due_at == card.last_stage_changed_at + timedelta(days=7)
    with pytest.raises(FrozenInstanceError):
        board.count = 0  # type: ignore[misc]

    plain = fk.queries.board(pid, ALICE, value_column=None)
    assert plain.value_sum is None and plain.stages[0].value_sum is None
    assert plain.stages[0].weighted_value is None and plain.stages[0].items[0].value is None
    # by default the sums are the pipeline's first active number column's, as everywhere
    default = fk.queries.board(pid, ALICE)
    assert default.value_column == "contract_value" and default.value_sum == Decimal("7800.5")


def test_board_orders_by_position_then_id_and_matches_the_seed_query(fk: Flowkernel) -> None:
    pid, _stage = make_pipeline(fk)
    placed = [fk.place("sales", "crm_opportunity", n, ALICE).id for n in range(1, 5)]
    with fk.engine.begin() as conn:  # positions as a team's own SQL might leave them: ties
        for item_id, position in zip(placed, (3, 1, 1, 0), strict=True):
            conn.execute(update(items).where(items.c.id == item_id).values(position=position))
    board = fk.queries.board(pid, ALICE)
    expected = [placed[3], placed[1], placed[2], placed[0]]
    assert [i.id for i in board.stages[0].items] == expected
    with fk.engine.connect() as conn:
        seed = conn.execute(
            text(
                "SELECT fs.name AS stage, fs.position, fi.id, fi.object_type, fi.object_id, "
                "fi.assigned_iam_user_id, fi.last_stage_changed_at "
                "FROM flow_stages fs "
                "LEFT JOIN flow_items fi ON fi.flow_stage_id = fs.id AND fi.deleted_at IS NULL "
                "WHERE fs.flow_pipeline_id = :pipeline_id AND fs.deleted_at IS NULL "
                "ORDER BY fs.position, fi.position, fi.id"
            ),
            {"pipeline_id": pid},
        ).all()
    assert [(r.stage, r.id) for r in seed] == [
        (s.name, i.id) for s in board.stages for i in s.items
    ] + [(s.name, None) for s in board.stages if not s.items]


def test_board_pages_each_stage_by_page_and_by_cursor(fk: Flowkernel) -> None:
    pid, stage = make_pipeline(fk)
    lead = [fk.place("sales", "crm_opportunity", n, ALICE).id for n in range(1, 8)]
    for item_id in lead[5:]:
        fk.move(item_id, "qualified", ALICE)
    lead, qualified = lead[:5], lead[5:]

    first = fk.queries.board(pid, ALICE, per_stage=2)
    assert [i.id for i in first.stages[0].items] == lead[:2]
    assert [i.id for i in first.stages[1].items] == qualified
    assert first.stages[0].count == 5 and first.stages[1].next_cursor is None
    assert first.next_cursor is not None

    second = fk.queries.board(pid, ALICE, per_stage=2, page=1)
    assert [i.id for i in second.stages[0].items] == lead[2:4]
    assert second.stages[1].items == ()
    assert fk.queries.board(pid, ALICE, per_stage=2, page=3).stages[0].items == ()

    seen: list[int] = []
    board = first
    while True:
        seen.extend(i.id for i in board.stages[0].items)
        if board.next_cursor is None:
            break
        board = fk.queries.board(pid, ALICE, per_stage=2, cursor=board.next_cursor)
        assert board.stages[1].items == ()  # complete stages come back empty
        assert board.stages[0].count == 5  # totals stay whole
    assert seen == lead

    pages: list[int] = []
    cursor = first.stages[0].next_cursor
    while cursor is not None:
        page = fk.queries.stage_items(pid, "lead", ALICE, limit=2, cursor=cursor)
        pages.extend(i.id for i in page.items)
        cursor = page.next_cursor
    assert pages == lead[2:]
    by_id = fk.queries.stage_items(pid, stage["qualified"], ALICE)
    assert [i.id for i in by_id.items] == qualified and by_id.next_cursor is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"per_stage": 0}, InvalidArgument),
        ({"per_stage": 1001}, InvalidArgument),
        ({"per_stage": True}, InvalidArgument),
        ({"page": -1}, InvalidArgument),
        ({"page": 1, "cursor": "1:0:1"}, InvalidArgument),
        ({"cursor": "garbage"}, InvalidArgument),
        ({"cursor": ""}, InvalidArgument),
        ({"value_column": "nope"}, UnknownDefinition),
        ({"value_column": "decision_maker"}, InvalidArgument),
    ],
)
def test_board_refuses_bad_arguments(
    fk: Flowkernel, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    pid, _ = make_pipeline(fk)
    with fk.engine.begin() as conn:
        conn.execute(
            insert(columns).values(
                flow_pipeline_id=pid, name="decision_maker", label="DM", field_type="text"
            )
        )
    fk.place("sales", "crm_opportunity", 1, ALICE)
    with pytest.raises(error):
        fk.queries.board(pid, ALICE, **kwargs)
    assert fk.queries.board(pid, ALICE).count == 1


def test_board_is_scoped_to_the_actors_account(fk: Flowkernel) -> None:
    pid, _ = make_pipeline(fk)
    fk.place("sales", "crm_opportunity", 1, ALICE)
    with pytest.raises(UnknownDefinition):
        fk.queries.board(pid, MALLORY)
    with pytest.raises(UnknownDefinition):
        fk.queries.board(pid + 1000, ALICE)
    with pytest.raises(UnknownDefinition):
        fk.queries.stage_items(pid, "lead", MALLORY)
    with pytest.raises(UnknownDefinition):
        fk.queries.stage_items(pid, "nowhere", ALICE)
    with pytest.raises(InvalidArgument):
        fk.queries.board("1", ALICE)  # type: ignore[arg-type]
    assert fk.queries.board(pid, SYSTEM).count == 1
    assert fk.queries.board(pid, Actor.system(ACCOUNT)).count == 1
    with pytest.raises(UnknownDefinition):
        fk.queries.board(pid, Actor.system(20))


def test_platform_pipeline_shows_each_account_its_own_items(fk: Flowkernel) -> None:
    pid, _stage = make_pipeline(fk, "support", account=None)
    bob = Actor.user(2, 20)
    mine = fk.place("support", "ticket", 1, ALICE).id
    theirs = fk.place("support", "ticket", 2, bob).id
    fk.move(mine, "qualified", ALICE)
    fk.move(theirs, "qualified", bob)
    assert [i.id for s in fk.queries.board(pid, ALICE).stages for i in s.items] == [mine]
    assert fk.queries.board(pid, bob).count == 1
    assert fk.queries.board(pid, SYSTEM).count == 2
    assert fk.queries.conversion(pid, "lead", "qualified", ALICE).entered == 1
    assert fk.queries.conversion(pid, "lead", "qualified", SYSTEM).entered == 2
    assert [t.entries for t in fk.queries.stage_times(pid, ALICE)][:2] == [1, 1]
    assert [t.entries for t in fk.queries.stage_times(pid, SYSTEM)][:2] == [2, 2]
    assert [p.item_id for p in fk.queries.pipelines_of("ticket", 2, ALICE)] == []
    with pytest.raises(ItemNotFound):
        fk.queries.item_history(theirs, ALICE)


# --- item history, pipelines of an object ------------------------------------------------------


def test_item_history_names_stages_oldest_first(fk: Flowkernel) -> None:
    _pid, _ = make_pipeline(fk)
    item = fk.place("sales", "crm_opportunity", 7, ALICE).id
    fk.move(item, "qualified", ALICE)
    fk.move(item, "lead", SYSTEM)
    fk.move(item, "won", ALICE)
    moves = fk.queries.item_history(item, ALICE)
    assert [(m.from_stage, m.to_stage) for m in moves] == [
        (None, "Lead"),
        ("Lead", "Qualified"),
        ("Qualified", "Lead"),
        ("Lead", "Won"),
    ]
    assert [m.moved_by for m in moves] == [1, 1, None, 1]
    assert [m.is_system for m in moves] == [False, False, True, False]
    assert moves[1].method == "move_to_qualified"
    assert [m.moved_at for m in moves] == sorted(m.moved_at for m in moves)
    with fk.engine.connect() as conn:
        seed = conn.execute(
            text(
                "SELECT from_s.name AS from_stage, to_s.name AS to_stage, "
                "fsh.moved_by_iam_user_id, fsh.moved_at "
                "FROM flow_stage_history fsh "
                "LEFT JOIN flow_stages from_s ON from_s.id = fsh.from_stage_id "
                "JOIN flow_stages to_s ON to_s.id = fsh.to_stage_id "
                "WHERE fsh.flow_item_id = :item_id ORDER BY fsh.moved_at"
            ),
            {"item_id": item},
        ).all()
    assert [(r.from_stage, r.to_stage, r.moved_by_iam_user_id) for r in seed] == [
        (m.from_stage, m.to_stage, m.moved_by) for m in moves
    ]

    fk.execute(item, "delete", ALICE)
    fk.execute(item, "drop", ALICE)
    assert len(fk.queries.item_history(item, ALICE)) == 4  # the history outlives the item
    with pytest.raises(ItemNotFound):
        fk.queries.item_history(item, MALLORY)
    with pytest.raises(ItemNotFound):
        fk.queries.item_history(item + 1000, ALICE)


def test_pipelines_of_an_object(fk: Flowkernel) -> None:
    sales, _ = make_pipeline(fk, "sales")
    support, _ = make_pipeline(fk, "support")
    other, _ = make_pipeline(fk, "elsewhere", account=20)
    in_sales = fk.place("sales", "crm_opportunity", 42, ALICE).id
    in_support = fk.place("support", "crm_opportunity", 42, ALICE).id
    fk.place("elsewhere", "crm_opportunity", 42, MALLORY)
    fk.place("sales", "crm_opportunity", 43, ALICE)
    fk.move(in_support, "proposal", ALICE)

    found = fk.queries.pipelines_of("crm_opportunity", 42, ALICE)
    assert [(p.pipeline_id, p.pipeline_name, p.item_id, p.current_stage) for p in found] == [
        (sales, "Sales", in_sales, "Lead"),
        (support, "Support", in_support, "Proposal"),
    ]
    assert found[1].stage_code == "proposal"
    assert [p.pipeline_id for p in fk.queries.pipelines_of("crm_opportunity", 42, SYSTEM)] == [
        sales,
        support,
        other,
    ]
    fk.execute(in_sales, "delete", ALICE)
    assert [p.pipeline_id for p in fk.queries.pipelines_of("crm_opportunity", 42, ALICE)] == [
        support
    ]
    assert fk.queries.pipelines_of("crm_opportunity", 99, ALICE) == []
    with pytest.raises(InvalidArgument):
        fk.queries.pipelines_of("", 42, ALICE)
    with pytest.raises(InvalidArgument):
        fk.queries.pipelines_of("crm_opportunity", " 42", ALICE)


# --- funnel --------------------------------------------------------------------------------------


def test_conversion_follows_the_seed_funnel_query(fk: Flowkernel) -> None:
    pid, stage = make_pipeline(fk)
    ids = [fk.place("sales", "crm_opportunity", n, ALICE).id for n in range(1, 6)]
    fk.move(ids[0], "qualified", ALICE)
    fk.move(ids[0], "lead", ALICE)
    fk.move(ids[0], "qualified", ALICE)  # re-entry counts once: distinct items
    fk.move(ids[1], "qualified", ALICE)
    fk.move(ids[1], "won", ALICE)
    fk.move(ids[2], "lost", ALICE)
    fk.execute(ids[2], "delete", ALICE)
    fk.execute(ids[2], "drop", ALICE)  # history outlives the item: it still counts

    result = fk.queries.conversion(pid, "lead", "qualified", ALICE)
    assert (result.entered, result.converted, result.rate) == (5, 2, 0.4)
    assert (result.from_stage, result.to_stage) == ("lead", "qualified")
    by_id = fk.queries.conversion(pid, stage["qualified"], stage["won"], ALICE)
    assert (by_id.entered, by_id.converted, by_id.rate) == (2, 1, 0.5)
    assert fk.queries.conversion(pid, "proposal", "won", ALICE).rate is None
    with fk.engine.connect() as conn:
        seed = conn.execute(
            text(
                "SELECT "
                "COUNT(DISTINCT CASE WHEN to_stage_id = :from_stage_id THEN flow_item_id END) "
                "AS entered, "
                "COUNT(DISTINCT CASE WHEN to_stage_id = :to_stage_id THEN flow_item_id END) "
                "AS converted "
                "FROM flow_stage_history WHERE flow_pipeline_id = :pipeline_id"
            ),
            {"from_stage_id": stage["lead"], "to_stage_id": stage["qualified"], "pipeline_id": pid},
        ).one()
    assert (seed.entered, seed.converted) == (result.entered, result.converted)

    with pytest.raises(UnknownDefinition):
        fk.queries.conversion(pid, "lead", "nowhere", ALICE)
    with pytest.raises(UnknownDefinition):
        fk.queries.conversion(pid, "lead", 999_999, ALICE)
    with pytest.raises(UnknownDefinition):
        fk.queries.conversion(pid, "lead", "qualified", MALLORY)


# --- time in stage -------------------------------------------------------------------------------


def test_time_in_stage_sums_reentries_and_the_open_interval(fk: Flowkernel) -> None:
    make_pipeline(fk)
    item = fk.place("sales", "crm_opportunity", 1, ALICE).id
    fk.move(item, "qualified", ALICE)
    fk.move(item, "lead", ALICE)
    fk.move(item, "qualified", ALICE)
    set_history_times(
        fk,
        item,
        T0,
        T0 + timedelta(days=2),
        T0 + timedelta(days=5, hours=6),
        T0 + timedelta(days=6, seconds=30),
    )
    now = T0 + timedelta(days=10)
    times = {t.stage_code: t for t in fk.queries.time_in_stage(item, ALICE, now=now)}
    assert list(times) == ["lead", "qualified"]
    lead, qualified = times["lead"], times["qualified"]
    assert (lead.entries, lead.exits) == (2, 2)
    assert lead.total == timedelta(days=2) + timedelta(hours=18, seconds=30)
    assert lead.average == lead.total / 2
    assert (qualified.entries, qualified.exits) == (2, 1)
    assert qualified.total == timedelta(days=3, hours=6) + timedelta(
        days=3, hours=23, minutes=59, seconds=30
    )
    assert qualified.stage_name == "Qualified"
    naive = fk.queries.time_in_stage(item, ALICE, now=now.replace(tzinfo=None))
    assert {t.stage_code: t.total for t in naive} == {k: v.total for k, v in times.items()}

    fk.execute(item, "delete", ALICE)
    with fk.engine.begin() as conn:
        conn.execute(
            update(items).where(items.c.id == item).values(deleted_at=T0 + timedelta(days=7))
        )
    closed = {t.stage_code: t for t in fk.queries.time_in_stage(item, ALICE, now=now)}
    assert closed["qualified"].total == timedelta(days=3, hours=6) + timedelta(
        hours=23, minutes=59, seconds=30
    )
    assert closed["qualified"].exits == 1

    with pytest.raises(ItemNotFound):
        fk.queries.time_in_stage(item, MALLORY)
    with pytest.raises(InvalidArgument):
        fk.queries.time_in_stage(item, ALICE, now="tomorrow")  # type: ignore[arg-type]


def test_time_in_stage_of_a_dropped_item_ends_at_the_drop(fk: Flowkernel) -> None:
    make_pipeline(fk)
    item = fk.place("sales", "crm_opportunity", 1, ALICE).id
    fk.move(item, "qualified", ALICE)
    set_history_times(fk, item, T0, T0 + timedelta(days=1))
    fk.execute(item, "delete", ALICE)
    fk.execute(item, "drop", ALICE)
    with fk.engine.begin() as conn:
        conn.execute(
            update(method_calls)
            .where(method_calls.c.flow_item_id == item, method_calls.c.method_code == "drop")
            .values(called_at=T0 + timedelta(days=4))
        )
        conn.execute(
            update(method_calls)
            .where(method_calls.c.flow_item_id == item, method_calls.c.method_code != "drop")
            .values(called_at=T0)
        )
    times = {t.stage_code: t for t in fk.queries.time_in_stage(item, ALICE, now=T0 + timedelta(30))}
    assert times["qualified"].total == timedelta(days=3)
    assert times["qualified"].exits == 0


def test_stage_times_aggregate_over_the_pipeline(fk: Flowkernel) -> None:
    pid, _ = make_pipeline(fk)
    a = fk.place("sales", "crm_opportunity", 1, ALICE).id
    b = fk.place("sales", "crm_opportunity", 2, ALICE).id
    c = fk.place("sales", "crm_opportunity", 3, ALICE).id
    fk.move(a, "qualified", ALICE)
    fk.move(b, "qualified", ALICE)
    fk.move(b, "won", ALICE)
    set_history_times(fk, a, T0, T0 + timedelta(days=1))
    set_history_times(fk, b, T0, T0 + timedelta(days=3), T0 + timedelta(days=4))
    set_history_times(fk, c, T0 + timedelta(days=8))
    now = T0 + timedelta(days=10)

    times = fk.queries.stage_times(pid, ALICE, now=now)
    assert [t.stage_code for t in times] == ["lead", "qualified", "proposal", "won", "lost"]
    lead, qualified, proposal, won, lost = times
    assert (lead.entries, lead.exits, lead.total) == (3, 2, timedelta(days=6))
    assert lead.average == timedelta(days=2)
    assert (qualified.entries, qualified.exits, qualified.total) == (2, 1, timedelta(days=10))
    assert qualified.average == timedelta(days=5)
    assert (proposal.entries, proposal.total, proposal.average) == (0, timedelta(), timedelta())
    assert (won.entries, won.exits, won.total) == (1, 0, timedelta(days=6))
    assert lost.entries == 0
    per_item = sum(
        (t.total for i in (a, b, c) for t in fk.queries.time_in_stage(i, ALICE, now=now)),
        timedelta(),
    )
    assert per_item == sum((t.total for t in times), timedelta())
    with pytest.raises(UnknownDefinition):
        fk.queries.stage_times(pid, MALLORY)


# --- events --------------------------------------------------------------------------------------


def test_events_are_the_delivered_automation_events_of_the_account(fk: Flowkernel) -> None:
    pid, stage = make_pipeline(fk)
    with fk.engine.begin() as conn:
        conn.execute(
            insert(automations),
            [
                {
                    "flow_pipeline_id": pid,
                    "flow_stage_id": stage["qualified"],
                    "trigger": "stage_entered",
                    "event_name": "deal.qualified",
                    "payload_template": {"channel": "sales"},
                },
                {
                    "flow_pipeline_id": pid,
                    "flow_stage_id": None,
                    "trigger": "item_created",
                    "event_name": "deal.created",
                    "payload_template": None,
                },
            ],
        )
    a = fk.place("sales", "crm_opportunity", 1, ALICE).id
    b = fk.place("sales", "crm_opportunity", 2, ALICE).id
    fk.move(a, "qualified", ALICE)
    make_pipeline(fk, "theirs", account=20)
    fk.place("theirs", "crm_opportunity", 1, MALLORY)

    events = fk.queries.events(ALICE)
    assert [(e.event_name, e.item_id) for e in events] == [
        ("deal.created", a),
        ("deal.created", b),
        ("deal.qualified", a),
    ]
    qualified = fk.queries.events(ALICE, event_name="deal.qualified")
    assert len(qualified) == 1
    assert qualified[0].payload["channel"] == "sales"
    assert qualified[0].payload["to_stage"] == "qualified"
    assert [e.event_name for e in fk.queries.events(ALICE, item_id=b)] == ["deal.created"]
    assert len(fk.queries.events(ALICE, limit=2)) == 2
    assert fk.queries.events(MALLORY) == []
    with pytest.raises(ItemNotFound):
        fk.queries.events(MALLORY, item_id=a)
    with pytest.raises(InvalidArgument):
        fk.queries.events(ALICE, limit=0)


def test_board_reads_a_pipeline_written_by_the_seed_sql(fk: Flowkernel) -> None:
    """Stages and items inserted by plain SQL (no codes) show on the board as stage_<id>."""
    with fk.engine.begin() as conn:
        pid = conn.execute(
            text(
                "INSERT INTO flow_pipelines (name, object_type, iam_account_id, iam_user_id) "
                "VALUES ('Sales Pipeline', 'crm_opportunity', :a, 1) RETURNING id"
            ),
            {"a": ACCOUNT},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO flow_stages (flow_pipeline_id, name, position, probability, sla_days,"
                " is_won, is_lost) VALUES (:p, 'Lead', 0, 10, 7, false, false), "
                "(:p, 'Won', 1, 100, NULL, true, false)"
            ),
            {"p": pid},
        )
        lead = conn.execute(
            select(func.min(stages.c.id)).where(stages.c.flow_pipeline_id == pid)
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, object_id,"
                " iam_account_id, iam_user_id) VALUES (:p, :s, 'crm_opportunity', 5, :a, 1)"
            ),
            {"p": pid, "s": lead, "a": ACCOUNT},
        )
    board = fk.queries.board(pid, ALICE)
    assert [s.code for s in board.stages] == [f"stage_{lead}", f"stage_{lead + 1}"]
    assert board.stages[0].count == 1 and board.stages[0].items[0].object_id == 5
    assert fk.queries.stage_items(pid, f"stage_{lead}", ALICE).items[0].object_id == 5
