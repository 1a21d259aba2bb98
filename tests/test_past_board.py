"""The board at a past instant: its stages, each stage's items then and their counts, for every
instant of a history of moves, deletions, restores and drops, as the history's periods say."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from http_fixtures import Api, api
from sqlalchemy import select, text, update

from flowkernel import Actor, Flowkernel, InvalidArgument, UnknownDefinition
from flowkernel.cli import main
from flowkernel.definition.pipelines.admin import StageSpec
from flowkernel.store.tables import (
    dropped_items,
    history,
    items,
    stage_count_marks,
    stage_hour_counts,
)

__all__ = ["api"]

ADMIN = Actor.system()
REP = Actor.user(7, 1)
ANN = Actor.user(1, 10)
BEN = Actor.user(2, 20)
STAGES = ("lead", "qualified", "proposal", "won")
STEP = timedelta(minutes=41)
SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Period:
    id: int
    item: int
    stage: int
    account: int | None
    moved_at: datetime
    valid_to: datetime | None


@pytest.fixture
def pipeline(fk: Flowkernel) -> int:
    """A platform pipeline (no account): items of accounts 10 and 20 share it."""
    info = fk.definitions.add_class("sales", "Sales", movement="free", account_id=None)
    for code in STAGES:
        fk.definitions.add_state("sales", "enabled", code, code.title(), account_id=None)
    return info.id


def play(fk: Flowkernel, pipeline: int, seed: int, steps: int) -> None:
    """Place, move, delete, restore and drop items of two accounts at random."""
    rng = random.Random(seed)
    live: dict[int, Actor] = {}
    deleted: dict[int, Actor] = {}
    for n in range(steps):
        roll = rng.random()
        if roll < 0.25 or not live:
            actor = rng.choice((ANN, BEN))
            live[fk.place(pipeline, "deal", seed * 1000 + n, actor).id] = actor
        elif roll < 0.8:
            item = rng.choice(sorted(live))
            where = fk.item(item, live[item]).state
            fk.move(item, rng.choice([s for s in STAGES if s != where]), live[item])
        elif roll < 0.9:
            item = rng.choice(sorted(live))
            fk.items.delete(item, live[item])
            deleted[item] = live.pop(item)
        elif deleted and roll < 0.95:
            item = rng.choice(sorted(deleted))
            fk.items.restore(item, deleted[item])
            live[item] = deleted.pop(item)
        elif deleted:
            item = rng.choice(sorted(deleted))
            fk.items.drop(item, deleted.pop(item))


def retime(fk: Flowkernel, start: datetime) -> list[datetime]:
    """Spread the history over days: the n-th distinct instant of it (moves, ends of periods,
    deletions) becomes `start + n * STEP`. Returns the new instants."""
    with fk.engine.begin() as conn:
        rows = conn.execute(select(history.c.id, history.c.moved_at, history.c.valid_to)).all()
        marks = conn.execute(
            select(items.c.id, items.c.deleted_at).where(items.c.deleted_at.is_not(None))
        ).all()
        gone = conn.execute(select(dropped_items)).all()
        instants = sorted(
            {r.moved_at for r in rows}
            | {r.valid_to for r in rows if r.valid_to is not None}
            | {m.deleted_at for m in marks}
            | {g.deleted_at for g in gone if g.deleted_at is not None}
            | {g.dropped_at for g in gone}
        )
        new = {old: start + k * STEP for k, old in enumerate(instants)}
        for r in rows:
            conn.execute(
                update(history)
                .where(history.c.id == r.id)
                .values(
                    moved_at=new[r.moved_at],
                    valid_to=None if r.valid_to is None else new[r.valid_to],
                )
            )
        for m in marks:
            conn.execute(
                update(items).where(items.c.id == m.id).values(deleted_at=new[m.deleted_at])
            )
    return sorted(new.values())


def expected(
    fk: Flowkernel, pipeline: int, moment: datetime, account: int | str | None
) -> dict[int, tuple[int, list[int]]]:
    """Per stage id: the count and the card ids (latest entry first) at `moment`, from the
    history read whole; `account` "all" or the actor's account."""
    with fk.engine.connect() as conn:
        periods = [
            Period(r.id, r.flow_item_id, r.to_stage_id, r.iam_account_id, r.moved_at, r.valid_to)
            for r in conn.execute(select(history).where(history.c.flow_pipeline_id == pipeline))
        ]
        marks = dict(conn.execute(select(items.c.id, items.c.deleted_at)).all())
        marks |= dict(
            conn.execute(select(dropped_items.c.flow_item_id, dropped_items.c.deleted_at)).all()
        )
    found: dict[int, tuple[int, list[int]]] = {}
    holding = sorted(
        (
            p
            for p in periods
            if p.moved_at <= moment
            and (p.valid_to is None or p.valid_to > moment)
            and (account == "all" or p.account is None or p.account == account)
            and not (p.item in marks and marks[p.item] is not None and marks[p.item] <= moment)
        ),
        key=lambda p: (p.moved_at, p.id),
        reverse=True,
    )
    for p in holding:
        count, cards = found.get(p.stage, (0, []))
        found[p.stage] = (count + 1, cards + ([p.item] if p.item in marks else []))
    return found


