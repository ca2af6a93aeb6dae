"""The park simulator behaves like a park: sun-driven drying, rain, valves, flow pulses."""

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.clock import VirtualClock
from edge.config import load_config
from edge.hardware import OutputBank, PulseCounter
from edge.sensors.base import SensorError
from edge.sim.irrigation import IrrigationField, RainEvent, SoilModel, Weather, simulate

WITA = ZoneInfo("Asia/Makassar")
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "irrigation.example.toml"
CONFIG = load_config(EXAMPLE)
START = datetime(2026, 9, 7, 0, 0, tzinfo=WITA)


class Unit:
    """Just enough of an app for the field to attach to: outputs and the flow counter."""

    def __init__(self, field):
        self.outputs = OutputBank(pin_factory=field.pin_factory, clock=field.clock)
        for o in CONFIG.outputs:
            self.outputs.add(o.name, o.pin, max_on_s=o.max_on_s, active_high=o.active_high)
        spec = CONFIG.input(CONFIG.flow.input)
        self.counter = PulseCounter(spec.pin, pin_factory=field.pin_factory,
                                    pull_up=spec.pull_up)
        self.rain = field.pin_factory.pin(CONFIG.input(CONFIG.rain.input).pin)
        self.rain.function = "input"

    def pulse_counter(self, name):
        return self.counter


def park(weather=None, moisture=30.0, start=START):
    clock = VirtualClock(start)
    soil = {z.name: SoilModel(moisture_pct=moisture, area_m2=z.area_m2) for z in CONFIG.zones}
    field = IrrigationField(CONFIG, clock, weather=weather or Weather(et0_mm_day=4.0),
                            soil=soil, noise_pct=0.0)
    unit = Unit(field)
    field.connect(unit)
    return clock, field, unit


def advance(clock, field, seconds, step=60.0):
    end = clock.monotonic() + seconds
    while clock.monotonic() < end:
        clock.advance(min(step, end - clock.monotonic()))
        field.sync()


def test_soil_dries_with_the_sun_more_at_midday_than_at_night():
    clock, field, _ = park()
    soil = field.soil["rumput-utara"]
    advance(clock, field, 11 * 3600)  # to 11:00
    m = soil.moisture_pct
    advance(clock, field, 2 * 3600)  # 11:00-13:00
    midday = m - soil.moisture_pct
    advance(clock, field, 10 * 3600)  # to 23:00
    m = soil.moisture_pct
    advance(clock, field, 2 * 3600)  # 23:00-01:00
    night = m - soil.moisture_pct
    assert midday > 0.3 and 0 <= night < midday / 20
    # A whole day removes ET0 x kc: 4.0 mm x 0.85 of a 150 mm root zone, about 2.3 %.
    clock, field, _ = park()
    advance(clock, field, 86_400, step=300)
    assert 30.0 - field.soil["bunga"].moisture_pct == pytest.approx(4.0 * 0.85 / 1.5, rel=0.05)


def test_rain_wets_the_soil_and_trips_the_rain_sensor_until_it_dries():
    storm = RainEvent(START + timedelta(hours=14), duration_h=1.0, total_mm=15.0)
    clock, field, unit = park(Weather(et0_mm_day=4.0, events=[storm]))
    level_wet = CONFIG.input(CONFIG.rain.input).active_high
    advance(clock, field, 14 * 3600)
    assert bool(unit.rain.state) != level_wet  # dry before the rain
    before = field.soil["bunga"].moisture_pct
    advance(clock, field, 1200)  # 20 min: 5 mm so far, past the 3 mm trip point
    assert bool(unit.rain.state) == level_wet and field.rain_sensor_wet
    advance(clock, field, 2400)
    assert field.soil["bunga"].moisture_pct - before == pytest.approx(15 / 1.5, abs=0.5)
    advance(clock, field, 36 * 3600, step=300)  # the disc dries in the sun
    assert bool(unit.rain.state) != level_wet
    assert field.soil["bunga"].moisture_pct < 36.5  # drained back to field capacity and below
    assert field.days[START.date()].rain_mm == pytest.approx(15.0)


def test_open_valves_water_their_zone_only_and_only_with_the_pump_on():
    clock, field, unit = park(Weather(et0_mm_day=0.0))
    unit.outputs["valve-bunga"].on()
    advance(clock, field, 600)
    assert field.soil["bunga"].moisture_pct == 30.0  # the pump is off: no pressure
    unit.outputs["pompa"].on()
    advance(clock, field, 600)
    # 25 L/min for 10 min on 120 m2 at 85 % efficiency, over 150 mm of root zone.
    assert field.soil["bunga"].moisture_pct - 30.0 == pytest.approx(
        250 / 120 * 0.85 / 150 * 100, rel=0.01)
    assert field.soil["rumput-utara"].moisture_pct == 30.0


