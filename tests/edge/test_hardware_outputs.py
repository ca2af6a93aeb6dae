"""Outputs fail closed: off at start, off after their maximum on-time, off on close."""

import time

import pytest
from gpiozero.pins.mock import MockFactory

from edge.clock import SystemClock, VirtualClock
from edge.errors import HardwareError
from edge.hardware import Output, OutputBank, PulseCounter


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.close()


def test_output_starts_off_even_if_pin_was_high(factory):
    pin = factory.pin(17)
    pin.output_with_state(True)  # as left by a crashed process on a real board
    out = Output("valve", 17, pin_factory=factory, clock=VirtualClock(), max_on_s=10)
    assert not out.is_active
    assert pin.state is False


def test_output_max_on_time_forces_off_on_virtual_clock(factory):
    clock = VirtualClock()
    hits = []
    out = Output("valve", 17, pin_factory=factory, clock=clock, max_on_s=300,
                 on_limit=lambda o, s: hits.append((o.name, s)))
    out.on()
    clock.advance(299.9)
    assert out.is_active
    clock.advance(0.2)
    assert not out.is_active
    assert factory.pin(17).state is False
    assert hits == [("valve", pytest.approx(300, abs=0.2))]


def test_output_max_on_time_real_clock_within_100ms(factory):
    """Switched on and never switched off: off by its maximum on-time (+100 ms)."""
    clock = SystemClock()
    out = Output("valve", 17, pin_factory=factory, clock=clock, max_on_s=0.5)
    pin = factory.pin(17)
    out.on()
    t0 = time.monotonic()
    while pin.state and time.monotonic() - t0 < 2:
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    assert pin.state is False
    assert 0.45 <= elapsed <= 0.6, f"forced off after {elapsed:.3f} s"
    print(f"max_on_s=0.5 forced off after {elapsed * 1000:.0f} ms")


def test_output_timed_on_never_exceeds_max(factory):
    clock = VirtualClock()
    out = Output("valve", 17, pin_factory=factory, clock=clock, max_on_s=60)
    out.on(for_s=600)
    clock.advance(60.01)
    assert not out.is_active
    out.on(for_s=20)
    clock.advance(20.01)
    assert not out.is_active
    assert out.total_on_s == pytest.approx(80, abs=0.05)


def test_output_second_on_does_not_extend_the_maximum(factory):
    clock = VirtualClock()
    out = Output("valve", 17, pin_factory=factory, clock=clock, max_on_s=100)
    out.on()
    clock.advance(90)
    out.on()  # asked again: the maximum still counts from the first on
    clock.advance(10.01)
    assert not out.is_active


def test_output_close_is_idempotent_and_leaves_off(factory):
    clock = VirtualClock()
    out = Output("valve", 17, pin_factory=factory, clock=clock, max_on_s=100)
    out.on()
    out.close()
    out.close()
    assert factory.pin(17).state is False
    with pytest.raises(HardwareError):
        out.on()


def test_output_bank_close_turns_everything_off(factory):
    clock = VirtualClock()
    with OutputBank(pin_factory=factory, clock=clock) as bank:
        for i, pin in enumerate((17, 27, 22)):
            bank.add(f"v{i}", pin, max_on_s=100)
        bank["v0"].on()
        bank["v2"].on()
        assert bank.states() == {"v0": True, "v1": False, "v2": True}
    assert [factory.pin(p).state for p in (17, 27, 22)] == [False, False, False]


def test_output_bank_rejects_duplicate_and_bad_pin(factory):
    bank = OutputBank(pin_factory=factory, clock=VirtualClock())
    bank.add("v0", 17, max_on_s=1)
    with pytest.raises(HardwareError, match="defined twice"):
        bank.add("v0", 27, max_on_s=1)
    with pytest.raises(HardwareError, match="cannot claim pin 17"):
        bank.add("v1", 17, max_on_s=1)
    bank.close()


def test_pulse_counter_counts_rising_edges(factory):
    counter = PulseCounter(5, pin_factory=factory)
    pin = factory.pin(5)
    for _ in range(7):
        pin.drive_high()
        pin.drive_low()
    assert counter.count == 7
    counter.close()
