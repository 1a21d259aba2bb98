"""The SLA scan in batches: claim up to `batch_size` due items per transaction and fire their
`sla_breach` methods set-based.

Same outcome as the one-item-per-transaction scan of `flowkernel.runtime.sla`, item by item: items
are
claimed in due order (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so parallel scanners share the
work) by deleting their rows of the due queue and recording their breaches, which makes a
breach fire once per stage entry; an item whose class has no `sla_breach` method in its state
stays claimed without an execution (skipped); an item whose execution is refused stays due, is
reported in `failures` and is not tried again within the scan.

What changes is the cost. Most breaches are quiet: the method's handler chain is empty, no
automation listens for `sla_breached` in the item's stage and nobody watches the item, so the
execution is known before it runs: a call-log row and nothing else. The scan learns which
(class version, stage) pairs are quiet, and on PostgreSQL one statement claims the due items,
loads them and writes the call log of the quiet ones, without writing the items' rows. The
others (handlers to run, events or notifications to write) go through batch execution
(`flowkernel.runtime.batch`), each item's handlers run with its own snapshot, as in a single
execution;
on PostgreSQL their items are locked first, and an item a mover holds is left on the queue,
its queue row untouched, for the mover's trigger to update once the scan commits.

On PostgreSQL a queue row that a concurrent move rewrote while the claim waited for it is left
for the scan's next transaction (see `_PG_CLAIM_ANY`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.orm import Session

from flowkernel.actors import SYSTEM
from flowkernel.compile.compiler import CompiledClass, CompiledMethod, CompiledState
from flowkernel.errors import FlowkernelError
from flowkernel.kinds import SLA_BREACH
from flowkernel.runtime.batch import BatchFailure, _Batch
from flowkernel.runtime.outbox import _matches
from flowkernel.runtime.runtime import _Item
from flowkernel.snapshots import ExecutionResult
from flowkernel.store.prepared import Db
from flowkernel.store.tables import items, pipelines, sla_breaches, sla_due

if TYPE_CHECKING:
    from flowkernel.runtime.runtime import Runtime
    from flowkernel.runtime.sla import SlaBreach, SlaFailure, SlaReport

Quiet = dict[tuple[int, int, int], tuple[str, str]]
"""Quiet (class id, class version, stage id) pairs and their sla_breach method and action."""


def scan_in_batches(
    runtime: Runtime,
    moment: datetime,
    *,
    pipeline_id: int | None,
    limit: int,
    batch_size: int,
) -> SlaReport:
    """Claim and fire up to `limit` due items, `batch_size` per transaction."""
    from flowkernel.runtime.sla import SlaReport

    breaches: list[SlaBreach] = []
    failures: list[SlaFailure] = []
    excluded: list[int] = []  # refused, or held by a mover: not tried again in this scan
    quiet: Quiet = {}
    learned = False
    while len(breaches) + len(failures) < limit:
        take = min(batch_size, limit - len(breaches) - len(failures))
        with (
            runtime._engine.connect() as conn,
            conn.begin(),
            Session(bind=conn, autoflush=False) as session,
        ):
            if not learned:
                _learn_known(runtime, session, pipeline_id, quiet)
                learned = True
            found = _claim_and_fire(runtime, session, moment, pipeline_id, excluded, take, quiet)
        if found is None:
            break
        done, refused, outbox_ids, results, held = found
        breaches.extend(done)
        failures.extend(refused)
        excluded.extend(f.item_id for f in refused)
        excluded.extend(held)
        runtime.after_commit(outbox_ids, results)
    return SlaReport(
        now=moment,
        breaches=tuple(breaches),
        failures=tuple(failures),
        limit_reached=len(breaches) + len(failures) >= limit,
    )


# --- which breaches are quiet ------------------------------------------------------------------


def _quiet_method(
    runtime: Runtime, compiled: CompiledClass, state: CompiledState
) -> CompiledMethod | None:
    """The state's sla_breach method when firing it writes a call-log row and nothing else
    (for an unwatched item): no handler, no automation on `sla_breached` for the state."""
    method = compiled.method_for_action(state.code, SLA_BREACH)
    if method is None or method.chain:
        return None
    if any(_matches(a, "sla_breached", state, state) for a in compiled.automations):
        return None
    try:
        return runtime._resolve(compiled, state, False, method.code, SYSTEM, False)
    except FlowkernelError:
        return None


def _learn(runtime: Runtime, compiled: CompiledClass, quiet: Quiet) -> None:
    for state in compiled.ordered_states:
        method = _quiet_method(runtime, compiled, state)
        if method is not None:
            quiet[(compiled.id, compiled.version, state.id)] = (method.code, method.action)


def _learn_known(runtime: Runtime, session: Session, pipeline_id: int | None, quiet: Quiet) -> None:
    """Quiet states of the scanned pipeline and of the classes the runtime has compiled."""
    known = list(runtime._recent.values())
    if pipeline_id is not None:
        version = session.execute(
            select(pipelines.c.version).where(pipelines.c.id == pipeline_id)
        ).scalar()
        if version is not None:
            known.append(runtime._compiled_for(session, pipeline_id, version))
    for compiled in known:
        _learn(runtime, compiled, quiet)


# --- one batch ---------------------------------------------------------------------------------


class _Claimed:
    """A due item taken by the scan: the loaded row (the runtime's load, in its order), its due
    time, and whether it is claimed and its call logged already (PostgreSQL's quiet breaches).
    The `_Item` is made only for items that need it;
    `naive` says the row's timestamps are UTC without a zone (PostgreSQL's claim)."""

    __slots__ = (
        "_item", "class_id", "class_version", "due", "id", "logged", "naive", "row", "stage_id",
    )  # fmt: skip

    def __init__(self, row: Sequence[Any], due: datetime, logged: bool, naive: bool) -> None:
        self.row = row
        self.id: int = row[0]
        self.class_id: int = row[1]
        self.stage_id: int = row[2]
        self.class_version: int = row[12]
        self.due = due
        self.logged = logged
        self.naive = naive
        self._item: _Item | None = None

    @property
    def watched(self) -> bool:
        return bool(self.row[13])

    @property
    def item(self) -> _Item:
        if self._item is None:
            values = list(self.row[:_LOADED])
            if self.naive:
                for index in _MOMENTS:
                    if values[index] is not None:
                        values[index] = values[index].replace(tzinfo=UTC)
            self._item = _Item(values)
        return self._item


def _claim_and_fire(
    runtime: Runtime,
    session: Session,
    moment: datetime,
    pipeline_id: int | None,
    excluded: list[int],
    take: int,
    quiet: Quiet,
) -> tuple[list[SlaBreach], list[SlaFailure], list[int], list[ExecutionResult], list[int]] | None:
    from flowkernel.runtime.sla import SlaBreach, SlaFailure

    conn = session.connection()
    db = Db.of(conn)
    params: dict[int, dict[str, str]] = {}  # of the items fired through batch execution
    batch = _Batch(runtime, db, session, SYSTEM, None, False, True, item_params=params)
    if db.dialect.name == "postgresql":
        claimed = _claim_postgresql(db, batch.now, moment, pipeline_id, excluded, take, quiet)
    else:
        claimed = _claim_sqlite(session, batch, moment, pipeline_id, excluded, take)
    if not claimed:
        return None
    claimed.sort(key=lambda c: (c.due, c.id))  # due order, as scans report

    skipped: set[int] = set()
    firing: list[_Claimed] = []
    methods: list[str] = []
    unlogged: list[tuple[_Claimed, CompiledMethod]] = []
    outcome: dict[int, ExecutionResult] = {}
    groups: dict[tuple[int, int, int], tuple[CompiledClass, CompiledState | None, Any]] = {}
    for entry in claimed:
        key = (entry.class_id, entry.class_version, entry.stage_id)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _group(runtime, session, entry, quiet)
        compiled, state, method = group
        if method is None:
            skipped.add(entry.id)
        elif isinstance(method, CompiledMethod) and not entry.watched:
            assert state is not None
            outcome[entry.id] = ExecutionResult(
                item_id=entry.id,
                class_code=compiled.code,
                method=method.code,
                action=method.action,
                from_state=state.code,
                to_state=state.code,
                changed=False,
                dropped=False,
                actor=SYSTEM,
                executed_at=batch.now,
                handlers=method.chain,
            )
            if not entry.logged:
                unlogged.append((entry, method))
        else:
            # handlers to run or events to write; a state the class no longer has falls
            # through too: the batch refuses it (a failure)
            assert not entry.logged
            firing.append(entry)
            methods.append(method.code if isinstance(method, CompiledMethod) else method)
    if unlogged:
        batch.sql["call_json"].run_many(
            db,
            (
                {
                    "item_id": entry.id,
                    "class_id": entry.class_id,
                    "account_id": entry.item.account_id,
                    "method": method.code,
                    "action": method.action,
                    "from_stage_id": entry.stage_id,
                    "to_stage_id": None,
                    "user_id": SYSTEM.user_id,
                    "is_system": SYSTEM.is_system,
                    "params": json.dumps(_params(entry.due)),
                    "now": batch.now,
                }
                for entry, method in unlogged
            ),
        )
    outbox_ids: list[int] = []
    refused: list[BatchFailure] = []
    passed: list[int] = []  # left on the queue untouched: a mover holds them
    if firing and db.dialect.name == "postgresql":
        firing, methods, held = _lock(conn, firing, methods)
        if held:
            passed.extend(entry.id for entry in held)
            claimed = [entry for entry in claimed if entry.id not in passed]
    if firing:
        for entry in firing:
            params[entry.item.id] = _params(entry.due)
        outcomes, outbox_ids = batch.run(
            [e.item.id for e in firing], methods, {e.item.id: e.item for e in firing}
        )
        for o in outcomes:
            if isinstance(o, ExecutionResult):
                outcome[o.item_id] = o
            else:
                refused.append(o)  # written nothing: still due
    _record(
        conn,
        [e for e in claimed if not e.logged and (e.id in skipped or e.id in outcome)],
        moment,
    )
    done: list[SlaBreach] = []
    results: list[ExecutionResult] = []
    outbox_of = batch.outbox_of
    for entry in claimed:
        if entry.id in skipped:
            done.append(SlaBreach(entry.id, entry.class_id, entry.stage_id, entry.due, False, ()))
            continue
        result = outcome.get(entry.id)
        if result is None:
            continue  # refused
        results.append(result)
        written = outbox_of.get(entry.id)
        done.append(
            SlaBreach(
                entry.id,
                entry.class_id,
                entry.stage_id,
                entry.due,
                True,
                tuple(written) if written else (),
            )
        )
    failures = [SlaFailure(f.item_id, f.error.code, f.error.message) for f in refused]
    return done, failures, outbox_ids, results, passed


def _lock(
    conn: Connection, firing: list[_Claimed], methods: list[str]
) -> tuple[list[_Claimed], list[str], list[_Claimed]]:
    """Lock the items whose handlers run, in id order, skipping those a mover holds: the
    items locked with their methods, and the others."""
    locked = set(
        conn.execute(
            select(items.c.id)
            .where(items.c.id.in_([entry.id for entry in firing]))
            .order_by(items.c.id)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    pairs = list(zip(firing, methods, strict=True))
    kept = [(entry, method) for entry, method in pairs if entry.id in locked]
    held = [entry for entry, _method in pairs if entry.id not in locked]
    return [entry for entry, _m in kept], [method for _e, method in kept], held


def _record(conn: Connection, entries: Sequence[_Claimed], moment: datetime) -> None:
    """Claim the breaches that fired or were skipped: off the due queue, recorded as fired."""
    if not entries:
        return
    ids = [e.id for e in entries]
    conn.execute(delete(sla_due).where(sla_due.c.flow_item_id.in_(ids)))
    conn.execute(insert(sla_breaches), [{"flow_item_id": i, "breached_at": moment} for i in ids])


def _group(
    runtime: Runtime, session: Session, entry: _Claimed, quiet: Quiet
) -> tuple[CompiledClass, CompiledState | None, CompiledMethod | str | None]:
    """How the items of one class version and stage fire: (class, state, what), where what
    is the quiet method, a method code to run through batch execution, or None to skip."""
    compiled = runtime._compiled_for(session, entry.class_id, entry.class_version)
    state = compiled.states_by_id.get(entry.stage_id)
    if state is None:
        return compiled, None, SLA_BREACH
    method = compiled.method_for_action(state.code, SLA_BREACH)
    if method is None:
        return compiled, state, None
    if (compiled.id, compiled.version, state.id) not in quiet:
        _learn(runtime, compiled, quiet)
    if (compiled.id, compiled.version, state.id) in quiet:
        found = _quiet_method(runtime, compiled, state)
        if found is not None:
            return compiled, state, found
    return compiled, state, method.code


def _params(due: datetime) -> dict[str, str]:
    """The parameters an `sla_breach` execution gets: the due time it missed."""
    return {"due_at": due.isoformat()}


# --- claiming ----------------------------------------------------------------------------------


def _claim_sqlite(
    session: Session,
    batch: _Batch,
    moment: datetime,
    pipeline_id: int | None,
    excluded: list[int],
    take: int,
) -> list[_Claimed]:
    """The due items in due order, loaded (two statements, in-process)."""
    from flowkernel.runtime.sla import candidates

    conn = session.connection()
    picked = conn.execute(
        candidates(moment, pipeline_id=pipeline_id, exclude=excluded).limit(take)
    ).all()
    if not picked:
        return []
    due = {r.id: r.sla_due_at for r in picked}
    load = batch.sql["load"]
    rows = load.rows(load.run(batch.db, {"ids": json.dumps(list(due))}))
    return [_Claimed(row, due[row[0]], False, False) for row in rows]


def _claim_postgresql(
    db: Db,
    now: datetime,
    moment: datetime,
    pipeline_id: int | None,
    excluded: Sequence[int],
    take: int,
    quiet: Quiet,
) -> list[_Claimed]:
    """Lock the due rows, load their items, claim and log the quiet breaches: one statement."""
    cursor = db.run_sql(
        _PG_CLAIM_PIPELINE if pipeline_id is not None else _PG_CLAIM,
        {
            "moment": moment,
            "now": now,
            "pipeline": pipeline_id,
            "excluded": list(excluded),
            "take": take,
            "quiet": json.dumps({f"{c}:{v}:{s}": list(m) for (c, v, s), m in quiet.items()}),
            "user_id": SYSTEM.user_id,
            "is_system": SYSTEM.is_system,
        },
    )
    # the timestamps come as UTC without a zone: the due time is tagged here, the item's own
    # when an `_Item` is made
    return [
        _Claimed(row, row[_LOADED].replace(tzinfo=UTC), row[_LOADED + 1], True)
        for row in cursor.fetchall()
    ]


_LOADED: Final = 14
"""Columns of a claimed row that make an `_Item` (the runtime's load, in its order)."""
_MOMENTS: Final = (10, 11)
"""Indexes of the timestamps among them (deleted_at, last_stage_changed_at)."""

# The due items in due order, locked (skipping those another scanner holds); their items
# loaded as the runtime loads an item; the quiet ones (items nobody watches whose
# "class:version:stage" the JSON object `quiet` maps to [method, action]) claimed (off the
# queue, breach recorded) and their call log written with the parameters a single execution
# gets: {"due_at": the due time in Python's isoformat}. The last column says which.
#
# A queue row rewritten by a move that committed while this statement waited for its lock is
# locked as rewritten, while the item is read as the statement's snapshot saw it, before the
# move: such a row (its stage or due time not the item's) is left alone, locked, and the scan's
# next transaction sees both as they are.
_PG_CLAIM_ANY: Final = """
WITH picked AS MATERIALIZED (
    SELECT flow_item_id, flow_stage_id, due_at
      FROM flow_sla_due
     WHERE due_at <= %(moment)s AND flow_item_id <> ALL(%(excluded)s::bigint[]) {pipeline}
     ORDER BY due_at, flow_item_id
     LIMIT %(take)s
       FOR UPDATE SKIP LOCKED
), loaded AS (
    SELECT i.id, i.flow_pipeline_id, i.flow_stage_id, i.object_type, i.object_id,
           i.iam_account_id, i.assigned_iam_user_id, i.position, i.checklist_state,
           i.version, i.deleted_at, i.last_stage_changed_at, q.due_at AS sla_due_at,
           p.version AS class_version,
           EXISTS (SELECT 1 FROM flow_item_watchers w WHERE w.flow_item_id = i.id) AS watched,
           CAST(%(quiet)s AS jsonb)
               -> (i.flow_pipeline_id || ':' || p.version || ':' || i.flow_stage_id) AS quiet
      FROM picked AS q
      JOIN flow_items AS i
        ON i.id = q.flow_item_id AND i.flow_stage_id = q.flow_stage_id
       AND i.sla_due_at = q.due_at
      JOIN flow_pipelines AS p ON p.id = i.flow_pipeline_id
), silent AS (
    SELECT * FROM loaded WHERE quiet IS NOT NULL AND NOT watched
), dequeued AS (
    DELETE FROM flow_sla_due AS q USING silent WHERE q.flow_item_id = silent.id
), marked AS (
    INSERT INTO flow_sla_breaches AS b (flow_item_id, breached_at)
    SELECT id, %(moment)s FROM silent ORDER BY id
        ON CONFLICT (flow_item_id) DO UPDATE SET breached_at = excluded.breached_at
), logged AS (
    INSERT INTO fk_method_calls
           (flow_item_id, flow_pipeline_id, iam_account_id, method_code, action_code,
            from_stage_id, to_stage_id, actor_iam_user_id, is_system, params, called_at)
    SELECT s.id, s.flow_pipeline_id, s.iam_account_id, s.quiet ->> 0, s.quiet ->> 1,
           s.flow_stage_id, NULL, %(user_id)s, %(is_system)s,
           jsonb_build_object(
               'due_at',
               to_char(s.sla_due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
               || CASE WHEN to_char(s.sla_due_at, 'US') = '000000' THEN ''
                       ELSE to_char(s.sla_due_at AT TIME ZONE 'UTC', '.US') END
               || '+00:00'),
           %(now)s
      FROM silent AS s
     ORDER BY s.sla_due_at, s.id
)
SELECT id, flow_pipeline_id, flow_stage_id, object_type, object_id, iam_account_id,
       assigned_iam_user_id, position, checklist_state, version,
       deleted_at AT TIME ZONE 'UTC', last_stage_changed_at AT TIME ZONE 'UTC', class_version,
       watched, sla_due_at AT TIME ZONE 'UTC', quiet IS NOT NULL AND NOT watched
  FROM loaded
"""

_PG_CLAIM_PIPELINE: Final = _PG_CLAIM_ANY.replace(
    "{pipeline}", "AND flow_pipeline_id = %(pipeline)s"
)
_PG_CLAIM: Final = _PG_CLAIM_ANY.replace("{pipeline}", "")