def board_at(
    fk: Flowkernel, pipeline: int, actor: Actor, moment: datetime, per_stage: int = 3
) -> dict[int, tuple[int, list[int]]]:
    """Per stage id: the count and every card id of the board at `moment`, page by page."""
    board = fk.queries.board(pipeline, actor, as_of=moment, per_stage=per_stage)
    assert board.as_of == moment and board.value_sum is None
    found = {s.id: (s.count, [i.id for i in s.items]) for s in board.stages}
    cursor = board.next_cursor
    while cursor is not None:
        more = fk.queries.board(pipeline, actor, as_of=moment, per_stage=per_stage, cursor=cursor)
        for s in more.stages:
            found[s.id][1].extend(i.id for i in s.items)
        cursor = more.next_cursor
    for stage_id, (_count, cards) in found.items():  # one stage alone, page by page, agrees
        page = fk.queries.stage_items(pipeline, stage_id, actor, limit=2, as_of=moment)
        alone = [i.id for i in page.items]
        while page.next_cursor is not None:
            page = fk.queries.stage_items(
                pipeline, stage_id, actor, limit=2, as_of=moment, cursor=page.next_cursor
            )
            alone.extend(i.id for i in page.items)
        assert alone == cards
    return {k: v for k, v in found.items() if v != (0, [])}


def moments(instants: list[datetime]) -> Iterator[datetime]:
    """Each instant of the history, just before it, and halfway to the next."""
    for k, instant in enumerate(instants):
        yield instant
        yield instant - timedelta(microseconds=1)
        if k + 1 < len(instants):
            yield instant + (instants[k + 1] - instant) / 2


def test_the_board_at_every_instant_of_a_history(fk: Flowkernel, pipeline: int) -> None:
    play(fk, pipeline, seed=7, steps=120)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    instants = retime(fk, start)
    assert len(instants) > 100
    for moment in moments(instants):
        assert board_at(fk, pipeline, ADMIN, moment) == expected(fk, pipeline, moment, "all")
    # the hours were counted once, up to the last settled hour, and only where counts changed
    with fk.engine.connect() as conn:
        [marked] = conn.execute(select(stage_count_marks.c.counted_to)).scalars().all()
        hours = conn.execute(select(stage_hour_counts)).all()
    assert datetime.now(UTC) - timedelta(hours=3) < marked <= datetime.now(UTC)
    assert 0 < len(hours) <= 3 * len(instants)
    assert {h.hour_end.minute for h in hours} == {0}


def test_an_actor_of_one_account_sees_its_own_items_then(fk: Flowkernel, pipeline: int) -> None:
    play(fk, pipeline, seed=11, steps=80)
    instants = retime(fk, datetime.now(UTC) - timedelta(days=10))
    for moment in list(moments(instants))[::5]:
        assert board_at(fk, pipeline, ANN, moment) == expected(fk, pipeline, moment, 10)
        assert board_at(fk, pipeline, BEN, moment) == expected(fk, pipeline, moment, 20)


