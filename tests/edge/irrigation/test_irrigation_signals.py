"""Fail closed across process deaths, with a real subprocess (irrigation_runner.py).

With mock pins the pin levels die with the process; what these tests show is that a stop
on SIGTERM switches everything off on the way out, and that a restart after SIGKILL
drives every output off first (within 2 s of process start) and records the run it
interrupted, then resumes it by policy.
"""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

RUNNER = Path(__file__).with_name("irrigation_runner.py")
ROOT = Path(__file__).resolve().parents[3]

CONFIG = """
kind = "irrigation"
state_dir = "{state_dir}"

[unit]
device_id = "dlh-signal-test"
opd = "dlh"

[hardware]
pin_factory = "mock"

[[outputs]]
name = "v1"
pin = 17
max_on_s = 600

[[outputs]]
name = "v2"
pin = 27
max_on_s = 600

[[outputs]]
name = "master"
pin = 24
max_on_s = 1200

[[zones]]
name = "z1"
valve = "v1"

[[zones]]
name = "z2"
valve = "v2"

[master]
output = "master"
pre_s = 0.2
post_s = 0.2

[runs]
on_interrupted = "resume"
checkpoint_s = 1
"""


def wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def events(workdir):
    try:
        lines = (workdir / "events.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture
def unit(tmp_path):
    config = tmp_path / "irrigation.toml"
    config.write_text(CONFIG.format(state_dir=tmp_path / "state"))
    procs = []

    def spawn(*args):
        for name in ("boot.json", "states.json", "final.json"):
            (tmp_path / name).unlink(missing_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, str(RUNNER), str(config), str(tmp_path), *args],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield spawn, tmp_path
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def valve_on(workdir):
    doc = read_json(workdir / "states.json")
    return doc if doc and doc["outputs"]["v1"] and doc["pins"]["v1"] else None


def test_sigterm_during_a_run_leaves_every_valve_off(unit):
    spawn, workdir = unit
    proc = spawn("z1", "300")
    wait_for(lambda: valve_on(workdir), 20, "the run to open v1")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    final = read_json(workdir / "final.json")
    assert final is not None
    assert not any(final["outputs"].values()) and not any(final["pins"].values())
    types = [(e["type"], e.get("ended")) for e in events(workdir)]
    assert ("run_started", None) in types and ("run_finished", "shutdown") in types


def test_sigkill_then_restart_drives_outputs_off_within_2_s_and_records_the_run(unit):
    spawn, workdir = unit
    proc = spawn("z1", "300")
    wait_for(lambda: valve_on(workdir), 20, "the run to open v1")
    time.sleep(1.2)  # some progress, saved every checkpoint_s (1 s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not (workdir / "final.json").exists()  # no clean stop happened

    t0 = time.time()
    spawn()  # restart without any command
    boot = wait_for(lambda: read_json(workdir / "boot.json"), 10, "the restart to boot")
    assert not any(boot["outputs"].values()) and not any(boot["pins"].values())
    assert boot["t"] - t0 < 2.0, f"outputs confirmed off {boot['t'] - t0:.2f} s after start"
    interrupted = wait_for(
        lambda: [e for e in events(workdir) if e["type"] == "run_interrupted"], 10,
        "run_interrupted")
    (ev,) = interrupted
    assert ev["zone"] == "z1" and ev["action"] == "resumed"
    assert 0 < ev["done_s"] < 300 and ev["remaining_s"] == pytest.approx(300 - ev["done_s"])
    recorded_after_s = datetime.fromisoformat(ev["ts"]).timestamp() - t0
    assert recorded_after_s < 2.0, f"run_interrupted recorded {recorded_after_s:.2f} s after start"
    # Resumed by policy: the valve opens again, for the remaining time only.
    wait_for(lambda: valve_on(workdir), 10, "the resumed run to open v1")
