"""Dosing accuracy on the mock motors: calibrate like a technician, then 100 feedings.

The simulator's augers have speed noise (per step and per run) and grams-per-revolution
noise; what the app reports as dispensed is measured (rotation pulses x calibrated
g_per_pulse, or the load cell's weight drop), never taken from the plan; the simulator
also knows the true grams that fell, which the test checks too.
"""

from __future__ import annotations

import random
import shutil
import statistics
from pathlib import Path

import pytest

from edge.config import load_config
from edge.fish_feeder.calibrate import compute, measure_run, update_feeder_text, write_calibration

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "fish_feeder.example.toml"
FEEDERS = ("pakan-nila", "pakan-vaname")  # pulse-measured auger, weight-measured spinner


def _prepare(tmp_path) -> Path:
    path = tmp_path / "fish_feeder.toml"
    shutil.copy(EXAMPLE, path)
    text = path.read_text()
    for name in FEEDERS:  # start mis-calibrated, with room for 100 feedings a day
        text = update_feeder_text(text, name, {"rate_g_per_s": 15.0, "g_per_pulse": 2.0,
                                               "max_daily_g": 500_000.0})
    path.write_text(text)
    return path


def _calibrate(h, path, name, scale_rng) -> None:
    spec = h.config.feeder(name)
    fs = h.sim.feeders[name]
    before = fs.dispensed_g
    on_s, pulses = measure_run(h.app.outputs[spec.motor],
                               h.app.pulse_counters[spec.rotation_input], h.clock, 60.0,
                               wait=lambda s: h.run(s, fast_step_s=0.5))
    weighed = fs.dispensed_g - before + scale_rng.gauss(0, 2.0)  # a kitchen scale, +-2 g
    write_calibration(path, compute(name, round(weighed, 1), on_s, pulses))


def test_dosing_accuracy_100_feedings_within_2_percent(tmp_path, harness, capsys):
    path = _prepare(tmp_path)
    h = harness(load_config(path), sim_ponds={  # the test is about the motors: no O2 debt
        "kolam-nila": {"feed_o2_g_per_g": 0.0}, "tambak-vaname": {"feed_o2_g_per_g": 0.0}})
    h.app.apply_remote_config(1, {"ponds": {  # keep the schedule out of the way
        "kolam-nila": {"plan": {"times": ["23:30"], "doses_g": [100]}},
        "tambak-vaname": {"plan": {"times": ["23:00"], "doses_g": [100]}}}})
    h.run_until_local("09:00")
    scale = random.Random(11)
    for name in FEEDERS:
        _calibrate(h, path, name, scale)
    calibrated = load_config(path)
    h.restart(calibrated)
    assert h.app.current_config_version == 1
    true_rate = h.sim.feeders["pakan-nila"].nominal_rate_g_per_s
    assert calibrated.feeder("pakan-nila").rate_g_per_s == pytest.approx(true_rate, rel=0.03)

    rng = random.Random(5)
    rows = {name: [] for name in FEEDERS}
    for i in range(100):
        before = {}
        for name in FEEDERS:
            fs = h.sim.feeders[name]
            if fs.hopper_g < 12_000:
                fs.hopper_g += 20_000  # the pond keeper tops the hopper up
            before[name] = fs.dispensed_g
            dose = round(rng.uniform(200, 1200), 1)
            reply = h.command("feed_now", f"{name}-{i}", feeder=name, dose_g=dose)
            assert reply[0][0] == "accepted", reply
        h.run(1200 / 17 + 6, fast_step_s=0.5)
        for name in FEEDERS:
            ev = h.events("feed_dispensed", feeder=name, cmd_id=f"{name}-{i}")
            assert len(ev) == 1 and ev[0].data["fault"] is None
            true_g = h.sim.feeders[name].dispensed_g - before[name]
            rows[name].append((ev[0].data["planned_g"], ev[0].data["measured_g"], true_g))

    report = []
    for name in FEEDERS:
        planned = sum(r[0] for r in rows[name])
        measured = sum(r[1] for r in rows[name])
        true = sum(r[2] for r in rows[name])
        per = [abs(r[1] / r[0] - 1) * 100 for r in rows[name]]
        by = h.events("feed_dispensed", feeder=name)[-1].data["measured_by"]
        report.append(
            f"{name:13s} measured by {by:7s} 100 feedings: planned {planned:9.1f} g, "
            f"measured {measured:9.1f} g ({(measured / planned - 1) * 100:+.2f} %), "
            f"true {true:9.1f} g ({(true / planned - 1) * 100:+.2f} %); per feeding "
            f"|measured-planned| mean {statistics.mean(per):.2f} %, max {max(per):.2f} %")
    with capsys.disabled():
        print("\ndosing accuracy (simulated augers with noise):")
        for line in report:
            print("  " + line)
    for name in FEEDERS:
        planned = sum(r[0] for r in rows[name])
        assert abs(sum(r[1] for r in rows[name]) / planned - 1) < 0.02, name
        assert abs(sum(r[2] for r in rows[name]) / planned - 1) < 0.02, name
        assert max(abs(r[1] / r[0] - 1) for r in rows[name]) < 0.06, name
