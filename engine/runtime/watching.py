"""Watchers of items and the watchers' inbox: who follows an item, and what they were told."""

from __future__ import annotations

from collections.abc import Sequence

import pluggy
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.access import EXECUTE, VISIBLE
from flowkernel.actors import Actor
from flowkernel.errors import (
    AccessDenied,
    InvalidArgument,
    UnknownDefinition,
)
from flowkernel.hookspecs import InboxStore
from flowkernel.previews import preview
from flowkernel.runtime.item_rows import check_user, load_item, refuse_deleted
from flowkernel.snapshots import InboxEntry
from flowkernel.store.database import reading
from flowkernel.store.tables import watchers
from flowkernel.store.writer import Writer
from flowkernel.validation import check_bool, check_id, check_int

MAX_INBOX = 10_000
"""The most inbox entries one call hands out."""


class Watching:
    """Watch and unwatch items, list their watchers, read and mark a user's inbox."""

    _sessions: sessionmaker[Session]
    _writer: Writer
    _pm: pluggy.PluginManager | None

    # --- watchers ------------------------------------------------------------------------

    def watch(self, item_id: int, user_id: int, actor: Actor) -> bool:
        """Make a user of the item's account watch the item; whether they were not watching it
        yet. Users are known by (account, user id): the watcher is user `user_id` of the item's
        account, and an item of no account is watched by platform users only."""
        check_user(user_id)
        with self._sessions.begin() as session:
            row = load_item(session, item_id, actor, lock=False, permission=EXECUTE)
            refuse_deleted(row)
            if row.iam_account_id is None and actor.account_id is not None:
                raise AccessDenied(
                    f"item {row.id} belongs to no account, so its watchers are platform users; "
                    f"an actor of account {actor.account_id} cannot add one",
                    item_id=row.id,
                )
            conn = session.connection()
            stmt = (
                self._writer.upsert(watchers)
                .values(flow_item_id=row.id, iam_user_id=user_id)
                .on_conflict_do_nothing()
                .returning(watchers.c.id)
            )
            return conn.execute(stmt).first() is not None

    def unwatch(self, item_id: int, user_id: int, actor: Actor) -> bool:
        """Stop a user watching the item; whether they were watching it."""
        check_user(user_id)
        with self._sessions.begin() as session:
            row = load_item(session, item_id, actor, lock=False, permission=EXECUTE)
            removed = session.connection().execute(
                delete(watchers).where(
                    watchers.c.flow_item_id == row.id, watchers.c.iam_user_id == user_id
                )
            )
            return removed.rowcount > 0

    def watchers(self, item_id: int, actor: Actor) -> list[int]:
        """The users watching the item, by id."""
        with reading(self._sessions) as session:
            row = load_item(session, item_id, actor, lock=False, permission=VISIBLE)
            return list(
                session.connection()
                .execute(
                    select(watchers.c.iam_user_id)
                    .where(watchers.c.flow_item_id == row.id)
                    .order_by(watchers.c.iam_user_id)
                )
                .scalars()
            )

    # --- the watchers' inbox -------------------------------------------------------------

    def inbox(
        self, user_id: int, actor: Actor, *, unread_only: bool = False, limit: int = 100
    ) -> list[InboxEntry]:
        """A user's watcher notifications, newest first: a user reads their own, about items of
        their account; a system actor reads a user's of its account (the platform's system
        actor, of every account)."""
        check_user(user_id)
        check_bool("unread_only", unread_only, error=InvalidArgument)
        check_int("limit", limit, minimum=1, maximum=MAX_INBOX, error=InvalidArgument)
        plugin = self._inbox_for(user_id, actor)
        return plugin.entries(
            user_id, accounts=_accounts(actor), unread_only=unread_only, limit=limit
        )

    def mark_read(self, user_id: int, actor: Actor, entry_ids: Sequence[int] | None = None) -> int:
        """Mark a user's notifications read (all when `entry_ids` is None), of the accounts
        `inbox` reads; how many changed."""
        check_user(user_id)
        if entry_ids is not None:
            if isinstance(entry_ids, str | bytes) or not isinstance(entry_ids, Sequence):
                raise InvalidArgument(
                    f"entry_ids must be a list of inbox entry ids or None, not "
                    f"{preview(entry_ids)}",
                    entry_ids=entry_ids,
                )
            for entry_id in entry_ids:
                check_id("entry_ids", entry_id)
        plugin = self._inbox_for(user_id, actor)
        ids = None if entry_ids is None else list(entry_ids)
        return plugin.mark_read(user_id, ids, accounts=_accounts(actor))

    def _inbox_for(self, user_id: int, actor: Actor) -> InboxStore:
        if not actor.is_system and actor.user_id != user_id:
            raise AccessDenied(
                f"user {actor.user_id} may read only their own inbox, not user {user_id}'s",
                user_id=user_id,
            )
        plugin = self._pm.get_plugin("inbox") if self._pm is not None else None
        if not isinstance(plugin, InboxStore):
            known = [name for name, _ in self._pm.list_name_plugin()] if self._pm else []
            raise UnknownDefinition("plugin", "inbox", "the plugin manager", known)
        return plugin


def _accounts(actor: Actor) -> tuple[int | None] | None:
    """The accounts whose notifications an actor reads in an inbox: a user's are those of the
    user's account, a user being known by (account, user id); every account for the platform's
    system actor."""
    if actor.is_system and actor.account_id is None:
        return None
    return (actor.account_id,)
