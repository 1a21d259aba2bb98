"""Event delivery: after commit, at least once, in order per item, backoff, dead letters, leases,
several worker processes (PostgreSQL), a worker killed mid-batch, and delivery faults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rows import every_row
from sqlalchemy import select, update

from flowkernel import (
    SYSTEM,
    AccessDenied,
    Actor,
    Flowkernel,
    InvalidArgument,
    OutgoingEvent,
    WatcherNotification,
    hookimpl,
)
from flowkernel.definition.pipelines.admin import StageSpec
from flowkernel.errors import EventNotFound
from flowkernel.store.delivery import (
    DEAD,
    DELIVERED,
    HOLD_LEASES,
    PENDING,
    DeadLetter,
    Delivery,
    DeliveryReport,
)
from flowkernel.store.tables import outbox

ACCOUNT = 10
OTHER = 20
ALICE = Actor.user(1, ACCOUNT)
WORKER = Path(__file__).resolve().parent / "delivery_worker.py"
ROOT = Path(__file__).resolve().parent.parent


class Recorder:
    """Records delivered events and notifications; `fail(event_id)` returns an error to raise."""

    def __init__(self, fail: Callable[[str], BaseException | None] | None = None) -> None:
        self.events: list[OutgoingEvent] = []
        self.notes: list[WatcherNotification] = []
        self.fail = fail
        self.during: Callable[[OutgoingEvent], None] | None = None

    @hookimpl
    def flowkernel_deliver_event(self, event: OutgoingEvent) -> None:
        if self.during is not None:
            self.during(event)
        problem = self.fail(event.event_id) if self.fail else None
        if problem is not None:
            raise problem
        self.events.append(event)

    @hookimpl
    def flowkernel_notify_watcher(self, notification: WatcherNotification) -> None:
        problem = self.fail(notification.event_id) if self.fail else None
        if problem is not None:
            raise problem
        self.notes.append(notification)

    @property
    def ids(self) -> list[str]:
        return [e.event_id for e in self.events]


def kernel(url: str, *plugins: object, **options: Any) -> Flowkernel:
    options.setdefault("deliver_events", False)
    options.setdefault("delivery_backoff", 0)
    return Flowkernel(url, plugins=list(plugins), **options)


@pytest.fixture
def producer(database_url: str) -> Iterator[Flowkernel]:
    """A Flowkernel that writes events and leaves them for the workers."""
    fk = kernel(database_url)
    try:
        make_deals(fk)
        yield fk
    finally:
        fk.close()


def make_deals(fk: Flowkernel) -> int:
    """A free pipeline a -> b -> c firing `deal.created` on placement and `deal.entered` on
    every move."""
    info = fk.pipelines.create_pipeline(
        "Deals",
        ALICE,
        code="deals",
        object_type="crm_opportunity",
        stages=[StageSpec("A", code="a"), StageSpec("B", code="b"), StageSpec("C", code="c")],
    )
    fk.pipelines.add_automation(info.id, "item_created", "deal.created", ALICE)
    fk.pipelines.add_automation(info.id, "stage_entered", "deal.entered", ALICE)
    return info.id


def place(fk: Flowkernel, object_id: int) -> int:
    return fk.place("deals", "crm_opportunity", object_id, ALICE).id


def rows(fk: Flowkernel) -> list[Any]:
    with fk.engine.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)).all())


def row_of(fk: Flowkernel, event_id: str) -> Any:
    with fk.engine.connect() as conn:
        return conn.execute(select(outbox).where(outbox.c.event_id == event_id)).one()


def make_due(fk: Flowkernel) -> None:
    """End every backoff and lease now (instead of waiting for them)."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    with fk.engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.status == PENDING).values(available_at=past))


# --- after commit, stable ids, retries ---------------------------------------------------------


