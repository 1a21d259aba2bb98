"""Forecasts and velocity on a fixed history: weighted value by expected close period,
conversion and time per stage, idle items, and the same figures one period before; in the
library, over HTTP and on the command line, with the refusals bad input gets."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from http_fixtures import Api, api
from sqlalchemy import insert, select, update

from flowkernel import Actor, Flowkernel, InvalidArgument, UnknownDefinition
from flowkernel.cli import main
from flowkernel.definition.pipelines.admin import StageSpec
from flowkernel.definition.pipelines.specs import ColumnSpec
from flowkernel.runtime.forecast import PeriodValue
from flowkernel.store.tables import history, last_calls, method_calls

__all__ = ["api"]

REP = Actor.user(7, 1)
T = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def day(month: int, d: int, year: int = 2026) -> datetime:
    return datetime(year, month, d, 9, 0, tzinfo=UTC)


# item: (amount, close date, [(stage, entered at), ...])
SCRIPT = {
    "a": (
        1000,
        "2026-12-15",
        [("lead", day(10, 10)), ("qualified", day(11, 5)), ("proposal", day(11, 20))],
    ),
    "b": (500, "2027-01-10", [("lead", day(11, 2)), ("qualified", day(11, 12))]),
    "c": (200, None, [("lead", day(11, 10))]),
    "d": (
        3000,
        "2026-11-25",
        [("lead", day(10, 1)), ("qualified", day(10, 20)), ("won", day(11, 25))],
    ),
    "e": (100, None, [("lead", day(9, 15)), ("lost", day(10, 5))]),
}


@pytest.fixture
def deals(fk: Flowkernel) -> tuple[int, dict[str, int]]:
    """The pipeline and its items, their history rewritten to `SCRIPT`'s instants."""
    stages = [
        StageSpec("Lead", probability=10),
        StageSpec("Qualified", probability=30),
        StageSpec("Proposal", probability=60),
        StageSpec("Won", probability=100, is_won=True),
        StageSpec("Lost", probability=0, is_lost=True),
    ]
    columns = [
        ColumnSpec("amount", field_type="number"),
        ColumnSpec("close_date", field_type="date"),
    ]
    pid = fk.pipelines.create_pipeline(
        "Deals", REP, code="deals", stages=stages, columns=columns
    ).id
    ids: dict[str, int] = {}
    for n, (name, (amount, close, path)) in enumerate(SCRIPT.items()):
        item = ids[name] = fk.place(pid, "deal", n + 1, REP).id
        values: dict[str, object] = {"amount": amount}
        if close is not None:
            values["close_date"] = close
        fk.items.set_values(item, values, REP)
        for stage, _at in path[1:]:
            fk.move(item, stage, REP)
        with fk.engine.begin() as conn:
            rows = (
                conn.execute(
                    select(history.c.id)
                    .where(history.c.flow_item_id == item)
                    .order_by(history.c.id)
                )
                .scalars()
                .all()
            )
            moments = [at for _stage, at in path]
            for k, row_id in enumerate(rows):
                later = moments[k + 1] if k + 1 < len(moments) else None
                conn.execute(
                    update(history)
                    .where(history.c.id == row_id)
                    .values(moved_at=moments[k], valid_to=later)
                )
    with fk.engine.begin() as conn:  # b was called on late in November: not idle
        conn.execute(
            insert(method_calls).values(
                flow_item_id=ids["b"],
                flow_pipeline_id=pid,
                method_code="call_back",
                action_code="call_back",
                called_at=day(11, 25),
            )
        )
    return pid, ids


def figures(found: object) -> list[tuple[object, ...]]:
    return [
        (s.code, s.in_stage, s.entered, s.advanced, s.conversion, s.p50_days, s.p90_days, s.idle)
        for s in found.stages  # type: ignore[attr-defined]
    ]


