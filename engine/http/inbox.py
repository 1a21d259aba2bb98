"""A user's inbox of watcher notifications: read it and mark it read."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field

from flowkernel.http.auth import CurrentActor, Kernel
from flowkernel.http.bodies import MAX_ID, In, Out
from flowkernel.runtime.watching import MAX_INBOX

router = APIRouter(prefix="/v1/users", tags=["inbox"])

UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="a user id of the host platform")]


class InboxEntryOut(Out):
    """One notification of a watched item's change."""

    id: int
    event_id: str
    user_id: int
    item_id: int
    trigger: str
    message: str
    payload: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class MarkReadIn(In):
    """Which notifications to mark read: these ids, or (none given) all of them."""

    entry_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = None


class MarkedOut(Out):
    """How many notifications were marked read now."""

    marked: int


@router.get(
    "/{user_id}/inbox",
    summary="A user's notifications, newest first",
    description="A user token reads its own user's; a system token the users of its account.",
)
def inbox(
    user_id: UserId,
    fk: Kernel,
    actor: CurrentActor,
    unread_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_INBOX)] = 100,
) -> list[InboxEntryOut]:
    found = fk.items.inbox(user_id, actor, unread_only=unread_only, limit=limit)
    return [InboxEntryOut.model_validate(entry) for entry in found]


@router.post("/{user_id}/inbox/read", summary="Mark a user's notifications read")
def mark_read(user_id: UserId, body: MarkReadIn, fk: Kernel, actor: CurrentActor) -> MarkedOut:
    return MarkedOut(marked=fk.items.mark_read(user_id, actor, body.entry_ids))
