"""The pure rules: ration, split, interlocks, clamp, presets, rate trim."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.fish_feeder.config import PlanSpec
from edge.fish_feeder.rules import (
    Reading,
    WaterQuality,
    clamp_dose,
    daily_ration_g,
    feeding_rate_pct,
    hopper_days_left,
    interlock,
    local_day,
    next_rate_trim,
    plan_doses,
    split_ration,
)
from edge.fish_feeder.species import PRESETS, thresholds_for

NILA = thresholds_for("nila")


def wq(do=7.0, temp=29.0, ph=7.5):
    return WaterQuality(
        do_mg_l=None if do is False else (Reading.missing() if do is None else Reading.fresh(do)),
        temp_c=None if temp is False else (Reading.missing() if temp is None
                                           else Reading.fresh(temp)),
        ph=None if ph is False else (Reading.missing() if ph is None else Reading.fresh(ph)),
    )


def test_ration_from_biomass_and_species_table():
    assert feeding_rate_pct(NILA.feeding_rate_table, 80) == 3.5
    assert feeding_rate_pct(NILA.feeding_rate_table, 5) == 8.0
    assert feeding_rate_pct(NILA.feeding_rate_table, 600) == 1.8
    assert daily_ration_g(3000, 80, 3.5) == pytest.approx(8400)
    plan = PlanSpec(times=["07:00", "11:00", "16:00"], fish_count=3000, avg_weight_g=80)
    assert plan_doses(plan, NILA) == [("07:00", 2800.0), ("11:00", 2800.0), ("16:00", 2800.0)]
    fixed = PlanSpec(times=["06:00", "18:00"], doses_g=[500, 700])
    assert plan_doses(fixed, NILA) == [("06:00", 500.0), ("18:00", 700.0)]
    own_rate = PlanSpec(times=["08:00"], fish_count=100, avg_weight_g=50, feeding_rate_pct=2)
    assert plan_doses(own_rate, NILA) == [("08:00", 100.0)]


@settings(max_examples=200, derandomize=True)
@given(st.floats(min_value=0, max_value=1e6), st.integers(min_value=1, max_value=24))
def test_split_ration_adds_up_exactly(total, n):
    doses = split_ration(total, n)
    assert len(doses) == n
    assert round(sum(doses), 1) == round(round(total / 0.1) * 0.1, 1)
    assert max(doses) - min(doses) <= 0.1 + 1e-9


def test_interlock_feeds_when_all_in_range():
    d = interlock(NILA, wq())
    assert (d.action, d.factor, d.reason) == ("feed", 1.0, "")


def test_interlock_low_oxygen_postpones():
    d = interlock(NILA, wq(do=2.4))
    assert d.action == "postpone" and d.reason == "do_low"
    assert d.details["do_mg_l"] == 2.4 and d.details["do_min_mg_l"] == 3.0


@pytest.mark.parametrize(("temp", "action", "factor", "reason"), [
    (26.0, "feed", 1.0, ""),
    (23.0, "feed", 0.5, "temp_low"),
    (33.5, "feed", 0.5, "temp_high"),
    (19.0, "skip", 0.0, "temp_low"),
    (36.0, "skip", 0.0, "temp_high"),
])
def test_interlock_temperature_bands(temp, action, factor, reason):
    d = interlock(NILA, wq(temp=temp))
    assert (d.action, d.factor, d.reason) == (action, factor, reason)


def test_interlock_temperature_rule_skip():
    th = thresholds_for("nila", {"temp_rule": "skip"})
    d = interlock(th, wq(temp=23.0))
    assert (d.action, d.reason) == ("skip", "temp_low")


def test_interlock_skip_beats_postpone_and_reductions_do_not_multiply():
    assert interlock(NILA, wq(do=2.0, temp=18.0)).action == "skip"
    d = interlock(NILA, wq(temp=23.0, ph=9.0))
    assert d.action == "feed" and d.factor == 0.5
    assert d.reason == "temp_low,ph_out_of_range"
    assert interlock(NILA, wq(do=2.0, temp=23.0)).factor == 0.5  # kept for when it feeds


@pytest.mark.parametrize(("policy", "action", "factor"), [
    ("feed", "feed", 1.0), ("reduce", "feed", 0.5), ("skip", "skip", 0.0)])
def test_interlock_stale_sensor_policy(policy, action, factor):
    d = interlock(NILA, wq(do=None), stale_policy=policy, stale_factor=0.5)
    assert (d.action, d.factor) == (action, factor)
    if action == "skip":
        assert d.reason == "sensor_stale" and d.details["sensor"] == "do_mg_l"


def test_interlock_quantities_without_sensor_are_not_checked():
    d = interlock(NILA, WaterQuality(), stale_policy="skip")
    assert d.action == "feed" and d.factor == 1.0


def test_clamp_dose_per_feeding_and_daily_cap():
    c = clamp_dose(3000, max_dose_g=2500, max_daily_g=10000, fed_today_g=0)
    assert (c.allowed_g, c.limit) == (2500, "max_dose_g")
    c = clamp_dose(2000, max_dose_g=2500, max_daily_g=5000, fed_today_g=4000)
    assert (c.allowed_g, c.limit) == (1000, "max_daily_g")
    c = clamp_dose(2000, max_dose_g=2500, max_daily_g=5000, fed_today_g=5200)
    assert (c.allowed_g, c.limit) == (0, "max_daily_g")
    c = clamp_dose(100, max_dose_g=2500, max_daily_g=5000, fed_today_g=0)
    assert (c.allowed_g, c.clamped) == (100, False)
    with pytest.raises(ValueError):
        clamp_dose(float("nan"), max_dose_g=1, max_daily_g=1, fed_today_g=0)


@settings(max_examples=300, derandomize=True)
@given(st.floats(min_value=0, max_value=1e6), st.floats(min_value=0.1, max_value=1e5),
       st.floats(min_value=0.1, max_value=1e6), st.floats(min_value=0, max_value=2e6))
def test_clamp_never_passes_a_limit(asked, max_dose, max_daily, fed):
    c = clamp_dose(asked, max_dose_g=max_dose, max_daily_g=max_daily, fed_today_g=fed)
    assert 0 <= c.allowed_g <= asked + 1e-9
    assert c.allowed_g <= max_dose + 1e-3
    assert fed + c.allowed_g <= max(max_daily, fed) + 1e-3


def test_local_day_is_wita_midnight():
    assert local_day(datetime(2026, 3, 1, 15, 59, tzinfo=UTC), "Asia/Makassar") == "2026-03-01"
    assert local_day(datetime(2026, 3, 1, 16, 0, tzinfo=UTC), "Asia/Makassar") == "2026-03-02"


def test_hopper_days_left():
    assert hopper_days_left(7000, 2000) == 3.5
    assert hopper_days_left(None, 2000) is None
    assert hopper_days_left(100, 0) is None


def test_rate_trim_learns_bounded():
    trim, hit = next_rate_trim(1.0, measured_g=1050, expected_g=1000, alpha=0.5)
    assert trim == pytest.approx(1.025) and not hit
    trim, hit = next_rate_trim(1.14, measured_g=2000, expected_g=1000, max_pct=15)
    assert trim == 1.15 and hit
    assert next_rate_trim(1.0, measured_g=0, expected_g=1000, max_pct=0) == (1.0, False)


def test_presets_cover_the_four_species_and_validate():
    assert set(PRESETS) == {"nila", "lele", "bandeng", "vaname"}
    for preset in PRESETS.values():
        th = preset.thresholds
        assert th.temp_stop_below_c <= th.temp_min_c < th.temp_max_c <= th.temp_stop_above_c
        assert th.feeding_rate_table[-1][0] is None
    assert thresholds_for("vaname").do_min_mg_l == 4.0


def test_threshold_override_inconsistent_is_refused():
    with pytest.raises(ValidationError):
        thresholds_for("nila", {"temp_min_c": 33.0})  # above the preset's temp_max_c
    assert thresholds_for("lele", {"do_min_mg_l": 2.5}).do_min_mg_l == 2.5
