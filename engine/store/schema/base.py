"""The schema's building blocks: column types, the naming convention, the declarative base."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Integer,
    MetaData,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = BigInteger().with_variant(Integer(), "sqlite")
"""Primary keys: BIGINT identity on PostgreSQL, the rowid alias on SQLite."""

Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
"""JSON documents: JSONB on PostgreSQL so the seed's `jsonb_set` statements run unchanged.

Python None is stored as SQL NULL, not JSON `null`: the seed resets `checklist_state` to NULL
and its `COALESCE(checklist_state::jsonb, '{}'::jsonb)` cannot set a key in a JSON `null`.
"""

FALSE = text("false")
"""The server default of a boolean column that starts false."""
TRUE = text("true")
"""The server default of a boolean column that starts true."""
NOW = func.now()
"""The server default of a timestamp set on insert."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base carrying the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def created_column() -> Mapped[datetime]:
    """A `created_at` column: set by the database on insert."""
    return mapped_column(UTCDateTime(), nullable=False, server_default=NOW)


def deleted_column() -> Mapped[datetime | None]:
    """A `deleted_at` column: NULL while the row is live."""
    return mapped_column(UTCDateTime(), nullable=True)
