"""Supply sequencing as a pure function: the master valve or pump and the zone valves,
given what should water, what is applied and the time."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.irrigation.config import MasterSpec
from edge.irrigation.supply import Actions, Applied, Phase, sequence

VALVE = MasterSpec(output="master", kind="valve", pre_s=2, post_s=5)
PUMP = MasterSpec(output="pump", kind="pump", pre_s=3, post_s=4)


class Field:
    """Applies what ``sequence`` says, the way the app does, and remembers the switching."""

    def __init__(self, master):
        self.master = master
        self.applied = Applied()
        self.master_on = False
        self.valves: set[str] = set()
        self.log: list[tuple[float, str]] = []

    def step(self, t: float, desired=(), released=()) -> Actions:
        applied = Applied(self.applied.phase, frozenset(z for z in desired if z in self.valves),
                          tuple(released), self.applied.draining)
        act = sequence(self.master, applied, list(desired), t)
        if act.master is not None:
            self.master_on = act.master
            self.log.append((t, "master on" if act.master else "master off"))
        for zone in act.close:
            self.valves.discard(zone)
            self.log.append((t, f"{zone} off"))
        for zone in act.open:
            self.valves.add(zone)
            self.log.append((t, f"{zone} on"))
        self.applied = Applied(act.phase, draining=act.draining)
        return act


def test_supply_master_valve_opens_first_and_the_zone_valve_after_its_delay():
    f = Field(VALVE)
    act = f.step(0, ["z1"])
    assert f.log == [(0, "master on")] and act.phase == Phase("pre", 2)
    assert act.wake_at == 2 and not act.flowing
    act = f.step(1, ["z1"])
    assert act.master is None and act.open == () and act.wake_at == 2
    act = f.step(2, ["z1"])
    assert act.open == ("z1",) and act.flowing and act.wake_at is None
    assert f.log == [(0, "master on"), (2, "z1 on")]


def test_supply_master_valve_closes_after_the_last_zone_with_its_delay():
    f = Field(VALVE)
    f.step(0, ["z1"])
    f.step(2, ["z1"])
    act = f.step(60, [], released=["z1"])  # the zone's cycle ended
    assert act.close == ("z1",) and f.master_on and act.phase == Phase("post", 65)
    assert act.wake_at == 65
    f.step(64)
    assert f.master_on
    act = f.step(65)
    assert act.master is False and act.phase.state == "off" and act.wake_at is None
    assert f.log[-2:] == [(60, "z1 off"), (65, "master off")]


def test_supply_master_valve_in_its_post_delay_serves_the_next_zone_at_once():
    f = Field(VALVE)
    f.step(0, ["z1"])
    f.step(2, ["z1"])
    f.step(60, [], released=["z1"])
    act = f.step(62, ["z2"])
    assert act.master is None and act.open == ("z2",) and act.phase.state == "on"


def test_supply_pump_starts_after_the_valve_opened_and_its_delay():
    f = Field(PUMP)
    act = f.step(0, ["z1"])
    assert act.open == ("z1",) and act.master is None and not act.flowing
    assert act.phase == Phase("pre", 3) and act.wake_at == 3
    act = f.step(3, ["z1"])
    assert act.master is True and act.flowing and act.open == ()
    assert f.log == [(0, "z1 on"), (3, "master on")]


def test_supply_pump_stops_before_the_valve_closes_and_the_soak_counts_from_the_close():
    f = Field(PUMP)
    f.step(0, ["z1"])
    f.step(3, ["z1"])
    act = f.step(63, [], released=["z1"])  # the cycle ended: the pump stops first
    assert act.master is False and act.close == () and act.draining == {"z1"}
    assert act.phase == Phase("post", 67) and act.wake_at == 67 and "z1" in f.valves
    act = f.step(65)
    assert act.close == () and "z1" in f.valves
    act = f.step(67)
    assert act.close == ("z1",) and act.drained == {"z1"} and act.phase.state == "off"
    assert f.log == [(0, "z1 on"), (3, "master on"), (63, "master off"), (67, "z1 off")]


def test_supply_pump_without_a_post_delay_closes_its_valves_with_the_stop():
    f = Field(MasterSpec(output="pump", kind="pump", pre_s=0, post_s=0))
    act = f.step(0, ["z1"])
    assert act.open == ("z1",) and act.master is True and act.flowing
    act = f.step(30, [], released=["z1"])
    assert act.master is False and act.close == ("z1",) and act.drained == {"z1"}
    assert act.phase.state == "off" and not act.draining


def test_supply_pump_that_never_started_stops_waiting_when_nothing_wants_water():
    f = Field(PUMP)
    f.step(0, ["z1"])
    act = f.step(1, [], released=["z1"])
    assert act.master is None and act.close == ("z1",) and act.phase.state == "off"


def test_supply_without_a_master_opens_valves_and_water_flows_at_once():
    f = Field(None)
    act = f.step(0, ["z1", "z2"])
    assert act.open == ("z1", "z2") and act.flowing and act.phase.state == "on"
    act = f.step(10, ["z2"], released=["z1"])
    assert act.close == ("z1",) and act.open == () and act.phase.state == "on"
    act = f.step(20, [], released=["z2"])
    assert act.close == ("z2",) and act.phase.state == "off" and act.wake_at is None


def test_supply_zone_that_runs_again_at_once_is_closed_then_reopened():
    f = Field(None)
    f.step(0, ["z1"])
    # its cycle ended and the next one starts in the same step: the valve was released
    act = f.step(10, ["z1"], released=["z1"])
    assert act.close == ("z1",) and act.open == ("z1",)


def test_supply_closes_before_it_opens():
    f = Field(None)
    f.step(0, ["z1"])
    f.step(10, ["z2"], released=["z1"])
    assert f.log == [(0, "z1 on"), (10, "z1 off"), (10, "z2 on")]


@pytest.mark.parametrize("master", [None, VALVE, PUMP], ids=["none", "valve", "pump"])
@given(plan=st.lists(st.tuples(st.floats(0, 30), st.booleans()), min_size=1, max_size=12))
def test_supply_water_flows_only_through_an_open_valve_with_the_master_on(master, plan):
    f = Field(master)
    t, wanted = 0.0, False
    for dt, want in plan:
        t += dt
        released = ["z1"] if wanted and not want and "z1" in f.valves else []
        act = f.step(t, ["z1"] if want else [], released=released)
        wanted = want
        if act.flowing and want:
            assert "z1" in f.valves and (master is None or f.master_on)
        if master is not None and master.kind == "valve" and "z1" in f.valves:
            assert f.master_on  # a zone valve is never open behind a closed master valve
    for _ in range(3):  # nothing wanted any more: everything ends off
        t += 10
        f.step(t, [], released=["z1"] if "z1" in f.valves and "z1" not in f.applied.draining
               else [])
    assert not f.master_on and not f.valves and f.applied.phase.state == "off"
