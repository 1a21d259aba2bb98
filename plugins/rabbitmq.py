"""RabbitMQ delivery: publish each outgoing event to an exchange, with publisher confirms.

Needs `pika` (`pip install 'flowkernel[rabbitmq]'`). Not registered by default; configure and
pass it in: `Flowkernel(url, plugins=[RabbitMQPlugin("amqp://guest:guest@127.0.0.1:5672/%2F")])`.

Messages are persistent, their `message_id` is the event id (stable across retries, so
consumers drop duplicates) and their routing key is the event name. The hook returns only once
the broker confirmed the message; an unreachable broker, a closed connection, a negative
confirm or a timeout raises `DeliveryFailed` and the outbox retries the event with backoff.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Final

import pika
import pika.exceptions

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

DEFAULT_URL: Final = "amqp://guest:guest@127.0.0.1:5672/%2F"
EXCHANGE_TYPES: Final = ("topic", "direct", "fanout", "headers")

log = logging.getLogger("flowkernel.rabbitmq")


class RabbitMQPlugin:
    """Publishes automation events (and, with `notifications`, watcher notifications).

    `exchange` is declared durable of `exchange_type` on first use unless `declare` is off
    (then it must exist). `timeout` bounds connecting and each blocked socket operation, in
    seconds. With `mandatory`, a message no queue is bound for counts as a failure. One
    connection is kept open and reopened after a failure; calls are serialised by a lock.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        exchange: str = "flowkernel",
        exchange_type: str = "topic",
        declare: bool = True,
        timeout: float = 5.0,
        mandatory: bool = False,
        notifications: bool = False,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("amqp://", "amqps://")):
            raise InvalidArgument(
                f"url must be an amqp:// or amqps:// URL, not {preview(url)}", url=url
            )
        if not isinstance(exchange, str):
            raise InvalidArgument(
                f"exchange must be a string, not {preview(exchange)}", exchange=exchange
            )
        if exchange_type not in EXCHANGE_TYPES:
            raise InvalidArgument(
                f"exchange_type must be one of {', '.join(EXCHANGE_TYPES)}, not "
                f"{preview(exchange_type)}",
                exchange_type=exchange_type,
            )
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise InvalidArgument(
                f"timeout must be seconds > 0, not {preview(timeout)}", timeout=timeout
            )
        self.url = url
        self.exchange = exchange
        self.exchange_type = exchange_type
        self.declare = declare
        self.timeout = float(timeout)
        self.mandatory = mandatory
        self.notifications = notifications
        self._lock = threading.Lock()
        self._connection: Any = None
        self._channel: Any = None

    @hookimpl
    def flowkernel_deliver_event(self, event: OutgoingEvent) -> None:
        headers = {
            "flowkernel-trigger": event.trigger,
            "flowkernel-item-id": event.item_id,
            "flowkernel-pipeline-id": event.pipeline_id,
            "flowkernel-attempt": event.attempt,
        }
        self.publish(event.event_id, event.event_name, encode(event_message(event)), headers)

    @hookimpl
    def flowkernel_notify_watcher(self, notification: WatcherNotification) -> None:
        if not self.notifications:
            return
        headers = {
            "flowkernel-trigger": notification.trigger,
            "flowkernel-item-id": notification.item_id,
            "flowkernel-pipeline-id": notification.pipeline_id,
            "flowkernel-user-id": notification.user_id,
        }
        body = encode(notification_message(notification))
        self.publish(notification.event_id, notification_name(notification), body, headers)

    def publish(
        self, event_id: str, routing_key: str, body: bytes, headers: dict[str, Any]
    ) -> None:
        """Publish one message and wait for the broker's confirm; raise `DeliveryFailed`."""
        properties = pika.BasicProperties(
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=event_id,
            type=routing_key,
            app_id="flowkernel",
            timestamp=int(time.time()),
            headers=headers,
        )
        target = f"rabbitmq exchange {preview(self.exchange)}"
        with self._lock:
            try:
                channel = self._open()
                channel.basic_publish(
                    self.exchange, routing_key, body, properties, mandatory=self.mandatory
                )
            except pika.exceptions.UnroutableError:
                raise DeliveryFailed(
                    target, event_id, f"no queue is bound for routing key {preview(routing_key)}"
                ) from None
            except pika.exceptions.NackError:
                raise DeliveryFailed(target, event_id, "the broker refused the message") from None
            except (pika.exceptions.AMQPError, OSError) as exc:
                # the connection may be half-dead; start afresh next time
                self._reset()
                raise DeliveryFailed(target, event_id, f"broker unavailable: {exc!r}") from exc

    def close(self) -> None:
        """Close the connection (it reopens on the next event)."""
        with self._lock:
            self._reset()

    def _open(self) -> Any:
        """The open confirm-mode channel, connecting and declaring the exchange if needed."""
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self._reset()
        params = pika.URLParameters(self.url)
        params.socket_timeout = self.timeout
        params.stack_timeout = self.timeout
        params.blocked_connection_timeout = self.timeout
        params.connection_attempts = 1
        connection = pika.BlockingConnection(params)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            if self.declare:
                channel.exchange_declare(self.exchange, self.exchange_type, durable=True)
        except BaseException:
            connection.close()
            raise
        self._connection, self._channel = connection, channel
        return channel

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                log.debug("closing a broken RabbitMQ connection failed", exc_info=True)