def test_a_month_and_the_month_before(fk: Flowkernel, deals: tuple[int, dict[str, int]]) -> None:
    pid, _ids = deals
    found = fk.queries.forecast(pid, REP, close_column="close_date", idle_days=14, as_of=T)
    assert (found.period, found.window_start, found.window_end) == (
        "month",
        datetime(2026, 10, 30, 12, 0, tzinfo=UTC),
        T,
    )
    assert found.by_period == (
        PeriodValue("2026-12", date(2026, 12, 1), 1, Decimal(1000), Decimal(600)),
        PeriodValue("2027-01", date(2027, 1, 1), 1, Decimal(500), Decimal(150)),
        PeriodValue(None, None, 1, Decimal(200), Decimal(20)),
    )
    assert (found.open_count, found.open_value, found.weighted_value) == (3, 1700, 770)
    assert figures(found) == [
        # lead: b and c entered, b went on; its periods ended after 26 (a) and 10 days (b);
        # c has sat 20.5 days without a move or a call
        ("lead", 1, 2, 1, 0.5, 10.0, 26.0, 1),
        # qualified: a and b entered, a went on; ended after 15 (a) and 36 days (d); b was
        # called 5.5 days ago
        ("qualified", 1, 2, 1, 0.5, 15.0, 36.0, 0),
        ("proposal", 1, 1, 0, 0.0, None, None, 0),
        ("won", 1, 1, 0, 0.0, None, None, None),
        ("lost", 1, 0, 0, None, None, None, None),
    ]
    before = found.previous
    assert before is not None and before.previous is None
    assert (before.as_of, before.window_start) == (
        datetime(2026, 10, 30, 12, 0, tzinfo=UTC),
        datetime(2026, 9, 30, 12, 0, tzinfo=UTC),
    )
    assert before.by_period == (
        PeriodValue("2026-11", date(2026, 11, 1), 1, Decimal(3000), Decimal(900)),
        PeriodValue("2026-12", date(2026, 12, 1), 1, Decimal(1000), Decimal(100)),
    )
    assert (before.open_count, before.open_value, before.weighted_value) == (2, 4000, 1000)
    assert figures(before) == [
        ("lead", 1, 2, 1, 0.5, 19.0, 20.0, 1),  # d and a entered, d went on; a idle 20.5 days
        ("qualified", 1, 1, 0, 0.0, None, None, 0),
        ("proposal", 0, 0, 0, None, None, None, 0),
        ("won", 0, 0, 0, None, None, None, None),
        ("lost", 1, 1, 0, 0.0, None, None, None),
    ]


def test_quarters_weeks_and_thresholds_by_stage(
    fk: Flowkernel, deals: tuple[int, dict[str, int]]
) -> None:
    pid, _ids = deals
    quarter = fk.queries.forecast(
        pid, REP, close_column="close_date", period="quarter", as_of=T, idle_days={"lead": 30}
    )
    assert [(p.period, p.count, p.weighted_value) for p in quarter.by_period] == [
        ("2026-Q4", 1, 600),
        ("2027-Q1", 1, 150),
        (None, 1, 20),
    ]
    assert quarter.window_start == datetime(2026, 8, 30, 12, 0, tzinfo=UTC)
    assert [(s.code, s.idle, s.idle_days) for s in quarter.stages][:2] == [
        ("lead", 0, 30),
        ("qualified", None, None),
    ]
    week = fk.queries.forecast(pid, REP, close_column="close_date", period="week", as_of=T)
    assert [p.period for p in week.by_period] == ["2026-W51", "2027-W01", None]
    assert week.previous is not None and week.previous.as_of == T - timedelta(days=7)
    plain = fk.queries.forecast(pid, REP, as_of=T, value_column=None)
    assert (plain.open_value, plain.weighted_value, plain.close_column) == (None, None, None)
    assert [(p.period, p.count) for p in plain.by_period] == [(None, 3)]


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"period": "year"}, InvalidArgument, "week, month, quarter"),
        ({"close_column": "amount"}, InvalidArgument, "date column"),
        ({"close_column": "nowhere"}, UnknownDefinition, "nowhere"),
        ({"idle_days": {"won": 3}}, InvalidArgument, "not an open stage"),
        ({"idle_days": -1}, InvalidArgument, "whole days"),
        ({"as_of": datetime(2999, 1, 1, tzinfo=UTC)}, InvalidArgument, "in the future"),
    ],
)
def test_bad_forecasts_are_refused(
    fk: Flowkernel,
    deals: tuple[int, dict[str, int]],
    arguments: dict[str, object],
    error: type[Exception],
    words: str,
) -> None:
    pid, _ids = deals
    with pytest.raises(error, match=words):
        fk.queries.forecast(pid, REP, **arguments)  # type: ignore[arg-type]


