"""Periodic jobs (sensor polls, telemetry) on the ``schedule`` library, driven by our clock.

``schedule`` reads the time from ``datetime.datetime.now()`` (naive local time). We give
each ``JobScheduler`` its own clock and site time zone: while one of our schedulers is
creating or running jobs, ``schedule`` sees that clock's time in the site's zone, so a
test on a ``VirtualClock`` runs a week of jobs in a second.

Unlike ``schedule``'s default, a job that raises never stops the loop: the exception is
logged and passed to ``on_error`` (the apps raise an alarm event there).

When not to use it: for "turn this valve off in 300 s" use ``clock.call_later`` (the
output layer does). For times of day (program starts, feeding times) use
``protocol.planner``: it knows sunrise and sunset, day rules and midnight, and it says
which starts a unit missed while it was down (``schedule`` runs a missed job once, late,
and says nothing of the others).
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import types
from contextlib import contextmanager
from zoneinfo import ZoneInfo

import schedule

logger = logging.getLogger(__name__)

_active = threading.local()


class _ClockDatetime(_dt.datetime):
    """``datetime.datetime`` whose ``now()`` reads the active scheduler's clock."""

    @classmethod
    def now(cls, tz=None):
        clock = getattr(_active, "clock", None)
        if clock is None:
            return _dt.datetime.now(tz)
        now_utc = clock.now()
        if tz is not None:
            return now_utc.astimezone(tz)
        return now_utc.astimezone(_active.tz).replace(tzinfo=None)


# schedule refers to the module global ``datetime``; give it one that knows our clocks.
schedule.datetime = types.SimpleNamespace(
    datetime=_ClockDatetime, timedelta=_dt.timedelta, time=_dt.time, date=_dt.date,
    tzinfo=_dt.tzinfo, timezone=_dt.timezone,
)


class JobScheduler:
    """A ``schedule.Scheduler`` bound to a clock and a site time zone."""

    def __init__(self, clock, tz: str = "Asia/Makassar", on_error=None):
        self.clock = clock
        self.tz = ZoneInfo(tz)
        self.on_error = on_error
        self._sched = schedule.Scheduler()

    @contextmanager
    def _time(self):
        prev = getattr(_active, "clock", None), getattr(_active, "tz", None)
        _active.clock, _active.tz = self.clock, self.tz
        try:
            yield
        finally:
            _active.clock, _active.tz = prev

    def _guard(self, name, fn):
        def job():
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - one job must not stop the loop
                logger.exception("job %s failed", name)
                if self.on_error is not None:
                    self.on_error(name, exc)

        job.__name__ = name
        return job

    def every_s(self, interval_s: float, fn, name: str | None = None):
        """Run ``fn`` every ``interval_s`` seconds."""
        name = name or getattr(fn, "__name__", "job")
        with self._time():
            return self._sched.every(interval_s).seconds.do(self._guard(name, fn)).tag(name)

    def cancel(self, name: str) -> None:
        self._sched.clear(name)

    def run_pending(self) -> None:
        with self._time():
            self._sched.run_pending()

    def idle_s(self) -> float | None:
        """Seconds until the next job is due (None when there is none)."""
        with self._time():
            return self._sched.idle_seconds

    @property
    def jobs(self):
        return list(self._sched.jobs)
