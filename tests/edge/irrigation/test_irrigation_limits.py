"""Hard limits on cycle-and-soak runs and with a pump: the daily water limit, the clamp
report, the soak."""

from datetime import datetime

from irrigation_harness import WITA, Bench, make_config

MON = datetime(2026, 9, 7, 0, 0, tzinfo=WITA)
PUMP = {"output": "master", "kind": "pump", "pre_s": 3, "post_s": 5}


def outputs(**max_on):
    pins = {"v1": 17, "v2": 27, "v3": 22, "v4": 23, "master": 24}
    return [{"name": n, "pin": p, "max_on_s": max_on.get(n, 14_400 if n == "master" else 3600)}
            for n, p in pins.items()]


def lengths(periods) -> list[float]:
    return [round((off - on).total_seconds()) for on, off in periods]


def gaps(periods) -> list[float]:
    return [(b[0] - a[1]).total_seconds() for a, b in zip(periods, periods[1:], strict=False)]


def test_daily_limit_on_cycle_and_soak_gives_equal_cycles_announced_at_start():
    """30 min in cycles of 10 with 25 min left today: three equal cycles of 500 s, and
    run_started says 1500 s (not 600/600/300 announced as 1800)."""
    config = make_config(
        limits={"max_daily_water_min": 25},
        program={"programs": [{"name": "p", "start_times": ["06:00"],
                               "zones": [{"zone": "z1", "duration_min": 30}]}],
                 "zones": [{"zone": "z1", "cycle_min": 10, "soak_min": 5}]})
    bench = Bench(config, start=MON.replace(hour=5)).start()
    bench.run(3 * 3600, step=30)
    assert lengths(bench.on_periods("v1")) == [500, 500, 500]
    (started,) = bench.events("run_started")
    assert (started["planned_s"], started["cycles"]) == (1500.0, 3)
    (clamp,) = bench.events("limit_clamped")
    assert (clamp["asked"], clamp["allowed"], clamp["limit"]) == (1800.0, 1500.0,
                                                                 "max_daily_water_min")
    (fin,) = bench.events("run_finished")
    assert (fin["duration_s"], fin["planned_s"], fin["ended"]) == (1500.0, 1500.0, "completed")


def test_daily_limit_is_held_for_a_soaking_run_against_other_zones():
    """While z1 soaks, z3 may not use the water z1's next cycles were announced with."""
    config = make_config(
        limits={"max_daily_water_min": 30},
        program={"programs": [{"name": "p", "start_times": ["06:00"],
                               "zones": [{"zone": "z1", "duration_min": 20},
                                         {"zone": "z3", "duration_min": 20}]}],
                 "zones": [{"zone": "z1", "cycle_min": 5, "soak_min": 10}]})
    bench = Bench(config, start=MON.replace(hour=5)).start()
    bench.run(4 * 3600, step=30)
    started = {e["zone"]: e["planned_s"] for e in bench.events("run_started")}
    finished = {e["zone"]: e["duration_s"] for e in bench.events("run_finished")}
    assert finished == started
    assert sum(finished.values()) <= 30 * 60
    assert len(set(lengths(bench.on_periods("v1")))) == 1  # equal cycles


def test_clamp_reports_the_configured_max_on_s_with_a_pump():
    config = make_config(outputs=outputs(v1=2700), master=PUMP)
    bench = Bench(config, start=MON.replace(hour=9)).start()
    status, _, clamped = bench.command("run_zone", cmd_id="c1", zone="z1", duration_s=3600)[0]
    assert status == "accepted"
    # The run stops in time for the pump's delays (3 s + 5 s), the report names the limit
    # as configured.
    assert clamped == [{"field": "duration_s", "asked": 3600.0, "allowed": 2692.0,
                        "limit": "max_on_s"}]
    (ev,) = bench.events("limit_clamped")
    assert (ev["output"], ev["max_on_s"]) == ("v1", 2700.0)


def test_pump_master_soak_is_the_valves_closed_time():
    config = make_config(
        master=PUMP,
        program={"programs": [{"name": "p", "start_times": ["06:00"],
                               "zones": [{"zone": "z1", "duration_min": 15}]}],
                 "zones": [{"zone": "z1", "cycle_min": 5, "soak_min": 2}]})
    bench = Bench(config, start=MON.replace(hour=5)).start()
    bench.run(2 * 3600, step=10)
    periods = bench.on_periods("v1")
    assert len(periods) == 3
    assert all(g >= 120 - 1e-6 for g in gaps(periods)), gaps(periods)
    assert all(g <= 120 + 1 for g in gaps(periods)), gaps(periods)
    (fin,) = bench.events("run_finished")
    assert (fin["duration_s"], fin["ended"]) == (900.0, "completed")
