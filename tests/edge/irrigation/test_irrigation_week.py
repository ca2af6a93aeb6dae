"""A simulated week of schedules on a virtual clock: right times, caps, cycle-and-soak."""

from collections import defaultdict
from datetime import date, datetime, timedelta

from astral import Observer
from astral.sun import sunrise, sunset
from irrigation_harness import WITA, Bench, days, make_config

PROGRAMS = [
    {"name": "weekday-am", "weekdays": ["mon", "wed", "fri"], "start_times": ["06:00", "17:30"],
     "zones": [{"zone": "z1", "duration_min": 10}, {"zone": "z2", "duration_min": 10},
               {"zone": "z3", "duration_min": 5}]},
    {"name": "dawn", "start_times": ["sunrise-00:30"],
     "zones": [{"zone": "z4", "duration_min": 10}, {"zone": "z3", "duration_min": 6}]},
    {"name": "every2", "interval_days": 2, "interval_start": "2026-09-07",
     "start_times": ["sunset+01:00"],
     "zones": [{"zone": "z1", "duration_min": 5}, {"zone": "z3", "duration_min": 5}]},
    {"name": "odd-noon", "odd_even": "odd", "start_times": ["12:00"], "watering_pct": 50,
     "zones": [{"zone": "z2", "duration_min": 4}]},
    {"name": "wet-season", "active_from": "11-01", "active_to": "03-31",
     "start_times": ["07:00"], "zones": [{"zone": "z4", "duration_min": 10}]},
]
ZONE_RULES = [{"zone": "z1", "cycle_min": 4, "soak_min": 10}]
OBS = Observer(latitude=-1.2379, longitude=116.8529)


def expected_starts(first: date, n_days: int):
    """Every (program, local start) of the week, computed here straight from astral."""
    out = []
    for i in range(n_days):
        d = first + timedelta(days=i)
        midnight = datetime(d.year, d.month, d.day, tzinfo=WITA)
        if d.weekday() in (0, 2, 4):
            out += [("weekday-am", midnight.replace(hour=6)),
                    ("weekday-am", midnight.replace(hour=17, minute=30))]
        rise = sunrise(OBS, date=d, tzinfo=WITA) - timedelta(minutes=30)
        out.append(("dawn", rise.replace(microsecond=0)))
        if (d - date(2026, 9, 7)).days % 2 == 0:
            s = sunset(OBS, date=d, tzinfo=WITA) + timedelta(hours=1)
            out.append(("every2", s.replace(microsecond=0)))
        if d.day % 2 == 1:
            out.append(("odd-noon", midnight.replace(hour=12)))
    return out


def test_week_of_schedules_runs_every_start_on_time_within_the_caps():
    config = make_config(program={"programs": PROGRAMS, "zones": ZONE_RULES})
    bench = Bench(config, start=datetime(2026, 9, 7, 0, 0, tzinfo=WITA)).start()
    bench.run(days(7), step=300)
    bench.close()

    # Caps held at every output change and at every sampled step.
    assert bench.violations == []
    assert bench.samples > 2000

    started = bench.events("run_started")
    by_start = defaultdict(list)
    for e in started:
        by_start[(e["program"], e["planned_at"])].append(e)
    expected = expected_starts(date(2026, 9, 7), 7)
    zones_of = {p["name"]: [z["zone"] for z in p["zones"]] for p in PROGRAMS}
    assert len(by_start) == len(expected)  # nothing extra, nothing missing
    for name, at in expected:
        runs = by_start[(name, at.isoformat())]
        assert sorted(r["zone"] for r in runs) == sorted(zones_of[name])
        first = min(r["_ts"] for r in runs)
        # The first zone of a start begins at the planned local time (to the second)...
        assert abs((first - at).total_seconds()) < 1, (name, at, first)
        # ...and every zone of it begins no earlier (the others queue behind it).
        assert all(r["_ts"] >= at for r in runs)
    assert not any(e["program"] == "wet-season" for e in started)
    assert bench.events("run_skipped") == []

    finished = bench.events("run_finished")
    assert len(finished) == len(started)
    assert all(e["ended"] == "completed" for e in finished)
    # watering_pct 50 halves odd-noon's 4 minutes.
    assert {e["duration_s"] for e in finished if e["program"] == "odd-noon"} == {120.0}

    # Water reaches the first zone of each start at the planned time, plus the master's
    # 2 s pre-delay when the master was shut.
    valve_on = sorted(ts for ts, name, on in bench.transitions if on and name != "master")
    for name, at in expected:
        first_open = next(ts for ts in valve_on if ts >= at)
        assert 0 <= (first_open - at).total_seconds() <= 2.0 + 1e-6, (name, at, first_open)
        assert bench.is_on("master") or any(
            on <= first_open <= off for on, off in bench.on_periods("master"))


def test_cycle_and_soak_keeps_the_minimum_soak_and_total_time():
    config = make_config(program={"programs": PROGRAMS[:1], "zones": ZONE_RULES})
    bench = Bench(config, start=datetime(2026, 9, 7, 0, 0, tzinfo=WITA)).start()
    bench.run(days(1), step=60)
    periods = bench.on_periods("v1")
    # Two runs of z1 (06:00 and 17:30), each 10 min in 3 cycles of 200 s.
    assert len(periods) == 6
    for on, off in periods:
        assert abs((off - on).total_seconds() - 200) < 1
    for (_, off1), (on2, _) in zip(periods, periods[1:], strict=False):
        assert (on2 - off1).total_seconds() >= 600 - 1e-6
    # While z1 soaks, z2 (same group) and z3 (other group) water.
    first_soak = (periods[0][1], periods[1][0])
    z2 = bench.on_periods("v2")
    assert any(first_soak[0] <= on < first_soak[1] for on, _ in z2)
    finished = {e["zone"]: e for e in bench.events("run_finished") if "06:00" in e["planned_at"]}
    assert finished["z1"]["cycles"] == 3 and finished["z1"]["duration_s"] == 600.0
    assert bench.violations == []


def test_concurrency_cap_of_one_runs_everything_in_sequence():
    config = make_config(limits={"max_concurrent_zones": 1},
                         program={"programs": PROGRAMS[:1], "zones": []})
    bench = Bench(config, start=datetime(2026, 9, 7, 5, 0, tzinfo=WITA)).start()
    bench.run(3600 * 2, step=20)
    finished = bench.events("run_finished")
    assert [e["zone"] for e in finished] == ["z1", "z2", "z3"]
    assert all(e["ended"] == "completed" for e in finished)
    starts = [e["_ts"] for e in bench.events("run_started")]
    six = datetime(2026, 9, 7, 6, 0, tzinfo=WITA)
    # z1's water starts after the master's 2 s pre-delay; z2 starts when z1 ends, z3 after
    # z2 (the master stays open between them): queued, not dropped.
    assert [round((s - six).total_seconds()) for s in starts] == [0, 602, 1202]
    master = bench.on_periods("master")
    assert len(master) == 1
    assert round((master[0][1] - six).total_seconds()) == 2 + 600 + 600 + 300 + 5
    assert bench.violations == []
