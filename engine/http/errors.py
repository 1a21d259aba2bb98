"""Errors as HTTP responses: a status per error family and one JSON shape for all of them.

Every refusal reads `{"error": {"code": ..., "message": ..., "details": {...}}}`. `code` is
the typed error's stable code (`stage_requirement_missing`, `access_denied`, ...) or one of
`invalid_request`, `not_found`, `method_not_allowed`, `internal_error`; `message` says what was
wrong and the next step; `details` carries the error's structured attributes (for a refused
move, the missing columns).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.routing import Match

from flowkernel.errors import (
    AccessDenied,
    ChecklistIncomplete,
    ConcurrentUpdate,
    DatabaseError,
    DefinitionError,
    DefinitionInUse,
    DuplicateCode,
    EventNotFound,
    ExecutionError,
    FlowkernelError,
    GraphvizUnavailable,
    HandlerFailed,
    IdempotencyKeyReused,
    InvalidToken,
    ItemNotFound,
    MethodNotAvailable,
    MoveNotAllowed,
    ObjectAlreadyPlaced,
    RequirementMissing,
    UnknownDefinition,
)
from flowkernel.previews import preview
from flowkernel.store.database import first_line, pool_exhausted

log = logging.getLogger("flowkernel.http")

STATUS: Final[Mapping[type[FlowkernelError], int]] = {
    InvalidToken: 401,
    AccessDenied: 403,
    ItemNotFound: 404,
    UnknownDefinition: 404,
    EventNotFound: 404,
    ConcurrentUpdate: 409,
    ObjectAlreadyPlaced: 409,
    DuplicateCode: 409,
    DefinitionInUse: 409,
    IdempotencyKeyReused: 409,
    RequirementMissing: 422,
    ChecklistIncomplete: 422,
    MoveNotAllowed: 422,
    MethodNotAvailable: 422,
    HandlerFailed: 422,
    # families, for the errors not named above
    DefinitionError: 400,
    ExecutionError: 422,
    DatabaseError: 503,
    GraphvizUnavailable: 503,
    FlowkernelError: 500,
}
"""The HTTP status of each error class; the nearest class in an error's MRO decides.

`InvalidArgument`, `InvalidValue`, `ItemDeleted` and the other execution refusals are 422;
malformed definitions and documents are 400.
"""

_ROUTE_CODES: Final = {404: "not_found", 405: "method_not_allowed"}


def status_of(exc: FlowkernelError) -> int:
    """The HTTP status for a typed error."""
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"error": {"code": code, "message": message, "details": _plain(details or {})}}


def details_of(exc: FlowkernelError) -> dict[str, Any]:
    """An error's structured attributes, with named fields where the error keeps pairs."""
    details = exc.details()
    if isinstance(exc, RequirementMissing):
        details["missing"] = [{"column": name, "label": label} for name, label in exc.missing]
    elif isinstance(exc, ChecklistIncomplete):
        details["open_items"] = [{"key": key, "label": label} for key, label in exc.open_items]
    plain: dict[str, Any] = _plain(details)
    return plain


def error_response(exc: FlowkernelError) -> JSONResponse:
    """The response for a typed error."""
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, DatabaseError) and exc.retry_after is not None:
        headers = {"Retry-After": str(exc.retry_after)}
    if status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return JSONResponse(body(exc.code, exc.message, details_of(exc)), status, headers=headers)


def install(app: FastAPI) -> None:
    """Make `app` answer every error in the shape above."""

    @app.exception_handler(FlowkernelError)
    async def flowkernel_error(request: Request, exc: FlowkernelError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e, request) for e in exc.errors()]
        listed = "; ".join(f"{'.'.join(p['location'])}: {p['problem']}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        return JSONResponse(
            body(
                "invalid_request",
                f"the request does not match the API: {listed}{more}; see /openapi.json",
                {"problems": problems},
            ),
            422,
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = _ROUTE_CODES.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:  # every method of the path, not only those of one route
            headers = {"Allow": ", ".join(allowed_methods(app, request))}
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=headers)
        return JSONResponse(
            body(code, f"{exc.detail}: {request.method} {request.url.path}; see /openapi.json"),
            exc.status_code,
            headers=headers,
        )

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the checks let through (a NUL character on
        # PostgreSQL, a number out of a column's range): the request's fault, nothing stored.
        first = first_line(exc)
        return JSONResponse(
            body("invalid_argument", f"the database refused a value of the request: {first}"),
            422,
        )

    @app.exception_handler(PoolTimeout)
    async def pool_timeout(request: Request, exc: PoolTimeout) -> JSONResponse:
        # from an engine opened without `open_engine`, whose pool raises SQLAlchemy's error
        return error_response(pool_exhausted(request.app.state.fk.engine.pool))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("database error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            body(
                "database_error",
                f"the database failed the operation: {first_line(exc)}; retry later (with the same "
                "idempotency key)",
            ),
            503,
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            body("internal_error", f"an unexpected {type(exc).__name__}; see the server's log"),
            500,
        )


_METHODS: Final = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods some route of the app answers at the request's path, and OPTIONS."""
    allowed = ["OPTIONS"]
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in app.router.routes):
            allowed.append(method)
    return sorted(allowed)


def _problem(error: Mapping[str, Any], request: Request) -> dict[str, Any]:
    """One validation problem, in words a client can act on."""
    location = [str(part) for part in error.get("loc", ())]
    kind = str(error.get("type", ""))
    problem = str(error.get("msg", ""))
    if kind == "json_invalid":
        at = location[1] if len(location) > 1 else "?"
        location, problem = ["body"], f"the body is not valid JSON (at character {at})"
    elif location == ["body"] and kind in {"model_attributes_type", "dict_type"}:
        sent = request.headers.get("content-type") or "none"
        if not sent.startswith("application/json"):
            problem += f"; send the body as JSON with Content-Type: application/json, not {sent}"
    return {"location": location, "problem": problem, "type": kind}


MAX_DETAIL_DEPTH = 16
"""How deep error details nest in a response; deeper values are shown as a preview."""


def _plain(value: Any, depth: int = 0) -> Any:
    """JSON data of error attributes: tuples as lists, times as ISO text, the rest as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= MAX_DETAIL_DEPTH:
        return preview(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    return preview(value)
