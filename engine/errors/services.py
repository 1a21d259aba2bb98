"""Errors of the services around the engine: Graphviz for diagrams, event delivery."""

from __future__ import annotations

from flowkernel.errors.base import FlowkernelError


class GraphvizUnavailable(FlowkernelError):
    """SVG output needs Graphviz's `dot` program, which is missing or failed."""

    code = "graphviz_unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"cannot draw SVG: {reason}; install Graphviz (apt-get install graphviz) "
            "or use --format dot|mermaid"
        )


class DeliveryFailed(FlowkernelError):
    """A delivery plugin could not hand an event over; the outbox retries it later."""

    code = "delivery_failed"

    def __init__(self, target: str, event_id: str, reason: str) -> None:
        self.target = target
        self.event_id = event_id
        self.reason = reason
        super().__init__(f"event {event_id} not delivered to {target}: {reason}; retried later")
