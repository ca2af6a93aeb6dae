"""`FailedLogins`: a sliding window per client address, bounded in memory."""

from __future__ import annotations

from controller.auth import FailedLogins


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_lock_after_limit_until_the_oldest_leaves_the_window():
    clock = Clock()
    logins = FailedLogins(3, 60, clock=clock)
    for at in (0, 10, 20):
        assert logins.retry_after("a") == 0
        clock.now = at
        logins.failed("a")
    clock.now = 30
    assert logins.retry_after("a") == 30  # the failure at 0 leaves the window at 60
    clock.now = 59.2
    assert logins.retry_after("a") == 1  # rounded up, never 0 while locked
    clock.now = 60
    assert logins.retry_after("a") == 0
    logins.failed("a")  # 10, 20, 60: three within a minute again
    assert logins.retry_after("a") == 10
    assert logins.retry_after("b") == 0


def test_failed_logins_spread_out_never_lock():
    clock = Clock()
    logins = FailedLogins(3, 60, clock=clock)
    for n in range(20):
        clock.now = n * 30.0  # two a minute
        assert logins.retry_after("a") == 0
        logins.failed("a")


def test_failed_logins_memory_is_bounded():
    clock = Clock()
    logins = FailedLogins(3, 60, max_addresses=100, clock=clock)
    for _ in range(3):
        logins.failed("guesser")
    for n in range(99):
        logins.failed(f"10.0.0.{n}")
    assert logins.tracked == 100 and logins.retry_after("guesser") > 0
    logins.failed("10.0.1.1")  # the address whose last failure is oldest is forgotten
    assert logins.tracked == 100 and logins.retry_after("guesser") == 0
    for _ in range(1000):
        logins.failed("10.0.1.1")
    assert logins.tracked == 100
    assert len(logins._failures["10.0.1.1"]) == 3
