"""Sensor rules on a virtual clock: rain skip and delay, soil moisture hysteresis, staleness."""

from datetime import datetime, timedelta

from irrigation_harness import WITA, Bench, Probe, make_config

MON = datetime(2026, 9, 7, 0, 0, tzinfo=WITA)


def daily(*times, zones=(("z1", 10),), name="daily"):
    return {"name": name, "start_times": list(times),
            "zones": [{"zone": z, "duration_min": m} for z, m in zones]}


# -- rain ---------------------------------------------------------------------------------
def test_rain_sensor_skips_runs_then_rain_delay_holds_schedules():
    config = make_config(program={"rain_delay_h": 12,
                                  "programs": [daily("06:00", "18:00")]})
    bench = Bench(config, start=MON).start()
    bench.run_until(MON.replace(hour=3))
    bench.field.sensor_water_mm = 5.0  # the disc soaks: the switch opens
    bench.run_until(MON.replace(hour=6, minute=30))
    skipped = bench.events("run_skipped")
    assert [(e["reason"], e["zones"]) for e in skipped] == [("rain", ["z1"])]
    assert bench.app.readings()["rain"] is True
    assert not bench.is_on("v1")

    bench.field.sensor_water_mm = 0.0  # dry again at 06:30: 12 h of delay from now
    bench.run_until(MON.replace(hour=18, minute=30))
    assert [e["reason"] for e in bench.events("run_skipped")] == ["rain", "rain_delay"]
    delay_end = MON.replace(hour=18, minute=30)
    assert 0 < bench.app.readings()["rain_delay_h"] <= 0.01 + (
        (MON.replace(hour=6, minute=31) + timedelta(hours=12) - delay_end).total_seconds()
        / 3600)
    bench.run_until(MON + timedelta(days=1, hours=7))
    assert [e["zone"] for e in bench.events("run_finished")] == ["z1"]
    assert bench.app.readings()["rain_delay_h"] == 0.0
    assert bench.violations == []


def test_rain_stops_a_running_automatic_run_and_debounce_ignores_bounces():
    config = make_config(program={"programs": [daily("06:00", zones=(("z1", 30),))]})
    bench = Bench(config, start=MON.replace(hour=5)).start()
    bench.run_until(MON.replace(hour=6, minute=5), step=5)
    assert bench.is_on("v1")
    pin = bench.field.pin_factory.pin(5)
    for _ in range(3):  # contact bounce: 2 s high, 1 s low, shorter than debounce_s=10
        pin.drive_high()
        bench.run(2, step=1)
        pin.drive_low()
        bench.run(1, step=1)
    bench.run(30, step=1)
    assert bench.is_on("v1") and bench.events("run_finished") == []
    pin.drive_high()  # real rain: held
    bench.run(9, step=1)
    assert bench.is_on("v1")
    bench.run(2, step=1)
    assert not bench.is_on("v1") and not bench.is_on("master")
    (fin,) = bench.events("run_finished")
    assert fin["ended"] == "rain" and 300 < fin["duration_s"] < 400


def test_manual_run_goes_ahead_during_rain_delay():
    config = make_config(program={"programs": [daily("06:00")]})
    bench = Bench(config, start=MON).start()
    assert bench.command("rain_delay", hours=10)[0][0] == "done"
    bench.run_until(MON.replace(hour=6, minute=1))
    assert [e["reason"] for e in bench.events("run_skipped")] == ["rain_delay"]
    assert [r[0] for r in bench.command("run_zone", zone="z3", duration_s=120)] == ["accepted"]
    bench.run(200, step=5)
    (fin,) = bench.events("run_finished")
    assert (fin["zone"], fin["trigger"], fin["duration_s"]) == ("z3", "manual", 120.0)


# -- soil moisture ---------------------------------------------------------------------------
def moisture_config(**rule):
    base = {"start_below_pct": 25, "skip_above_pct": 32, "run_min": 10,
            "min_interval_min": 60, "stale_after_min": 30}
    base.update(rule)
    return make_config(
        zones=[{"name": "z1", "valve": "v1", "group": "a", "flow_lpm": 40, "soil_sensor": "p1"},
               {"name": "z2", "valve": "v2", "group": "a", "flow_lpm": 40},
               {"name": "z3", "valve": "v3", "group": "b", "flow_lpm": 20},
               {"name": "z4", "valve": "v4", "group": "c", "flow_lpm": 20}],
        soil={"poll_s": 60, "sensors": [{"name": "p1", "kind": "serial", "port": "loop://"}]},
        program={"programs": [daily("06:00", zones=(("z1", 12),))],
                 "zones": [{"zone": "z1", "cycle_min": 4, "soak_min": 10, "moisture": base}]},
    )


