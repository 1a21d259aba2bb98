"""The HTTP API under test: the real app served by uvicorn on a free loopback port, a seeded
world (the sales pipeline of account 1, charging stations, a pipeline of account 2) and tokens.

Test modules import the fixtures they use: `from http_fixtures import api, world`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from flowkernel import SYSTEM, Actor, Flowkernel
from flowkernel.definition.pipelines.admin import StageSpec
from flowkernel.examples.charging_station import build_station_class
from flowkernel.examples.sales_pipeline import ADMIN, build_sales_pipeline
from flowkernel.http import ApiTokens, create_app
from flowkernel.http.server import background as serve


@dataclass
class Api:
    """A served app and a way to call it with a token."""

    fk: Flowkernel
    app: FastAPI
    url: str

    @property
    def tokens(self) -> ApiTokens:
        store = self.app.state.tokens
        assert isinstance(store, ApiTokens)
        return store

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        """A client of the app; with `token`, every request carries it."""
        sent = dict(headers)
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=sent, timeout=60)


@dataclass
class World:
    """What the seeded database holds, and a client per kind of token."""

    api: Api
    sales: int  # the sales pipeline of account 1
    other: int  # a pipeline of account 2
    deal: int  # an item of the sales pipeline, in lead
    other_deal: int  # an item of account 2
    station: int  # a charging station of account 1, unavailable
    user: httpx.Client  # user 7 of account 1, group sales
    system: httpx.Client  # the platform's system actor
    account_system: httpx.Client  # the system actor confined to account 1
    stranger: httpx.Client  # user 8 of account 2


@pytest.fixture
def api(fk: Flowkernel) -> Iterator[Api]:
    """The app over `fk`, served on loopback; tokens are cached for 5 seconds (the default)."""
    app = create_app(fk)
    with serve(app) as url:
        yield Api(fk, app, url)


def seed(fk: Flowkernel) -> tuple[int, int, int, int, int]:
    """The sales pipeline with a deal, a pipeline of account 2 with a deal, a station."""
    sales = build_sales_pipeline(fk)
    deal = fk.place(sales.id, "crm_opportunity", 100, ADMIN)
    other = fk.pipelines.create_pipeline(
        "Support", Actor.user(1, 2), stages=[StageSpec("New"), StageSpec("Done", is_won=True)]
    )
    other_deal = fk.place(other.id, "ticket", 200, Actor.user(1, 2))
    build_station_class(fk)
    station = fk.place("station", "charging_station", 300, SYSTEM, account_id=1)
    fk.execute(station.id, "enable", SYSTEM)
    return sales.id, other.id, deal.id, other_deal.id, station.id


@pytest.fixture
def world(api: Api) -> Iterator[World]:
    """A seeded database behind the served app, and clients with four kinds of token."""
    sales, other, deal, other_deal, station = seed(api.fk)
    issue = api.tokens.issue
    clients = [
        api.client(issue("rep", account_id=1, user_id=7, groups=["sales"]).token),
        api.client(issue("platform", system=True).token),
        api.client(issue("gateway", account_id=1, system=True).token),
        api.client(issue("stranger", account_id=2, user_id=8).token),
    ]
    try:
        yield World(api, sales, other, deal, other_deal, station, *clients)
    finally:
        for client in clients:
            client.close()
