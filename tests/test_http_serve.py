"""`flowkernel serve`: the command serves the API on the configured database until SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from flowkernel.cli import main
from flowkernel.examples.charging_station import build_station_class
from flowkernel.kernel import Flowkernel


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_answers_until_terminated(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Flowkernel(database_url) as fk:
        build_station_class(fk)
    assert (
        main(["token", "create", "--name", "gw", "--system", "--database-url", database_url]) == 0
    )
    token = capsys.readouterr().out.strip()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "flowkernel.cli", "serve", "--port", str(port),
         "--database-url", database_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            while True:
                try:
                    health = client.get("/v1/health")
                    break
                except httpx.ConnectError:
                    assert server.poll() is None, server.communicate()[0]
                    threading.Event().wait(0.1)
            assert health.json() == {"status": "ok"}
            assert client.get("/v1/me").json()["is_system"] is True
            placed = client.post(
                "/v1/items",
                json={"class": "station", "object_type": "charging_station", "object_id": 1},
            )
            assert placed.status_code == 201 and placed.json()["state"] == "created"
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    assert server.returncode == 0, output
    assert f"127.0.0.1:{port}" in output


def test_serve_refuses_an_unmigrated_database(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"sqlite:///{tmp_path}/none.db"
    assert main(["serve", "--port", "1", "--database-url", missing]) == 5
    assert "flowkernel db upgrade" in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2