def test_moves_since_the_last_counted_hour_count(fk: Flowkernel, pipeline: int) -> None:
    play(fk, pipeline, seed=3, steps=40)
    retime(fk, datetime.now(UTC) - timedelta(days=5))
    now = datetime.now(UTC)
    assert board_at(fk, pipeline, ADMIN, now) == expected(fk, pipeline, now, "all")
    play(fk, pipeline, seed=4, steps=30)  # after the counted hours: read from the history
    now = datetime.now(UTC)
    past = board_at(fk, pipeline, ADMIN, now)
    assert past == expected(fk, pipeline, now, "all")
    present = fk.queries.board(pipeline, ADMIN, per_stage=1000)
    assert {s.id: s.count for s in present.stages if s.count} == {k: v[0] for k, v in past.items()}
    assert {i.id for s in present.stages for i in s.items} == {
        item for _count, cards in past.values() for item in cards
    }


def test_a_stage_removed_since_is_on_the_board_of_before(fk: Flowkernel, pipeline: int) -> None:
    deal = fk.place(pipeline, "deal", 1, ANN).id
    fk.move(deal, "proposal", ANN)
    before = datetime.now(UTC)
    fk.pipelines.remove_stage(pipeline, "proposal", ADMIN, target="won")
    now = fk.queries.board(pipeline, ADMIN, as_of=datetime.now(UTC))
    assert [s.code for s in now.stages] == ["lead", "qualified", "won"]
    then = fk.queries.board(pipeline, ADMIN, as_of=before)
    assert [s.code for s in then.stages] == ["lead", "qualified", "proposal", "won"]
    assert [(s.code, [i.id for i in s.items]) for s in then.stages if s.count] == [
        ("proposal", [deal])
    ]
    assert fk.queries.stage_items(pipeline, "proposal", ADMIN, as_of=before).items[0].id == deal
    with pytest.raises(UnknownDefinition):
        fk.queries.stage_items(pipeline, "proposal", ADMIN, as_of=datetime.now(UTC))


def test_bad_instants_are_refused(fk: Flowkernel, pipeline: int) -> None:
    with pytest.raises(InvalidArgument, match="in the future"):
        fk.queries.board(pipeline, ADMIN, as_of=datetime.now(UTC) + timedelta(minutes=5))
    with pytest.raises(InvalidArgument, match="as_of must be a datetime"):
        fk.queries.board(pipeline, ADMIN, as_of="yesterday")  # type: ignore[arg-type]
    with pytest.raises(UnknownDefinition):
        fk.queries.board(pipeline + 99, ADMIN, as_of=datetime.now(UTC))
    with fk.engine.connect() as conn:  # nothing was counted for refused boards
        assert conn.execute(select(stage_count_marks)).all() == []


