"""The technician's calibration: run the motor, weigh, write the rate back safely."""

from __future__ import annotations

import difflib
import io
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge import cli
from edge.clock import VirtualClock
from edge.config import load_config
from edge.fish_feeder import calibrate as cal
from edge.hardware import make_pin_factory

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "fish_feeder.example.toml"


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "fish_feeder.toml"
    shutil.copy(EXAMPLE, path)
    os.chmod(path, 0o640)
    return path


def changed_lines(old: str, new: str) -> list[str]:
    return [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(),
                                                  lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_edit_changes_only_that_feeders_line_and_keeps_its_comment(config_file):
    old = config_file.read_text()
    new = cal.update_feeder_text(old, "pakan-nila", {"rate_g_per_s": 17.25})
    assert changed_lines(old, new) == [
        "-rate_g_per_s = 18.0              # written by `smartcity-edge calibrate`",
        "+rate_g_per_s = 17.25              # written by `smartcity-edge calibrate`",
    ]


def test_edit_inserts_a_missing_key_after_the_name():
    text = ('kind = "fish_feeder"\n\n[[feeders]]\nname = "a"\nmotor = "m"\n\n'
            '[feeders.hopper]\nrate_g_per_s = 1\n\n[[feeders]]\n  name = "b"\n')
    new = cal.update_feeder_text(text, "b", {"rate_g_per_s": 2.5})
    assert new.endswith('  name = "b"\n  rate_g_per_s = 2.5\n')
    new = cal.update_feeder_text(text, "a", {"rate_g_per_s": 3.0})
    assert 'name = "a"\nrate_g_per_s = 3.0\nmotor' in new
    assert "[feeders.hopper]\nrate_g_per_s = 1\n" in new  # the sub-table is not the feeder
    with pytest.raises(cal.CalibrationError, match="no \\[\\[feeders\\]\\]"):
        cal.update_feeder_text(text, "zzz", {"rate_g_per_s": 1.0})


def test_calibrate_runs_motor_counts_pulses_and_writes_back(config_file):
    clock = VirtualClock(start=datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    factory = make_pin_factory("mock")
    rotation = factory.pin(5)

    def wait(seconds):
        clock.sleep(seconds)
        for _ in range(180):  # 3 rev/s x 2 pulses x 30 s
            rotation.drive_high()
            rotation.drive_low()

    out = io.StringIO()
    result = cal.calibrate(config_file, "pakan-nila", run_s=30, grams=540.0,
                           pin_factory=factory, clock=clock, wait=wait, out=out)
    assert result.on_s == pytest.approx(30.0)
    assert result.rate_g_per_s == 18.0 and result.g_per_pulse == 3.0
    motor = factory.pin(17)
    assert [s.state for s in motor.states][-2:] == [True, False]  # ran, then off
    assert not motor.state
    config = load_config(config_file)
    assert config.feeder("pakan-nila").rate_g_per_s == 18.0
    assert "rate_g_per_s 18.0 -> 18.0" in out.getvalue()
    assert (config_file.stat().st_mode & 0o777) == 0o640


def test_calibrate_interactive_prompt_accepts_comma_decimal(config_file):
    clock = VirtualClock(start=datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    answers = iter(["", "abc", "510,6"])
    prompts = []

    def fake_input(prompt):
        prompts.append(prompt)
        return next(answers)

    out = io.StringIO()
    result = cal.calibrate(config_file, "pakan-vaname", run_s=30,
                           pin_factory=make_pin_factory("mock"), clock=clock,
                           input_fn=fake_input, out=out)
    assert "press Enter" in prompts[0]
    assert result.grams == 510.6 and result.rate_g_per_s == pytest.approx(17.02)
    assert "no rotation pulses" in out.getvalue()  # and g_per_pulse left alone
    config = load_config(config_file)
    assert config.feeder("pakan-vaname").rate_g_per_s == pytest.approx(17.02)
    assert config.feeder("pakan-vaname").g_per_pulse == 3.0


def test_calibration_that_breaks_a_hard_limit_writes_nothing(config_file):
    before = config_file.read_bytes()
    # 3500 g max dose at 10 g/s needs 350 s: more than the motor's 240 s max_on_s.
    with pytest.raises(cal.CalibrationError, match="max_on_s"):
        cal.calibrate(config_file, "pakan-nila", run_s=30, grams=300, no_run=True)
    assert config_file.read_bytes() == before
    assert not [p for p in config_file.parent.iterdir() if p.name.startswith(".")]


def test_calibrate_refuses_unknown_feeder_and_overlong_run(config_file):
    with pytest.raises(cal.CalibrationError, match="no feeder named"):
        cal.calibrate(config_file, "ghost", grams=1, no_run=True)
    with pytest.raises(cal.CalibrationError, match="max_on_s"):
        cal.calibrate(config_file, "pakan-nila", run_s=999, grams=1, no_run=True)


def test_cli_subcommand_no_run(config_file, capsys):
    assert cli.main(["calibrate", "--config", str(config_file), "--feeder", "pakan-nila",
                     "--no-run", "--run-s", "20", "--grams", "380"]) == 0
    assert load_config(config_file).feeder("pakan-nila").rate_g_per_s == 19.0
    assert "19.0" in capsys.readouterr().out
