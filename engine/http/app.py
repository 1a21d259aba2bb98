"""The ASGI application: `create_app(fk)` serves a `Flowkernel` over HTTP with an OpenAPI document.

Endpoints are synchronous functions (FastAPI runs them in its thread pool) because the engine
is; each request is authenticated by its bearer token and runs as that token's actor.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from fastapi import FastAPI
from sqlalchemy import text

from flowkernel.http import (
    applying,
    batches,
    classes,
    docs,
    errors,
    events,
    inbox,
    items,
    pipeline_editing,
    pipelines,
    web,
)
from flowkernel.http.auth import CurrentActor, Kernel
from flowkernel.http.bodies import ActorOut, ErrorBody, HealthOut
from flowkernel.http.tokens import CACHE_TTL, ApiTokens
from flowkernel.kernel import Flowkernel
from flowkernel.store.database import reader

DESCRIPTION: Final = """\
The Flowkernel engine over HTTP: place objects into classes, list and execute the methods an
actor may run now, batches of executions in one transaction, item values, checklists, watchers
and history, pipelines with their board, funnel and time in stage, and class and pipeline
definitions.

Every endpoint but `/v1/health` needs `Authorization: Bearer <token>` (see `flowkernel token
create`). Errors read `{"error": {"code", "message", "details"}}`.
"""

ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "a malformed class or pipeline document or definition; nothing was written"),
        (401, "missing, malformed, unknown, revoked or expired token"),
        (403, "the token's actor may not do this"),
        (404, "no such item, pipeline, class, state or method in the token's account"),
        (409, "a conflict: code in use, object already placed, idempotency key reused"),
        (422, "the request or the operation was refused; nothing was changed"),
        (503, "the database cannot do it now; retry after `Retry-After` seconds when given"),
    )
}


def create_app(fk: Flowkernel, *, token_cache_ttl: float = CACHE_TTL) -> FastAPI:
    """An application serving `fk`; tokens are checked against `fk`'s database.

    A revoked token is refused at once by this app when revoked through `app.state.tokens`,
    and within `token_cache_ttl` seconds when revoked elsewhere (another process).
    """
    try:
        release = version("flowkernel")
    except PackageNotFoundError:  # running from a source tree that was never installed
        release = "0"
    app = FastAPI(
        title="Flowkernel",
        version=release,
        description=DESCRIPTION,
        responses=ERRORS,
        docs_url=None,  # served by flowkernel.http.docs with local assets
        redoc_url=None,
    )
    app.state.fk = fk
    app.state.tokens = ApiTokens(fk.engine, cache_ttl=token_cache_ttl)
    errors.install(app)
    docs.install(app)
    web.install(app)

    @app.get("/v1/health", tags=["service"], summary="The server runs and reaches its database")
    def health(fk: Kernel) -> HealthOut:
        with reader(fk.engine).connect() as conn:
            conn.execute(text("SELECT 1"))
        return HealthOut(status="ok")

    @app.get("/v1/me", tags=["service"], summary="The actor the request's token stands for")
    def me(actor: CurrentActor) -> ActorOut:
        return ActorOut.of(actor)

    for module in (items, batches, pipelines, pipeline_editing, classes, applying, events, inbox):
        app.include_router(module.router)
    return app
