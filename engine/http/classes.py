"""Class endpoints: list, create from a class document, show with its definition, dump.

Every token reads the platform's classes and its account's, but for those a class-wide access
rule hides from it (left out of the list, 403 when asked for); only system tokens define classes
(a platform system token picks the account with `account_id`, default: platform-wide).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response, status

from flowkernel.definition.classes import ClassInfo
from flowkernel.documents.classes import dump_class, load_class
from flowkernel.http.auth import CurrentActor, Kernel, account_for, require_system
from flowkernel.http.bodies import MAX_ID, BoardOut, ref
from flowkernel.http.class_bodies import (
    AccessRuleOut,
    ClassDetailOut,
    ClassOut,
    EventOut,
    MethodDefOut,
    ProblemOut,
    StateOut,
    TransitionOut,
)
from flowkernel.http.documents import ClassDoc, request_body
from flowkernel.http.pipelines import Cursor
from flowkernel.kernel import Flowkernel
from flowkernel.runtime.scope import MAX_PAGE
from flowkernel.views.diagram import draw

router = APIRouter(prefix="/v1/classes", tags=["classes"])

AccountQuery = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_ID,
        description="the account (a platform system token only; default: the token's)",
    ),
]
ClassRef = Annotated[str, Path(min_length=1, max_length=128, description="class code or id")]

CLASS_DOCUMENT: dict[str, Any] = {
    "class": "door",
    "label": "Door",
    "states": [
        {"code": "closed", "type": "created"},
        {"code": "open", "type": "enabled"},
    ],
    "methods": [
        {"code": "open", "action": "open", "state": "closed"},
        {"code": "close", "action": "close", "state": "open"},
    ],
    "actions": [{"code": "close", "label": "Close"}],
    "transitions": [
        {"state": "closed", "method": "open", "to": "open"},
        {"state": "open", "method": "close", "to": "closed"},
    ],
}


def _detail(fk: Flowkernel, info: ClassInfo, account: int | None) -> ClassDetailOut:
    d = fk.definitions
    return ClassDetailOut(
        **ClassOut.model_validate(info).model_dump(),
        states=[StateOut.model_validate(s) for s in d.list_states(info.code, account)],
        methods=[MethodDefOut.model_validate(m) for m in d.list_methods(info.code, account)],
        transitions=[
            TransitionOut.model_validate(t) for t in d.list_transitions(info.code, account)
        ],
        events=[EventOut.model_validate(e) for e in d.list_events(info.code, account)],
        access_rules=[
            AccessRuleOut.model_validate(r) for r in d.list_access_rules(info.code, account)
        ],
    )


@router.get("", summary="The classes of the platform and of the account, by code")
def list_classes(
    fk: Kernel, actor: CurrentActor, account_id: AccountQuery = None
) -> list[ClassOut]:
    account = account_for(actor, account_id)
    listed = fk.definitions.list_classes(account, visible_to=actor)
    return [ClassOut.model_validate(c) for c in listed]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a class from a class document (system tokens only)",
    description="The document's keys are described in docs/class-documents.md; every key, "
    "type and reference is checked before anything is written (400 `invalid_document` lists "
    "every problem at its path).",
    openapi_extra=request_body(ClassDoc, CLASS_DOCUMENT),
)
def create_class(
    fk: Kernel,
    actor: CurrentActor,
    document: Annotated[dict[str, Any], Body(examples=[CLASS_DOCUMENT])],
    account_id: AccountQuery = None,
) -> ClassDetailOut:
    require_system(actor, "define classes")
    account = account_for(actor, account_id)
    return _detail(fk, load_class(fk, document, account), account)


@router.get("/{code}", summary="A class with its states, methods, transitions and events")
def show_class(
    code: ClassRef, fk: Kernel, actor: CurrentActor, account_id: AccountQuery = None
) -> ClassDetailOut:
    account = account_for(actor, account_id)
    return _detail(fk, fk.definitions.get_class(ref(code), account, visible_to=actor), account)


@router.get(
    "/{code}/problems",
    summary="The whole-class rules a class breaks (empty when it keeps them all)",
    description="no_start: no create transition and no state of type created; "
    "unreachable_state: no transition leads to the state from where items start; trap_state: "
    "an active state with no way out (a warning, unless the engine runs with strict states).",
)
def class_problems(
    code: ClassRef, fk: Kernel, actor: CurrentActor, account_id: AccountQuery = None
) -> list[ProblemOut]:
    account = account_for(actor, account_id)
    info = fk.definitions.get_class(ref(code), account, visible_to=actor)
    return [ProblemOut.model_validate(p) for p in fk.definitions.problems(info.code, account)]


@router.get("/{code}/document", summary="A class as a document that creates it again")
def dump(
    code: ClassRef, fk: Kernel, actor: CurrentActor, account_id: AccountQuery = None
) -> dict[str, Any]:
    account = account_for(actor, account_id)
    info = fk.definitions.get_class(ref(code), account, visible_to=actor)
    return dump_class(fk, info.code, account)


MEDIA_TYPES: dict[str, str] = {
    "svg": "image/svg+xml",
    "dot": "text/vnd.graphviz; charset=utf-8",
    "mermaid": "text/plain; charset=utf-8",
}


@router.get(
    "/{code}/board",
    summary="A class's items by state, as the board shows a pipeline's",
    description="States in position order, each with a page of its items (not deleted ones) "
    "and its count; a pipeline answers as `/v1/pipelines/{id}/board` without sums.",
)
def class_board(
    code: ClassRef,
    fk: Kernel,
    actor: CurrentActor,
    per_stage: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Cursor = None,
    account_id: AccountQuery = None,
) -> BoardOut:
    account = account_for(actor, account_id)
    info = fk.definitions.get_class(ref(code), account, visible_to=actor)
    found = fk.queries.board(info.id, actor, per_stage=per_stage, cursor=cursor, value_column=None)
    return BoardOut.model_validate(found)


@router.get(
    "/{code}/diagram",
    summary="A class (or pipeline) drawn as SVG, Graphviz dot or Mermaid",
    description="`counts=true` adds the items in each state the token sees. SVG needs "
    "Graphviz's `dot` on the server (503 `graphviz_unavailable` without it).",
    response_class=Response,
    responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()}}},
)
def class_diagram(
    code: ClassRef,
    fk: Kernel,
    actor: CurrentActor,
    fmt: Annotated[str, Query(alias="format", pattern="^(svg|dot|mermaid)$")] = "svg",
    counts: bool = False,
    account_id: AccountQuery = None,
) -> Response:
    account = account_for(actor, account_id)
    info = fk.definitions.get_class(ref(code), account, visible_to=actor)
    drawn = draw(fk, info.id, actor, fmt, counts=counts)
    return Response(drawn, media_type=MEDIA_TYPES[fmt])
