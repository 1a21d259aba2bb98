"""The SLA scan in batches (`scan(batch_size=...)`) does what the item-by-item scan does."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rows import BREACHED_AT, QUEUED_AT
from sqlalchemy import func, select, text, update

from flowkernel import Actor, Flowkernel, InvalidArgument, StageSpec, hookimpl
from flowkernel.store.tables import items, method_calls, outbox, sla_breaches, sla_due, stages

ACCOUNT = 10
ALICE = Actor.user(1, ACCOUNT)
LATER = timedelta(days=30)


class Pager:
    """An sla_breach handler that refuses the objects in `down`."""

    def __init__(self) -> None:
        self.down: set[int] = set()

    def page(self, context: Any) -> None:
        if context.item.object_id in self.down:
            raise RuntimeError("pager down")

    @hookimpl
    def flowkernel_event_handlers(self) -> Mapping[str, Any]:
        return {"page_someone": self.page}


def pipeline(fk: Flowkernel, code: str) -> int:
    info = fk.pipelines.create_pipeline(
        code.title(),
        ALICE,
        code=code,
        stages=[
            StageSpec("Lead", sla_days=7),
            StageSpec("Qualified", sla_days=14),
            StageSpec("Proposal"),
            StageSpec("Won", is_won=True, sla_days=1),
        ],
    )
    fk.pipelines.add_automation(info.id, "sla_breached", f"{code}.late", ALICE)
    fk.definitions.add_event(code, "sla_breach", "page_someone", account_id=ACCOUNT)
    return info.id


def state(fk: Flowkernel, pipeline_id: int) -> dict[str, Any]:
    """What a scan changes, per object id (the two pipelines use the same object ids)."""
    with fk.engine.connect() as conn:
        rows = conn.execute(
            select(
                items.c.id,
                items.c.object_id,
                BREACHED_AT,
                QUEUED_AT,
            ).where(items.c.flow_pipeline_id == pipeline_id)
        ).all()
        ids = {r.id: r.object_id for r in rows}
        calls = dict.fromkeys(ids.values(), 0)
        for item_id, count in conn.execute(
            select(method_calls.c.flow_item_id, func.count())
            .where(
                method_calls.c.flow_pipeline_id == pipeline_id,
                method_calls.c.method_code == "sla_breach",
            )
            .group_by(method_calls.c.flow_item_id)
        ):
            calls[ids[item_id]] = count
        events = sorted(
            (ids[r.flow_item_id], r.kind, r.event_name.split(".")[-1], r.recipient_iam_user_id)
            for r in conn.execute(
                select(outbox).where(
                    outbox.c.flow_pipeline_id == pipeline_id, outbox.c.trigger == "sla_breached"
                )
            )
        )
    return {
        "breached": {r.object_id: r.sla_breached_at is not None for r in rows},
        "queued": {r.object_id: r.queued is not None for r in rows},
        "calls": calls,
        "events": events,
    }


def summary(report: Any, object_of: Mapping[int, int]) -> dict[str, Any]:
    return {
        "fired": sorted(object_of[i] for i in report.fired),
        "skipped": sorted(object_of[i] for i in report.skipped),
        "failures": sorted((object_of[f.item_id], f.error) for f in report.failures),
        "events": report.events,
        "per_item": sorted((object_of[b.item_id], len(b.outbox_ids)) for b in report.breaches),
    }


def test_batched_scan_equals_the_item_by_item_scan(fk: Flowkernel) -> None:
    pager = Pager()
    fk.register_plugin(pager, name="pager")
    one, many = pipeline(fk, "one"), pipeline(fk, "many")
    object_of: dict[int, int] = {}
    for pid in (one, many):
        for object_id in range(1, 9):
            item = fk.place(pid, "crm_deal", object_id, ALICE)
            object_of[item.id] = object_id
            if object_id == 2:
                fk.items.watch(item.id, 77, ALICE)
            if object_id == 3:
                fk.move(item.id, "qualified", ALICE)
            if object_id == 4:
                fk.move(item.id, "proposal", ALICE)  # no SLA there
            if object_id == 5:
                fk.move(item.id, "won", ALICE)  # won stages never breach
    pager.down = {6}
    later = datetime.now(UTC) + LATER

    single = fk.sla.scan(pipeline_id=one, now=later)
    batched = fk.sla.scan(pipeline_id=many, now=later, batch_size=3)
    assert summary(batched, object_of) == summary(single, object_of)
    assert summary(single, object_of)["failures"] == [(6, "handler_failed")]
    assert state(fk, many) == state(fk, one)
    assert not state(fk, many)["breached"][6]  # the refused claim was undone: still due
    assert (2, "notification", "sla_breached", 77) in state(fk, many)["events"]

    # once per stage entry; the refused item goes through once the pager is back
    pager.down = set()
    again_single = fk.sla.scan(pipeline_id=one, now=later)
    again_batched = fk.sla.scan(pipeline_id=many, now=later, batch_size=50)
    assert summary(again_batched, object_of) == summary(again_single, object_of)
    assert summary(again_single, object_of)["fired"] == [6]
    assert state(fk, many) == state(fk, one)


def test_batched_scan_respects_the_limit_and_skips_classes_without_sla_breach(
    fk: Flowkernel,
) -> None:
    fk.register_plugin(Pager(), name="pager")
    fk.definitions.add_class("region", "Region")
    fk.definitions.add_default_methods("region")
    region = fk.place("region", "region", 1, ALICE)
    with fk.engine.begin() as conn:
        conn.execute(update(stages).where(stages.c.id == region.state_id).values(sla_days=1))
        conn.execute(  # the due time follows entries: re-stamp this one, two days ago
            update(items)
            .where(items.c.id == region.id)
            .values(last_stage_changed_at=datetime.now(UTC) - timedelta(days=2))
        )
    pid = pipeline(fk, "sales")
    deals = [fk.place(pid, "crm_deal", i, ALICE).id for i in range(1, 6)]
    later = datetime.now(UTC) + LATER
    # due order: the region first (its class has no sla_breach: marked, not executed)
    first = fk.sla.scan(now=later, limit=3, batch_size=2)
    assert len(first.breaches) == 3 and first.limit_reached
    assert first.skipped == (region.id,)
    rest = fk.sla.scan(now=later, batch_size=2)
    assert sorted(first.fired + rest.fired) == deals
    assert not rest.limit_reached and rest.failures == ()


@pytest.mark.parametrize("batch_size", [0, -1, True, 2.5, "10"])
def test_batch_size_must_be_a_positive_integer(fk: Flowkernel, batch_size: Any) -> None:
    with pytest.raises(InvalidArgument):
        fk.sla.scan(batch_size=batch_size)


def test_parallel_batched_scanners_fire_each_breach_exactly_once(
    fk: Flowkernel, database_url: str
) -> None:
    fk.register_plugin(Pager(), name="pager")
    pid = pipeline(fk, "sales")
    ids = [fk.place(pid, "deal", n, ALICE).id for n in range(60)]
    for item_id in ids[::3]:
        fk.items.watch(item_id, 7, ALICE)
    later = datetime.now(UTC) + LATER
    kernels = [Flowkernel(database_url) for _ in range(3)]
    for kernel in kernels:
        kernel.register_plugin(Pager(), name="pager")
    reports: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(kernels))

    def run(kernel: Flowkernel) -> None:
        try:
            start.wait()
            reports.append(kernel.sla.scan(now=later, batch_size=7))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in kernels]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for k in kernels:
            k.close()
    assert errors == []
    assert sorted(i for r in reports for i in r.fired) == ids  # each once, none twice
    with fk.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.kind).where(outbox.c.trigger == "sla_breached")).all()
    assert len(rows) == len(ids) + len(ids[::3])  # an automation event each, a notice per watcher
    assert fk.sla.scan(now=later, batch_size=7).breaches == ()


def calls_of(fk: Flowkernel, pipeline_id: int) -> list[tuple[Any, ...]]:
    """The sla_breach call-log rows of a pipeline, per object id, as a single execution writes
    them (the item ids differ between pipelines, the object ids do not)."""
    with fk.engine.connect() as conn:
        rows = conn.execute(
            select(
                items.c.object_id,
                method_calls.c.method_code,
                method_calls.c.action_code,
                method_calls.c.from_stage_id,
                method_calls.c.to_stage_id,
                method_calls.c.actor_iam_user_id,
                method_calls.c.is_system,
                method_calls.c.params,
                method_calls.c.iam_account_id,
                stages.c.code,
                items.c.sla_due_at,
            )
            .join(items, items.c.id == method_calls.c.flow_item_id)
            .join(stages, stages.c.id == method_calls.c.from_stage_id)
            .where(method_calls.c.flow_pipeline_id == pipeline_id)
            .where(method_calls.c.action_code == "sla_breach")
        ).all()
    # the parameters hold the due time the item missed, as Python writes it
    return sorted(
        (r[0], *r[1:3], r[9], *r[4:7], r[7] == {"due_at": r[10].isoformat()}, r[8]) for r in rows
    )


def test_quiet_breaches_log_what_a_single_execution_logs(fk: Flowkernel) -> None:
    """Breaches without handlers, automations or watchers are logged set-based; the rows
    equal the item-by-item scan's, the due time's text included (with and without
    microseconds), and a watched item still gets its notification."""
    quiet = {}
    for code in ("quiet_one", "quiet_many"):
        quiet[code] = fk.pipelines.create_pipeline(
            code,
            ALICE,
            code=code,
            stages=[StageSpec("Lead", sla_days=1), StageSpec("Next", sla_days=2)],
        ).id
    object_of: dict[int, int] = {}
    for pid in quiet.values():
        for object_id in range(1, 7):
            item = fk.place(pid, "deal", object_id, ALICE)
            object_of[item.id] = object_id
            if object_id % 2 == 0:
                fk.move(item.id, "next", ALICE)
            if object_id == 3:
                fk.items.watch(item.id, 5, ALICE)
            if object_id == 4:  # entered on a whole second: its due time has no microseconds
                with fk.engine.begin() as conn:
                    conn.execute(
                        update(items)
                        .where(items.c.id == item.id)
                        .values(last_stage_changed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
                    )
    later = datetime.now(UTC) + LATER
    single = fk.sla.scan(pipeline_id=quiet["quiet_one"], now=later)
    batched = fk.sla.scan(now=later, batch_size=4)  # every pipeline: learns the quiet states
    assert summary(batched, object_of) == summary(single, object_of)
    assert sorted(object_of[i] for i in single.fired) == [1, 2, 3, 4, 5, 6]
    assert calls_of(fk, quiet["quiet_many"]) == calls_of(fk, quiet["quiet_one"])
    assert all(r[-2] for r in calls_of(fk, quiet["quiet_many"]))
    assert state(fk, quiet["quiet_many"]) == state(fk, quiet["quiet_one"])
    assert (3, "notification", "sla_breached", 5) in state(fk, quiet["quiet_many"])["events"]
    assert fk.sla.scan(now=later, batch_size=4).breaches == ()


# --- the due queue under concurrent writers (PostgreSQL) -------------------------------------


def queue_and_breach(fk: Flowkernel, item_id: int) -> tuple[Any, Any]:
    with fk.engine.connect() as conn:
        queued = conn.execute(
            select(sla_due.c.due_at).where(sla_due.c.flow_item_id == item_id)
        ).scalar()
        fired = conn.execute(
            select(sla_breaches.c.breached_at).where(sla_breaches.c.flow_item_id == item_id)
        ).scalar()
    return queued, fired


def test_a_breach_whose_item_a_mover_holds_stays_due(fk: Flowkernel, backend: str) -> None:
    """Items whose handlers run are locked before they fire; one a mover holds is put back on
    the queue, neither fired nor failed, and the next scan fires it."""
    if backend != "postgresql":
        pytest.skip("row locks between writers are PostgreSQL's")
    fk.register_plugin(Pager(), name="pager")
    pid = pipeline(fk, "sales")
    held, free = (fk.place(pid, "deal", n, ALICE).id for n in (1, 2))
    later = datetime.now(UTC) + LATER
    mover = fk.engine.connect()
    try:
        with mover.begin():
            mover.execute(select(items.c.id).where(items.c.id == held).with_for_update())
            report = fk.sla.scan(now=later, batch_size=10)
            assert report.fired == (free,)
            assert report.failures == ()
            assert queue_and_breach(fk, held)[0] is not None
            assert queue_and_breach(fk, held)[1] is None
    finally:
        mover.close()
    assert fk.sla.scan(now=later, batch_size=10).fired == (held,)
    assert queue_and_breach(fk, held)[0] is None


def wait_for_a_lock_wait(fk: Flowkernel) -> None:
    """Return once a backend of this database waits on a lock (raise after a minute)."""
    for _ in range(600):
        with fk.engine.connect() as conn:  # activity is read once per transaction: a new one
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting:
            return
        time.sleep(0.1)
    raise AssertionError("no backend waited on a lock")


def test_a_move_waits_for_a_scan_holding_its_breach_then_clears_it(
    fk: Flowkernel, backend: str
) -> None:
    """The queue row is the meeting point: a move of an item a scan has just claimed waits for
    the scan's commit, then clears the breach the scan recorded and queues the new entry."""
    if backend != "postgresql":
        pytest.skip("row locks between writers are PostgreSQL's")
    fk.register_plugin(Pager(), name="pager")
    pid = pipeline(fk, "sales")
    item = fk.place(pid, "deal", 1, ALICE).id
    scanner = fk.engine.connect()
    moved: list[Any] = []
    errors: list[BaseException] = []

    def move() -> None:
        try:
            moved.append(fk.move(item, "qualified", ALICE))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    mover = threading.Thread(target=move)
    try:
        with scanner.begin():  # a scan's claim, left open while the move starts
            scanner.execute(sla_due.delete().where(sla_due.c.flow_item_id == item))
            scanner.execute(
                sla_breaches.insert().values(flow_item_id=item, breached_at=datetime.now(UTC))
            )
            mover.start()
            wait_for_a_lock_wait(fk)  # the move waits on the claimed queue row
        mover.join(timeout=60)
    finally:
        scanner.close()
    assert errors == [] and len(moved) == 1 and moved[0].changed
    queued, fired = queue_and_breach(fk, item)
    assert fired is None
    with fk.engine.connect() as conn:
        due = conn.execute(select(items.c.sla_due_at).where(items.c.id == item)).scalar()
    assert queued == due is not None