def test_the_forecast_over_http_and_on_the_command_line(
    fk: Flowkernel,
    api: Api,
    database_url: str,
    deals: tuple[int, dict[str, int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = api.tokens.issue("rep", account_id=1, user_id=7).token
    query = {
        "close_column": "close_date",
        "idle_days": "lead:14,qualified:14",
        "as_of": T.isoformat(),
    }
    with api.client(token) as client:
        answer = client.get("/v1/pipelines/deals/forecast", params=query)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [
            (p["period"], p["count"], Decimal(p["weighted_value"])) for p in body["by_period"]
        ] == [
            ("2026-12", 1, 600),
            ("2027-01", 1, 150),
            (None, 1, 20),
        ]
        assert [(s["code"], s["conversion"], s["idle"]) for s in body["stages"]][:3] == [
            ("lead", 0.5, 1),
            ("qualified", 0.5, 0),
            ("proposal", 0.0, None),
        ]
        assert body["previous"]["open_count"] == 2 and body["previous"]["previous"] is None
        for bad, code in (
            ({"period": "year"}, "invalid_request"),
            ({"idle_days": "lead:soon"}, "invalid_argument"),
            ({"close_column": "amount"}, "invalid_argument"),
        ):
            refused = client.get("/v1/pipelines/deals/forecast", params={**query, **bad})
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == code
    db = ["--database-url", database_url]
    acting = ["--account", "1", "--as", "7"]
    command = [
        "pipeline",
        "forecast",
        "deals",
        "--close-column",
        "close_date",
        "--as-of",
        T.isoformat(),
    ]
    assert main([*db, *command, "--idle-days", "14", *acting, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["weighted_value"] == "770" or Decimal(shown["weighted_value"]) == 770
    assert main([*db, *command, "--idle-days", "lead=14", *acting]) == 0
    out = capsys.readouterr().out
    assert "open: 3 item(s), value 1,700, weighted 770 (previous: 2, 4,000, 1,000)" in out
    assert "2026-12" in out and "(no date)" in out
    assert "lead" in out and "50% (50%)" in out
    assert main([*db, *command, "--idle-days", "lead=soon", *acting]) == 2


def test_a_lost_deal_did_not_go_further_and_a_dropped_one_was_there(fk: Flowkernel) -> None:
    stages = [StageSpec("Lead"), StageSpec("Won", is_won=True), StageSpec("Lost", is_lost=True)]
    pid = fk.pipelines.create_pipeline("Deals", REP, code="deals", stages=stages).id
    lost = [fk.place(pid, "deal", n, REP).id for n in range(3)]
    for item in lost:
        fk.move(item, "lost", REP)
    kept = fk.place(pid, "deal", 9, REP).id
    at = datetime.now(UTC)
    fk.items.delete(kept, REP)
    fk.items.drop(kept, REP)
    found = fk.queries.forecast(pid, REP, as_of=at)
    lead = found.stages[0]
    assert (lead.entered, lead.advanced, lead.conversion) == (4, 0, 0.0)
    assert (lead.in_stage, found.open_count) == (1, 1)  # the dropped item, while it was there


def test_a_call_kept_as_the_last_one_is_activity(fk: Flowkernel) -> None:
    stages = [StageSpec("Lead"), StageSpec("Won", is_won=True)]
    pid = fk.pipelines.create_pipeline("Deals", REP, code="deals", stages=stages).id
    pinged, quiet = (fk.place(pid, "deal", n, REP).id for n in range(2))
    with fk.engine.begin() as conn:  # both entered the lead a month ago
        conn.execute(update(history).values(moved_at=T - timedelta(days=30)))
        conn.execute(
            insert(last_calls).values(
                flow_item_id=pinged,
                method_code="ping",
                flow_pipeline_id=pid,
                action_code="ping",
                is_system=True,
                called_at=T - timedelta(days=1),
                call_count=3,
            )
        )
    found = fk.queries.forecast(pid, REP, idle_days=7, as_of=T)
    assert found.stages[0].idle == 1  # the quiet one only
    assert quiet != pinged


def test_an_instant_with_no_period_before_it_is_refused(fk: Flowkernel) -> None:
    pid = fk.pipelines.create_pipeline("Deals", REP, code="deals", stages=[StageSpec("Lead")]).id
    with pytest.raises(InvalidArgument, match="too early"):
        fk.queries.forecast(pid, REP, as_of=datetime(1, 1, 20, tzinfo=UTC))
