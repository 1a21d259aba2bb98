"""`POST /v1/apply`: make classes and pipelines match their documents, or plan it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from flowkernel.documents.applying import apply
from flowkernel.http.auth import CurrentActor, Kernel, account_for, require_system
from flowkernel.http.bodies import MAX_ID
from flowkernel.http.class_bodies import PlanOut
from flowkernel.http.classes import CLASS_DOCUMENT

router = APIRouter(prefix="/v1/apply", tags=["classes"])


@router.post(
    "",
    summary="Make classes and pipelines match their documents, or plan it (system tokens only)",
    description="Each class or pipeline document's definition is created, or brought in line "
    "with it: every added, changed and removed entry, with the items each change affects. All "
    "documents are applied in one transaction; with dry_run=true nothing changes. A plan that "
    "would remove or retype a state still in use is refused (409 definition_in_use); a dry "
    "run lists it with the reason.",
)
def apply_documents(
    fk: Kernel,
    actor: CurrentActor,
    documents: Annotated[list[dict[str, Any]], Body(examples=[[CLASS_DOCUMENT]])],
    account_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="the account (default: the token's)")
    ] = None,
    dry_run: bool = False,
) -> list[PlanOut]:
    require_system(actor, "define classes and pipelines")
    account = account_for(actor, account_id)
    plans = apply(fk, documents, dry_run=dry_run, account_id=account, actor=actor)
    return [PlanOut.of(p) for p in plans]
