"""Webhook delivery: POST each outgoing event as signed JSON to configured URLs.

Not registered by default; configure and pass it in:
`Flowkernel(url, plugins=[WebhookPlugin(url="https://...", secret="...")])`.

Each request carries `X-Flowkernel-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body
under the shared secret, and `X-Flowkernel-Event-Id`, stable across retries, so receivers check
the sender and drop duplicates. A non-2xx answer (redirects included), a connection error or a
timeout raises `DeliveryFailed`; the outbox then retries the event with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Final
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


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would turn the POST into a GET without the body; report it as a failure.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _check_url(url: object) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise InvalidArgument(f"webhook url must be an http(s) URL, not {preview(url)}", url=url)
    if not urlsplit(url).hostname:
        raise InvalidArgument(f"webhook url {preview(url)} has no host", url=url)
    return url


class WebhookPlugin:
    """POSTs automation events (and, with `notifications`, watcher notifications) as JSON.

    `url` receives every event; each of `routes` (`WebhookRoute`s or `(pattern, url)` pairs)
    receives the events whose name matches its pattern. `timeout` bounds each socket
    operation of a request, in seconds. Watcher notifications travel as `watcher.<trigger>`.
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
        self._opener = urllib.request.build_opener(_NoRedirects())

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
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            problem = self._send(request)
            if problem is not None:
                log.warning("webhook %s for event %s failed: %s", url, event_id, problem)
                failures.append(f"{url}: {problem}")
        if failures:
            raise DeliveryFailed("webhook", event_id, "; ".join(failures))

    def _send(self, request: urllib.request.Request) -> str | None:
        """None when the endpoint answered 2xx, else what went wrong."""
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(65536)  # drain a little so the connection closes cleanly
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return f"HTTP {exc.code} {exc.reason}"
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return f"timed out after {self.timeout:g} s"
            return f"connection failed: {exc.reason}"
        except TimeoutError:
            return f"timed out after {self.timeout:g} s"
        except (OSError, http.client.HTTPException) as exc:
            return f"connection failed: {exc!r}"
        if not 200 <= status < 300:
            return f"HTTP {status}"
        return None
