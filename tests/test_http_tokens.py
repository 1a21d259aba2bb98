"""API tokens: stored hashed, bound to a user of an account or to the system actor, refused
when missing, malformed, unknown or revoked; the `flowkernel token` commands."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from http_fixtures import Api, api, serve
from sqlalchemy import select, update

from flowkernel import Actor, Flowkernel, InvalidArgument, InvalidToken
from flowkernel.cli import main
from flowkernel.http import ApiTokens, create_app
from flowkernel.http.tokens import TOKEN_PATTERN
from flowkernel.store.tables import api_tokens

__all__ = ["api"]


def stored(fk: Flowkernel) -> list[dict[str, object]]:
    with fk.engine.connect() as conn:
        return [
            dict(r._mapping) for r in conn.execute(select(api_tokens).order_by(api_tokens.c.id))
        ]


def test_tokens_are_stored_hashed_and_resolve_to_their_actor(fk: Flowkernel) -> None:
    tokens = ApiTokens(fk.engine)
    user = tokens.issue("rep", account_id=1, user_id=7, groups=["sales", "east", "sales"])
    system = tokens.issue("platform", system=True)
    confined = tokens.issue("gateway", account_id=3, system=True)
    for issued in (user, system, confined):
        assert TOKEN_PATTERN.fullmatch(issued.token)
        assert issued.token.startswith(f"fk_{issued.info.prefix}_")
    rows = stored(fk)
    assert [r["token_hash"] for r in rows] == [
        hashlib.sha256(i.token.encode()).hexdigest() for i in (user, system, confined)
    ]
    for row, issued in zip(rows, (user, system, confined), strict=True):
        assert issued.token not in {str(v) for v in row.values()}
    assert user.info.groups == ("east", "sales")

    assert tokens.resolve(user.token) == Actor.user(7, 1, ("east", "sales"))
    assert tokens.resolve(system.token) == Actor.system()
    assert tokens.resolve(confined.token) == Actor.system(3)
    assert [t.name for t in tokens.list()] == ["rep", "platform", "gateway"]
    assert [t.name for t in tokens.list(account_id=3)] == ["gateway"]


def test_issue_refuses_incomplete_bindings(fk: Flowkernel) -> None:
    tokens = ApiTokens(fk.engine)
    for kwargs in (
        {"account_id": 1},
        {"user_id": 7},
        {"system": True, "user_id": 7},
        {"system": True, "groups": ["ops"]},
        {"account_id": 0, "user_id": 7},
        {"account_id": 1, "user_id": 7, "groups": "ops"},
        {"account_id": 1, "user_id": 7, "groups": [""]},
    ):
        with pytest.raises(InvalidArgument):
            tokens.issue("t", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        tokens.issue("  ", system=True)
    assert stored(fk) == []


def test_bad_tokens_are_refused(fk: Flowkernel) -> None:
    tokens = ApiTokens(fk.engine)
    good = tokens.issue("rep", account_id=1, user_id=7).token
    for token, reason in (
        (None, "missing"),
        ("", "missing"),
        ("secret", "malformed"),
        (good[:-1], "malformed"),
        (good + "x", "malformed"),
        (good[:-1] + ("B" if good.endswith("A") else "A"), "unknown"),
        ("fk_00000000_" + "a" * 43, "unknown"),
    ):
        with pytest.raises(InvalidToken) as refused:
            tokens.resolve(token)
        assert refused.value.reason == reason, token


def test_revocation_takes_effect_at_once_here_and_within_the_ttl_elsewhere(fk: Flowkernel) -> None:
    here = ApiTokens(fk.engine)
    elsewhere = ApiTokens(fk.engine, cache_ttl=0)
    cached = ApiTokens(fk.engine, cache_ttl=3600)
    issued = here.issue("rep", account_id=1, user_id=7)
    for store in (here, elsewhere, cached):
        assert store.resolve(issued.token) == Actor.user(7, 1)
    revoked = here.revoke(issued.info.id)
    assert revoked.revoked_at is not None
    for store in (here, elsewhere):
        with pytest.raises(InvalidToken) as refused:
            store.resolve(issued.token)
        assert refused.value.reason == "revoked"
    # another process's cache trusts the token until its TTL runs out (documented)
    assert cached.resolve(issued.token) == Actor.user(7, 1)
    assert here.revoke(issued.info.id).revoked_at == revoked.revoked_at  # twice: kept
    assert here.list() == [] and [t.id for t in here.list(include_revoked=True)] == [1]
    with pytest.raises(InvalidToken):
        here.revoke(99)


def test_a_token_expires_at_its_moment_even_while_cached(fk: Flowkernel) -> None:
    tokens = ApiTokens(fk.engine, cache_ttl=3600)
    forever = tokens.issue("rep", account_id=1, user_id=7)
    assert forever.info.expires_at is None
    later = datetime.now(UTC) + timedelta(days=30)
    dated = tokens.issue("contractor", account_id=1, user_id=8, expires_at=later)
    assert dated.info.expires_at == later
    naive = tokens.issue("naive", system=True, expires_at=later.replace(tzinfo=None))
    assert naive.info.expires_at == later
    soon = tokens.issue("probe", system=True, expires_in=timedelta(milliseconds=300))
    assert soon.info.expires_at is not None
    for issued, actor in ((forever, Actor.user(7, 1)), (dated, Actor.user(8, 1))):
        assert tokens.resolve(issued.token) == actor
    assert tokens.resolve(soon.token) == Actor.system()  # now cached for an hour
    while datetime.now(UTC) <= soon.info.expires_at:
        time.sleep(0.05)
    for store in (tokens, ApiTokens(fk.engine)):
        with pytest.raises(InvalidToken) as refused:
            store.resolve(soon.token)
        assert refused.value.reason == "expired"
        assert f"API token {soon.info.prefix} expired at " in refused.value.message
        assert "flowkernel token create" in refused.value.message
    # an expiry set in the row (as another process would) holds on the next load
    with fk.engine.begin() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == dated.info.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with pytest.raises(InvalidToken) as refused:
        ApiTokens(fk.engine).resolve(dated.token)
    assert refused.value.reason == "expired"
    assert ApiTokens(fk.engine).resolve(forever.token) == Actor.user(7, 1)
    listed = {t.name: t.expires_at for t in tokens.list()}
    assert listed["rep"] is None and listed["probe"] == soon.info.expires_at


def test_an_expiry_must_lie_ahead(fk: Flowkernel) -> None:
    tokens = ApiTokens(fk.engine)
    past = datetime.now(UTC) - timedelta(minutes=1)
    for kwargs in (
        {"expires_at": past},
        {"expires_in": timedelta(0)},
        {"expires_in": timedelta(seconds=-5)},
        {"expires_in": timedelta.max},
        {"expires_in": 3600},
        {"expires_at": "2030-01-01"},
        {"expires_at": past + timedelta(days=1), "expires_in": timedelta(days=1)},
    ):
        with pytest.raises(InvalidArgument) as refused:
            tokens.issue("t", system=True, **kwargs)  # type: ignore[arg-type]
        assert "expir" in refused.value.message
    assert stored(fk) == []


def test_last_used_is_written_at_most_once_per_interval(fk: Flowkernel) -> None:
    tokens = ApiTokens(fk.engine)
    issued = tokens.issue("rep", account_id=1, user_id=7)
    assert stored(fk)[0]["last_used_at"] is None
    tokens.resolve(issued.token)
    first = stored(fk)[0]["last_used_at"]
    assert first is not None
    fresh = ApiTokens(fk.engine, cache_ttl=0)
    for _ in range(3):
        fresh.resolve(issued.token)
        tokens.resolve(issued.token)
    assert stored(fk)[0]["last_used_at"] == first
    eager = ApiTokens(fk.engine, cache_ttl=0, touch_every=0)
    eager.resolve(issued.token)
    assert stored(fk)[0]["last_used_at"] != first


def test_bad_tokens_over_http(api: Api) -> None:
    issued = api.tokens.issue("rep", account_id=1, user_id=7, groups=["sales"])
    with api.client() as anonymous:
        health = anonymous.get("/v1/health")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        cases = {
            "missing": {},
            "malformed": {"Authorization": f"Basic {issued.token}"},
            "no token": {"Authorization": "Bearer"},
            "not a token": {"Authorization": "Bearer hunter2"},
            "unknown": {"Authorization": "Bearer fk_00000000_" + "a" * 43},
        }
        for name, headers in cases.items():
            response = anonymous.get("/v1/me", headers=headers)
            assert response.status_code == 401, name
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == "invalid_token"
            assert response.json()["error"]["details"]["reason"] in (
                "missing",
                "malformed",
                "unknown",
            )
        refused = anonymous.post("/v1/batches", json={"executions": []})
        assert refused.status_code == 401
    with api.client(issued.token) as client:
        assert client.get("/v1/me").json() == {
            "user_id": 7,
            "account_id": 1,
            "groups": ["sales"],
            "is_system": False,
        }
        api.tokens.revoke(issued.info.id)
        revoked = client.get("/v1/me")
        assert revoked.status_code == 401
        assert revoked.json()["error"]["details"]["reason"] == "revoked"
    dated = api.tokens.issue("probe", system=True, expires_in=timedelta(days=1))
    with api.fk.engine.begin() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == dated.info.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with api.client(dated.token) as client:
        expired = client.get("/v1/me")
        assert expired.status_code == 401
        assert expired.headers["www-authenticate"] == "Bearer"
        problem = expired.json()["error"]
        assert problem["code"] == "invalid_token" and problem["details"]["reason"] == "expired"
        assert "expired at" in problem["message"]


def test_a_server_refuses_a_token_revoked_by_another_process(fk: Flowkernel) -> None:
    issued = ApiTokens(fk.engine).issue("gateway", system=True)
    headers = {"Authorization": f"Bearer {issued.token}"}
    with (
        serve(create_app(fk, token_cache_ttl=0)) as url,
        httpx.Client(base_url=url, headers=headers) as client,
    ):
        assert client.get("/v1/me").status_code == 200
        ApiTokens(fk.engine).revoke(issued.info.id)
        assert client.get("/v1/me").status_code == 401


def test_token_commands(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--database-url", database_url]
    assert main(["token", "create", "--name", "rep", "--account", "1", "--user", "7",
                 "--group", "sales", *db]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    token = out.strip()
    assert TOKEN_PATTERN.fullmatch(token) and "shown only now" in err
    assert main(["token", "create", "--name", "gw", "--system", "--json", *db]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["is_system"] is True and TOKEN_PATTERN.fullmatch(created["token"])

    with Flowkernel(database_url) as fk:
        assert ApiTokens(fk.engine).resolve(token) == Actor.user(7, 1, ("sales",))

    assert main(["token", "list", *db]) == 0
    listing = capsys.readouterr().out
    assert "rep" in listing and "gw" in listing and token not in listing
    assert main(["token", "revoke", "1", *db]) == 0
    assert "revoked token 1" in capsys.readouterr().out
    assert main(["token", "list", "--json", *db]) == 0
    assert [t["name"] for t in json.loads(capsys.readouterr().out)] == ["gw"]
    assert main(["token", "list", "--all", "--json", "--account", "1", *db]) == 0
    assert [t["name"] for t in json.loads(capsys.readouterr().out)] == ["rep"]

    assert main(["token", "create", "--name", "temp", "--system", "--expires-in", "12h", *db]) == 0
    assert "expires " in capsys.readouterr().err
    assert main(["token", "create", "--name", "until", "--system", "--json",
                 "--expires-at", "2099-01-31T18:00:00+01:00", *db]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["expires_at"] == "2099-01-31T17:00:00+00:00"
    for bad in (["--expires-in", "12"], ["--expires-in", "-1d"], ["--expires-at", "soon"],
                ["--expires-in", "1d", "--expires-at", "2099-01-01"]):  # fmt: skip
        assert main(["token", "create", "--name", "x", "--system", *bad, *db]) == 2
        capsys.readouterr()
    assert main(["token", "create", "--name", "x", "--system", "--expires-at", "2001-01-01",
                 *db]) != 0  # fmt: skip
    assert "must lie ahead" in capsys.readouterr().err
    assert main(["token", "list", *db]) == 0
    assert "2099-01-31 17:00" in capsys.readouterr().out
    assert main(["token", "revoke", "99", *db]) == 4
    assert "no API token with id 99" in capsys.readouterr().err
    assert main(["token", "create", "--name", "x", "--account", "1", *db]) == 2
    assert "--user" in capsys.readouterr().err
    assert main(["token", "create", "--name", "x", "--system", "--user", "3", *db]) == 2
    capsys.readouterr()
