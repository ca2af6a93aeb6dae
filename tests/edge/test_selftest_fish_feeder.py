"""``selftest`` on a fish feeder: the motor must show rotation pulses, like the daemon's
jam check; a jammed auger is a FAIL and the motor goes off at its confirm timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.clock import VirtualClock
from edge.selftest import FAIL, OK, WIDTH, selftest, verdict

MOTOR, ROTATION = 17, 5

CONFIG = """
kind = "fish_feeder"
state_dir = "{state}"

[unit]
device_id = "dp3-kolam-uji-01"
opd = "dp3"

[broker]
host = "127.0.0.1"
port = 1

[hardware]
pin_factory = "mock"

[clock]
sync_check = "assume_synced"

[[outputs]]
name = "auger"
pin = 17
max_on_s = 60

[[inputs]]
name = "rot"
pin = 5
kind = "pulse"
pull_up = true

[[feeders]]
name = "pakan-uji"
pond = "kolam"
motor = "auger"
rate_g_per_s = 10
max_dose_g = 300
max_daily_g = 1000
rotation_input = "rot"
confirm_timeout_s = 3
min_pulses = 2

[[ponds]]
name = "kolam"
species = "nila"

[ponds.plan]
times = ["07:00"]
doses_g = [100]
"""


class Auger:
    """The feeder's shaft: while the motor is on, a Hall pulse every ``period_s``
    (none when ``jammed``); the on-time of the motor is recorded."""

    def __init__(self, clock: VirtualClock, *, jammed: bool, period_s: float = 0.2):
        self.clock = clock
        self.jammed = jammed
        self.period_s = period_s
        self.on_at: float | None = None
        self.runs: list[float] = []
        auger = self

        class ShaftPin(MockPWMPin):
            def _change_state(self, value):
                changed = super()._change_state(value)
                if changed and self.info.name == f"GPIO{MOTOR}":
                    auger.switched(bool(value))
                return changed

        self.factory = MockFactory(pin_class=ShaftPin)

    def switched(self, on: bool) -> None:
        if on:
            self.on_at = self.clock.monotonic()
            if not self.jammed:
                self.clock.call_later(self.period_s, self.turn)
        elif self.on_at is not None:
            self.runs.append(self.clock.monotonic() - self.on_at)
            self.on_at = None

    def turn(self) -> None:
        if self.on_at is None:
            return
        pin = self.factory.pin(ROTATION)
        pin.drive_low()
        pin.drive_high()
        self.clock.call_later(self.period_s, self.turn)


@pytest.mark.parametrize("jammed", [False, True])
def test_selftest_feeder_motor_is_confirmed_by_rotation_pulses(tmp_path, jammed):
    (tmp_path / "state").mkdir()
    config = tmp_path / "fish_feeder.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    clock = VirtualClock()
    auger = Auger(clock, jammed=jammed)
    checks, text = selftest(config, factory=auger.factory, clock=clock, lang="en")
    feeder = [c for c in checks if c.text.startswith("Feeder pakan-uji")]
    assert len(feeder) == 1, text
    assert len(auger.runs) == 1 and not auger.factory.pin(MOTOR).state
    if jammed:
        assert feeder[0].status == FAIL
        assert feeder[0].text == "Feeder pakan-uji: motor on 3 s, no rotation pulses (GPIO5)."
        assert "jam" in feeder[0].advice
        assert auger.runs[0] == pytest.approx(3.0, abs=0.06)  # off at confirm_timeout_s
        assert not verdict(checks)
    else:
        assert feeder[0].status == OK
        # Stops once min_pulses are seen, but runs at least the pulse time (0.5 s).
        assert feeder[0].text == "Feeder pakan-uji: motor turned (2 pulses in 0.5 s)."
        assert auger.runs[0] == pytest.approx(0.5, abs=0.06)


HOPPER = """
[feeders.hopper]
driver = "ultrasonic"
trigger_pin = 23
echo_pin = 24
full_distance_m = 0.1
empty_distance_m = 0.6
capacity_g = 10000
"""


def test_selftest_stdout_is_the_checklist_and_warnings_go_to_the_log(tmp_path):
    """An ultrasonic hopper on mock pins makes gpiozero warn (no echo, software PWM):
    the warnings go to the log on stderr, and stdout holds the checklist alone."""
    (tmp_path / "state").mkdir()
    config = tmp_path / "fish_feeder.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state")
                      .replace("[[ponds]]", HOPPER + "\n[[ponds]]"))
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli", "selftest", "--config", str(config),
         "--pin-factory", "mock", "--no-outputs", "--lang", "en"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONWARNINGS": "default"})
    assert done.returncode == 1, done.stderr  # the hopper has no echo, the broker is away
    lines = done.stdout.splitlines()
    rule = "=" * WIDTH
    assert lines[:3] == ["Selftest dp3-kolam-uji-01", "fish_feeder, OPD dp3", rule]
    assert lines[-2:] == [rule, "NOT FIT TO RUN: 2 FAIL, 0 WARN"]
    for line in lines[3:-2]:
        assert line.startswith(("OK    ", "WARN  ", "FAIL  ", " " * 6)), line
    assert any(line.startswith("FAIL  Hopper pakan-uji: no echo") for line in lines)
    # gpiozero's warning reached the log as a log record, not as a bare warning print.
    [warning] = [line for line in done.stderr.splitlines()
                 if "DistanceSensorNoEcho: no echo received" in line]
    assert "py.warnings" in warning, done.stderr  # the logger of captured warnings