def test_moisture_rule_starts_runs_with_hysteresis_and_min_interval():
    probe = Probe(30.0)
    bench = Bench(moisture_config(), start=MON.replace(hour=8), probes={"z1": probe}).start()
    bench.run(1800, step=30)
    assert bench.events("run_started") == []  # 30 %: inside the band, not latched

    probe.value = 24.0  # drier than start_below_pct
    bench.run(120, step=30)
    (first,) = bench.events("run_started")
    assert first["trigger"] == "sensor" and first["moisture_pct"] == 24.0
    bench.run(1800, step=30)
    (fin,) = bench.events("run_finished")
    assert fin["duration_s"] == 600.0 and fin["cycles"] == 3  # 10 min split by cycle_min=4

    probe.value = 28.0  # between the thresholds: still latched, waits for min_interval
    t_first = first["_ts"]
    bench.run(3600, step=30)
    second = bench.events("run_started")[1]
    assert second["trigger"] == "sensor"
    assert abs((second["_ts"] - t_first).total_seconds() - 3600) <= 30

    probe.value = 32.0  # wet enough: the latch releases...
    bench.run(3600, step=30)
    probe.value = 27.0  # ...and back inside the band nothing starts (hysteresis)
    n = len(bench.events("run_started"))
    bench.run(3 * 3600, step=60)
    assert len(bench.events("run_started")) == n
    probe.value = 24.5
    bench.run(120, step=30)
    assert len(bench.events("run_started")) == n + 1
    assert bench.violations == []


def test_moisture_skips_wet_schedules_and_stops_between_cycles():
    probe = Probe(33.0)
    bench = Bench(moisture_config(), start=MON.replace(hour=5), probes={"z1": probe}).start()
    bench.run_until(MON.replace(hour=6, minute=1))
    (skip,) = bench.events("run_skipped")
    assert (skip["reason"], skip["zone"], skip["moisture_pct"]) == ("soil_wet", "z1", 33.0)

    probe.value = 29.0  # next day the schedule runs; the soil is wet after the first cycle
    bench.run_until(MON + timedelta(days=1, hours=6, minutes=2))
    assert bench.is_on("v1")
    probe.value = 32.5
    bench.run(3600, step=30)
    (fin,) = bench.events("run_finished")
    assert (fin["ended"], fin["cycles"], fin["duration_s"]) == ("soil_wet", 1, 240.0)


def test_stale_probe_falls_back_to_the_schedule_and_raises_an_alarm():
    probe = Probe(33.0)  # would skip the schedule while it is believed
    bench = Bench(moisture_config(), start=MON.replace(hour=4), probes={"z1": probe}).start()
    bench.run(600, step=30)
    probe.failing = True
    bench.run_until(MON.replace(hour=5, minute=59))
    (alarm,) = [a for a in bench.events("alarm") if a["code"] == "sensor_stale"]
    assert alarm["zone"] == "z1" and alarm["fallback"] == "schedule"
    assert 30 * 60 <= (alarm["_ts"] - MON.replace(hour=4, minute=10)).total_seconds() <= 32 * 60
    assert bench.app.readings()["moisture_stale.z1"] is True
    bench.run_until(MON.replace(hour=7))
    (fin,) = bench.events("run_finished")
    assert fin["ended"] == "completed" and fin["duration_s"] == 720.0  # schedule ran
    probe.failing = False
    bench.run(120, step=30)
    assert [a["code"] for a in bench.events("alarm")] == ["sensor_stale"]
    (cleared,) = bench.events("alarm_cleared")
    assert (cleared["code"], cleared["zone"]) == ("sensor_stale", "z1")
    # One failed read per poll (poll_s = 60) while the probe was dead: counted, not used.
    assert 165 <= bench.app.readings()["sensor_errors.z1"] <= 172  # 04:10 to 07:00


def test_stale_probe_with_on_stale_skip_skips_and_starts_nothing():
    probe = Probe(20.0)
    bench = Bench(moisture_config(on_stale="skip"), start=MON.replace(hour=4),
                  probes={"z1": probe})
    probe.failing = True  # dead from the start: stale after stale_after_min
    bench.start()
    bench.run_until(MON.replace(hour=6, minute=1))
    assert [a["code"] for a in bench.events("alarm")] == ["sensor_stale"]
    (skip,) = bench.events("run_skipped")
    assert skip["reason"] == "sensor_stale"
    assert bench.events("run_started") == []  # no sensor run on a dead probe either
