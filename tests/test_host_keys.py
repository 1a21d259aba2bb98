"""Items keyed by the host's own keys: 64-bit integers (the seed's object_id), UUIDs and short
text keys; placed and found by (object type, key) in the library, CLI and HTTP."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from http_fixtures import Api, api
from rows import every_row
from sqlalchemy import text

from flowkernel import (
    SYSTEM,
    Actor,
    Flowkernel,
    InvalidArgument,
    ObjectAlreadyPlaced,
    WrongObjectType,
)
from flowkernel.cli import main
from flowkernel.examples.charging_station import build_station_class

__all__ = ["api"]

STATION_KEY = "9F1C2D3E-5B6A-4C7D-8E9F-0A1B2C3D4E5F"
OPERATOR = Actor.user(5, 1)


@pytest.fixture
def station(fk: Flowkernel) -> Flowkernel:
    build_station_class(fk)
    return fk


def test_a_uuid_key_places_and_finds_the_object(station: Flowkernel) -> None:
    placed = station.place("station", "charging_station", STATION_KEY, OPERATOR)
    canonical = STATION_KEY.lower()
    assert (placed.object_key, placed.key) == (canonical, canonical)
    assert placed.object_id < 0  # the key's digest, never a host's positive id
    # the same UUID in any of its forms is the same object
    for form in (
        canonical,
        uuid.UUID(STATION_KEY),
        "{" + canonical + "}",
        canonical.replace("-", ""),
    ):
        [found] = station.items.find("charging_station", form, OPERATOR)
        assert found.id == placed.id and found.key == canonical
    before = every_row(station)
    with pytest.raises(ObjectAlreadyPlaced) as refused:
        station.place("station", "charging_station", uuid.UUID(STATION_KEY), OPERATOR)
    assert canonical in str(refused.value)
    assert every_row(station) == before
    assert station.item(placed.id, OPERATOR).object_key == canonical
    assert station.execute(placed.id, "enable", OPERATOR).to_state == "unavailable"


def test_integer_and_text_keys(station: Flowkernel) -> None:
    number = station.place("station", "charging_station", 20, OPERATOR)
    assert (number.object_id, number.object_key, number.key) == (20, None, 20)
    [same] = station.items.find("charging_station", "20", OPERATOR)  # decimal text: the integer
    assert same.id == number.id
    with pytest.raises(ObjectAlreadyPlaced):
        station.place("station", "charging_station", "20", OPERATOR)
    named = station.place("station", "charging_station", "ACME-0042", OPERATOR)
    assert (named.object_key, named.key) == ("ACME-0042", "ACME-0042")
    assert [i.id for i in station.items.find("charging_station", "ACME-0042", OPERATOR)] == [
        named.id
    ]
    assert station.items.find("charging_station", "acme-0042", OPERATOR) == []  # text is exact
    assert station.items.find("charging_station", 21, OPERATOR) == []
    # the seed's SQL reads integer keys unchanged
    with station.engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT id FROM flow_items "
                "WHERE object_type = 'charging_station' AND object_id = 20"
            )
        ).scalar_one()
    assert found == number.id


def test_an_object_in_several_classes_is_found_in_each(station: Flowkernel) -> None:
    station.definitions.add_class("region", "Region")
    station.definitions.add_default_methods("region")
    first = station.place("station", "charging_station", STATION_KEY, OPERATOR)
    second = station.place("region", "charging_station", STATION_KEY, OPERATOR)
    found = station.items.find("charging_station", STATION_KEY, OPERATOR)
    assert [(i.id, i.class_code) for i in found] == [(first.id, "station"), (second.id, "region")]
    assert [
        p.item_id for p in station.queries.pipelines_of("charging_station", STATION_KEY, OPERATOR)
    ] == [
        first.id,
        second.id,
    ]


def test_lookup_keeps_tenancy_and_class_visibility(station: Flowkernel) -> None:
    placed = station.place("station", "charging_station", STATION_KEY, OPERATOR)
    assert station.items.find("charging_station", STATION_KEY, Actor.user(5, 2)) == []
    assert [i.id for i in station.items.find("charging_station", STATION_KEY, SYSTEM)] == [
        placed.id
    ]
    station.definitions.add_access_rule(
        "station", subject="5", method=None, permission="visible", effect="deny"
    )
    assert station.items.find("charging_station", STATION_KEY, OPERATOR) == []


@pytest.mark.parametrize(
    "bad",
    ["", " 42", "42 ", "tab\tkey", "x" * 129, None, True, 4.2, b"42", [42], 2**63],
)
def test_bad_keys_are_refused_and_change_nothing(station: Flowkernel, bad: Any) -> None:
    before = every_row(station)
    with pytest.raises(InvalidArgument) as refused:
        station.place("station", "charging_station", bad, OPERATOR)
    assert "object_id must be a 64-bit integer, a UUID or a text key" in str(refused.value)
    with pytest.raises(InvalidArgument):
        station.items.find("charging_station", bad, OPERATOR)
    assert every_row(station) == before


def test_a_declared_object_type_is_enforced_for_every_key(station: Flowkernel) -> None:
    with pytest.raises(WrongObjectType):
        station.place("station", "ev_charger", STATION_KEY, OPERATOR)


def test_keys_over_the_command_line_and_http(
    station: Flowkernel, database_url: str, api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--database-url", database_url, "--plugin", "flowkernel.examples.charging_station"]
    acting = ["--as", "5", "--account", "1"]
    assert main([*db, "item", "place", "station", "charging_station", STATION_KEY, *acting]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"placed charging_station {STATION_KEY.lower()} into 'station'")
    assert main([*db, "item", "find", "charging_station", STATION_KEY, *acting, "--json"]) == 0
    [found] = json.loads(capsys.readouterr().out)
    assert found["object_key"] == STATION_KEY.lower()

    token = api.tokens.issue("gateway", account_id=1, user_id=5).token
    with api.client(token) as client:
        made = client.post(
            "/v1/items",
            json={"class": "station", "object_type": "charging_station", "object_id": "ACME-7"},
        )
        assert made.status_code == 201, made.text
        assert made.json()["object_key"] == "ACME-7"
        listed = client.get(
            "/v1/items", params={"object_type": "charging_station", "key": "ACME-7"}
        )
        assert listed.status_code == 200, listed.text
        assert [i["id"] for i in listed.json()] == [made.json()["id"]]
        by_uuid = client.get(
            "/v1/items", params={"object_type": "charging_station", "key": STATION_KEY}
        )
        assert [i["id"] for i in by_uuid.json()] == [found["id"]]
        assert (
            client.get("/v1/items", params={"object_type": "charging_station"}).status_code == 422
        )
        bad = client.post(
            "/v1/items",
            json={"class": "station", "object_type": "charging_station", "object_id": " x"},
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_argument"
    with api.client(api.tokens.issue("other", account_id=2, user_id=5).token) as other:
        assert (
            other.get(
                "/v1/items", params={"object_type": "charging_station", "key": "ACME-7"}
            ).json()
            == []
        )