def test_events_are_delivered_after_the_commit_with_stable_ids(
    producer: Flowkernel, database_url: str
) -> None:
    seen: list[tuple[str, int, str | None]] = []
    probe = Recorder(fail=lambda _id: None)

    def look(event: OutgoingEvent) -> None:
        # from another connection: the change that fired the event is committed already
        with producer.engine.connect() as conn:
            row = conn.execute(select(outbox).where(outbox.c.event_id == event.event_id)).one()
        item = producer.item(event.item_id, ALICE)
        seen.append((row.event_id, row.attempts, item.state))

    probe.during = look
    with kernel(database_url, probe, deliver_events=True) as fk:
        item_id = place(fk, 1)
        fk.move(item_id, "b", ALICE)
    assert [e.event_name for e in probe.events] == ["deal.created", "deal.entered"]
    assert [s[2] for s in seen] == ["a", "b"]
    assert [s[1] for s in seen] == [1, 1]
    assert [r.status for r in rows(producer)] == [DELIVERED, DELIVERED]
    assert probe.ids == [r.event_id for r in rows(producer)]
    assert len(set(probe.ids)) == 2
    first = probe.events[1]
    assert first.payload["to_stage"] == "b" and first.payload["from_stage"] == "a"
    assert first.item_id == item_id and first.account_id == ACCOUNT and first.attempt == 1


def test_a_failing_event_is_retried_with_the_same_id_and_exponential_backoff(
    producer: Flowkernel, database_url: str
) -> None:
    failures = {"left": 2}

    def fail(_event_id: str) -> BaseException | None:
        if failures["left"]:
            failures["left"] -= 1
            return ConnectionError("receiver down")
        return None

    probe = Recorder(fail)
    item_id = place(producer, 1)
    [row] = rows(producer)
    with kernel(database_url, probe, delivery_backoff=timedelta(seconds=10)) as worker:
        started = datetime.now(UTC)
        assert worker.deliver_events() == DeliveryReport(retried=1)
        after = row_of(producer, row.event_id)
        assert (after.status, after.attempts) == (PENDING, 1)
        assert "ConnectionError('receiver down')" in after.last_error
        assert "attempt 1" in after.last_error
        wait = after.available_at - started
        assert timedelta(seconds=10) <= wait < timedelta(seconds=12)
        # backing off: a pass now does nothing
        assert worker.deliver_events() == DeliveryReport()

        make_due(producer)
        started = datetime.now(UTC)
        assert worker.deliver_events() == DeliveryReport(retried=1)
        after = row_of(producer, row.event_id)
        assert after.attempts == 2
        assert timedelta(seconds=20) <= after.available_at - started < timedelta(seconds=22)

        make_due(producer)
        assert worker.deliver_events() == DeliveryReport(delivered=1)
    done = row_of(producer, row.event_id)
    assert (done.status, done.attempts) == (DELIVERED, 3)
    assert done.delivered_at is not None
    assert [(e.event_id, e.attempt, e.item_id) for e in probe.events] == [
        (row.event_id, 3, item_id)
    ]


