"""The method-call log's reader: every call newest first (moves, calls that changed nothing,
the last call of methods that keep one), paged by cursor, under the history's access rules, in
the library, the command line and HTTP."""

from __future__ import annotations

import json

import pytest
from http_fixtures import Api, api
from rows import every_row

from flowkernel import (
    SYSTEM,
    AccessDenied,
    Actor,
    Flowkernel,
    InvalidArgument,
    ItemNotFound,
)
from flowkernel.cli import main

__all__ = ["api"]

ACCOUNT = 6
REP = Actor.user(3, ACCOUNT)


@pytest.fixture
def lamp(fk: Flowkernel) -> int:
    """A lamp placed, switched on, edited twice, pinged three times, switched off: 8 calls."""
    d = fk.definitions
    d.add_class("lamp", "Lamp", account_id=ACCOUNT)
    d.add_state("lamp", "created", "off", "Off", account_id=ACCOUNT)
    d.add_state("lamp", "enabled", "on", "On", account_id=ACCOUNT)
    d.add_method("lamp", "off", "enable", code="switch_on", account_id=ACCOUNT)
    d.add_method("lamp", "on", "disable", code="switch_off", account_id=ACCOUNT)
    for state in ("off", "on"):  # a no-transition action in both states
        d.add_method("lamp", state, "edit", account_id=ACCOUNT)
    d.add_method("lamp", None, "heartbeat", code="ping", call_log="last", account_id=ACCOUNT)
    d.add_transition("lamp", "off", "switch_on", "on", account_id=ACCOUNT)
    d.add_transition("lamp", "on", "switch_off", "off", account_id=ACCOUNT)
    item = fk.place("lamp", "lamp", 1, REP).id
    fk.execute(item, "switch_on", REP)
    fk.execute(item, "edit", REP, params={"n": 1})
    fk.execute(item, "edit", REP, params={"n": 2})
    for n in range(3):
        fk.execute(item, "ping", SYSTEM, params={"beat": n})
    fk.execute(item, "switch_off", REP)
    return item


def test_calls_are_read_newest_first_from_every_log(fk: Flowkernel, lamp: int) -> None:
    page = fk.queries.calls(lamp, REP)
    assert page.next_cursor is None
    assert [(c.method, c.state, c.to_state, c.count) for c in page.calls] == [
        ("switch_off", "on", "off", 1),
        ("ping", "on", None, 3),  # the last of three pings, standing for all of them
        ("edit", "on", None, 1),
        ("edit", "on", None, 1),
        ("switch_on", "off", "on", 1),
        ("create", None, "off", 1),
    ]
    ping = page.calls[1]
    assert (ping.params, ping.is_system, ping.user_id) == ({"beat": 2}, True, None)
    assert [c.params for c in page.calls[2:4]] == [{"n": 2}, {"n": 1}]
    assert all(c.item_id == lamp and c.called_at.tzinfo is not None for c in page.calls)
    times = [c.called_at for c in page.calls]
    assert times == sorted(times, reverse=True)


def test_pages_cover_every_call_once(fk: Flowkernel, lamp: int) -> None:
    whole = fk.queries.calls(lamp, REP).calls
    for size in (1, 2, 4, 5):
        seen, cursor = [], None
        while True:
            page = fk.queries.calls(lamp, REP, limit=size, cursor=cursor)
            assert len(page.calls) <= size
            seen.extend(page.calls)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert tuple(seen) == whole, size
    # a page read before later calls goes on where it ended
    first = fk.queries.calls(lamp, REP, limit=2)
    fk.execute(lamp, "edit", REP, params={"n": 3})
    rest = fk.queries.calls(lamp, REP, cursor=first.next_cursor).calls
    assert first.calls + rest == whole


def test_the_history_rules_apply_and_bad_arguments_are_refused(fk: Flowkernel, lamp: int) -> None:
    before = every_row(fk)
    with pytest.raises(ItemNotFound):
        fk.queries.calls(lamp, Actor.user(3, ACCOUNT + 1))
    with pytest.raises(ItemNotFound):
        fk.queries.calls(10**9, REP)
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": True}, {"cursor": "x"},
                {"cursor": "2026-01-01T00:00:00|9|1"}, {"cursor": "soon|2|1"},
                {"cursor": "2026-01-01T00:00:00|2|abc"}, {"cursor": 5}):  # fmt: skip
        with pytest.raises(InvalidArgument):
            fk.queries.calls(lamp, REP, **bad)  # type: ignore[arg-type]
    assert every_row(fk) == before
    fk.definitions.add_access_rule(
        "lamp", subject="3", permission="visible", effect="deny", account_id=ACCOUNT
    )
    before = every_row(fk)
    with pytest.raises(AccessDenied):
        fk.queries.calls(lamp, REP)
    assert len(fk.queries.calls(lamp, SYSTEM).calls) == 6
    assert every_row(fk) == before


def test_a_dropped_items_calls_stay_readable(fk: Flowkernel) -> None:
    fk.definitions.add_class("region", "Region")
    fk.definitions.add_default_methods("region")
    item = fk.place("region", "region", 1, SYSTEM).id
    for method in ("delete", "drop"):
        fk.execute(item, method, SYSTEM)
    assert [c.method for c in fk.queries.calls(item, SYSTEM).calls] == ["drop", "delete", "create"]


def test_calls_over_the_command_line_and_http(
    fk: Flowkernel, lamp: int, database_url: str, api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--database-url", database_url]
    acting = ["--as", "3", "--account", str(ACCOUNT)]
    assert main(["item", "calls", str(lamp), "--limit", "2", "--json", *db, *acting]) == 0
    page = json.loads(capsys.readouterr().out)
    assert [c["method"] for c in page["calls"]] == ["switch_off", "ping"]
    assert page["calls"][1]["count"] == 3 and page["next_cursor"]
    assert main(["item", "calls", str(lamp), *db, *acting]) == 0
    shown = capsys.readouterr().out
    assert "switch_off" in shown and "ping" in shown and "create" in shown
    assert main(["item", "calls", str(lamp), *db, "--as", "3", "--account", "99"]) != 0
    capsys.readouterr()

    token = api.tokens.issue("rep", account_id=ACCOUNT, user_id=3).token
    with api.client(token) as client:
        first = client.get(f"/v1/items/{lamp}/calls", params={"limit": 4})
        assert first.status_code == 200, first.text
        body = first.json()
        assert [c["method"] for c in body["calls"]] == ["switch_off", "ping", "edit", "edit"]
        rest = client.get(f"/v1/items/{lamp}/calls", params={"cursor": body["next_cursor"]}).json()
        assert [c["method"] for c in rest["calls"]] == ["switch_on", "create"]
        assert rest["next_cursor"] is None
        assert client.get(f"/v1/items/{lamp}/calls", params={"cursor": "x"}).status_code == 422
    with api.client(api.tokens.issue("other", account_id=ACCOUNT + 1, user_id=3).token) as other:
        assert other.get(f"/v1/items/{lamp}/calls").status_code == 404
