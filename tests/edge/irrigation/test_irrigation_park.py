"""The example park (config/irrigation.example.toml) for 14 simulated days.

Run with ``-s`` to see the daily table. The weather (seed 11) is a fortnight of September,
Balikpapan's drier months: six dry days, a 16 mm afternoon storm, then light showers.

"Inside its band" means: the soil of every zone never dries below the zone's
``start_below_pct`` (the probe starts a run first), and watering never pushes it above
``skip_above_pct`` by more than about one cycle's worth (each cycle is skipped once the
probe reads the top of the band). Rain can of course soak the soil beyond the band; that
is the weather, not the controller, and it drains back within a day or two.
"""

from pathlib import Path

import pytest

from edge.sim.irrigation import simulate

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "irrigation.example.toml"


@pytest.fixture(scope="module")
def fortnight():
    # 120 s steps: valves still open and close at their exact times (timers on the
    # virtual clock); the probes are read every step.
    return simulate(EXAMPLE, days=14, seed=11, step_s=120)


def test_example_park_keeps_every_zone_in_its_moisture_band_for_14_days(fortnight):
    print("\n" + fortnight.format_table())
    config = fortnight.field.config
    for zone in fortnight.zones:
        rule = config.program.rules_for(zone).moisture
        lowest = min(d.moisture_min[zone] for d in fortnight.days)
        after = [m for _, m in fortnight.field.after_watering[zone]]
        print(f"{zone:>15}: band {rule.start_below_pct:g}-{rule.skip_above_pct:g} %, "
              f"lowest {lowest:.1f} %, highest after watering {max(after):.1f} %, "
              f"{len(after)} valve closings")
        assert lowest >= rule.start_below_pct - 0.5, zone
        assert max(after) <= rule.skip_above_pct + 1.5, zone
        # and the band was really used: the soil came close to its lower edge some time
        assert lowest <= rule.start_below_pct + 3.0, zone


def test_example_park_reports_what_it_used_within_the_daily_limit(fortnight):
    config = fortnight.field.config
    limit = config.limits.max_daily_water_min
    for day in fortnight.days:
        assert day.total_min <= limit
        # What the unit measured through its meter is what the park received.
        assert day.total_l == pytest.approx(sum(day.delivered_l.values()), rel=0.03, abs=5)
    used = [d.total_l for d in fortnight.days]
    assert sum(used) > 20_000  # about 2-3 m3 a day in the dry days
    types = [(e.type, e.data.get("trigger"), e.data.get("reason")) for e in fortnight.events]
    assert ("run_started", "sensor", None) in types  # probes started runs when dry
    assert ("run_skipped", "schedule", "soil_wet") in types  # and skipped wet mornings
    assert ("run_skipped", "schedule", "rain") in types  # the storm was noticed
    assert not [e for e in fortnight.events if e.type == "alarm"]


def test_example_park_never_opens_more_than_it_may_at_any_instant():
    from datetime import datetime

    from irrigation_harness import WITA, Bench

    from edge.config import load_config
    from edge.sim.irrigation import SoilModel, Weather

    config = load_config(EXAMPLE)
    soil = {z.name: SoilModel(moisture_pct=25.0, area_m2=z.area_m2) for z in config.zones}
    bench = Bench(config, start=datetime(2026, 9, 1, tzinfo=WITA), soil=soil,
                  weather=Weather(et0_mm_day=4.5)).start()
    bench.run(2 * 86_400, step=120)
    assert bench.violations == []
    assert len(bench.transitions) > 40
    # The pump never runs against closed valves: while it is on, some zone valve is open
    # (when one zone hands over to the next the pump keeps running: the periods touch).
    valves = sorted(p for z in config.zones for p in bench.on_periods(z.valve))
    merged = [list(valves[0])]
    for on, off in valves[1:]:
        if on <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], off)
        else:
            merged.append([on, off])
    pump = bench.on_periods("pompa")
    assert pump
    for on, off in pump:
        assert any(v_on < on and off < v_off for v_on, v_off in merged), (on, off)
