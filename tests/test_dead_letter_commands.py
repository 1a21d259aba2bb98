"""Dead-lettered events from the command line and over HTTP: listed and requeued by system
actors only, as the library does."""

from __future__ import annotations

import json

import httpx
import pytest
from test_delivery import ACCOUNT, Recorder, kernel, place, producer, rows

from flowkernel import Flowkernel
from flowkernel.cli import main
from flowkernel.http import ApiTokens, create_app
from flowkernel.http.server import background as serve
from flowkernel.store.delivery import DeliveryReport

__all__ = ["producer"]


def test_dead_events_over_the_command_line_and_http(
    producer: Flowkernel, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    place(producer, 1)
    [row] = rows(producer)
    with kernel(database_url, Recorder(lambda _id: RuntimeError("boom")), delivery_attempts=1) as w:
        assert w.deliver_events() == DeliveryReport(dead=1)
    db = ["--database-url", database_url]

    assert main([*db, "events", "dead", "--as", "system", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["event_id"], listed["attempts"]) == (row.event_id, 1)
    assert main([*db, "events", "dead", "--as", "7", "--account", str(ACCOUNT)]) == 4
    assert "system" in capsys.readouterr().err  # a user may not read them

    tokens = ApiTokens(producer.engine)
    system = tokens.issue("ops", system=True).token
    user = tokens.issue("rep", account_id=ACCOUNT, user_id=7).token
    with serve(create_app(producer)) as url:
        headers = {"Authorization": f"Bearer {system}"}
        dead = httpx.get(f"{url}/v1/events/dead", headers=headers)
        assert dead.status_code == 200, dead.text
        assert [d["event_id"] for d in dead.json()] == [row.event_id]
        refused = httpx.get(f"{url}/v1/events/dead", headers={"Authorization": f"Bearer {user}"})
        assert refused.status_code == 403
        unknown = httpx.post(
            f"{url}/v1/events/dead/retry", headers=headers, json={"event_ids": ["nope"]}
        )
        assert unknown.status_code == 404, unknown.text
        retried = httpx.post(
            f"{url}/v1/events/dead/retry", headers=headers, json={"event_ids": [row.event_id]}
        )
        assert retried.status_code == 200 and retried.json() == {"requeued": 1}
        assert httpx.get(f"{url}/v1/events/dead", headers=headers).json() == []

    with kernel(database_url, Recorder(lambda _id: RuntimeError("boom")), delivery_attempts=1) as w:
        assert w.deliver_events() == DeliveryReport(dead=1)
    assert main([*db, "events", "retry", row.event_id, "--as", "system"]) == 0
    assert capsys.readouterr().out == "requeued 1 dead event(s) for delivery\n"
    with kernel(database_url, Recorder()) as w:
        assert w.deliver_events() == DeliveryReport(delivered=1)
