"""Pause, rain delay and skip-next: the same rules and limits for both unit kinds."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from protocol.holds import ALL, MAX_PAUSE, MAX_RAIN_DELAY_H, HoldRefused, Holds

NOW = datetime(2026, 9, 7, 9, 0, tzinfo=ZoneInfo("Asia/Makassar"))


@pytest.mark.parametrize("until,why", [
    (NOW - timedelta(minutes=1), "in the past"),
    (NOW, "in the past"),
    (NOW + MAX_PAUSE + timedelta(seconds=1), "longer than 31 days"),
    (NOW.replace(tzinfo=None) + timedelta(hours=1), "no UTC offset"),
])
def test_holds_pause_refused_outside_the_limits_changes_nothing(until, why):
    holds = Holds()
    with pytest.raises(HoldRefused, match=why):
        holds.pause(until, NOW)
    assert holds == Holds()


def test_holds_pause_holds_until_its_end_then_expires():
    holds = Holds()
    holds.pause(NOW + MAX_PAUSE, NOW)
    assert holds.reason(NOW) == "paused"
    assert holds.reason(NOW, rain_delay=False) == "paused"
    assert holds.expire(NOW + timedelta(days=1)) == []
    assert holds.expire(NOW + MAX_PAUSE) == ["pause"]
    assert holds.reason(NOW + MAX_PAUSE) is None


@pytest.mark.parametrize("hours", [-1, MAX_RAIN_DELAY_H + 0.5])
def test_holds_rain_delay_refused_outside_the_limits(hours):
    holds = Holds()
    with pytest.raises(HoldRefused, match="0 to 168 hours"):
        holds.rain_delay(hours, NOW)
    assert holds.rain_delay_until is None


def test_holds_rain_delay_of_0_ends_a_delay():
    holds = Holds()
    holds.rain_delay(12, NOW)
    assert holds.rain_delay(0, NOW) is None
    assert holds.rain_delay_until is None and holds.reason(NOW) is None


def test_holds_rain_delay_holds_scheduled_starts_only_when_asked():
    holds = Holds()
    assert holds.rain_delay(MAX_RAIN_DELAY_H, NOW) == NOW + timedelta(hours=168)
    assert holds.reason(NOW) == "rain_delay"
    assert holds.reason(NOW, rain_delay=False) is None
    # a rain sensor only ever lengthens it, and not for less than the slack
    assert not holds.extend_rain_delay(NOW + timedelta(hours=1))
    assert not holds.extend_rain_delay(NOW + timedelta(hours=168, seconds=30),
                                       slack=timedelta(minutes=1))
    assert holds.extend_rain_delay(NOW + timedelta(hours=169))
    assert holds.rain_delay_until == NOW + timedelta(hours=169)


def test_holds_skip_next_is_used_once_per_target():
    holds = Holds()
    holds.skip(["z1", ALL])
    assert not holds.take_skip("z2")
    assert holds.take_skip("z1") and not holds.take_skip("z1")
    assert holds.take_skip(ALL) and not holds.take_skip(ALL)


def test_holds_resume_names_what_it_ended_and_survives_a_save():
    holds = Holds()
    holds.pause(NOW + timedelta(hours=2), NOW)
    holds.rain_delay(12, NOW)
    holds.skip(["pakan-nila"])
    again = Holds.from_doc(holds.to_doc())
    assert again == holds
    assert again.resume() == ["pause", "rain delay"]
    assert again.reason(NOW) is None and again.skip_next == {"pakan-nila"}
    assert Holds.from_doc(None) == Holds()
