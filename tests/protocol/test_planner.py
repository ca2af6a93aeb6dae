"""The start planner: start times, day rules, seasons, and starts that cross midnight."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from astral import Observer
from astral.sun import sunrise, sunset
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocol.planner import (
    DayRule,
    Plan,
    Site,
    StartPlanner,
    parse_start,
    start_datetime,
    starts_between,
    starts_on,
)

WITA = ZoneInfo("Asia/Makassar")
BALIKPAPAN = Site(WITA, -1.2379, 116.8529)


def plan(name="p", starts=("06:00",), **days) -> Plan:
    return Plan.parse(name, starts, DayRule.parse(**days))


# -- start times ------------------------------------------------------------------------
@pytest.mark.parametrize("text,anchor,offset", [
    ("05:30", "clock", 5 * 3600 + 30 * 60),
    ("00:05", "clock", 300),
    ("sunrise", "sunrise", 0),
    ("sunrise-00:45", "sunrise", -45 * 60),
    ("sunset+01:30", "sunset", 90 * 60),
    ("sunset+06:00", "sunset", 6 * 3600),
])
def test_parse_start_accepts_clock_and_sun_times(text, anchor, offset):
    s = parse_start(text)
    assert (s.anchor, s.offset_s, s.text) == (anchor, offset, text)


@pytest.mark.parametrize("text", ["24:00", "06:60", "noon", "sunrise+7:00", "sunset-06:01",
                                  "sunset-", "6", "0:05", " 06:00", "sunrise+07:00", None])
def test_parse_start_rejects_nonsense(text):
    with pytest.raises(ValueError):
        parse_start(text)


def test_start_datetime_sunrise_matches_astral_for_balikpapan():
    obs = Observer(latitude=-1.2379, longitude=116.8529)
    for day in (date(2026, 1, 15), date(2026, 6, 21), date(2026, 9, 7), date(2026, 12, 21)):
        expected = sunrise(obs, date=day, tzinfo=WITA) - timedelta(minutes=45)
        got = start_datetime(parse_start("sunrise-00:45"), day, BALIKPAPAN)
        assert abs((got - expected).total_seconds()) < 1
        assert got.tzinfo is not None and got.utcoffset() == timedelta(hours=8)
        expected = sunset(obs, date=day, tzinfo=WITA) + timedelta(hours=1)
        got = start_datetime(parse_start("sunset+01:00"), day, BALIKPAPAN)
        assert abs((got - expected).total_seconds()) < 1
    # Near the equator sunrise moves only some minutes over the year, around 06:00-06:20 WITA.
    assert start_datetime(parse_start("sunrise"), date(2026, 9, 7), BALIKPAPAN).hour == 6


def test_start_datetime_clock_time_is_local_wall_time():
    got = start_datetime(parse_start("05:30"), date(2026, 9, 7), BALIKPAPAN)
    assert got.astimezone(UTC) == datetime(2026, 9, 6, 21, 30, tzinfo=UTC)


# -- day rules and seasons --------------------------------------------------------------------
def test_day_rule_weekdays():
    rule = DayRule.parse(weekdays=["mon", "thu"])
    week = [date(2026, 9, 7) + timedelta(days=i) for i in range(7)]  # Mon..Sun
    assert [rule.runs_on(d) for d in week] == [True, False, False, True, False, False, False]


def test_day_rule_every_n_days_from_its_start_day():
    rule = DayRule.parse(interval_days=3, interval_start=date(2026, 9, 1))
    assert [d for d in range(1, 16) if rule.runs_on(date(2026, 9, d))] == [1, 4, 7, 10, 13]


def test_day_rule_odd_and_even_days():
    odd, even = DayRule.parse(odd_even="odd"), DayRule.parse(odd_even="even")
    assert [odd.runs_on(date(2026, 8, d)) for d in (30, 31)] == [False, True]
    assert [even.runs_on(date(2026, 9, d)) for d in (1, 2)] == [False, True]


def test_day_rule_season_wraps_over_the_new_year():
    wet = DayRule.parse(active_from="11-01", active_to="03-31")
    dry = DayRule.parse(active_from="07-01", active_to="10-31")
    assert wet.runs_on(date(2026, 12, 31)) and wet.runs_on(date(2026, 1, 15))
    assert not wet.runs_on(date(2026, 7, 1))
    assert dry.runs_on(date(2026, 7, 1)) and not dry.runs_on(date(2026, 11, 1))
    assert DayRule().runs_on(date(2026, 5, 5))


def test_day_rule_disabled_never_runs_and_bad_words_are_refused():
    assert not DayRule.parse(enabled=False).runs_on(date(2026, 9, 7))
    with pytest.raises(ValueError, match="weekday 'mo'"):
        DayRule.parse(weekdays=["mo"])
    with pytest.raises(ValueError, match="MM-DD"):
        DayRule.parse(active_from="1-1", active_to="03-31")


def test_plan_of_reads_an_irrigation_program():
    from edge.irrigation.config import ProgramSpec

    program = ProgramSpec.model_validate({
        "name": "pagi", "zones": [{"zone": "z1", "duration_min": 10}],
        "start_times": ["sunrise-01:00", "17:00"], "weekdays": ["mon"]})
    p = Plan.of(program)
    assert [s.text for s in p.starts] == ["sunrise-01:00", "17:00"]
    assert p.days.runs_on(date(2026, 9, 7)) and not p.days.runs_on(date(2026, 9, 8))


# -- windows --------------------------------------------------------------------------------
def test_starts_on_lists_every_start_in_time_order():
    a, b = plan("a", ["18:00", "06:00"]), plan("b", ["sunrise"])
    starts = starts_on([a, b], date(2026, 9, 7), BALIKPAPAN)
    assert [(s.program, s.at.hour) for s in starts] == [("a", 6), ("b", 6), ("a", 18)]


def test_start_planner_between_is_half_open_and_next_after():
    planner = StartPlanner([plan(starts=["06:00", "18:00"])], BALIKPAPAN)
    six = datetime(2026, 9, 7, 6, 0, tzinfo=WITA)
    assert planner.between(six - timedelta(seconds=1), six)[0].at == six
    assert planner.between(six, six + timedelta(hours=1)) == []
    assert planner.next_after(six).at == six.replace(hour=18)
    assert len(planner.between(six - timedelta(seconds=1), six + timedelta(days=2))) == 5


# Starts that a sun offset moves over midnight, next to a clock start on the other side of
# it: (sun start, the day it belongs to, the clock start, local date-time of the sun start
# within a minute). Balikpapan: sunset+06:00 is about 00:15 the next day in September;
# sunrise-06:00 about 23:51 the evening before in early November.
MIDNIGHT = [
    ("sunset+06:00", date(2026, 9, 1), "00:05", datetime(2026, 9, 2, 0, 15, tzinfo=WITA)),
    ("sunrise-06:00", date(2026, 11, 1), "23:55", datetime(2026, 10, 31, 23, 51, tzinfo=WITA)),
]


@pytest.mark.parametrize("sun,day,clock,expected", MIDNIGHT)
def test_start_planner_sun_start_over_midnight_belongs_to_its_day(sun, day, clock, expected):
    (start,) = starts_on([plan("sun", [sun])], day, BALIKPAPAN)
    assert start.day == day
    assert abs((start.at - expected).total_seconds()) < 60


@pytest.mark.parametrize("sun,day,clock,expected", MIDNIGHT)
def test_start_planner_next_after_finds_each_start_in_time_order(sun, day, clock, expected):
    """Walking from start to start (as a unit does, waking at each next start) meets
    every start ``between`` lists: none is jumped over by a later one of another day."""
    planner = StartPlanner([plan("sun", [sun]), plan("clock", [clock])], BALIKPAPAN)
    t0 = expected - timedelta(days=2)
    t1 = expected + timedelta(days=2)
    walked, t = [], t0
    while (nxt := planner.next_after(t)) is not None and nxt.at <= t1:
        walked.append(nxt)
        t = nxt.at
    listed = planner.between(t0, t1)
    assert walked == listed
    assert len({s.key for s in listed}) == len(listed)  # none twice
    assert all(sum(s.program == p for s in listed) >= 4 for p in ("sun", "clock"))
    assert [s.at for s in listed] == sorted(s.at for s in listed)


@pytest.mark.parametrize("sun,day,clock,expected", MIDNIGHT)
def test_starts_between_tiled_windows_find_each_start_once(sun, day, clock, expected):
    plans = [plan("sun", [sun]), plan("clock", [clock])]
    t0 = expected - timedelta(hours=3)
    whole = starts_between(plans, BALIKPAPAN, t0, t0 + timedelta(hours=6))
    tiled = []
    for i in range(6 * 60):
        a = t0 + timedelta(minutes=i)
        tiled += starts_between(plans, BALIKPAPAN, a, a + timedelta(minutes=1))
    assert tiled == whole
    assert sorted(s.program for s in whole) == ["clock", "sun"]


# Offsets of either sign, most of them large enough to cross midnight, and clock starts
# mostly near it: where a start of one day may come before a start of the day before.
offsets = st.one_of(st.integers(-360, -300), st.integers(300, 360), st.integers(-360, 360)).map(
    lambda m: f"{'-' if m < 0 else '+'}{abs(m) // 60:02d}:{abs(m) % 60:02d}")


@settings(max_examples=60, deadline=None)
@given(sun=st.sampled_from(["sunrise", "sunset"]), offset=offsets,
       clock=st.one_of(st.integers(0, 30), st.integers(1410, 1439), st.integers(0, 1439)),
       first=st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)))
def test_start_planner_next_after_agrees_with_between_for_any_offset(sun, offset, clock, first):
    """Any sun offset of either sign next to any clock start: walking from start to
    start meets exactly the starts ``between`` lists, each once, in time order."""
    planner = StartPlanner([plan("sun", [sun + offset]),
                            plan("clock", [f"{clock // 60:02d}:{clock % 60:02d}"])],
                           BALIKPAPAN)
    t0 = datetime.combine(first, datetime.min.time(), tzinfo=WITA)
    t1 = t0 + timedelta(days=3)
    listed = planner.between(t0, t1)
    assume(len({s.at for s in listed}) == len(listed))  # a walk steps over a tie
    walked, t = [], t0
    while (nxt := planner.next_after(t)) is not None and nxt.at <= t1:
        walked.append(nxt)
        t = nxt.at
    assert walked == listed