def test_backoff_is_capped() -> None:
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    try:
        d = Delivery(engine, _pm(), backoff=2)
        assert [d._delay(n).total_seconds() for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
        assert d._delay(10_000) == timedelta(hours=1)
        assert Delivery(engine, _pm(), backoff=0)._delay(5) == timedelta(0)
    finally:
        engine.dispose()


def _pm() -> Any:
    from flowkernel.plugin_manager import get_plugin_manager

    return get_plugin_manager(entry_points=False)


def test_after_the_last_attempt_an_event_is_dead_and_can_be_requeued(
    producer: Flowkernel, database_url: str
) -> None:
    broken = {"on": True}
    probe = Recorder(lambda _id: RuntimeError("boom") if broken["on"] else None)
    place(producer, 1)
    [row] = rows(producer)
    with kernel(database_url, probe, delivery_attempts=3) as worker:
        assert worker.deliver_events() == DeliveryReport(retried=1)
        assert worker.deliver_events() == DeliveryReport(retried=1)
        assert worker.deliver_events() == DeliveryReport(dead=1)
        assert worker.deliver_events() == DeliveryReport()  # dead rows are not retried
        dead = row_of(producer, row.event_id)
        assert (dead.status, dead.attempts) == (DEAD, 3)
        assert "attempt 3: RuntimeError('boom')" in dead.last_error

        [letter] = worker.delivery.dead_letters(SYSTEM)
        assert isinstance(letter, DeadLetter)
        assert (letter.event_id, letter.event_name, letter.attempts) == (
            row.event_id,
            "deal.created",
            3,
        )
        assert letter.kind == "automation" and letter.account_id == ACCOUNT
        assert "boom" in (letter.last_error or "")
        assert worker.delivery.dead_letters(SYSTEM, event_name="nope") == []
        assert worker.delivery.dead_letters(SYSTEM, item_id=letter.item_id) == [letter]
        assert worker.delivery.dead_letters(Actor.system(ACCOUNT)) == [letter]
        assert worker.delivery.dead_letters(Actor.system(OTHER)) == []

        broken["on"] = False
        assert worker.delivery.retry_dead(SYSTEM, [row.event_id]) == 1
        again = row_of(producer, row.event_id)
        assert (again.status, again.attempts) == (PENDING, 0)
        assert worker.deliver_events() == DeliveryReport(delivered=1)
    assert row_of(producer, row.event_id).status == DELIVERED
    assert probe.ids == [row.event_id]


def test_dead_letter_calls_refuse_bad_callers_and_arguments_without_changes(
    producer: Flowkernel, database_url: str
) -> None:
    place(producer, 1)
    place(producer, 2)
    with kernel(
        database_url, Recorder(lambda _id: RuntimeError("x")), delivery_attempts=1
    ) as worker:
        assert worker.deliver_events() == DeliveryReport(dead=2)
        first, second = (r.event_id for r in rows(producer))
        before = every_row(producer)
        d = worker.delivery
        with pytest.raises(AccessDenied):
            d.dead_letters(ALICE)
        with pytest.raises(AccessDenied):
            d.retry_dead(ALICE)
        with pytest.raises(InvalidArgument):
            d.retry_dead(SYSTEM, first)  # a string, not a list of ids
        with pytest.raises(InvalidArgument):
            d.dead_letters(SYSTEM, limit=0)
        with pytest.raises(InvalidArgument):
            d.dead_letters(SYSTEM, item_id=-1)
        with pytest.raises(InvalidArgument):
            d.dead_letters("root")  # type: ignore[arg-type]
        with pytest.raises(EventNotFound) as refused:
            d.retry_dead(SYSTEM, [first, "no-such-event"])
        assert refused.value.event_ids == ("no-such-event",)
        assert "no-such-event" in refused.value.message
        with pytest.raises(EventNotFound):
            d.retry_dead(Actor.system(OTHER), [first])  # another account's: as if missing
        assert every_row(producer) == before
        assert d.retry_dead(SYSTEM, []) == 0
        assert d.retry_dead(Actor.system(OTHER)) == 0
        assert d.retry_dead(SYSTEM, item_id=rows(producer)[1].flow_item_id) == 1
        assert [r.status for r in rows(producer)] == [DEAD, PENDING]
        assert d.retry_dead(Actor.system(ACCOUNT)) == 1
        assert [r.status for r in rows(producer)] == [PENDING, PENDING]
        assert {first, second} == {r.event_id for r in rows(producer)}


def test_delivery_settings_are_checked(database_url: str) -> None:
    for bad in (
        {"delivery_attempts": 0},
        {"delivery_attempts": True},
        {"delivery_backoff": -1},
        {"delivery_backoff": "2s"},
        {"delivery_lease": 0},
        {"delivery_lease": timedelta(seconds=-5)},
    ):
        with pytest.raises(InvalidArgument):
            Flowkernel(database_url, **bad).close()
    with Flowkernel(
        database_url, delivery_attempts=3, delivery_backoff=1.5, delivery_lease=30
    ) as fk:
        assert fk.delivery.max_attempts == 3
        assert fk.delivery.backoff == timedelta(seconds=1.5)
        assert fk.delivery.lease == timedelta(seconds=30)
        with pytest.raises(InvalidArgument):
            fk.delivery.deliver(limit=0)
        for ids in ("12", ["1"], [True], [1.5]):
            with pytest.raises(InvalidArgument):
                fk.delivery.deliver(ids)  # type: ignore[arg-type]
        assert fk.delivery.deliver([]) == DeliveryReport()


# --- order per item ----------------------------------------------------------------------------


def test_an_items_later_events_wait_while_an_earlier_one_backs_off(
    producer: Flowkernel, database_url: str
) -> None:
    x = place(producer, 1)
    producer.move(x, "b", ALICE)
    producer.move(x, "c", ALICE)
    place(producer, 2)
    x1, x2, x3, y1 = (r.event_id for r in rows(producer))
    fails = {x1}
    probe = Recorder(lambda e: ConnectionError("down") if e in fails else None)
    with kernel(database_url, probe, delivery_backoff=timedelta(minutes=5)) as worker:
        # x1 fails: x2 and x3 are given back untouched, the other item goes on
        assert worker.deliver_events() == DeliveryReport(delivered=1, retried=1, deferred=2)
        assert probe.ids == [y1]
        state = {r.event_id: (r.status, r.attempts) for r in rows(producer)}
        assert state == {
            x1: (PENDING, 1),
            x2: (PENDING, 0),
            x3: (PENDING, 0),
            y1: (DELIVERED, 1),
        }
        # x2 and x3 are due but x1 is backing off: nothing of x is claimed, not even by id
        assert worker.deliver_events() == DeliveryReport()
        ids = [r.id for r in rows(producer)]
        assert worker.delivery.deliver([ids[1], ids[2]]) == DeliveryReport()
        fails.clear()
        make_due(producer)
        assert worker.deliver_events() == DeliveryReport(delivered=3)
    assert probe.ids == [y1, x1, x2, x3]


def test_a_dead_event_no_longer_holds_its_item_back(
    producer: Flowkernel, database_url: str
) -> None:
    x = place(producer, 1)
    producer.move(x, "b", ALICE)
    x1, x2 = (r.event_id for r in rows(producer))
    probe = Recorder(lambda e: RuntimeError("poison") if e == x1 else None)
    with kernel(database_url, probe, delivery_attempts=1) as worker:
        assert worker.deliver_events() == DeliveryReport(dead=1, deferred=1)
        assert worker.deliver_events() == DeliveryReport(delivered=1)
    assert probe.ids == [x2]
    assert [r.status for r in rows(producer)] == [DEAD, DELIVERED]


def test_delivery_after_a_commit_sends_the_items_earlier_events_first(
    producer: Flowkernel, database_url: str
) -> None:
    x = place(producer, 1)
    producer.move(x, "b", ALICE)
    y = place(producer, 2)
    probe = Recorder()
    with kernel(database_url, probe, deliver_events=True) as fk:
        fk.move(x, "c", ALICE)
    x1, x2, _y1, x3 = (r.event_id for r in rows(producer))
    # the inline delivery covers the moved item only, oldest first
    assert probe.ids == [x1, x2, x3]
    assert [r.status for r in rows(producer)] == [DELIVERED, DELIVERED, PENDING, DELIVERED]
    assert producer.item(y, ALICE).state == "a"


def test_notifications_share_the_items_order_and_retries(
    producer: Flowkernel, database_url: str
) -> None:
    x = place(producer, 1)
    producer.items.watch(x, 7, ALICE)
    producer.move(x, "b", ALICE)
    _created, entered, note = rows(producer)
    assert (note.kind, note.recipient_iam_user_id) == ("notification", 7)
    failing = {entered.event_id}
    probe = Recorder(lambda e: OSError("x") if e in failing else None)
    with kernel(database_url, probe) as worker:
        assert worker.deliver_events() == DeliveryReport(delivered=1, retried=1, deferred=1)
        assert probe.notes == []
        failing.clear()
        assert worker.deliver_events() == DeliveryReport(delivered=2)
    assert [n.event_id for n in probe.notes] == [note.event_id]
    assert probe.notes[0].user_id == 7 and probe.notes[0].trigger == "stage_changed"


# --- leases ------------------------------------------------------------------------------------


def test_claimed_events_are_leased_to_one_worker(producer: Flowkernel, database_url: str) -> None:
    x = place(producer, 1)
    place(producer, 2)
    producer.move(x, "b", ALICE)
    other = Recorder()
    with kernel(database_url, other) as second:
        during: list[DeliveryReport] = []
        first = Recorder()
        # while the first worker holds its batch, a second worker finds nothing to claim
        first.during = lambda _e: during.append(second.deliver_events())
        with kernel(database_url, first) as worker:
            assert worker.deliver_events() == DeliveryReport(delivered=3)
    assert during == [DeliveryReport()] * 3
    assert other.events == [] and len(first.events) == 3


def test_an_expired_lease_passes_the_events_to_another_worker(
    producer: Flowkernel, database_url: str
) -> None:
    x = place(producer, 1)
    producer.move(x, "b", ALICE)
    x1, x2 = (r.event_id for r in rows(producer))
    taker = Recorder()
    slow = Recorder()
    with (
        kernel(database_url, taker, delivery_lease=0.1) as second,
        kernel(database_url, slow, delivery_lease=0.1) as first,
    ):

        def hang_then_lose_the_lease(event: OutgoingEvent) -> None:
            if event.event_id == x1 and not taker.events:
                # a send that hangs past HOLD_LEASES leases: the first worker looks dead
                time.sleep(0.1 * HOLD_LEASES + 0.4)
                assert second.deliver_events() == DeliveryReport(delivered=2)

        slow.during = hang_then_lose_the_lease
        report = first.deliver_events()
    # at least once: x1 went out twice; x2 only through the worker that held it
    assert taker.ids == [x1, x2]
    assert slow.ids == [x1]
    assert report == DeliveryReport(delivered=1, deferred=1)
    assert [(r.status, r.attempts) for r in rows(producer)] == [(DELIVERED, 2), (DELIVERED, 2)]


def test_a_long_batch_renews_its_lease(producer: Flowkernel, database_url: str) -> None:
    for n in range(3):
        place(producer, n)
    taker = Recorder()
    slow = Recorder()
    with (
        kernel(database_url, taker) as second,
        kernel(database_url, slow, delivery_lease=2.0) as first,
    ):
        checks: list[DeliveryReport] = []

        def slowly(_event: OutgoingEvent) -> None:
            # past half the lease, so the lease is renewed after every row; 0.9 s of the
            # lease is left when the second worker looks, room for a busy machine
            time.sleep(1.1)
            checks.append(second.deliver_events())

        slow.during = slowly
        assert first.deliver_events() == DeliveryReport(delivered=3)
    # the batch took well over the lease, but the lease was renewed as it went
    assert checks == [DeliveryReport()] * 3
    assert taker.events == [] and len(slow.events) == 3


def test_one_long_delivery_keeps_its_lease(producer: Flowkernel, database_url: str) -> None:
    """A delivery that runs for several leases (a slow receiver) keeps its rows: another
    worker neither sends the event a second time nor sends the item's next event meanwhile."""
    first_id, second_id = place(producer, 1), place(producer, 2)
    producer.move(first_id, "b", ALICE)  # item 1 now has two events, item 2 one
    taker = Recorder()
    slow = Recorder()
    with (
        kernel(database_url, taker) as other,
        kernel(database_url, slow, delivery_lease=0.6) as worker,
    ):
        looks: list[DeliveryReport] = []

        def for_three_leases(event: OutgoingEvent) -> None:
            if event.item_id != first_id or slow.events:
                return
            ends = time.monotonic() + 1.8
            while time.monotonic() < ends:  # the other worker keeps looking meanwhile
                looks.append(other.deliver_events())
                time.sleep(0.05)

        slow.during = for_three_leases
        assert worker.deliver_events() == DeliveryReport(delivered=3)
    assert looks and all(look == DeliveryReport() for look in looks)
    assert taker.events == []
    assert [e.item_id for e in slow.events] == [first_id, second_id, first_id]  # by row
    assert {(r.status, r.attempts) for r in rows(producer)} == {(DELIVERED, 1)}


# --- the worker loop ---------------------------------------------------------------------------


def test_run_forever_delivers_until_stopped(producer: Flowkernel, database_url: str) -> None:
    probe = Recorder()
    with kernel(database_url, probe) as worker:
        assert worker.delivery.run_forever(0, max_runs=2) == DeliveryReport()
        place(producer, 1)
        place(producer, 2)
        place(producer, 3)
        # a full batch goes on at once; the runs count passes
        assert worker.delivery.run_forever(5, max_runs=2, limit=2) == DeliveryReport(delivered=3)
        stop = threading.Event()
        totals: list[DeliveryReport] = []
        loop = threading.Thread(
            target=lambda: totals.append(worker.delivery.run_forever(0.02, stop))
        )
        loop.start()
        x = place(producer, 4)
        producer.move(x, "b", ALICE)
        deadline = time.monotonic() + 10
        while len(probe.events) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        loop.join(10)
        assert not loop.is_alive()
    assert totals == [DeliveryReport(delivered=2)]
    assert [r.status for r in rows(producer)] == [DELIVERED] * 5
    for bad in ({"every_seconds": -1}, {"every_seconds": float("nan")}, {"every_seconds": "1"}):
        with pytest.raises(InvalidArgument):
            producer.delivery.run_forever(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        producer.delivery.run_forever(1, max_runs=0)


# --- faults ------------------------------------------------------------------------------------


def test_a_timing_out_delivery_changes_nothing_but_its_outbox_row(
    producer: Flowkernel, database_url: str
) -> None:
    x = place(producer, 1)
    producer.deliver_events()
    producer.move(x, "b", ALICE)
    before = every_row(producer)
    [pending] = [r for r in rows(producer) if r.status == PENDING]

    def time_out(_event_id: str) -> BaseException:
        time.sleep(0.2)
        return TimeoutError("the receiver did not answer within 0.2 s")

    with kernel(database_url, Recorder(time_out)) as worker:
        assert worker.deliver_events() == DeliveryReport(retried=1)
    after = every_row(producer)
    changed = {t for t in before if before[t] != after[t]}
    assert changed == {"fk_outbox"}
    old = {r["id"]: r for r in before["fk_outbox"]}
    for row in after["fk_outbox"]:
        if row["id"] != pending.id:
            assert row == old[row["id"]]
            continue
        assert row["status"] == PENDING and row["attempts"] == pending.attempts + 1
        assert "TimeoutError" in row["last_error"]
        same = {k: v for k, v in row.items() if k not in ("attempts", "last_error", "available_at")}
        assert same == {
            k: v
            for k, v in old[row["id"]].items()
            if k not in ("attempts", "last_error", "available_at")
        }


def test_a_move_stands_when_its_delivery_times_out(producer: Flowkernel, database_url: str) -> None:
    x = place(producer, 1)
    producer.deliver_events()
    history_before = producer.history(x, ALICE)
    probe = Recorder(lambda _e: TimeoutError("timed out"))
    with kernel(database_url, probe, deliver_events=True) as fk:
        result = fk.move(x, "b", ALICE)  # the delivery failure is not the caller's error
        assert result.to_state == "b"
    assert producer.item(x, ALICE).state == "b"
    history = producer.history(x, ALICE)
    # the earlier rows stand; the last of them now has its period closed by the move
    assert [(h.id, h.to_state, h.moved_at) for h in history[: len(history_before)]] == [
        (h.id, h.to_state, h.moved_at) for h in history_before
    ]
    assert history[len(history_before) - 1].valid_to == history[len(history_before)].moved_at
    assert [h.to_state for h in history[len(history_before) :]] == ["b"]
    last = rows(producer)[-1]
    assert (last.status, last.attempts, last.event_name) == (PENDING, 1, "deal.entered")
    assert "TimeoutError('timed out')" in last.last_error
    assert probe.events == []


def test_a_database_failure_after_commit_does_not_fail_the_move(database_url: str) -> None:
    with kernel(database_url, deliver_events=True) as fk:
        make_deals(fk)

        def broken(ids: Any, *, limit: int = 500) -> DeliveryReport:
            raise OSError("database went away")

        fk.delivery.deliver = broken  # type: ignore[method-assign]
        item_id = place(fk, 1)
        assert fk.item(item_id, ALICE).state == "a"
        assert [r.status for r in rows(fk)] == [PENDING]


# --- several worker processes (PostgreSQL) -------------------------------------------------------


def needs_postgresql(backend: str) -> None:
    if backend == "sqlite":
        pytest.skip(
            "several delivery worker processes need PostgreSQL (FOR UPDATE SKIP LOCKED); "
            "SQLite serialises writers in one file"
        )


def worker(url: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), "--url", url, "--log", str(log), *extra],
        cwd=ROOT,
        env=env,
    )


