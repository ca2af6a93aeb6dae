"""The pure rules: start times, day rules, seasons, cycle-and-soak, hysteresis, queueing."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from astral import Observer
from astral.sun import sunrise, sunset
from hypothesis import given
from hypothesis import strategies as st

from edge.irrigation.config import MoistureRule, ProgramSpec
from edge.irrigation.rules import (
    Candidate,
    Debouncer,
    FlowRate,
    Site,
    StartPlanner,
    adjusted_s,
    clamp,
    in_season,
    moisture_gate,
    moisture_need,
    parse_start,
    pick_startable,
    planned_starts,
    runs_on,
    split_cycles,
    start_datetime,
)

WITA = ZoneInfo("Asia/Makassar")
BALIKPAPAN = Site(WITA, -1.2379, 116.8529)


def program(**kw) -> ProgramSpec:
    kw.setdefault("name", "p")
    kw.setdefault("zones", [{"zone": "z1", "duration_min": 10}])
    kw.setdefault("start_times", ["06:00"])
    return ProgramSpec.model_validate(kw)


# -- start times ------------------------------------------------------------------------
@pytest.mark.parametrize("text,anchor,offset", [
    ("05:30", "clock", 5 * 3600 + 30 * 60),
    ("00:05", "clock", 300),
    ("sunrise", "sunrise", 0),
    ("sunrise-00:45", "sunrise", -45 * 60),
    ("sunset+01:30", "sunset", 90 * 60),
])
def test_parse_start_accepts_clock_and_sun_times(text, anchor, offset):
    s = parse_start(text)
    assert (s.anchor, s.offset_s) == (anchor, offset)


@pytest.mark.parametrize("text", ["24:00", "06:60", "noon", "sunrise+7:00", "sunset-", "6",
                                  "0:05", " 06:00", "sunrise+07:00"])
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
def test_runs_on_weekdays():
    p = program(weekdays=["mon", "thu"])
    week = [date(2026, 9, 7) + timedelta(days=i) for i in range(7)]  # Mon..Sun
    assert [runs_on(p, d) for d in week] == [True, False, False, True, False, False, False]


def test_runs_on_every_n_days_from_its_start_day():
    p = program(interval_days=3, interval_start=date(2026, 9, 1))
    ran = [d for d in range(1, 16) if runs_on(p, date(2026, 9, d))]
    assert ran == [1, 4, 7, 10, 13]


def test_runs_on_odd_and_even_days():
    odd, even = program(odd_even="odd"), program(odd_even="even")
    assert [runs_on(odd, date(2026, 8, d)) for d in (30, 31)] == [False, True]
    assert [runs_on(even, date(2026, 9, d)) for d in (1, 2)] == [False, True]


def test_in_season_wraps_over_the_new_year():
    assert in_season(date(2026, 12, 31), "11-01", "03-31")
    assert in_season(date(2026, 1, 15), "11-01", "03-31")
    assert not in_season(date(2026, 7, 1), "11-01", "03-31")
    assert in_season(date(2026, 7, 1), "07-01", "10-31")
    assert not in_season(date(2026, 11, 1), "07-01", "10-31")
    assert in_season(date(2026, 5, 5), None, None)


def test_disabled_or_out_of_season_program_never_runs():
    assert not runs_on(program(enabled=False), date(2026, 9, 7))
    assert not runs_on(program(active_from="11-01", active_to="03-31"), date(2026, 9, 7))


def test_planned_starts_lists_every_start_in_time_order():
    a = program(name="a", start_times=["18:00", "06:00"])
    b = program(name="b", start_times=["sunrise"])
    starts = planned_starts([a, b], date(2026, 9, 7), BALIKPAPAN)
    assert [(s.program, s.at.hour) for s in starts] == [("a", 6), ("b", 6), ("a", 18)]


def test_start_planner_between_is_half_open_and_next_after():
    planner = StartPlanner([program(start_times=["06:00", "18:00"])], BALIKPAPAN)
    six = datetime(2026, 9, 7, 6, 0, tzinfo=WITA)
    assert planner.between(six - timedelta(seconds=1), six)[0].at == six
    assert planner.between(six, six + timedelta(hours=1)) == []
    assert planner.next_after(six).at == six.replace(hour=18)
    two_days = planner.between(six - timedelta(seconds=1), six + timedelta(days=2))
    assert len(two_days) == 5


# -- durations --------------------------------------------------------------------------------
def test_adjusted_s_applies_every_percentage():
    assert adjusted_s(10, 100) == 600
    assert adjusted_s(10, 150, 50) == 450
    assert adjusted_s(10, 0) == 0


def test_split_cycles_gives_equal_cycles_no_longer_than_the_cycle():
    assert split_cycles(1500, 600) == [500.0, 500.0, 500.0]
    assert split_cycles(600, 600) == [600.0]
    assert split_cycles(600, None) == [600.0]
    assert split_cycles(0, 600) == []


@given(total=st.floats(10, 20_000), cycle=st.floats(30, 3_600))
def test_split_cycles_properties(total, cycle):
    cycles = split_cycles(total, cycle)
    assert abs(sum(cycles) - total) < 1e-6
    assert max(cycles) <= cycle + 1e-6
    assert len(cycles) == 1 or len(cycles) - 1 < total / cycle  # fewest cycles possible
    assert max(cycles) - min(cycles) < 1e-6


def test_clamp_reports_only_when_cut():
    assert clamp(300, 600, "duration_s", "max_on_s") == (300, None)
    allowed, c = clamp(900, 600, "duration_s", "max_on_s")
    assert allowed == 600
    assert c.as_dict() == {"field": "duration_s", "asked": 900.0, "allowed": 600.0,
                           "limit": "max_on_s"}


# -- soil moisture -------------------------------------------------------------------------------
RULE = MoistureRule(start_below_pct=25, skip_above_pct=32)


def test_moisture_need_is_a_hysteresis_latch():
    readings = [30, 26, 24.9, 27, 31.9, 32, 28, 25, 24]
    latched, states = False, []
    for m in readings:
        latched = moisture_need(latched, m, RULE)
        states.append(latched)
    assert states == [False, False, True, True, True, False, False, False, True]


def test_moisture_gate_skips_wet_soil_and_handles_stale_by_rule():
    assert moisture_gate(31.9, False, RULE) is None
    assert moisture_gate(32.0, False, RULE) == "soil_wet"
    assert moisture_gate(40.0, True, RULE) is None  # stale: falls back to the schedule
    skip = MoistureRule(start_below_pct=25, skip_above_pct=32, on_stale="skip")
    assert moisture_gate(20.0, True, skip) == "sensor_stale"
    assert moisture_gate(None, False, None) is None


# -- queue planning ---------------------------------------------------------------------------------
def test_pick_startable_respects_groups_and_cap_without_head_of_line_blocking():
    queue = [Candidate("r1", "z1", "a"), Candidate("r2", "z2", "a"),
             Candidate("r3", "z3", "b"), Candidate("r4", "z4", "c")]
    assert pick_startable(queue, [], 2) == ["r1", "r3"]
    assert pick_startable(queue, [("z1", "a")], 2) == ["r3"]
    assert pick_startable(queue, [("z3", "b")], 3) == ["r1", "r4"]
    assert pick_startable(queue, [("z3", "b"), ("z4", "c")], 2) == []
    # The same zone never twice, even in different runs.
    assert pick_startable([Candidate("r5", "z3", "x")], [("z3", "b")], 4) == []


@given(st.lists(st.tuples(st.sampled_from(["z1", "z2", "z3", "z4", "z5"]),
                          st.sampled_from(["a", "b", "c"])), max_size=12),
       st.integers(1, 4))
def test_pick_startable_never_exceeds_the_cap_or_doubles_a_group(items, cap):
    zone_group = {}
    cands = []
    for i, (zone, group) in enumerate(items):
        group = zone_group.setdefault(zone, group)  # a zone belongs to one group
        cands.append(Candidate(f"r{i}", zone, group))
    picked = pick_startable(cands, [], cap)
    chosen = [c for c in cands if c.key in picked]
    assert len(chosen) <= cap
    assert len({c.group for c in chosen}) == len(chosen)
    assert len({c.zone for c in chosen}) == len(chosen)


# -- inputs over time ----------------------------------------------------------------------------------
def test_debouncer_ignores_bounces_shorter_than_stable_s():
    d = Debouncer(10)
    assert d.update(True, 0) is False
    assert d.update(False, 3) is False  # a bounce
    assert d.update(True, 4) is False
    assert d.pending_until() == 14
    assert d.update(True, 13.9) is False
    assert d.update(True, 14) is True
    assert d.update(False, 15) is True
    assert d.update(False, 25) is False


def test_flow_rate_from_pulse_samples():
    f = FlowRate(pulses_per_l=2.0, window_s=15)
    assert f.lpm == 0.0
    for t in range(0, 61, 5):
        f.add(t, t * 2)  # 2 pulses/s = 1 L/s = 60 L/min
    assert f.lpm == pytest.approx(60.0)
    assert 15 <= f.covered_s() <= 20
    f.add(65, 120)  # no pulses for 5 s
    assert f.lpm < 60.0