def test_flow_pulses_follow_the_open_valves():
    clock, field, unit = park(Weather(et0_mm_day=0.0))
    ppl = CONFIG.flow.pulses_per_l
    unit.outputs["pompa"].on()
    unit.outputs["valve-bunga"].on()  # 25 L/min
    advance(clock, field, 120, step=7)
    assert unit.counter.count == pytest.approx(2 * 25 * ppl, abs=1)
    unit.outputs["valve-rumput-utara"].on()  # + 50 L/min, changes exactly mid-step
    start = unit.counter.count
    advance(clock, field, 120, step=7)
    assert unit.counter.count - start == pytest.approx(2 * 75 * ppl, abs=1)
    field.stuck_closed.add("bunga")
    start = unit.counter.count
    advance(clock, field, 60, step=7)
    assert unit.counter.count - start == pytest.approx(50 * ppl, abs=1)
    unit.outputs.all_off()
    field.set_leak(2.0)
    start = unit.counter.count
    advance(clock, field, 60, step=7)
    assert unit.counter.count - start == pytest.approx(2 * ppl, abs=1)


def test_probes_read_the_soil_with_noise_or_fail_when_told():
    clock = VirtualClock(START)
    field = IrrigationField(CONFIG, clock, soil={z.name: SoilModel(moisture_pct=28.0)
                                                  for z in CONFIG.zones}, noise_pct=0.3)
    probe = field.readers()["bunga"]
    values = [probe.read() for _ in range(200)]
    assert abs(sum(values) / len(values) - 28.0) < 0.1 and 0.1 < max(values) - 28.0 < 1.5
    probe.failing = True
    with pytest.raises(SensorError):
        probe.read()


def test_generated_weather_is_repeatable_and_mostly_afternoon_showers():
    a = Weather.generate(START, 60, seed=3, tz=WITA)
    b = Weather.generate(START, 60, seed=3, tz=WITA)
    assert a == b and 8 <= len(a.events) <= 30
    afternoon = [e for e in a.events if 13 <= e.start.astimezone(WITA).hour < 19]
    assert len(afternoon) >= 0.6 * len(a.events)


def test_simulate_returns_daily_figures():
    result = simulate(EXAMPLE, days=2, step_s=120, weather=Weather(et0_mm_day=4.0))
    assert [d.date.isoformat() for d in result.days] == ["2026-09-01", "2026-09-02"]
    day = result.days[0]
    assert day.rain_mm == 0.0 and day.total_min > 0 and day.total_l > 0
    assert set(day.moisture_min) == set(result.zones)
    table = result.format_table()
    assert "2026-09-02" in table and "rumput-utara" in table and "total" in table


def test_simulate_refuses_a_broken_config(tmp_path):
    from edge.errors import ConfigError

    with pytest.raises(ConfigError):
        simulate(tmp_path / "missing.toml", days=1)
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("max_concurrent_zones = 2",
                                               "max_concurrent_zones = 0"))
    with pytest.raises(ConfigError, match="max_concurrent_zones"):
        simulate(bad, days=1)


MIDNIGHT_UNIT = """
kind = "irrigation"
state_dir = "{state}"

[unit]
device_id = "dlh-midnight-01"
opd = "dlh"

[[outputs]]
name = "v1"
pin = 17
max_on_s = 3600

[[outputs]]
name = "v2"
pin = 27
max_on_s = 3600

[[zones]]
name = "z1"
valve = "v1"
group = "a"

[[zones]]
name = "z2"
valve = "v2"
group = "b"

[[program.programs]]
name = "late"
start_times = ["sunset+06:00"]
zones = [{{ zone = "z1", duration_min = 5 }}]

[[program.programs]]
name = "early"
start_times = ["00:05"]
zones = [{{ zone = "z2", duration_min = 5 }}]
"""


def test_cli_simulate_runs_both_programs_either_side_of_midnight(tmp_path, capsys):
    """`smartcity-edge simulate`: a sunset+06:00 start (about 00:15) no longer hides the
    00:05 start of another program; each waters 5 min every day, nothing skipped."""
    from edge.cli import main

    config = tmp_path / "midnight.toml"
    config.write_text(MIDNIGHT_UNIT.format(state=tmp_path / "state"))
    assert main(["simulate", "--config", str(config), "--days", "3"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("2026-09-0")]
    assert [(r[0], float(r[2]), int(r[-2]), int(r[-1])) for r in rows] == [
        ("2026-09-01", 10.0, 2, 0), ("2026-09-02", 10.0, 2, 0), ("2026-09-03", 10.0, 2, 0)]