def read_log(log: Path) -> list[tuple[int, float, str, int]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [(int(p), float(t), e, int(i)) for p, t, e, i in (line.split() for line in lines)]


def make_backlog(fk: Flowkernel, items: int) -> None:
    for n in range(items):
        x = place(fk, n)
        fk.move(x, "b", ALICE)
        fk.move(x, "c", ALICE)
        fk.move(x, "a", ALICE)
        fk.move(x, "b", ALICE)


def test_several_worker_processes_share_the_work_once_each_in_order(
    backend: str, producer: Flowkernel, database_url: str, tmp_path: Path
) -> None:
    needs_postgresql(backend)
    make_backlog(producer, 40)
    expected = rows(producer)
    assert len(expected) == 200
    log, go = tmp_path / "delivered.log", tmp_path / "go"
    ready = [tmp_path / f"ready{n}" for n in range(4)]
    procs = [
        worker(
            database_url,
            log,
            "--ready",
            str(r),
            "--go",
            str(go),
            "--limit",
            "7",
            "--delay",
            "0.003",
        )
        for r in ready
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.05)
        go.touch()  # every worker is connected: they start together
        codes = [p.wait(120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert codes == [0, 0, 0, 0]
    delivered = read_log(log)
    counts = Counter(e for _, _, e, _ in delivered)
    assert set(counts) == {r.event_id for r in expected}
    assert max(counts.values()) == 1, "an event was sent twice"
    assert len({p for p, _, _, _ in delivered}) >= 2, "the work was not shared"
    position = {r.event_id: r.id for r in expected}
    per_item: dict[int, list[int]] = defaultdict(list)
    for _, _, event_id, item_id in delivered:
        per_item[item_id].append(position[event_id])
    assert all(ids == sorted(ids) for ids in per_item.values()), "an item's events out of order"
    assert {(r.status, r.attempts) for r in rows(producer)} == {(DELIVERED, 1)}


def test_a_worker_killed_mid_batch_loses_nothing(
    backend: str, producer: Flowkernel, database_url: str, tmp_path: Path
) -> None:
    needs_postgresql(backend)
    make_backlog(producer, 6)
    expected = rows(producer)
    victim = expected[12]  # the first worker hangs on this one, mid-batch
    log, marker = tmp_path / "delivered.log", tmp_path / "blocked"
    first = worker(
        database_url,
        log,
        "--lease",
        "3",
        "--block-event-id",
        victim.event_id,
        "--marker",
        str(marker),
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            assert first.poll() is None, "the first worker exited early"
            time.sleep(0.05)
        assert marker.exists()
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    before_second = read_log(log)
    assert [e for _, _, e, _ in before_second] == [r.event_id for r in expected[:12]]
    held = [r for r in rows(producer) if r.status == PENDING]
    assert [r.event_id for r in held] == [r.event_id for r in expected[12:]]
    assert {r.attempts for r in held} == {1}
    lease_end = max(r.available_at for r in held).timestamp()

    second = worker(database_url, log)
    assert second.wait(120) == 0
    delivered = read_log(log)
    counts = Counter(e for _, _, e, _ in delivered)
    assert set(counts) == {r.event_id for r in expected}  # nothing lost
    assert max(counts.values()) == 1  # and, here, nothing sent twice
    late = [t for p, t, _, _ in delivered if p == second.pid]
    assert len(late) == len(held)
    assert min(late) >= lease_end - 0.05, "the leased events were taken before the lease ended"
    assert {r.status for r in rows(producer)} == {DELIVERED}
    assert row_of(producer, victim.event_id).attempts == 2
