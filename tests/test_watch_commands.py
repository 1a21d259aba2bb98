"""Watchers and the inbox from the command line and over HTTP, as in the library."""

from __future__ import annotations

import json

import pytest
from http_fixtures import Api, api
from rows import every_row

from flowkernel import Actor, Flowkernel
from flowkernel.cli import main
from flowkernel.definition.pipelines.admin import StageSpec

__all__ = ["api"]

REP = Actor.user(7, 1)
WATCHER = Actor.user(9, 1)


@pytest.fixture
def deal(fk: Flowkernel) -> int:
    stages = [StageSpec("Lead"), StageSpec("Qualified"), StageSpec("Won", is_won=True)]
    pipeline = fk.pipelines.create_pipeline("Sales", REP, code="sales", stages=stages)
    return fk.place(pipeline.id, "deal", 1, REP).id


def test_watch_and_read_the_inbox_on_the_command_line(
    fk: Flowkernel, deal: int, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--database-url", database_url]
    rep = ["--account", "1", "--as", "7"]
    assert main([*db, "watch", str(deal), "9", *rep]) == 0
    assert capsys.readouterr().out == f"user 9 watches item {deal}, as user 7 of account 1\n"
    assert main([*db, "watch", str(deal), *rep, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [9]
    fk.move(deal, "qualified", REP)

    mine = ["--account", "1", "--as", "9"]
    assert main([*db, "inbox", "9", "--unread", *mine, "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["item_id"] == deal and "Lead" in entry["message"]
    assert main([*db, "inbox", "9", *mine, "--mark-read"]) == 0
    assert capsys.readouterr().out.startswith("marked 1 notification(s) read, as user 9")
    assert fk.items.inbox(9, WATCHER, unread_only=True) == []

    before = every_row(fk)
    assert main([*db, "inbox", "9", *rep]) == 4  # another user's inbox is refused
    assert "user 7" in capsys.readouterr().err
    assert main([*db, "watch", str(deal), *rep, "--stop"]) == 2
    capsys.readouterr()
    assert every_row(fk) == before
    assert main([*db, "watch", str(deal), "9", *rep, "--stop"]) == 0
    assert "no longer watches" in capsys.readouterr().out
    assert fk.items.watchers(deal, REP) == []


def test_the_inbox_over_http(fk: Flowkernel, deal: int, api: Api) -> None:
    fk.items.watch(deal, 9, REP)
    fk.move(deal, "qualified", REP)
    own = api.tokens.issue("watcher", account_id=1, user_id=9).token
    with api.client(own) as client:
        found = client.get("/v1/users/9/inbox", params={"unread_only": "true"})
        assert found.status_code == 200, found.text
        [entry] = found.json()
        assert entry["item_id"] == deal and entry["read_at"] is None
        marked = client.post("/v1/users/9/inbox/read", json={"entry_ids": [entry["id"]]})
        assert marked.status_code == 200 and marked.json() == {"marked": 1}
        assert client.get("/v1/users/9/inbox", params={"unread_only": "true"}).json() == []
        assert client.post("/v1/users/9/inbox/read", json={"entry_ids": "x"}).status_code == 422
    other = api.tokens.issue("rep", account_id=1, user_id=7).token
    with api.client(other) as client:
        assert client.get("/v1/users/9/inbox").status_code == 403
