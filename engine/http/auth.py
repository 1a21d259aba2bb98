"""Request dependencies: the engine of the app, and the actor of the request's bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from flowkernel.actors import Actor
from flowkernel.errors import AccessDenied, InvalidToken
from flowkernel.http.tokens import ApiTokens
from flowkernel.kernel import Flowkernel

bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `flowkernel token create`: `Authorization: Bearer fk_...`",
)


def kernel(request: Request) -> Flowkernel:
    """The `Flowkernel` the app serves."""
    fk = request.app.state.fk
    assert isinstance(fk, Flowkernel)
    return fk


def tokens(request: Request) -> ApiTokens:
    """The token store the app checks requests against."""
    store = request.app.state.tokens
    assert isinstance(store, ApiTokens)
    return store


def current_actor(
    request: Request,
    store: Annotated[ApiTokens, Depends(tokens)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Actor:
    """The actor of the `Authorization: Bearer <token>` header; `InvalidToken` otherwise."""
    header = request.headers.get("authorization")
    if header is None:
        return store.resolve(None)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken(
            "malformed", "send the token as `Authorization: Bearer <token>`", scheme=scheme
        )
    return store.resolve(token.strip())


Kernel = Annotated[Flowkernel, Depends(kernel)]
CurrentActor = Annotated[Actor, Depends(current_actor)]


def account_for(actor: Actor, account_id: int | None) -> int | None:
    """The account a class request is about: the actor's, or any one for the platform's system.

    A platform system token picks an account with `account_id` (None: the platform's own
    classes); any other token works in its own account and is refused another one.
    """
    if actor.is_system and actor.account_id is None:
        return account_id
    if account_id is not None and account_id != actor.account_id:
        raise AccessDenied(
            f"a token of account {actor.account_id} cannot reach account {account_id}",
            account_id=account_id,
        )
    return actor.account_id


def require_system(actor: Actor, what: str) -> None:
    """Refuse everyone but a system token."""
    if not actor.is_system:
        raise AccessDenied(
            f"only a system token may {what}; create one with `flowkernel token create --system`",
            user_id=actor.user_id,
        )
