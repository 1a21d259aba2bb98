"""Idempotency keys: an execution made with a key changes state once per actor.

A key belongs to the actor's scope (the platform's system actor, an account's system actor,
or one user of an account). The execution's transaction first claims the key with
`INSERT ... ON CONFLICT DO NOTHING`, before it locks the item, and stores its result before
the commit. So:

- the same key with the same request (item, method or stage, params, by action) returns the
  first `ExecutionResult`, rebuilt from the stored row, and writes nothing;
- the same key with another request raises `IdempotencyKeyReused`;
- a refused or failed execution rolls its claim back with everything else: the key stays
  free for a retry;
- two transactions claiming one key at once queue on the key's unique index (PostgreSQL
  waits for the first to end; SQLite's writers are serialised anyway): the second sees the
  committed row and returns the first result, or claims the key if the first rolled back.

Calls without a key never touch the table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import ClauseElement, bindparam, select, update

from flowkernel.actors import Actor
from flowkernel.errors import ConcurrentUpdate, IdempotencyKeyReused, InvalidArgument
from flowkernel.previews import preview
from flowkernel.runtime.executor import Executed, Executor
from flowkernel.snapshots import ExecutionResult
from flowkernel.store.prepared import Db, Statements
from flowkernel.store.tables import idempotency_keys as keys
from flowkernel.store.writer import Writer
from flowkernel.validation import storable

MAX_KEY_LENGTH: Final = 255
"""The longest idempotency key (the column's length)."""

_CLAIMED: Final[dict[str, Any]] = {}
"""The result column of a claimed key until its execution's result replaces it."""


def check_idempotency_key(key: object) -> str:
    """`key` if it is a usable idempotency key, else InvalidArgument."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or not storable(key):
        shown = f"{len(key)} characters" if isinstance(key, str) else preview(key)
        raise InvalidArgument(
            f"idempotency_key must be a non-empty string of at most {MAX_KEY_LENGTH} "
            f"characters without NUL, not {shown}",
            idempotency_key=key[: MAX_KEY_LENGTH + 1] if isinstance(key, str) else key,
        )
    return key


def scope_of(actor: Actor) -> str:
    """The scope an actor's keys live in: its system actor or its user, with its account."""
    account = "platform" if actor.account_id is None else f"account:{actor.account_id}"
    if actor.is_system:
        return f"{account}:system"
    return f"{account}:user:{actor.user_id}"


def request_hash(
    item_id: int,
    method: str,
    params: Mapping[str, Any] | None,
    by_action: bool,
    stage_id: int | None,
) -> str:
    """SHA-256 of a request's arguments in canonical JSON.

    Params None and {} are the same request, and so are numbers of one value (JSON has one
    number type: `1`, `1.0` and `1e0` are the same parameter; `true` is not `1`).
    """
    request = {
        "item": item_id,
        "method": method,
        "stage": stage_id,
        "params": canonical_numbers(dict(params)) if params else {},
        "by_action": by_action,
    }
    try:
        text = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"params must be a JSON object with string keys: {exc}", params=params
        ) from None
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_numbers(value: Any) -> Any:
    """`value` with every float of an integral value as that integer (1.0 becomes 1)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {key: canonical_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [canonical_numbers(item) for item in value]
    return value


def result_to_json(result: ExecutionResult) -> dict[str, Any]:
    """An `ExecutionResult` as the JSON document the key row stores."""
    actor = result.actor
    return {
        "item_id": result.item_id,
        "class_code": result.class_code,
        "method": result.method,
        "action": result.action,
        "from_state": result.from_state,
        "to_state": result.to_state,
        "changed": result.changed,
        "dropped": result.dropped,
        "actor": {
            "user_id": actor.user_id,
            "account_id": actor.account_id,
            "groups": sorted(actor.groups),
            "is_system": actor.is_system,
        },
        "executed_at": result.executed_at.isoformat(),
        "handlers": list(result.handlers),
    }


def result_from_json(data: Mapping[str, Any]) -> ExecutionResult:
    """The `ExecutionResult` a key row stores (the inverse of `result_to_json`)."""
    actor = data["actor"]
    executed_at = datetime.fromisoformat(data["executed_at"])
    return ExecutionResult(
        item_id=data["item_id"],
        class_code=data["class_code"],
        method=data["method"],
        action=data["action"],
        from_state=data["from_state"],
        to_state=data["to_state"],
        changed=data["changed"],
        dropped=data["dropped"],
        actor=Actor(
            user_id=actor["user_id"],
            account_id=actor["account_id"],
            groups=frozenset(actor["groups"]),
            is_system=actor["is_system"],
        ),
        executed_at=executed_at.astimezone(UTC),
        handlers=tuple(data["handlers"]),
    )


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """An execution request made with an idempotency key."""

    scope: str
    key: str
    item_id: int
    method: str
    digest: str

    @classmethod
    def of(
        cls,
        key: object,
        actor: Actor,
        item_id: int,
        method: str,
        params: Mapping[str, Any] | None,
        by_action: bool,
        stage_id: int | None,
    ) -> KeyedRequest:
        """The request, after checking the key and the params."""
        return cls(
            scope=scope_of(actor),
            key=check_idempotency_key(key),
            item_id=item_id,
            method=method,
            digest=request_hash(item_id, method, params, by_action, stage_id),
        )


def _statement(writer: Writer, key: str) -> ClauseElement:
    if key == "claim":
        claim: ClauseElement = (
            writer.upsert(keys)
            .values(
                scope=bindparam("scope"),
                idempotency_key=bindparam("key"),
                flow_item_id=bindparam("item_id"),
                method_code=bindparam("method"),
                request_hash=bindparam("digest"),
                result=bindparam("result", type_=keys.c.result.type),
                created_at=bindparam("now", type_=keys.c.created_at.type),
            )
            .on_conflict_do_nothing(index_elements=[keys.c.scope, keys.c.idempotency_key])
            .returning(keys.c.id)
        )
        return claim
    if key == "find":
        return select(
            keys.c.flow_item_id, keys.c.method_code, keys.c.request_hash, keys.c.result
        ).where(keys.c.scope == bindparam("scope"), keys.c.idempotency_key == bindparam("key"))
    if key == "finish":
        return (
            update(keys)
            .where(keys.c.id == bindparam("id"))
            .values(
                method_code=bindparam("method"),
                result=bindparam("result", type_=keys.c.result.type),
            )
        )
    raise KeyError(key)


class IdempotencyKeys:
    """The key table's statements for one database, prepared on first use."""

    def __init__(self, writer: Writer) -> None:
        dialect = writer.engine.dialect
        self._statements = Statements(dialect, lambda key: _statement(writer, key))

    def claim(self, db: Db, request: KeyedRequest) -> int | ExecutionResult:
        """Claim the key in `db`'s transaction: the new row's id, or the first result stored
        under the key when it answers the same request (else IdempotencyKeyReused)."""
        claim, find = self._statements["claim"], self._statements["find"]
        values = {
            "scope": request.scope,
            "key": request.key,
            "item_id": request.item_id,
            "method": request.method[:128],  # as asked; `finish` stores the resolved code
            "digest": request.digest,
            "result": _CLAIMED,
            "now": datetime.now(UTC),
        }
        for _attempt in range(3):
            row = claim.row(claim.run(db, values))
            if row is not None:
                return int(row[0])
            # Taken, by a transaction that has committed (PostgreSQL waited for it to end):
            # a new statement sees its row, unless it was deleted meanwhile.
            stored = find.row(find.run(db, values))
            if stored is None:
                continue
            item_id, method, digest, result = stored
            if digest != request.digest:
                raise IdempotencyKeyReused(request.key, item_id, method)
            return result_from_json(result)  # committed with its result (see `finish`)
        raise ConcurrentUpdate(request.item_id)  # deleted and taken again, three times over

    def finish(self, db: Db, claimed: int, result: ExecutionResult) -> None:
        """Store the result of the execution that claimed the key, in its transaction."""
        finish = self._statements["finish"]
        finish.run(db, {"id": claimed, "method": result.method, "result": result_to_json(result)})


def execute_once(
    keys: IdempotencyKeys,
    request: KeyedRequest,
    executor: Executor,
    run: Callable[[Db], Executed],
) -> ExecutionResult:
    """Run the execution `run` under the request's key in one transaction (see the module
    docstring); the executor's `after_commit` follows a new execution, never a replayed one."""

    def work(db: Db) -> tuple[ExecutionResult, Executed | None]:
        claimed = keys.claim(db, request)
        if isinstance(claimed, ExecutionResult):
            return claimed, None
        executed = run(db)
        (result,) = executed.results
        keys.finish(db, claimed, result)
        return result, executed

    result, executed = executor.transact(work)
    if executed is not None:
        executor.after_commit(executed.outbox_ids, executed.results)
    return result
