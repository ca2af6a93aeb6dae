from datetime import UTC, datetime

import pytest

from edge.clock import VirtualClock
from edge.scheduler import JobScheduler


def test_virtual_clock_runs_timers_in_order_at_due_time():
    clock = VirtualClock(datetime(2026, 3, 1, tzinfo=UTC))
    seen = []
    clock.call_later(5, lambda: seen.append(("b", clock.monotonic())))
    clock.call_later(2, lambda: seen.append(("a", clock.monotonic())))
    cancelled = clock.call_later(3, lambda: seen.append(("x", clock.monotonic())))
    cancelled.cancel()
    clock.advance(10)
    assert seen == [("a", 2), ("b", 5)]
    assert clock.now() == datetime(2026, 3, 1, 0, 0, 10, tzinfo=UTC)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_scheduler_failing_job_does_not_stop_others():
    clock = VirtualClock()
    errors, ticks = [], []
    sched = JobScheduler(clock, on_error=lambda name, exc: errors.append((name, type(exc))))
    sched.every_s(10, lambda: 1 / 0, "broken")
    sched.every_s(10, lambda: ticks.append(1), "healthy")
    for _ in range(6):
        clock.advance(10)
        sched.run_pending()
    assert len(ticks) == 6
    assert errors[0] == ("broken", ZeroDivisionError) and len(errors) == 6


def test_two_schedulers_keep_their_own_clocks():
    a, b = VirtualClock(datetime(2026, 1, 1, tzinfo=UTC)), VirtualClock(datetime(2026, 6, 1, tzinfo=UTC))
    sa, sb = JobScheduler(a), JobScheduler(b)
    hits = []
    sa.every_s(60, lambda: hits.append("a"))
    sb.every_s(60, lambda: hits.append("b"))
    a.advance(61)
    sa.run_pending()
    sb.run_pending()
    assert hits == ["a"]