def test_a_fresh_process_logs_quiet_breaches_it_has_not_learned(
    fk: Flowkernel, database_url: str
) -> None:
    """A scan without a pipeline in a new process meets quiet classes it compiled only while
    claiming: their call log is written after the claim, parameters as JSON."""
    info = fk.pipelines.create_pipeline(
        "Quiet", ALICE, code="quiet", stages=[StageSpec("Lead", sla_days=1)]
    )
    ids = [fk.place(info.id, "deal", n, ALICE).id for n in range(3)]
    later = datetime.now(UTC) + LATER
    fresh = Flowkernel(database_url)
    try:
        report = fresh.sla.scan(now=later, batch_size=10)
    finally:
        fresh.close()
    assert sorted(report.fired) == ids
    with fk.engine.connect() as conn:
        logged = conn.execute(
            select(method_calls.c.params, items.c.sla_due_at)
            .join(items, items.c.id == method_calls.c.flow_item_id)
            .where(method_calls.c.action_code == "sla_breach")
        ).all()
        assert len(logged) == 3
        assert all(params == {"due_at": due.isoformat()} for params, due in logged)
        queued = conn.execute(select(func.count()).select_from(sla_due)).scalar_one()
        fired = conn.execute(select(func.count()).select_from(sla_breaches)).scalar_one()
    assert (queued, fired) == (0, 3)
