"""Closing the runtime, SIGTERM/SIGINT and exceptions each leave every output off."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edge.app import App
from edge.clock import VirtualClock
from edge.config import parse_config
from edge.publisher import MemoryPublisher
from edge.service import run_app

RUNNER = Path(__file__).with_name("failclosed_runner.py")


class SilentNotifier:
    def __init__(self):
        self.calls = []

    def ready(self):
        self.calls.append("ready")

    def watchdog(self):
        self.calls.append("watchdog")

    def stopping(self):
        self.calls.append("stopping")


def make_app(good_config_text, clock=None):
    import tomllib

    config = parse_config(tomllib.loads(good_config_text))
    factory = MockFactory()
    clock = clock or VirtualClock()
    app = App(config, pin_factory=factory, clock=clock, publisher=MemoryPublisher(clock))
    return app, factory


def pin_states(factory):
    return [factory.pin(p).state for p in (17, 27)]


def test_app_close_turns_every_output_off(good_config_text):
    app, factory = make_app(good_config_text)
    app.outputs["valve1"].on()
    app.outputs["valve2"].on()
    assert pin_states(factory) == [True, True]
    app.close()
    app.close()
    assert pin_states(factory) == [False, False]


def test_exception_in_job_switches_outputs_off_and_alarms(good_config_text):
    clock = VirtualClock()
    app, factory = make_app(good_config_text, clock)

    def bad_job():
        app.outputs["valve1"].on()
        raise RuntimeError("sensor bus wedged")

    app.scheduler.every_s(10, bad_job, "bad")
    clock.advance(10)
    app.tick()
    assert pin_states(factory) == [False, False]
    alarms = app.publisher.events("alarm")
    assert [a.data["code"] for a in alarms] == ["job_failed"]
    assert "sensor bus wedged" in alarms[0].data["message"]
    app.close()


def test_exception_escaping_the_loop_leaves_outputs_off(good_config_text):
    app, factory = make_app(good_config_text)
    notifier = SilentNotifier()

    def tick():
        app.outputs["valve2"].on()
        raise RuntimeError("boom")

    app.tick = tick
    with pytest.raises(RuntimeError, match="boom"):
        run_app(app, notifier=notifier, install_signals=False)
    assert pin_states(factory) == [False, False]
    assert notifier.calls == ["ready", "stopping"]


def test_run_app_stop_event_and_watchdog(good_config_text):
    app, factory = make_app(good_config_text)
    notifier = SilentNotifier()
    stop = threading.Event()
    app.outputs["valve1"].on()
    threading.Timer(0.2, stop.set).start()
    run_app(app, stop=stop, tick_s=0.02, notifier=notifier, install_signals=False)
    assert pin_states(factory) == [False, False]
    assert notifier.calls[0] == "ready" and notifier.calls[-1] == "stopping"
    assert notifier.calls.count("watchdog") >= 3


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_daemon_with_outputs_off(tmp_path, good_config_text, sig):
    config = tmp_path / "unit.toml"
    config.write_text(good_config_text)
    status = tmp_path / "status.json"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(config), str(status)], env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if status.exists() and status.read_text().strip():
                break
            time.sleep(0.02)
        assert json.loads(status.read_text()) == {"ready": True, "valve1": True}
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    assert json.loads(status.read_text()) == {"stopped": True, "pins": {"17": False, "27": False}}
