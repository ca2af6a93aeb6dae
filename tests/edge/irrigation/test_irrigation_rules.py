"""The pure rules: cycle-and-soak, hysteresis, queueing (start times: tests/protocol)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.irrigation.config import MoistureRule
from edge.irrigation.rules import (
    Candidate,
    Debouncer,
    FlowRate,
    adjusted_s,
    clamp,
    moisture_gate,
    moisture_need,
    pick_startable,
    split_cycles,
)


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
