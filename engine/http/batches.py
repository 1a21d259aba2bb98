"""The batch endpoint: many executions in one transaction, as device gateways send them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from fastapi import APIRouter, Response
from pydantic import TypeAdapter

from flowkernel.http.auth import CurrentActor, Kernel
from flowkernel.http.bodies import BatchIn, BatchOut
from flowkernel.http.errors import details_of
from flowkernel.runtime.batch import BatchFailure, BatchResult

router = APIRouter(prefix="/v1/batches", tags=["batches"])

_MOMENT: Final = TypeAdapter(datetime)


@router.post(
    "",
    response_model=BatchOut,
    summary="Execute a method on each of many items in one transaction",
    description=(
        "Each item appears at most once. With on_error=abort the first refusal (in request "
        "order) is the error response and nothing changes; with on_error=skip the refused "
        "items are reported with their errors and the others commit."
    ),
)
def execute_batch(body: BatchIn, fk: Kernel, actor: CurrentActor) -> Response:
    result = fk.execute_batch(
        [e.item_id for e in body.executions],
        [e.method for e in body.executions],
        actor,
        params=body.params,
        by_action=body.by_action,
        on_error=body.on_error,
    )
    return Response(batch_json(result), media_type="application/json")


def batch_json(batch: BatchResult) -> str:
    """A batch's outcomes as `BatchOut` JSON, written straight from the engine's values.

    A batch answers thousands of outcomes: building and checking a model for each would cost
    about as much as executing them (tests check this JSON against `BatchOut`).
    """
    moments: dict[datetime, Any] = {}
    outcomes: list[dict[str, Any]] = []
    refused = 0
    for o in batch.outcomes:
        if isinstance(o, BatchFailure):
            refused += 1
            error = {"code": o.code, "message": o.message, "details": details_of(o.error)}
            outcomes.append({"item_id": o.item_id, "ok": False, "result": None, "error": error})
            continue
        at = moments.get(o.executed_at)
        if at is None:
            at = moments[o.executed_at] = _MOMENT.dump_python(o.executed_at, mode="json")
        result = {
            "item_id": o.item_id,
            "class_code": o.class_code,
            "method": o.method,
            "action": o.action,
            "from_state": o.from_state,
            "to_state": o.to_state,
            "changed": o.changed,
            "dropped": o.dropped,
            "executed_at": at,
            "handlers": list(o.handlers),
        }
        outcomes.append({"item_id": o.item_id, "ok": True, "result": result, "error": None})
    body = {
        "ok": refused == 0,
        "executed": len(outcomes) - refused,
        "refused": refused,
        "outcomes": outcomes,
    }
    return json.dumps(body, separators=(",", ":"))
