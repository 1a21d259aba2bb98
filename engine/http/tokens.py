"""API tokens: issued once, stored as their SHA-256, resolved to the `Actor` they stand for.

A token reads `fk_<prefix>_<secret>`: `prefix` (8 hex digits) is stored in clear so that lists
and logs can name a token, `secret` is 43 URL-safe characters from `secrets`. Only the SHA-256
of the whole token is stored, so the token itself is shown once, when it is created.

A token is bound to a user of an account (with the user's groups, for access rules), or to the
system actor, optionally confined to one account. Resolving a token is on every request's path:
found tokens are kept in a small in-process cache for `cache_ttl` seconds, and `last_used_at`
is written at most once per `touch_every` seconds. A token revoked through the same `ApiTokens`
is refused at once; one revoked by another process (`flowkernel token revoke` while a server
runs) is refused by that server within `cache_ttl` seconds. A token may carry an expiry: from
that moment it is refused as expired, by every process, cached or not.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Engine, Row, insert, select, update

from flowkernel.actors import Actor
from flowkernel.errors import InvalidArgument, InvalidToken
from flowkernel.moments import utc_moment
from flowkernel.previews import preview
from flowkernel.store.database import reader
from flowkernel.store.tables import api_tokens

TOKEN_PATTERN: Final = re.compile(r"fk_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
"""The shape of every token `issue` hands out."""

CACHE_TTL: Final = 5.0
"""Seconds a resolved token is trusted without reading its row again."""

TOUCH_EVERY: Final = 60.0
"""Seconds between two writes of a token's `last_used_at`."""

_CACHE_SIZE: Final = 10_000
_MAX_NAME: Final = 200
_MAX_GROUPS: Final = 100


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored token as lists show it: never the token itself."""

    id: int
    prefix: str
    name: str
    account_id: int | None
    user_id: int | None
    groups: tuple[str, ...]
    is_system: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None

    def expired(self, now: datetime) -> bool:
        """Whether the token has expired at `now`."""
        return self.expires_at is not None and self.expires_at <= now

    @property
    def actor(self) -> Actor:
        """The actor a request with this token acts as."""
        if self.is_system:
            return Actor.system(self.account_id)
        assert self.user_id is not None  # issue() refuses a user token without a user
        return Actor.user(self.user_id, self.account_id, self.groups)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just created: `token` is shown now and never again."""

    token: str
    info: TokenInfo


@dataclass(slots=True)
class _Cached:
    token_id: int
    actor: Actor
    loaded_at: float
    touched_at: float
    expires_at: datetime | None


