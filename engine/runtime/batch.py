"""Batches: one method (or one per item) on many items in one transaction, an outcome each.

Device gateways report hundreds of stations at once (Apostol takes an array per request for
the same reason). A batch runs through the executor like a single execution: the items are
loaded (and locked, in id order, on PostgreSQL) in one statement, each request is decided
once per class version, state and method, each item's handlers run with its own snapshot,
and the writes are a few statements for the whole batch.

Handlers see no database, so a refused item has written nothing when it is refused. With
`on_error="abort"` (the default) the first refusal in request order is raised and the whole
batch rolls back; with `"skip"` the refused items are reported and the others commit.

Items moved in a batch are placed after the last item their stage held when the batch began,
in request order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from flowkernel.actors import Actor
from flowkernel.errors import FlowkernelError, InvalidArgument
from flowkernel.kinds import OnError
from flowkernel.previews import preview
from flowkernel.runtime.executor import Executor, Refusal, Request
from flowkernel.snapshots import ExecutionResult
from flowkernel.validation import check_item_id, check_params

ABORT: Final = OnError.ABORT.value
SKIP: Final = OnError.SKIP.value
ON_ERROR: Final = tuple(e.value for e in OnError)
MAX_BATCH: Final = 10_000
"""The most items one call takes; split larger sets into several calls."""


@dataclass(frozen=True, slots=True)
class BatchFailure:
    """An item a batch left unchanged, with the typed error that refused it."""

    item_id: int
    error: FlowkernelError

    @property
    def code(self) -> str:
        """The error's stable code, e.g. `method_not_available`."""
        return self.error.code

    @property
    def message(self) -> str:
        """What was wrong and what to do."""
        return self.error.message


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One outcome per requested item, in request order."""

    outcomes: tuple[ExecutionResult | BatchFailure, ...]

    @property
    def results(self) -> tuple[ExecutionResult, ...]:
        """The executions that committed, in request order."""
        return tuple(o for o in self.outcomes if isinstance(o, ExecutionResult))

    @property
    def failures(self) -> tuple[BatchFailure, ...]:
        """The items that were refused and skipped, in request order."""
        return tuple(o for o in self.outcomes if isinstance(o, BatchFailure))

    @property
    def ok(self) -> bool:
        """Whether every item executed."""
        return not any(isinstance(o, BatchFailure) for o in self.outcomes)


def execute_batch(
    executor: Executor,
    item_ids: Sequence[int],
    method: str | Sequence[str],
    actor: Actor,
    *,
    params: Mapping[str, Any] | None = None,
    by_action: bool = False,
    on_error: str = ABORT,
) -> BatchResult:
    """Execute `method` (or one method per item) on every item in one transaction."""
    ids, methods = _check(item_ids, method, params, by_action, on_error)
    if not ids:
        return BatchResult(())
    checked = check_params(params)
    requests = [
        Request(item_id, code, by_action=by_action, params=checked)
        for item_id, code in zip(ids, methods, strict=True)
    ]
    executed = executor.execute(requests, actor, skip=on_error == SKIP)
    return BatchResult(tuple(_outcome(o) for o in executed.outcomes))


def _outcome(outcome: ExecutionResult | Refusal) -> ExecutionResult | BatchFailure:
    if isinstance(outcome, Refusal):
        return BatchFailure(outcome.item_id, outcome.error)
    return outcome


def _check(
    item_ids: object, method: object, params: object, by_action: object, on_error: object
) -> tuple[list[int], list[str]]:
    if isinstance(item_ids, str | bytes) or not isinstance(item_ids, Sequence):
        raise InvalidArgument(
            f"item_ids must be a list of item ids, not {preview(item_ids)}", item_ids=item_ids
        )
    ids = [check_item_id(item_id) for item_id in item_ids]
    if len(ids) > MAX_BATCH:
        raise InvalidArgument(
            f"a batch takes at most {MAX_BATCH} items, not {len(ids)}; split it into several",
            count=len(ids),
        )
    if len(set(ids)) != len(ids):
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise InvalidArgument(
            f"items {twice} appear more than once; a batch runs each item once, so send "
            "later methods in a later batch",
            item_ids=twice,
        )
    if isinstance(method, str):
        methods = [method] * len(ids)
    elif isinstance(method, Sequence) and all(isinstance(m, str) for m in method):
        methods = list(method)
        if len(methods) != len(ids):
            raise InvalidArgument(
                f"{len(methods)} methods for {len(ids)} items; pass one method for all items "
                "or one per item",
                methods=len(methods),
                items=len(ids),
            )
    else:
        raise InvalidArgument(
            f"method must be a method code or a list of codes, one per item, not {preview(method)}",
            method=method,
        )
    check_params(params)
    if not isinstance(by_action, bool):
        raise InvalidArgument(f"by_action must be True or False, not {preview(by_action)}")
    if on_error not in ON_ERROR:
        raise InvalidArgument(
            f"on_error must be one of {ON_ERROR}, not {preview(on_error)}", on_error=on_error
        )
    return ids, methods
