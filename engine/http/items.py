"""Item endpoints: place, read, the methods an actor may run now, execute, move, explain,
history, custom values, checklist, watchers and time in stage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Query, status

from flowkernel.actors import Actor
from flowkernel.errors import InvalidArgument
from flowkernel.http.auth import CurrentActor, Kernel
from flowkernel.http.bodies import (
    MAX_ID,
    CallPageOut,
    ChecklistEntryOut,
    ChecklistIn,
    ClearedOut,
    ExecuteIn,
    ExecutionOut,
    ExplanationOut,
    HistoryOut,
    ItemOut,
    MethodOut,
    MoveIn,
    PlaceIn,
    StageTimeOut,
    StateAtOut,
    ValueOut,
    ValuesIn,
    WatchOut,
    ref,
)
from flowkernel.runtime.scope import MAX_PAGE
from flowkernel.snapshots import ExecutionResult

router = APIRouter(prefix="/v1/items", tags=["items"])

ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="the item's id")]
CodePath = Annotated[str, Path(min_length=1, max_length=128)]
UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="a user id of the host platform")]
KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="a retried request with the same key returns the first result, changing "
        "nothing",
    ),
]


def _key(header: str | None, body: str | None) -> str | None:
    """The request's idempotency key, from the header or the body (not two different ones)."""
    if header is not None and body is not None and header != body:
        raise InvalidArgument(
            "the Idempotency-Key header and the body's idempotency_key differ; send one",
            header=header,
            body=body,
        )
    return header if header is not None else body


@router.post("", status_code=status.HTTP_201_CREATED, summary="Place an object into a class")
def place(body: PlaceIn, fk: Kernel, actor: CurrentActor) -> ItemOut:
    item = fk.place(
        body.class_ref,
        body.object_type,
        body.object_id,
        actor,
        state=body.state,
        account_id=body.account_id,
        assigned_user_id=body.assigned_user_id,
        params=body.params,
    )
    return ItemOut.model_validate(item)


@router.get(
    "",
    summary="The items of an object, found by the host's key",
    description="One item per class the object sits in, of accounts the token reaches.",
)
def find(
    fk: Kernel,
    actor: CurrentActor,
    object_type: Annotated[str, Query(min_length=1, max_length=128)],
    key: Annotated[
        str, Query(min_length=1, max_length=128, description="an integer, a UUID or a text key")
    ],
) -> list[ItemOut]:
    return [ItemOut.model_validate(item) for item in fk.items.find(object_type, key, actor)]


@router.get("/{item_id}", summary="An item's current state")
def item(item_id: ItemId, fk: Kernel, actor: CurrentActor) -> ItemOut:
    return ItemOut.model_validate(fk.item(item_id, actor))


@router.get("/{item_id}/methods", summary="The methods the token's actor may run on the item now")
def methods(item_id: ItemId, fk: Kernel, actor: CurrentActor) -> list[MethodOut]:
    return [MethodOut.model_validate(m) for m in fk.methods(item_id, actor)]


@router.post("/{item_id}/methods/{method}", summary="Execute a method on the item")
def execute(
    item_id: ItemId,
    method: CodePath,
    fk: Kernel,
    actor: CurrentActor,
    idempotency_key: KeyHeader = None,
    body: Annotated[ExecuteIn | None, Body()] = None,
) -> ExecutionOut:
    return _executed(fk.execute, item_id, method, actor, idempotency_key, body)


@router.post(
    "/{item_id}/actions/{action}", summary="Execute the first method of an action on the item"
)
def execute_action(
    item_id: ItemId,
    action: CodePath,
    fk: Kernel,
    actor: CurrentActor,
    idempotency_key: KeyHeader = None,
    body: Annotated[ExecuteIn | None, Body()] = None,
) -> ExecutionOut:
    return _executed(fk.execute_action, item_id, action, actor, idempotency_key, body)


def _executed(
    run: Callable[..., ExecutionResult],
    item_id: int,
    code: str,
    actor: Actor,
    header_key: str | None,
    body: ExecuteIn | None,
) -> ExecutionOut:
    """`run` (execute a method, or an action's first method) with the body's parameters and
    the idempotency key of the header or the body."""
    given = body or ExecuteIn()
    result = run(
        item_id,
        code,
        actor,
        params=given.params,
        idempotency_key=_key(header_key, given.idempotency_key),
    )
    return ExecutionOut.of(result)


@router.post("/{item_id}/move", summary="Move a pipeline item to a stage")
def move(
    item_id: ItemId,
    body: MoveIn,
    fk: Kernel,
    actor: CurrentActor,
    idempotency_key: KeyHeader = None,
) -> ExecutionOut:
    result = fk.move(
        item_id, body.stage, actor, idempotency_key=_key(idempotency_key, body.idempotency_key)
    )
    return ExecutionOut.of(result)


