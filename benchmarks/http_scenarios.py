"""The HTTP heartbeat: a device gateway's batches of heartbeats sent over loopback HTTP.

The app is served by uvicorn in a thread of this process; the client is the standard library's
`http.client` on one kept-alive connection, encoding each request and decoding each response.
The baseline is the same batch through `fk.execute_batch` in process, so the ratio is what the
HTTP layer (parsing, validation, authentication, serialisation, the socket) costs.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

from flowkernel import SYSTEM
from flowkernel.http import create_app
from flowkernel.http.server import background

from .measuring import Context, Measure, interleave
from .scratch import place_rows


def http_heartbeat(ctx: Context, station: tuple[int, dict[str, int]]) -> list[Measure]:
    """The hidden heartbeat on `batch_size` stations per call, through `POST /v1/batches` with
    a system token, against `execute_batch` in process; items per second."""
    fk, scale = ctx.fk, ctx.scale
    class_id, state = station
    size = scale.batch_size
    with fk.engine.begin() as conn:
        over_http, in_process = (
            place_rows(
                conn,
                class_id,
                [state["available"]],
                "charging_station",
                range(base + 1, base + size + 1),
                account_id=None,
            )
            for base in (11_000_000, 12_000_000)  # object ids no other scenario uses
        )
    app = create_app(fk)
    token = app.state.tokens.issue("bench gateway", system=True).token
    params = {"status": "ok"}
    with background(app) as url:
        address = urlsplit(url)
        client = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def http_op(_i: int) -> None:
            body = {
                "executions": [{"item_id": i, "method": "heartbeat"} for i in over_http],
                "params": params,
            }
            client.request("POST", "/v1/batches", json.dumps(body), headers)
            response = client.getresponse()
            answer = json.loads(response.read())
            assert response.status == 200 and answer["executed"] == size, answer

        def in_process_op(_i: int) -> None:
            assert fk.execute_batch(in_process, "heartbeat", SYSTEM, params=params).ok

        try:
            rates = interleave(
                ctx,
                [("http", http_op, scale.batches), ("in process", in_process_op, scale.batches)],
                warmup=1,
            )
        finally:
            client.close()
    return [
        Measure(
            "http_heartbeat_batch",
            "execute_batch in process",
            [r * size for r in rates["http"]],
            [r * size for r in rates["in process"]],
            unit="items/s",
        )
    ]
