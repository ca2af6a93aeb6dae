"""The maintenance window of an offered release (``[update] window``): reading it,
inside or not at a local time (wrapping midnight), and a bad one refused by the config
naming ``update.window``."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge.config import load_config
from edge.errors import ConfigError
from edge.offer import WindowError, parse_window

WITA = ZoneInfo("Asia/Makassar")


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 9, 7, hh, mm, ss, tzinfo=WITA)


def test_offer_window_any_time_by_default():
    window = parse_window("00:00-24:00")
    assert all(window.contains(at(h, m)) for h in range(24) for m in (0, 59))
    assert window.opens_in_s(at(13, 5)) == 0


def test_offer_window_within_a_day():
    window = parse_window("01:30-04:00")
    assert window.contains(at(1, 30)) and window.contains(at(3, 59, 59))
    assert not window.contains(at(4, 0)) and not window.contains(at(1, 29, 59))
    assert window.opens_in_s(at(1, 0)) == 30 * 60
    assert window.opens_in_s(at(4, 0)) == (21 * 60 + 30) * 60  # tomorrow


def test_offer_window_wraps_midnight():
    window = parse_window("22:00-05:00")
    assert window.contains(at(23, 0)) and window.contains(at(0, 0)) and window.contains(at(4, 59))
    assert not window.contains(at(5, 0)) and not window.contains(at(21, 59))
    assert window.opens_in_s(at(21, 59, 30)) == 30
    assert window.opens_in_s(at(12, 0)) == 10 * 3600


@pytest.mark.parametrize("text, why", [
    ("22:00", "not HH:MM-HH:MM"), ("25:00-03:00", "not a time of day"),
    ("02:60-03:00", "not a time of day"), ("24:00-03:00", "cannot start at 24:00"),
    ("03:00-03:00", "empty"), ("3:00-4:00", "not HH:MM-HH:MM"), ("24:30-01:00", "not a time"),
])
def test_offer_window_bad_text_says_why(text, why):
    with pytest.raises(WindowError, match=why):
        parse_window(text)


def test_offer_window_bad_in_config_names_the_field(tmp_path, good_config_text):
    path = tmp_path / "unit.toml"
    path.write_text(good_config_text + '\n[update]\nwindow = "22:00-25:00"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "update.window" in message and "not a time of day" in message
    path.write_text(good_config_text + '\n[update]\nwindow = "22:00-05:00"\n')
    assert load_config(path).update.window == "22:00-05:00"
