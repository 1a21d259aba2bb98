"""Moments in time given by callers: validated and made timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from flowkernel.errors import InvalidArgument
from flowkernel.previews import preview


def utc_moment(value: datetime | None, name: str = "now") -> datetime:
    """`value` in UTC (a naive one is taken as UTC); the current time when None."""
    if value is None:
        return datetime.now(UTC)
    if not isinstance(value, datetime):
        raise InvalidArgument(f"{name} must be a datetime, not {preview(value)}", **{name: value})
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
