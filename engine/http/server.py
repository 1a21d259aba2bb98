"""Serving the app from a thread: for tests and the benchmark, which call it over loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def background(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` with uvicorn in a thread on a free port of `host`; yields the base URL.

    The server stops (and the thread ends) when the block ends.
    """
    # IPPROTO_TCP named, so that asyncio turns Nagle off on accepted connections
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="flowkernel-http", daemon=True
    )
    thread.start()
    try:
        started = threading.Event()
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the HTTP server stopped while starting; see its log")
            started.wait(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
