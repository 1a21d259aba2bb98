"""Webhook delivery: POST each outgoing event as signed JSON to configured URLs.

Not registered by default; configure and pass it in:
`Flowkernel(url, plugins=[WebhookPlugin(url="https://...", secret="...")])`.

Each request carries `X-Flowkernel-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body
under the shared secret, and `X-Flowkernel-Event-Id`, stable across retries, so receivers check
the sender and drop duplicates. A non-2xx answer (redirects included), a connection error or a
timeout raises `DeliveryFailed`; the outbox then retries the event with backoff.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import logging
import math
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from http.client import HTTPConnection, HTTPSConnection
from typing import Final
from urllib.parse import urlsplit

from flowkernel.errors import DeliveryFailed, InvalidArgument
from flowkernel.hookspecs import hookimpl
from flowkernel.plugins.messages import (
    encode,
    event_message,
    notification_message,
    notification_name,
)
from flowkernel.previews import preview
from flowkernel.snapshots import OutgoingEvent, WatcherNotification

SIGNATURE_HEADER: Final = "X-Flowkernel-Signature"
EVENT_ID_HEADER: Final = "X-Flowkernel-Event-Id"
EVENT_HEADER: Final = "X-Flowkernel-Event"
ATTEMPT_HEADER: Final = "X-Flowkernel-Attempt"

log = logging.getLogger("flowkernel.webhook")


def sign(secret: str | bytes, body: bytes) -> str:
    """The signature header value for `body`: `sha256=<hex HMAC-SHA256>`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, signature: str | None) -> bool:
    """Whether `signature` (the header value) is the one `secret` gives `body`."""
    return signature is not None and hmac.compare_digest(sign(secret, body), signature)


@dataclass(frozen=True, slots=True)
class WebhookRoute:
    """Send events whose name matches `pattern` (shell-style: `crm.*`, `*`) to `url`."""

    pattern: str
    url: str


def _check_url(url: object) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise InvalidArgument(f"webhook url must be an http(s) URL, not {preview(url)}", url=url)
    if not urlsplit(url).hostname:
        raise InvalidArgument(f"webhook url {preview(url)} has no host", url=url)
    return url


class WebhookPlugin:
    """POSTs automation events (and, with `notifications`, watcher notifications) as JSON.

    `url` receives every event; each of `routes` (`WebhookRoute`s or `(pattern, url)` pairs)
    receives the events whose name matches its pattern. `timeout` bounds each request as a
    whole, in seconds: connecting, sending and reading the answer, however slowly an endpoint
    answers. Watcher notifications travel as `watcher.<trigger>`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        secret: str | bytes,
        routes: Sequence[WebhookRoute | tuple[str, str]] = (),
        timeout: float = 10.0,
        notifications: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(secret, str | bytes) or not secret:
            raise InvalidArgument("webhook secret must be a non-empty string", secret="***")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise InvalidArgument(
                f"timeout must be seconds > 0, not {preview(timeout)}", timeout=timeout
            )
        chosen: list[WebhookRoute] = []
        if url is not None:
            chosen.append(WebhookRoute("*", _check_url(url)))
        for route in routes:
            if not isinstance(route, WebhookRoute):
                if not isinstance(route, tuple) or len(route) != 2:
                    raise InvalidArgument(
                        f"a route is a WebhookRoute or a (pattern, url) pair, not {preview(route)}",
                        route=route,
                    )
                route = WebhookRoute(*route)
            if not isinstance(route.pattern, str) or not route.pattern:
                raise InvalidArgument(
                    f"a route pattern must be a non-empty string, not {preview(route.pattern)}",
                    pattern=route.pattern,
                )
            chosen.append(WebhookRoute(route.pattern, _check_url(route.url)))
        if not chosen:
            raise InvalidArgument("a webhook needs a url or at least one route")
        self.routes: tuple[WebhookRoute, ...] = tuple(chosen)
        self.timeout = float(timeout)
        self.notifications = notifications
        self._secret = secret
        self._headers = dict(headers or {})

    def urls_for(self, event_name: str) -> list[str]:
        """The URLs an event of this name goes to, each once, in configuration order."""
        return list(dict.fromkeys(r.url for r in self.routes if fnmatchcase(event_name, r.pattern)))

    @hookimpl
    def flowkernel_deliver_event(self, event: OutgoingEvent) -> None:
        self._post(event.event_id, event.event_name, encode(event_message(event)), event.attempt)

    @hookimpl
    def flowkernel_notify_watcher(self, notification: WatcherNotification) -> None:
        if self.notifications:
            name = notification_name(notification)
            self._post(notification.event_id, name, encode(notification_message(notification)))

    def _post(self, event_id: str, name: str, body: bytes, attempt: int | None = None) -> None:
        """POST `body` to every URL for `name`; raise when any of them did not take it."""
        failures: list[str] = []
        for url in self.urls_for(name):
            headers = {
                **self._headers,
                "Content-Type": "application/json",
                "User-Agent": "flowkernel-webhook",
                EVENT_ID_HEADER: event_id,
                EVENT_HEADER: name,
                SIGNATURE_HEADER: sign(self._secret, body),
            }
            if attempt is not None:
                headers[ATTEMPT_HEADER] = str(attempt)
            problem = self._send(url, body, headers)
            if problem is not None:
                log.warning("webhook %s for event %s failed: %s", url, event_id, problem)
                failures.append(f"{url}: {problem}")
        if failures:
            raise DeliveryFailed("webhook", event_id, "; ".join(failures))

    def _send(self, url: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        """None when the endpoint answered 2xx within `timeout` seconds in all, else what
        went wrong. At the deadline the socket is shut, however slowly the endpoint drips."""
        parts = urlsplit(url)
        opening = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        connection = opening(parts.hostname or "", parts.port, timeout=self.timeout)
        expired = threading.Event()
        opened: list[socket.socket] = []  # the response keeps reading it after the connection
        # lets go of it (an answer with `Connection: close`)

        def cut() -> None:
            expired.set()
            for sock in opened:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        deadline = threading.Timer(self.timeout, cut)
        deadline.daemon = True
        deadline.start()
        try:
            connection.connect()
            opened.append(connection.sock)
            if expired.is_set():  # the connect took the whole deadline
                return f"timed out after {self.timeout:g} s"
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("POST", target, body=body, headers=dict(headers))
            response = connection.getresponse()
            response.read(65536)  # drain a little so the connection closes cleanly
            status, reason = int(response.status), response.reason
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set() or isinstance(exc, TimeoutError):
                return f"timed out after {self.timeout:g} s"
            return f"connection failed: {exc!r}"
        finally:
            deadline.cancel()
            connection.close()
        if expired.is_set():  # cut while reading the answer
            return f"timed out after {self.timeout:g} s"
        if not 200 <= status < 300:  # a redirect too: following it would drop the body
            return f"HTTP {status} {reason}".rstrip()
        return None
