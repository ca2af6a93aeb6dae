"""The fish-feeder field simulator behaves like a pond and a feeder would."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.clock import VirtualClock
from edge.config import load_config
from edge.hardware import Output, PulseCounter, make_pin_factory
from edge.sensors.hopper import LoadCell
from edge.sim.fish_feeder import (
    FeederSim,
    FishFeederSim,
    PondSim,
    PtyBridge,
    SimLoadCellPort,
    do_saturation_mg_l,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "fish_feeder.example.toml"
MIDNIGHT_WITA = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)


def day_profile(**kwargs) -> dict[float, tuple[float, float]]:
    """(DO, temperature) every half hour of one day, after a spin-up."""
    pond = PondSim("p", **kwargs)
    pond.spin_up(MIDNIGHT_WITA)
    out = {}
    for i in range(48 * 30):  # 1-minute steps
        now = MIDNIGHT_WITA + timedelta(minutes=i)
        pond.step(now, 60)
        if i % 30 == 0:
            out[i / 60] = (pond.do_mg_l, pond.temp_c)
    return out


def test_oxygen_sags_at_night_lowest_near_dawn_recovers_with_sun():
    p = day_profile()
    do = {h: v[0] for h, v in p.items()}
    low_h = min(do, key=do.get)
    high_h = max(do, key=do.get)
    assert 4.5 <= low_h <= 7.5
    assert 13 <= high_h <= 17
    assert do[high_h] - do[low_h] > 4
    assert do[6.0] < 3.5 < do[9.0]  # a dawn low that the morning sun lifts
    assert all(0 < v < 15 for v in do.values())


def test_cloudy_day_keeps_oxygen_low():
    sunny = day_profile()
    cloudy = day_profile(photosynthesis=0.0)
    assert cloudy[12.0][0] < 3.0 < sunny[12.0][0]


def test_temperature_follows_the_day():
    p = day_profile(temp_mean_c=29, temp_amp_c=1.5)
    temp = {h: v[1] for h, v in p.items()}
    assert 14 <= max(temp, key=temp.get) <= 16
    assert 2 <= min(temp, key=temp.get) <= 4
    assert max(temp.values()) == pytest.approx(30.5, abs=0.05)


def test_feeding_lowers_oxygen_slightly():
    a, b = PondSim("a"), PondSim("b")
    for pond in (a, b):
        pond.spin_up(MIDNIGHT_WITA + timedelta(hours=8))
    b.add_feed(2000)
    for i in range(120):
        now = MIDNIGHT_WITA + timedelta(hours=8, minutes=i)
        a.step(now, 60)
        b.step(now, 60)
    assert 0.1 < a.do_mg_l - b.do_mg_l < 1.0


def test_salt_lowers_oxygen_saturation():
    assert do_saturation_mg_l(28, 15) < do_saturation_mg_l(28, 0) == pytest.approx(7.8, abs=0.1)


@pytest.fixture
def rig():
    clock = VirtualClock(start=MIDNIGHT_WITA)
    factory = make_pin_factory("mock")
    motor = Output("auger", 17, pin_factory=factory, clock=clock, max_on_s=120)
    counter = PulseCounter(5, pin_factory=factory)
    feeder = FeederSim("f", hopper_g=1000, rng=random.Random(1))
    feeder.attach(motor, factory.pin(5))
    yield clock, motor, counter, feeder
    motor.close()
    counter.close()


def run(clock, feeder, seconds, step=0.25):
    out = 0.0
    for _ in range(int(seconds / step)):
        clock.advance(step)
        out += feeder.step(step)
    return out


def test_feeder_pulses_only_while_motor_on_and_hopper_empties_by_grams(rig):
    clock, motor, counter, feeder = rig
    assert run(clock, feeder, 5) == 0 and counter.count == 0
    motor.on(for_s=10)
    grams = run(clock, feeder, 15)
    assert not motor.is_active
    assert counter.count == pytest.approx(10 * 3 * 2, rel=0.05)
    assert grams == pytest.approx(10 * 18, rel=0.05)
    assert feeder.hopper_g == pytest.approx(1000 - grams)
    assert feeder.dispensed_g == pytest.approx(grams)


def test_jammed_feeder_gives_no_pulses_and_no_feed(rig):
    clock, motor, counter, feeder = rig
    feeder.jammed = True
    motor.on(for_s=10)
    assert run(clock, feeder, 12) == 0
    assert counter.count == 0 and feeder.hopper_g == 1000


def test_empty_hopper_auger_turns_but_nothing_falls(rig):
    clock, motor, counter, feeder = rig
    feeder.hopper_g = 50
    motor.on(for_s=20)
    grams = run(clock, feeder, 22)
    assert grams == pytest.approx(50)
    assert feeder.hopper_g == 0
    assert counter.count > 100  # still turning


def test_load_cell_board_over_a_real_pty():
    bridge = PtyBridge(SimLoadCellPort("pty", lambda: 12_345.6, noise_g=0.0))
    try:
        cell = LoadCell(bridge.path, timeout_s=1.0)
        assert cell.read() == 12_345.6
        cell.close()
    finally:
        bridge.close()


def test_whole_site_sim_provides_every_configured_port_and_runs_the_app():
    from edge.fish_feeder.app import FishFeederApp
    from edge.publisher import MemoryPublisher

    config = load_config(EXAMPLE)
    clock = VirtualClock(start=MIDNIGHT_WITA + timedelta(hours=10))
    sim = FishFeederSim(config, clock, seed=2)
    urls = {s.port_url for s in config.sensors} | {"/dev/ttyAMA0"}
    assert set(sim.ports) == urls
    assert set(sim.distance_sources) == {"pakan-nila"}
    pub = MemoryPublisher(clock)
    app = FishFeederApp(config, pin_factory=make_pin_factory("mock"), clock=clock,
                        publisher=pub, **sim.app_kwargs())
    sim.attach(app)
    try:
        app.start()
        sim.run(3600 * 1.5)
        readings = app.readings()
        assert 4 < readings["do_mg_l.kolam-nila"] < 15
        assert readings["hopper_pct.pakan-vaname"] == pytest.approx(
            sim.feeders["pakan-vaname"].hopper_g / 40_000 * 100, abs=0.5)
        fed = pub.events("feed_dispensed")
        assert [e.data["slot"] for e in fed] == ["11:00"]  # started after the 10:00 slot
        assert sim.ponds["kolam-nila"].fed_g == pytest.approx(fed[0].data["measured_g"],
                                                              rel=0.05)
    finally:
        app.close()


def test_realtime_stepping_on_the_system_clock():
    from edge.clock import SystemClock

    clock = SystemClock()
    factory = make_pin_factory("mock")
    config = load_config(EXAMPLE)
    sim = FishFeederSim(config, clock, seed=1)
    motor = Output("auger", 17, pin_factory=factory, clock=clock, max_on_s=5)
    counter = PulseCounter(5, pin_factory=factory)
    sim.feeders["pakan-nila"].attach(motor, factory.pin(5))
    stop = sim.start_realtime(step_s=0.02)
    try:
        before = sim.feeders["pakan-nila"].hopper_g
        motor.on(for_s=0.3)
        time.sleep(0.5)
        assert not motor.is_active
        assert counter.count == pytest.approx(0.3 * 3 * 2, abs=2)
        assert before - sim.feeders["pakan-nila"].hopper_g == pytest.approx(0.3 * 18, abs=2)
    finally:
        stop.set()
        motor.close()
        counter.close()


def test_simulate_a_day_for_the_cli_table(tmp_path):
    from edge.errors import ConfigError
    from edge.sim.fish_feeder import simulate

    config = load_config(EXAMPLE)
    config.water.poll_s = 300  # a faster run; the plan and limits are the example's
    result = simulate(config, days=1, seed=3)
    assert len(result.days) == 1
    day = result.days[0]
    assert day["ponds"]["kolam-nila"]["feedings"] == 3
    assert day["ponds"]["kolam-nila"]["feed_g"] == pytest.approx(8400, rel=0.03)
    assert day["ponds"]["kolam-nila"]["do_min"] < day["ponds"]["kolam-nila"]["do_max"]
    table = result.format_table()
    assert "kolam-nila" in table and "tambak-vaname" in table and "kg of feed" in table
    bad = tmp_path / "irr.toml"
    bad.write_text('kind = "irrigation"\n')
    with pytest.raises(ConfigError):
        simulate(bad, days=1)