@router.get(
    "/{item_id}/explain/{what}",
    summary="Why a method, or a move to a stage (code or id), can or cannot run now",
)
def explain(item_id: ItemId, what: CodePath, fk: Kernel, actor: CurrentActor) -> ExplanationOut:
    return ExplanationOut.model_validate(fk.explain(item_id, ref(what), actor))


@router.get("/{item_id}/history", summary="The item's state history, oldest first")
def history(item_id: ItemId, fk: Kernel, actor: CurrentActor) -> list[HistoryOut]:
    return [HistoryOut.model_validate(e) for e in fk.history(item_id, actor)]


@router.get("/{item_id}/state", summary="The state the item was in at an instant")
def state_at(
    item_id: ItemId,
    at: Annotated[datetime, Query(description="ISO 8601; UTC unless it names an offset")],
    fk: Kernel,
    actor: CurrentActor,
) -> StateAtOut:
    return StateAtOut(item_id=item_id, at=at, state=fk.state_at(item_id, at, actor))


@router.get(
    "/{item_id}/calls",
    summary="The item's method calls, newest first, a page at a time",
    description="Moves, calls that changed nothing, and the last call (with its count) of "
    "methods that keep only that one; pass a page's next_cursor as cursor for the next.",
)
def calls(
    item_id: ItemId,
    fk: Kernel,
    actor: CurrentActor,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=200, description="a previous next_cursor")
    ] = None,
) -> CallPageOut:
    return CallPageOut.model_validate(fk.queries.calls(item_id, actor, limit=limit, cursor=cursor))


@router.get("/{item_id}/values", summary="The item's custom values, by column position")
def values(item_id: ItemId, fk: Kernel, actor: CurrentActor) -> list[ValueOut]:
    return [ValueOut.model_validate(v) for v in fk.items.values(item_id, actor)]


@router.patch("/{item_id}/values", summary="Set custom values; all are checked before any write")
def set_values(item_id: ItemId, body: ValuesIn, fk: Kernel, actor: CurrentActor) -> list[ValueOut]:
    return [ValueOut.model_validate(v) for v in fk.items.set_values(item_id, body.values, actor)]


@router.delete("/{item_id}/values/{column}", summary="Clear a custom value")
def clear_value(item_id: ItemId, column: CodePath, fk: Kernel, actor: CurrentActor) -> ClearedOut:
    return ClearedOut(column=column, cleared=fk.items.clear_value(item_id, column, actor))


@router.get("/{item_id}/checklist", summary="The current stage's checklist with completion")
def checklist(item_id: ItemId, fk: Kernel, actor: CurrentActor) -> list[ChecklistEntryOut]:
    return [ChecklistEntryOut.model_validate(e) for e in fk.items.checklist(item_id, actor)]


@router.put("/{item_id}/checklist/{key}", summary="Complete or reopen a checklist entry")
def mark(
    item_id: ItemId, key: CodePath, body: ChecklistIn, fk: Kernel, actor: CurrentActor
) -> ChecklistEntryOut:
    if body.completed:
        entry = fk.items.complete_checklist_item(item_id, key, actor)
    else:
        entry = fk.items.reopen_checklist_item(item_id, key, actor)
    return ChecklistEntryOut.model_validate(entry)


@router.get("/{item_id}/watchers", summary="The users watching the item, by id")
def watchers(item_id: ItemId, fk: Kernel, actor: CurrentActor) -> list[int]:
    return fk.items.watchers(item_id, actor)


@router.put("/{item_id}/watchers/{user_id}", summary="Make a user watch the item")
def watch(item_id: ItemId, user_id: UserId, fk: Kernel, actor: CurrentActor) -> WatchOut:
    changed = fk.items.watch(item_id, user_id, actor)
    return WatchOut(user_id=user_id, watching=True, changed=changed)


@router.delete("/{item_id}/watchers/{user_id}", summary="Stop a user watching the item")
def unwatch(item_id: ItemId, user_id: UserId, fk: Kernel, actor: CurrentActor) -> WatchOut:
    changed = fk.items.unwatch(item_id, user_id, actor)
    return WatchOut(user_id=user_id, watching=False, changed=changed)


@router.get("/{item_id}/time-in-stage", summary="Time the item spent in each stage")
def time_in_stage(item_id: ItemId, fk: Kernel, actor: CurrentActor) -> list[StageTimeOut]:
    return [StageTimeOut.of(t) for t in fk.queries.time_in_stage(item_id, actor)]