class ApiTokens:
    """Issue, list, revoke and resolve the API tokens stored in `fk_api_tokens`."""

    def __init__(
        self,
        engine: Engine,
        *,
        cache_ttl: float = CACHE_TTL,
        touch_every: float = TOUCH_EVERY,
    ) -> None:
        self._engine = engine
        self._cache_ttl = cache_ttl
        self._touch_every = touch_every
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    # --- administration ------------------------------------------------------------------

    def issue(
        self,
        name: str,
        *,
        account_id: int | None = None,
        user_id: int | None = None,
        groups: Sequence[str] = (),
        system: bool = False,
        expires_at: datetime | None = None,
        expires_in: timedelta | None = None,
    ) -> IssuedToken:
        """Create a token for a user of an account, or (`system`) for the system actor.

        A system token takes no user and no groups; with `account_id` it is confined to that
        account, without it it reaches every account (the platform's system actor). A token
        expires at `expires_at` (a naive datetime is UTC) or `expires_in` from now, which must
        lie ahead; without either it never expires.
        """
        _check_name(name)
        now = datetime.now(UTC)
        expires = _expiry(now, expires_at, expires_in)
        for field, value in (("account_id", account_id), ("user_id", user_id)):
            if value is not None:
                _check_id(field, value)
        group_list = _check_groups(groups)
        if system:
            if user_id is not None or group_list:
                raise InvalidArgument(
                    "a system token acts as the system actor: drop the user and the groups",
                    user_id=user_id,
                    groups=group_list,
                )
        elif user_id is None or account_id is None:
            raise InvalidArgument(
                "a user token is bound to an account and a user: pass both (or make a system "
                "token)",
                account_id=account_id,
                user_id=user_id,
            )
        prefix = secrets.token_hex(4)
        token = f"fk_{prefix}_{secrets.token_urlsafe(32)}"
        with self._engine.begin() as conn:
            row = conn.execute(
                insert(api_tokens)
                .values(
                    token_hash=_digest(token),
                    prefix=prefix,
                    name=name,
                    iam_account_id=account_id,
                    iam_user_id=user_id,
                    groups=group_list,
                    is_system=system,
                    created_at=now,
                    expires_at=expires,
                )
                .returning(*api_tokens.c)
            ).one()
        return IssuedToken(token, _info(row))

    def list(
        self, *, account_id: int | None = None, include_revoked: bool = False
    ) -> list[TokenInfo]:
        """Tokens by id: all of them, or those bound to `account_id`; revoked ones on request."""
        stmt = select(api_tokens).order_by(api_tokens.c.id)
        if account_id is not None:
            _check_id("account_id", account_id)
            stmt = stmt.where(api_tokens.c.iam_account_id == account_id)
        if not include_revoked:
            stmt = stmt.where(api_tokens.c.revoked_at.is_(None))
        with reader(self._engine).connect() as conn:
            return [_info(row) for row in conn.execute(stmt)]

    def revoke(self, token_id: int) -> TokenInfo:
        """Revoke a token by id (revoking twice keeps the first time); refused at once here."""
        _check_id("token_id", token_id)
        with self._engine.begin() as conn:
            conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
        if row is None:
            raise InvalidToken(
                "unknown",
                f"no API token with id {token_id}; `flowkernel token list` shows them",
                token_id=token_id,
            )
        with self._lock:
            for digest in [d for d, c in self._cache.items() if c.token_id == token_id]:
                del self._cache[digest]
        return _info(row)

    # --- requests ------------------------------------------------------------------------

    def resolve(self, token: str | None) -> Actor:
        """The actor of a request's token; `InvalidToken` says why a token is refused."""
        if not token:
            raise InvalidToken(
                "missing", "this endpoint needs an API token: send `Authorization: Bearer <token>`"
            )
        match = TOKEN_PATTERN.fullmatch(token)
        if match is None:
            raise InvalidToken(
                "malformed",
                "the API token is malformed: it reads fk_<prefix>_<secret>, as "
                "`flowkernel token create` printed it",
            )
        digest = _digest(token)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if (
            cached is not None
            and now - cached.loaded_at < self._cache_ttl
            and (cached.expires_at is None or cached.expires_at > datetime.now(UTC))
        ):
            if now - cached.touched_at >= self._touch_every:
                cached.touched_at = now
                self._touch(cached.token_id)
            return cached.actor
        with reader(self._engine).connect() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.token_hash == digest)).first()
        if row is None:
            raise InvalidToken(
                "unknown",
                f"no API token {match.group(1)} is known here; create one with "
                "`flowkernel token create`",
                prefix=match.group(1),
            )
        info = _info(row)
        if info.revoked_at is not None:
            with self._lock:
                self._cache.pop(digest, None)
            raise InvalidToken(
                "revoked",
                f"API token {info.prefix} was revoked at {info.revoked_at:%Y-%m-%d %H:%M:%S}Z; "
                "use another token",
                prefix=info.prefix,
            )
        wall = datetime.now(UTC)
        if info.expired(wall):
            assert info.expires_at is not None
            with self._lock:
                self._cache.pop(digest, None)
            raise InvalidToken(
                "expired",
                f"API token {info.prefix} expired at {info.expires_at:%Y-%m-%d %H:%M:%S}Z; "
                "create a new one with `flowkernel token create`",
                prefix=info.prefix,
                expired_at=info.expires_at.isoformat(),
            )
        since = None if info.last_used_at is None else (wall - info.last_used_at).total_seconds()
        if since is None or since >= self._touch_every:
            self._touch(info.id)
            since = 0.0
        entry = _Cached(info.id, info.actor, now, now - since, info.expires_at)
        with self._lock:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()  # rare: many distinct tokens; they reload on their next use
            self._cache[digest] = entry
        return entry.actor

    def _touch(self, token_id: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id)
                .values(last_used_at=datetime.now(UTC))
            )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _info(row: Row[Any]) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        prefix=row.prefix,
        name=row.name,
        account_id=row.iam_account_id,
        user_id=row.iam_user_id,
        groups=tuple(row.groups or ()),
        is_system=row.is_system,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        expires_at=row.expires_at,
    )


def _expiry(
    now: datetime, expires_at: datetime | None, expires_in: timedelta | None
) -> datetime | None:
    if expires_at is not None and expires_in is not None:
        raise InvalidArgument(
            "give a token's expiry as expires_at or as expires_in, not both",
            expires_at=expires_at,
            expires_in=expires_in,
        )
    if expires_in is not None:
        if not isinstance(expires_in, timedelta):
            raise InvalidArgument(
                f"expires_in must be a timedelta, not {preview(expires_in)}", expires_in=expires_in
            )
        try:
            expires_at = now + expires_in
        except OverflowError:
            raise InvalidArgument(
                f"expires_in {expires_in} reaches past the year 9999", expires_in=str(expires_in)
            ) from None
    if expires_at is None:
        return None
    moment = utc_moment(expires_at, "expires_at")
    if moment <= now:
        raise InvalidArgument(
            f"a token's expiry must lie ahead; {moment:%Y-%m-%d %H:%M:%S}Z has passed",
            expires_at=moment.isoformat(),
        )
    return moment


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        raise InvalidArgument(
            f"a token's name is a non-empty text of at most {_MAX_NAME} characters, not "
            f"{preview(name)}",
            name=name,
        )


def _check_id(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise InvalidArgument(f"{field} must be a positive 64-bit integer, not {preview(value)}")


def _check_groups(groups: object) -> list[str]:
    if isinstance(groups, str) or not isinstance(groups, Sequence):
        raise InvalidArgument(f"groups must be a list of group names, not {preview(groups)}")
    listed = list(groups)
    if len(listed) > _MAX_GROUPS or not all(isinstance(g, str) and g for g in listed):
        raise InvalidArgument(
            f"groups must be at most {_MAX_GROUPS} non-empty names, not {preview(listed)}"
        )
    return sorted(set(listed))
