"""The SLA scan in batches: claim up to `batch_size` due items per transaction and fire their
`sla_breach` methods through batch execution (`engine.batch`).

Same outcome as the one-item-per-transaction scan of `engine.sla`, item by item: items are
claimed in due order (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so parallel scanners share the
work) by setting `sla_breached_at`, which makes a breach fire once per stage entry; an item
whose class has no `sla_breach` method in its state stays claimed without an execution
(skipped); an item whose execution is refused has its claim undone in the same transaction,
is reported in `failures` and is not tried again within the scan. What changes is the cost:
a batch of breaches takes one transaction and a few statements instead of one transaction
each, which is what scanning a million items with thousands due needs.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from engine.actors import SYSTEM
from engine.batch import _Batch
from engine.compiler import SLA_BREACH
from engine.prepared import Db
from engine.snapshots import ExecutionResult
from engine.tables import items

if TYPE_CHECKING:
    from engine.runtime import Runtime
    from engine.sla import SlaBreach, SlaFailure, SlaReport


def scan_in_batches(
    runtime: Runtime,
    moment: datetime,
    *,
    pipeline_id: int | None,
    limit: int,
    batch_size: int,
) -> SlaReport:
    """Claim and fire up to `limit` due items, `batch_size` per transaction."""
    from engine.sla import SlaReport

    breaches: list[SlaBreach] = []
    failures: list[SlaFailure] = []
    failed: list[int] = []
    while len(breaches) + len(failures) < limit:
        take = min(batch_size, limit - len(breaches) - len(failures))
        with (
            runtime._engine.connect() as conn,
            conn.begin(),
            Session(bind=conn, autoflush=False) as session,
        ):
            found = _claim_and_fire(runtime, session, moment, pipeline_id, failed, take)
        if found is None:
            break
        done, refused, outbox_ids, results = found
        breaches.extend(done)
        failures.extend(refused)
        failed.extend(f.item_id for f in refused)
        runtime.after_commit(outbox_ids, results)
    return SlaReport(
        now=moment,
        breaches=tuple(breaches),
        failures=tuple(failures),
        limit_reached=len(breaches) + len(failures) >= limit,
    )


def _claim_and_fire(
    runtime: Runtime,
    session: Session,
    moment: datetime,
    pipeline_id: int | None,
    failed: list[int],
    take: int,
) -> tuple[list[SlaBreach], list[SlaFailure], list[int], list[ExecutionResult]] | None:
    from engine.sla import SlaBreach, SlaFailure, candidates

    conn = session.connection()
    due = candidates(moment, pipeline_id=pipeline_id, exclude=failed).limit(take)
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    # claim and read in one statement; the WHERE repeats the conditions under the lock. The
    # candidates are a materialized CTE: PostgreSQL may run an IN (subquery) with LIMIT
    # more than once, and then claims more than `take`.
    picked = (
        due.with_only_columns(items.c.id)
        .cte("picked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    claimed = conn.execute(
        update(items)
        .where(
            items.c.id == picked.c.id,
            items.c.sla_breached_at.is_(None),
            items.c.sla_due_at <= moment,
            items.c.deleted_at.is_(None),
        )
        .values(sla_breached_at=moment)
        .returning(items.c.id, items.c.flow_pipeline_id, items.c.flow_stage_id, items.c.sla_due_at)
    ).all()
    if not claimed:
        return None
    rows = sorted(claimed, key=lambda r: (r.sla_due_at, r.id))  # due order, as scans report
    compiled = {pid: runtime.compiled(session, pid) for pid in {r.flow_pipeline_id for r in rows}}
    firing: list[Any] = []
    methods: list[str] = []
    skipped: dict[int, SlaBreach] = {}
    for row in rows:
        cls = compiled[row.flow_pipeline_id]
        state = cls.states_by_id.get(row.flow_stage_id)
        method = cls.method_for_action(state.code, SLA_BREACH) if state else None
        if state is not None and method is None:
            skipped[row.id] = SlaBreach(
                row.id, row.flow_pipeline_id, row.flow_stage_id, row.sla_due_at, False, ()
            )
            continue
        # a state the class no longer has falls through: the batch refuses it (a failure)
        firing.append(row)
        methods.append(method.code if method is not None else SLA_BREACH)
    outcomes: list[Any] = []
    outbox_ids: list[int] = []
    batch: _Batch | None = None
    if firing:
        batch = _Batch(
            runtime,
            Db.of(conn),
            session,
            SYSTEM,
            None,
            False,
            True,
            item_params={r.id: {"due_at": r.sla_due_at.isoformat()} for r in firing},
        )
        outcomes, outbox_ids = batch.run([r.id for r in firing], methods)
    refused = [o for o in outcomes if not isinstance(o, ExecutionResult)]
    if refused:  # as if their transactions had rolled back: still due
        conn.execute(
            update(items)
            .where(items.c.id.in_([f.item_id for f in refused]))
            .values(sla_breached_at=None)
        )
    fired = {o.item_id for o in outcomes if isinstance(o, ExecutionResult)}
    done = [
        skipped.get(row.id)
        or SlaBreach(
            row.id,
            row.flow_pipeline_id,
            row.flow_stage_id,
            row.sla_due_at,
            True,
            tuple(batch.outbox_of.get(row.id, ()) if batch is not None else ()),
        )
        for row in rows
        if row.id in skipped or row.id in fired
    ]
    failures = [SlaFailure(f.item_id, f.error.code, f.error.message) for f in refused]
    results = [o for o in outcomes if isinstance(o, ExecutionResult)]
    return done, failures, outbox_ids, results
