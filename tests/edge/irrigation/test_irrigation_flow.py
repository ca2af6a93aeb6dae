"""Flow metering: litres per run, the no-flow alarm and the leak alarm, on the simulator."""

from datetime import datetime, timedelta

import pytest
from irrigation_harness import WITA, Bench, make_config

MON = datetime(2026, 9, 7, 0, 0, tzinfo=WITA)
DAILY_Z1_Z3 = {"programs": [{"name": "daily", "start_times": ["06:00"],
                             "zones": [{"zone": "z1", "duration_min": 5},
                                       {"zone": "z3", "duration_min": 5}]}]}


def test_litres_per_run_come_from_the_meter_pulses():
    bench = Bench(make_config(), start=MON.replace(hour=9)).start()
    bench.command("run_zone", zone="z1", duration_s=300)  # 40 L/min nominal
    bench.command("run_zone", zone="z3", duration_s=600)  # 20 L/min nominal
    bench.run(120, step=5)
    assert bench.app.readings()["flow_lpm"] == pytest.approx(60.0, rel=0.05)
    bench.run(900, step=5)
    fins = {e["zone"]: e for e in bench.events("run_finished")}
    assert fins["z1"]["litres"] == pytest.approx(200.0, rel=0.02)
    assert fins["z3"]["litres"] == pytest.approx(200.0, rel=0.02)
    readings = bench.app.readings()
    assert readings["water_l_today"] == pytest.approx(400.0, rel=0.02)
    assert readings["water_min_today.z3"] == 10.0
    assert readings["flow_lpm"] == 0.0
    # The park got what the unit says it gave.
    delivered = sum(bench.field.days[MON.date()].delivered_l.values())
    assert readings["meter_l_today"] == pytest.approx(delivered, abs=1.0)


def test_no_flow_stops_the_zone_raises_an_alarm_and_faults_it():
    bench = Bench(make_config(program=DAILY_Z1_Z3), start=MON.replace(hour=9)).start()
    bench.field.stuck_closed.add("z1")  # the valve does not open (or the supply is dry)
    replies = bench.command("run_zone", zone="z1", duration_s=600)
    bench.run(59, step=1)
    assert bench.is_on("v1") and bench.events("alarm") == []
    bench.run(20, step=1)
    (alarm,) = bench.events("alarm")
    assert alarm["code"] == "no_flow" and alarm["zones"] == ["z1"]
    assert alarm["flow_lpm"] < 2.0
    # Safe state: every valve and the master off, at once.
    assert alarm["outputs"] == {"v1": False, "v2": False, "v3": False, "v4": False,
                                "master": False}
    assert bench.open_zones() == [] and not bench.is_on("master")
    (fin,) = bench.events("run_finished")
    assert fin["ended"] == "no_flow" and fin["litres"] == 0.0
    assert replies[-1][0] == "failed"
    # No blind retry: the next scheduled run of z1 is skipped, z3 still waters.
    bench.run_until(MON + timedelta(days=1, hours=6, minutes=20))
    (skip,) = bench.events("run_skipped")
    assert (skip["zone"], skip["reason"]) == ("z1", "zone_fault")
    assert [e["zone"] for e in bench.events("run_finished")][1:] == ["z3"]
    # An operator's explicit run clears the fault once the valve is fixed.
    bench.field.stuck_closed.clear()
    assert bench.command("run_zone", zone="z1", duration_s=120)[0][0] == "accepted"
    bench.run(300, step=5)
    assert bench.events("run_finished")[-1]["ended"] == "completed"
    assert len(bench.events("alarm")) == 1


def test_no_flow_with_two_zones_open_and_one_flowing_is_not_raised():
    """One meter for the site: with another zone flowing, a dead valve is not visible."""
    bench = Bench(make_config(), start=MON.replace(hour=9)).start()
    bench.field.stuck_closed.add("z1")
    bench.command("run_zone", zone="z1", duration_s=300)
    bench.command("run_zone", zone="z3", duration_s=300)  # 20 L/min through the meter
    bench.run(400, step=5)
    assert [e["ended"] for e in bench.events("run_finished")] == ["completed", "completed"]


def test_leak_with_every_valve_closed_raises_an_alarm_and_holds_runs_until_it_stops():
    bench = Bench(make_config(program=DAILY_Z1_Z3), start=MON.replace(hour=5)).start()
    bench.run(120, step=10)
    bench.field.set_leak(3.0)  # a broken pipe or a valve that does not shut
    bench.run(55, step=5)
    assert bench.events("alarm") == []  # must last leak_s (60 s) first
    bench.run(30, step=5)
    (alarm,) = bench.events("alarm")
    # 3 L/min is 6 pulses a minute at 2 pulses/L: measured coarsely over a 15 s window.
    assert alarm["code"] == "leak" and 2.0 <= alarm["flow_lpm"] <= 4.5
    assert not any(alarm["outputs"].values())
    assert bench.app.readings()["leak"] is True
    bench.run_until(MON.replace(hour=6, minute=30))
    (skip,) = bench.events("run_skipped")
    assert skip["reason"] == "leak" and skip["zones"] == ["z1", "z3"]
    assert bench.transitions == []  # nothing opened: every output stayed off throughout
    bench.field.set_leak(0.0)
    bench.run(200, step=5)
    assert [a["code"] for a in bench.events("alarm")] == ["leak"]
    assert [a["code"] for a in bench.events("alarm_cleared")] == ["leak"]
    bench.run_until(MON + timedelta(days=1, hours=6, minutes=20))
    assert [e["zone"] for e in bench.events("run_finished")] == ["z1", "z3"]
