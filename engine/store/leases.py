"""Keeping a lease alive while its holder works on what it holds.

The outbox's delivery leases the rows it claims and renews the lease between rows. While one
row's delivery runs long (a slow receiver, up to the plugin's own deadline), the keeper's
thread renews the lease instead, so that no other worker takes the rows over, and sends an
item's event a second time or its next event out of order, while this worker still works on
them. A worker that dies renews nothing: its rows come due when the lease ends.

One thread serves every holding of the process; it starts on first use and ends once nothing
has been held for `IDLE` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

IDLE: Final = 5.0
"""Seconds the keeper's thread waits with nothing held before it ends."""

RETRY: Final = 1.0
"""Seconds before a renewal that failed is tried again."""

log = logging.getLogger("flowkernel.store.leases")


class _Holding:
    __slots__ = ("active", "due", "lock", "renew", "retry_at", "until")

    def __init__(self, due: Callable[[], float], renew: Callable[[], None], until: float) -> None:
        self.due = due
        self.renew = renew
        self.until = until
        self.lock = threading.Lock()
        self.active = True
        self.retry_at = 0.0

    def when(self) -> float:
        return max(self.due(), self.retry_at)


class LeaseKeeper:
    """Renews the leases of the blocks running under `keeping`, whenever they come due."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._held: dict[int, _Holding] = {}
        self._thread: threading.Thread | None = None

    @contextmanager
    def keeping(
        self, due: Callable[[], float], renew: Callable[[], None], *, until: float
    ) -> Iterator[None]:
        """Within the block, call `renew` whenever the `time.monotonic` moment `due()` has
        come; `renew` moves that moment on. No renewal runs once the block has ended, nor from
        the moment `until` on (a holder stuck that long is taken for dead)."""
        holding = _Holding(due, renew, until)
        with self._wake:
            self._held[id(holding)] = holding
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="flowkernel-lease-keeper", daemon=True
                )
                self._thread.start()
            self._wake.notify()
        try:
            yield
        finally:
            with holding.lock:  # waits for a renewal under way
                holding.active = False
            with self._wake:
                self._held.pop(id(holding), None)

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                held = list(self._held.values())
                if not held:
                    self._wake.wait(IDLE)
                    if not self._held:
                        self._thread = None
                        return
                    continue
                for holding in held:
                    if holding.until <= now:
                        del self._held[id(holding)]
                due = [h for h in held if h.when() <= now < h.until]
                if not due:
                    nearest = min((h.when() for h in held if now < h.until), default=now + IDLE)
                    self._wake.wait(min(nearest - now, IDLE))
                    continue
            for holding in due:
                with holding.lock:
                    if not holding.active:
                        continue
                    try:
                        holding.renew()
                    except Exception:  # the database is away: the lease may still be saved
                        log.exception("renewing a lease failed; trying again in %s s", RETRY)
                        holding.retry_at = time.monotonic() + RETRY


KEEPER: Final = LeaseKeeper()
"""The process's lease keeper."""