def test_the_past_board_over_http_and_on_the_command_line(
    fk: Flowkernel, api: Api, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stages = [StageSpec("Lead"), StageSpec("Won", is_won=True)]
    sales = fk.pipelines.create_pipeline("Deals", REP, code="deals", stages=stages).id
    deal = fk.place(sales, "deal", 1, REP).id
    fk.move(deal, "won", REP)
    [placed, won] = fk.history(deal, REP)
    between = placed.moved_at + (won.moved_at - placed.moved_at) / 2
    token = api.tokens.issue("rep", account_id=1, user_id=7).token
    with api.client(token) as client:
        then = client.get("/v1/pipelines/deals/board", params={"as_of": between.isoformat()})
        assert then.status_code == 200, then.text
        body = then.json()
        assert datetime.fromisoformat(body["as_of"]) == between
        assert [(s["code"], s["count"], [i["id"] for i in s["items"]]) for s in body["stages"]] == [
            ("lead", 1, [deal]),
            ("won", 0, []),
        ]
        assert body["value_sum"] is None
        page = client.get(
            "/v1/pipelines/deals/stages/lead/items", params={"as_of": between.isoformat()}
        )
        assert [i["id"] for i in page.json()["items"]] == [deal]
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        refused = client.get("/v1/pipelines/deals/board", params={"as_of": future})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "invalid_argument"
        assert "in the future" in refused.json()["error"]["message"]
        bad = client.get("/v1/pipelines/deals/board", params={"as_of": "last tuesday"})
        assert bad.status_code == 422
        for at, state in (
            (between, "lead"),
            (won.moved_at, "won"),
            (placed.moved_at - SECOND, None),
        ):
            found = client.get(f"/v1/items/{deal}/state", params={"at": at.isoformat()})
            assert found.status_code == 200, found.text
            assert found.json() == {"item_id": deal, "at": found.json()["at"], "state": state}
        assert client.get(f"/v1/items/{deal}/state").status_code == 422  # at is required
    db = ["--database-url", database_url]
    acting = ["--account", "1", "--as", "7"]
    assert main([*db, "board", "deals", "--as-of", between.isoformat(), *acting, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [s["count"] for s in shown["stages"]] == [1, 0]
    assert main([*db, "board", "deals", "--as-of", between.isoformat(), *acting]) == 0
    assert "Deals: 1 item as of " in capsys.readouterr().out
    assert main([*db, "board", "deals", "--as-of", "2999-01-01", *acting]) == 4
    assert "in the future" in capsys.readouterr().err
    assert main([*db, "item", "state", str(deal), "--at", between.isoformat(), *acting]) == 0
    assert capsys.readouterr().out == "lead\n"
    early = (placed.moved_at - SECOND).isoformat()
    assert main([*db, "item", "state", str(deal), "--at", early, *acting, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] is None


def test_a_stage_code_used_again_names_the_stage_of_then(fk: Flowkernel) -> None:
    stages = [StageSpec("Lead"), StageSpec("Proposal"), StageSpec("Won", is_won=True)]
    pid = fk.pipelines.create_pipeline("Deals", REP, code="deals", stages=stages).id
    deal = fk.place(pid, "deal", 1, REP).id
    fk.move(deal, "proposal", REP)
    before = datetime.now(UTC)
    fk.pipelines.remove_stage(pid, "proposal", ADMIN, target="won")
    added = fk.pipelines.add_stage(pid, "Proposal", ADMIN, code="proposal", position=0)
    then = fk.queries.board(pid, ADMIN, as_of=before)
    assert [(s.code, s.count) for s in then.stages] == [("lead", 0), ("proposal", 1), ("won", 0)]
    assert then.stages[1].id != added.id
    page = fk.queries.stage_items(pid, "proposal", ADMIN, as_of=before)
    assert (page.stage_id, [i.id for i in page.items]) == (then.stages[1].id, [deal])


def test_cards_page_by_cursor_whatever_the_stored_time_looks_like(fk: Flowkernel) -> None:
    """History rows written by the seed's own SQL carry the database's time format (on SQLite,
    seconds only or milliseconds); a cursor continues after them all the same, and the
    cards' positions continue across pages."""
    stages = [StageSpec("Lead"), StageSpec("Won", is_won=True)]
    pid = fk.pipelines.create_pipeline("Deals", REP, code="deals", stages=stages).id
    deals = [fk.place(pid, "deal", n, REP).id for n in range(4)]
    if fk.engine.dialect.name == "sqlite":
        with fk.engine.begin() as conn:
            for n, deal in enumerate(deals):
                stored = f"2026-12-01 10:00:0{n}" + ("" if n % 2 else ".250")
                conn.execute(
                    text("UPDATE flow_stage_history SET moved_at = :m WHERE flow_item_id = :i"),
                    {"m": stored, "i": deal},
                )
    moment = datetime.now(UTC)
    page = fk.queries.stage_items(pid, "lead", REP, limit=1, as_of=moment)
    seen = [(i.id, i.position) for i in page.items]
    while page.next_cursor is not None:
        cursor = page.next_cursor
        page = fk.queries.stage_items(pid, "lead", REP, limit=1, as_of=moment, cursor=cursor)
        seen += [(i.id, i.position) for i in page.items]
    assert seen == [(deal, k) for k, deal in enumerate(reversed(deals))]
