"""The built-in inbox: keeps each watcher's notifications (list, mark read)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Engine, insert, or_, select, update

from flowkernel.hookspecs import hookimpl
from flowkernel.snapshots import InboxEntry, WatcherNotification
from flowkernel.store.database import reader
from flowkernel.store.tables import inbox as table


class InboxPlugin:
    """Stores watcher notifications once (by event id) in `fk_inbox`."""

    def __init__(self, database: Engine) -> None:
        self._db = database

    @hookimpl
    def flowkernel_notify_watcher(self, notification: WatcherNotification) -> None:
        with self._db.begin() as conn:
            seen = conn.execute(
                select(table.c.id).where(table.c.event_id == notification.event_id)
            ).first()
            if seen is None:
                conn.execute(
                    insert(table).values(
                        event_id=notification.event_id,
                        iam_user_id=notification.user_id,
                        iam_account_id=notification.account_id,
                        flow_item_id=notification.item_id,
                        trigger=notification.trigger,
                        message=notification.message,
                        payload=dict(notification.payload),
                    )
                )

    def entries(
        self,
        user_id: int,
        *,
        accounts: Collection[int | None] | None,
        unread_only: bool = False,
        limit: int = 100,
    ) -> list[InboxEntry]:
        """The user's notifications about items of `accounts` (every account when None),
        newest first."""
        stmt = select(table).where(table.c.iam_user_id == user_id, *_of(accounts))
        if unread_only:
            stmt = stmt.where(table.c.read_at.is_(None))
        with reader(self._db).connect() as conn:
            rows = conn.execute(stmt.order_by(table.c.id.desc()).limit(limit)).all()
        return [
            InboxEntry(
                r.id,
                r.event_id,
                r.iam_user_id,
                r.flow_item_id,
                r.trigger,
                r.message,
                dict(r.payload),
                r.created_at,
                r.read_at,
            )
            for r in rows
        ]

    def mark_read(
        self,
        user_id: int,
        entry_ids: list[int] | None = None,
        *,
        accounts: Collection[int | None] | None,
    ) -> int:
        """Mark the user's entries of `accounts` (all when `entry_ids` is None) read; how many
        changed."""
        stmt = update(table).where(
            table.c.iam_user_id == user_id, table.c.read_at.is_(None), *_of(accounts)
        )
        if entry_ids is not None:
            stmt = stmt.where(table.c.id.in_(entry_ids))
        with self._db.begin() as conn:
            return conn.execute(stmt.values(read_at=datetime.now(UTC))).rowcount


def _of(accounts: Collection[int | None] | None) -> list[ColumnElement[bool]]:
    """The condition that an entry is about an item of `accounts` (none: every account)."""
    if accounts is None:
        return []
    numbered = [a for a in accounts if a is not None]
    either = [table.c.iam_account_id.in_(numbered)]
    if None in accounts:
        either.append(table.c.iam_account_id.is_(None))
    return [or_(*either)]
