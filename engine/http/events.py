"""Dead-lettered events: list them and requeue them for delivery (system tokens only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from flowkernel.http.auth import CurrentActor, Kernel
from flowkernel.http.bodies import MAX_ID, Id, In, Out
from flowkernel.runtime.scope import MAX_PAGE

router = APIRouter(prefix="/v1/events", tags=["events"])


class DeadLetterOut(Out):
    """An event that failed its every attempt and is no longer retried."""

    id: int
    event_id: str
    kind: str
    event_name: str
    trigger: str
    pipeline_id: int
    item_id: int
    account_id: int | None
    recipient_user_id: int | None
    payload: dict[str, Any]
    attempts: int
    last_error: str | None
    created_at: datetime


class RetryIn(In):
    """Which dead events to requeue: these ids, an item's, or (neither) every one in reach."""

    event_ids: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = None
    item_id: Id | None = None


class RetryOut(Out):
    """How many dead events were requeued."""

    requeued: int


@router.get("/dead", summary="Dead-lettered events, oldest first (system tokens)")
def dead_letters(
    fk: Kernel,
    actor: CurrentActor,
    item_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    event_name: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[DeadLetterOut]:
    found = fk.delivery.dead_letters(actor, item_id=item_id, event_name=event_name, limit=limit)
    return [DeadLetterOut.model_validate(d) for d in found]


@router.post("/dead/retry", summary="Requeue dead-lettered events for delivery (system tokens)")
def retry_dead(body: RetryIn, fk: Kernel, actor: CurrentActor) -> RetryOut:
    count = fk.delivery.retry_dead(actor, body.event_ids, item_id=body.item_id)
    return RetryOut(requeued=count)
