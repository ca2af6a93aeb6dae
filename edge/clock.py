"""Time behind a seam.

Every piece of the edge runtime that needs time takes a clock: ``SystemClock`` in the
daemons, ``VirtualClock`` in tests and in the field simulator, where a simulated week
runs in seconds. A clock offers:

- ``now()``: an aware UTC datetime (messages carry UTC; schedules convert to local time),
- ``monotonic()``: seconds for measuring durations, never jumping,
- ``sleep(s)``: wait (a virtual clock advances instead),
- ``call_later(delay_s, fn)``: run ``fn`` once after ``delay_s``; returns a handle with
  ``cancel()``. The output layer uses it to force outputs off after their maximum on-time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

logger = logging.getLogger(__name__)


class TimerHandle:
    """A pending ``call_later`` callback; ``cancel()`` is idempotent."""

    __slots__ = ("due", "fn", "cancelled", "_timer")

    def __init__(self, due, fn, timer=None):
        self.due = due
        self.fn = fn
        self.cancelled = False
        self._timer = timer

    def cancel(self):
        self.cancelled = True
        if self._timer is not None:
            self._timer.cancel()


def _run_callback(fn):
    try:
        fn()
    except Exception:
        logger.exception("timer callback %r failed", fn)


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def call_later(self, delay_s: float, fn) -> TimerHandle:
        timer = threading.Timer(max(0.0, delay_s), _run_callback, args=(fn,))
        timer.daemon = True
        handle = TimerHandle(time.monotonic() + delay_s, fn, timer)
        timer.start()
        return handle


class VirtualClock:
    """A clock that moves only when told to.

    ``advance(s)`` moves time forward, running every ``call_later`` callback that falls
    due, in order, with the clock set to each callback's due time. ``sleep`` advances.
    Thread-safe, so a callback may schedule further callbacks.
    """

    def __init__(self, start: datetime | None = None):
        start = start or datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("VirtualClock start must be timezone-aware")
        self._epoch = start.astimezone(UTC)
        self._t = 0.0
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()

    def now(self) -> datetime:
        return self._epoch + timedelta(seconds=self._t)

    def monotonic(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def call_later(self, delay_s: float, fn) -> TimerHandle:
        with self._lock:
            handle = TimerHandle(self._t + max(0.0, delay_s), fn)
            heapq.heappush(self._timers, (handle.due, next(self._seq), handle))
            return handle

    def set(self, when: datetime) -> None:
        """Advance to an absolute time (never backwards)."""
        self.advance((when - self.now()).total_seconds())

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a virtual clock never goes backwards")
        with self._lock:
            end = self._t + seconds
            while self._timers and self._timers[0][0] <= end:
                due, _, handle = heapq.heappop(self._timers)
                self._t = max(self._t, due)
                if not handle.cancelled:
                    _run_callback(handle.fn)
            self._t = end
