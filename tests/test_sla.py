"""SLA detection: the due-time trigger, the scan, once-only firing, parallel scanners."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rows import BREACHED_AT, QUEUED_AT
from sqlalchemy import delete, func, insert, select, text, update

from flowkernel import Actor, Flowkernel, InvalidArgument
from flowkernel.runtime.sla import SlaReport
from flowkernel.store.tables import (
    automations,
    items,
    method_calls,
    outbox,
    sla_breaches,
    sla_due,
    stages,
    watchers,
)

ACCOUNT = 10
ALICE = Actor.user(1, ACCOUNT)
LATER = timedelta(days=30)

SALES = (
    ("lead", "Lead", {"probability": 10, "sla_days": 7}),
    ("qualified", "Qualified", {"probability": 30, "sla_days": 14}),
    ("proposal", "Proposal", {"probability": 60}),
    ("won", "Won", {"probability": 100, "sla_days": 1, "is_won": True, "state_type": "disabled"}),
    ("lost", "Lost", {"probability": 0, "sla_days": 1, "is_lost": True, "state_type": "disabled"}),
)


def make_pipeline(
    fk: Flowkernel,
    code: str = "sales",
    account: int | None = ACCOUNT,
    spec: tuple[tuple[str, str, Mapping[str, Any]], ...] = SALES,
) -> tuple[int, dict[str, int]]:
    """A LEO pipeline built through the authoring API, stage attributes set by SQL."""
    info = fk.definitions.add_class(code, code.title(), movement="free", account_id=account)
    ids: dict[str, int] = {}
    for stage_code, label, attrs in spec:
        state = fk.definitions.add_state(code, "enabled", stage_code, label, account_id=account)
        ids[stage_code] = state.id
        with fk.engine.begin() as conn:
            conn.execute(update(stages).where(stages.c.id == state.id).values(**attrs))
    return info.id, ids


def add_automation(fk: Flowkernel, pipeline_id: int, event: str, stage: int | None = None) -> None:
    with fk.engine.begin() as conn:
        conn.execute(
            insert(automations).values(
                flow_pipeline_id=pipeline_id,
                flow_stage_id=stage,
                trigger="sla_breached",
                event_name=event,
                payload_template={"severity": "high"},
            )
        )


def sla_row(fk: Flowkernel, item_id: int) -> Any:
    with fk.engine.connect() as conn:
        return conn.execute(
            select(
                items.c.last_stage_changed_at,
                items.c.sla_due_at,
                BREACHED_AT,
                QUEUED_AT,
            ).where(items.c.id == item_id)
        ).one()


def mark_breached(conn: Any, item_ids: Any, moment: datetime) -> None:
    """Claim breaches as a scan does: off the queue, recorded as fired."""
    ids = list(item_ids)
    conn.execute(delete(sla_due).where(sla_due.c.flow_item_id.in_(ids)))
    conn.execute(insert(sla_breaches), [{"flow_item_id": i, "breached_at": moment} for i in ids])


def outbox_count(fk: Flowkernel, trigger: str = "sla_breached") -> int:
    with fk.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.trigger == trigger)
            ).scalar_one()
        )


# --- the due-time trigger ------------------------------------------------------------------------


def test_trigger_computes_due_time_for_engine_writes(fk: Flowkernel) -> None:
    make_pipeline(fk)
    item = fk.place("sales", "crm_opportunity", 1, ALICE).id
    row = sla_row(fk, item)
    assert row.sla_due_at == row.last_stage_changed_at + timedelta(days=7)
    assert row.sla_breached_at is None

    fk.move(item, "qualified", ALICE)
    row = sla_row(fk, item)
    assert row.sla_due_at == row.last_stage_changed_at + timedelta(days=14)
    fk.move(item, "proposal", ALICE)
    assert sla_row(fk, item).sla_due_at is None  # no SLA on the stage
    fk.move(item, "won", ALICE)
    assert sla_row(fk, item).sla_due_at is None  # won stages never breach
    fk.move(item, "lost", ALICE)
    assert sla_row(fk, item).sla_due_at is None


def test_trigger_computes_due_time_and_resets_breach_for_seed_sql(fk: Flowkernel) -> None:
    pid, stage = make_pipeline(fk)
    now_sql = "NOW()" if fk.engine.dialect.name == "postgresql" else "CURRENT_TIMESTAMP"
    with fk.engine.begin() as conn:
        item = conn.execute(
            text(
                "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, object_id,"
                " iam_account_id, iam_user_id, assigned_iam_user_id) "
                "VALUES (:p, :s, 'crm_opportunity', 9, :a, 1, NULL) RETURNING id"
            ),
            {"p": pid, "s": stage["lead"], "a": ACCOUNT},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, from_stage_id,"
                " to_stage_id, moved_by_iam_user_id) VALUES (:i, :p, NULL, :s, 1)"
            ),
            {"i": item, "p": pid, "s": stage["lead"]},
        )
    row = sla_row(fk, item)
    assert row.sla_due_at == row.last_stage_changed_at + timedelta(days=7)

    report = fk.sla.scan(now=row.sla_due_at)  # due exactly now: breached
    assert report.fired == (item,)
    breached = sla_row(fk, item).sla_breached_at
    assert breached == row.sla_due_at

    seed_move = (
        f"UPDATE flow_items SET flow_stage_id = :s, last_stage_changed_at = {now_sql}, "
        f"checklist_state = NULL, updated_at = {now_sql} WHERE id = :i"
    )
    with fk.engine.begin() as conn:
        conn.execute(text(seed_move), {"s": stage["qualified"], "i": item})
    row = sla_row(fk, item)
    assert row.sla_breached_at is None
    assert row.sla_due_at == row.last_stage_changed_at + timedelta(days=14)

    with fk.engine.begin() as conn:  # won: no due time
        conn.execute(text(seed_move), {"s": stage["won"], "i": item})
    assert sla_row(fk, item).sla_due_at is None

    with fk.engine.begin() as conn:  # back, then breached, then re-entered in place
        conn.execute(text(seed_move), {"s": stage["lead"], "i": item})
        mark_breached(conn, [item], datetime.now(UTC))
    assert sla_row(fk, item).sla_breached_at is not None
    reentry = datetime(2030, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)
    with fk.engine.begin() as conn:
        conn.execute(update(items).where(items.c.id == item).values(last_stage_changed_at=reentry))
    row = sla_row(fk, item)
    assert row.sla_breached_at is None
    assert row.sla_due_at == row.queued == reentry + timedelta(days=7)


# --- scanning ------------------------------------------------------------------------------------


def test_scan_fires_once_per_stage_entry(fk: Flowkernel) -> None:
    pid, stage = make_pipeline(fk)
    add_automation(fk, pid, "sla.lead", stage["lead"])
    add_automation(fk, pid, "sla.any")
    item = fk.place("sales", "crm_opportunity", 1, ALICE).id
    other = fk.place("sales", "crm_opportunity", 2, ALICE).id
    fk.move(other, "qualified", ALICE)
    due = sla_row(fk, item).sla_due_at

    assert fk.sla.scan(now=due - timedelta(seconds=1)).breaches == ()
    early = fk.sla.scan(now=due + timedelta(days=1))
    assert early.fired == (item,)  # `other` is due a week later
    breach = early.breaches[0]
    assert (breach.pipeline_id, breach.stage_id, breach.due_at) == (pid, stage["lead"], due)
    assert len(breach.outbox_ids) == 2 and early.events == 2
    assert early.failures == () and not early.limit_reached

    report = fk.sla.scan(now=due + LATER)
    assert report.fired == (other,)
    assert report.breaches[0].outbox_ids and len(report.breaches[0].outbox_ids) == 1
    for _ in range(3):
        assert fk.sla.scan(now=due + LATER).breaches == ()
    assert outbox_count(fk) == 3

    events = fk.queries.events(ALICE)
    assert [(e.event_name, e.item_id) for e in events] == [
        ("sla.lead", item),
        ("sla.any", item),
        ("sla.any", other),
    ]
    payload = events[0].payload
    assert payload["trigger"] == "sla_breached" and payload["severity"] == "high"
    assert payload["to_stage"] == "lead" and payload["is_system"] is True
    with fk.engine.connect() as conn:
        call = conn.execute(
            select(method_calls.c.method_code, method_calls.c.is_system, method_calls.c.params)
            .where(method_calls.c.flow_item_id == item)
            .order_by(method_calls.c.id.desc())
        ).first()
    assert call is not None
    assert (call.method_code, call.is_system) == ("sla_breach", True)
    assert call.params == {"due_at": due.isoformat()}
    assert fk.item(item, ALICE).state == "lead"  # the breach changes nothing else


def test_reentering_a_stage_fires_again(fk: Flowkernel) -> None:
    pid, _stage = make_pipeline(fk)
    add_automation(fk, pid, "sla.any")
    item = fk.place("sales", "crm_opportunity", 1, ALICE).id
    assert fk.sla.scan(now=datetime.now(UTC) + LATER).fired == (item,)
    fk.move(item, "qualified", ALICE)
    fk.move(item, "lead", ALICE)
    assert sla_row(fk, item).sla_breached_at is None
    assert fk.sla.scan(now=datetime.now(UTC) + LATER).fired == (item,)
    assert fk.sla.scan(now=datetime.now(UTC) + LATER).fired == ()
    assert [e.payload["to_stage"] for e in fk.queries.events(ALICE)] == ["lead", "lead"]


def test_won_lost_deleted_and_sla_free_items_never_breach(fk: Flowkernel) -> None:
    pid, _ = make_pipeline(fk)
    add_automation(fk, pid, "sla.any")
    won = fk.place("sales", "crm_opportunity", 1, ALICE).id
    lost = fk.place("sales", "crm_opportunity", 2, ALICE).id
    deleted = fk.place("sales", "crm_opportunity", 3, ALICE).id
    free = fk.place("sales", "crm_opportunity", 4, ALICE).id
    fk.move(won, "won", ALICE)
    fk.move(lost, "lost", ALICE)
    fk.move(free, "proposal", ALICE)
    fk.execute(deleted, "delete", ALICE)
    far = datetime.now(UTC) + timedelta(days=3650)
    assert fk.sla.scan(now=far).breaches == ()
    assert outbox_count(fk) == 0
    assert all(sla_row(fk, i).sla_breached_at is None for i in (won, lost, deleted, free))

    fk.execute(deleted, "restore", ALICE)  # back on the board, still overdue: fires now
    assert fk.sla.scan(now=far).fired == (deleted,)


def test_watchers_are_notified_of_a_breach(fk: Flowkernel) -> None:
    make_pipeline(fk)
    item = fk.place("sales", "crm_opportunity", 1, ALICE).id
    with fk.engine.begin() as conn:
        conn.execute(insert(watchers), [{"flow_item_id": item, "iam_user_id": u} for u in (5, 6)])
    report = fk.sla.scan(now=datetime.now(UTC) + LATER)
    assert report.fired == (item,) and report.events == 2
    inbox = fk.plugin_manager.get_plugin("inbox")
    for user in (5, 6):
        entries = inbox.entries(user, accounts=None)
        assert [(e.item_id, e.trigger) for e in entries] == [(item, "sla_breached")]
        assert "past its SLA in Lead" in entries[0].message
    assert fk.queries.events(ALICE) == []  # notifications are not automation events


def test_scan_by_pipeline_and_limit(fk: Flowkernel) -> None:
    sales, _ = make_pipeline(fk, "sales")
    support, _ = make_pipeline(fk, "support")
    in_sales = [fk.place("sales", "deal", n, ALICE).id for n in range(3)]
    in_support = fk.place("support", "deal", 1, ALICE).id
    later = datetime.now(UTC) + LATER
    first = fk.sla.scan(pipeline_id=sales, now=later, limit=2)
    assert first.fired == tuple(in_sales[:2]) and first.limit_reached
    rest = fk.sla.scan(pipeline_id=sales, now=later, limit=2)
    assert rest.fired == (in_sales[2],) and not rest.limit_reached
    assert fk.sla.scan(pipeline_id=sales, now=later).breaches == ()
    assert fk.sla.scan(now=later).fired == (in_support,)
    assert support != sales


def test_scan_refuses_bad_arguments_and_changes_nothing(fk: Flowkernel) -> None:
    make_pipeline(fk)
    item = fk.place("sales", "crm_opportunity", 1, ALICE).id
    later = datetime.now(UTC) + LATER
    for kwargs in (
        {"limit": 0},
        {"limit": True},
        {"pipeline_id": "1"},
        {"now": "tomorrow"},
    ):
        with pytest.raises(InvalidArgument):
            fk.sla.scan(**{"now": later, **kwargs})  # type: ignore[arg-type]
    assert sla_row(fk, item).sla_breached_at is None
    assert outbox_count(fk, "sla_breached") == 0


def test_kernel_class_without_sla_breach_is_marked_and_skipped(fk: Flowkernel) -> None:
    fk.definitions.add_class("region", "Region")
    fk.definitions.add_default_methods("region")
    item = fk.place("region", "region", 1, ALICE)
    with fk.engine.begin() as conn:
        conn.execute(update(stages).where(stages.c.id == item.state_id).values(sla_days=1))
        conn.execute(  # the due time follows stage changes; re-stamp the entry
            update(items)
            .where(items.c.id == item.id)
            .values(last_stage_changed_at=datetime.now(UTC))
        )
    report = fk.sla.scan(now=datetime.now(UTC) + LATER)
    assert report.skipped == (item.id,) and report.fired == () and report.events == 0
    assert sla_row(fk, item.id).sla_breached_at is not None
    assert fk.sla.scan(now=datetime.now(UTC) + LATER).breaches == ()
    with fk.engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count())
                .select_from(method_calls)
                .where(method_calls.c.method_code == "sla_breach")
            ).scalar_one()
            == 0
        )


def test_a_refused_breach_is_reported_and_retried_by_the_next_scan(fk: Flowkernel) -> None:
    class Flaky:
        fail = True

        def handler(self, context: Any) -> None:
            if self.fail:
                raise RuntimeError("pager down")

    flaky = Flaky()

    class Plugin:
        from flowkernel import hookimpl

        @hookimpl
        def flowkernel_event_handlers(self) -> Mapping[str, Any]:
            return {"page_someone": flaky.handler}

    fk.register_plugin(Plugin(), name="pager")
    pid, _ = make_pipeline(fk)
    add_automation(fk, pid, "sla.any")
    fk.definitions.add_event("sales", "sla_breach", "page_someone", account_id=ACCOUNT)
    bad = fk.place("sales", "crm_opportunity", 1, ALICE).id
    later = datetime.now(UTC) + LATER
    report = fk.sla.scan(now=later)
    assert [(f.item_id, f.error) for f in report.failures] == [(bad, "handler_failed")]
    assert "pager down" in report.failures[0].message
    assert report.breaches == ()
    assert sla_row(fk, bad).sla_breached_at is None  # rolled back: still due
    assert outbox_count(fk) == 0

    flaky.fail = False
    assert fk.sla.scan(now=later).fired == (bad,)
    assert outbox_count(fk) == 1


# --- several scanners ----------------------------------------------------------------------------


def test_parallel_scanners_fire_each_breach_exactly_once(fk: Flowkernel, database_url: str) -> None:
    pid, _stage = make_pipeline(fk)
    add_automation(fk, pid, "sla.any")
    ids = [fk.place("sales", "deal", n, ALICE).id for n in range(40)]
    with fk.engine.begin() as conn:
        conn.execute(insert(watchers), [{"flow_item_id": i, "iam_user_id": 7} for i in ids])
    later = datetime.now(UTC) + LATER
    kernels = [Flowkernel(database_url) for _ in range(3)]
    reports: list[SlaReport] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(kernels))

    def run(kernel: Flowkernel) -> None:
        try:
            start.wait()
            reports.append(kernel.sla.scan(now=later))
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
    fired = [i for r in reports for i in r.fired]
    assert sorted(fired) == ids  # each once, none twice
    assert outbox_count(fk) == 2 * len(ids)  # one automation event + one watcher each
    assert len(fk.queries.events(ALICE, limit=1000)) == len(ids)
    assert fk.sla.scan(now=later).breaches == ()


def test_run_forever_is_bounded_and_interruptible(fk: Flowkernel) -> None:
    make_pipeline(fk, spec=(("lead", "Lead", {"sla_days": 0}),))
    item = fk.place("sales", "deal", 1, ALICE).id  # due at once: 0 days
    seen: list[SlaReport] = []
    assert fk.sla.run_forever(0.01, max_runs=3, on_report=seen.append) == 3
    assert [r.fired for r in seen] == [(item,), (), ()]

    stop = threading.Event()
    runner = threading.Thread(target=fk.sla.run_forever, args=(3600,), kwargs={"stop": stop})
    runner.start()
    stop.set()
    runner.join(timeout=10)
    assert not runner.is_alive()

    runs: list[SlaReport] = []
    assert fk.sla.run_forever(0.01, stop=lambda: len(runs) >= 2, on_report=runs.append) == 2
    stop_now = threading.Event()
    stop_now.set()
    assert fk.sla.run_forever(1, stop=stop_now) == 0
    for bad in (0, -1, "5", True):
        with pytest.raises(InvalidArgument):
            fk.sla.run_forever(bad, max_runs=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        fk.sla.run_forever(1, max_runs=0)


def test_candidate_query_walks_the_due_queue_index(fk: Flowkernel, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("the plan check is for PostgreSQL's planner")
    pid, stage = make_pipeline(fk)
    now = datetime.now(UTC)
    with fk.engine.begin() as conn:  # 20k items; most breached, won or deleted, as in production
        conn.execute(
            text(
                "INSERT INTO flow_items (flow_pipeline_id, flow_stage_id, object_type, object_id,"
                " iam_account_id, position, last_stage_changed_at, deleted_at) "
                "SELECT :p, CASE WHEN n % 5 = 0 THEN :won ELSE :lead END, 'deal', n, :a, n,"
                " :now - make_interval(days => n % 20),"
                " CASE WHEN n % 7 = 0 THEN :now END "
                "FROM generate_series(0, 19999) AS n"
            ),
            {"p": pid, "won": stage["won"], "lead": stage["lead"], "a": ACCOUNT, "now": now},
        )
        breached = conn.execute(
            select(sla_due.c.flow_item_id)
            .join(items, items.c.id == sla_due.c.flow_item_id)
            .where(items.c.object_id % 3 != 0)
        ).scalars()
        mark_breached(conn, breached, now)
        conn.execute(text("ANALYZE"))
    plan = fk.sla.plan(now=now)
    assert "ix_flow_sla_due_due_at" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "ix_flow_sla_due_due_at" in fk.sla.plan(now=now, pipeline_id=pid)
    report = fk.sla.scan(now=now, limit=50)
    assert len(report.breaches) == 50 and report.limit_reached
    due = [b.due_at for b in report.breaches]
    assert due == sorted(due)  # oldest due first
    assert due[0] == now - timedelta(days=19) + timedelta(days=7)


def test_sqlite_candidate_query_walks_the_due_queue_index(fk: Flowkernel, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("PostgreSQL's plan is checked with real statistics above")
    pid, _ = make_pipeline(fk)
    for plan in (fk.sla.plan(), fk.sla.plan(pipeline_id=pid)):
        assert "USING INDEX ix_flow_sla_due_due_at" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # the index gives the due order


def test_a_stage_losing_its_sla_clears_the_breach_and_a_new_sla_fires_again(
    fk: Flowkernel,
) -> None:
    """An item without a due time holds no breach: removing the SLA clears it, so a later SLA
    (on this stage or the next) fires again, on both databases alike."""
    pid, _stage = make_pipeline(fk)
    item = fk.place("sales", "crm_opportunity", 1, ALICE).id
    later = datetime.now(UTC) + timedelta(days=60)
    assert fk.sla.scan(now=later).fired == (item,)
    assert sla_row(fk, item).sla_breached_at is not None
    fk.pipelines.edit_stage(pid, "lead", ALICE, sla_days=None)
    row = sla_row(fk, item)
    assert (row.sla_due_at, row.sla_breached_at, row.queued) == (None, None, None)
    fk.move(item, "proposal", ALICE)  # no SLA there either
    fk.pipelines.edit_stage(pid, "proposal", ALICE, sla_days=1)
    row = sla_row(fk, item)
    assert row.sla_breached_at is None
    assert row.queued == row.sla_due_at == row.last_stage_changed_at + timedelta(days=1)
    assert fk.sla.scan(now=later, batch_size=10).fired == (item,)
