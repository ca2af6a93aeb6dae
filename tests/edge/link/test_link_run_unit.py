"""``edge.daemon.run_unit`` spends its loop's pause waiting for inbound messages
(``Link.wait_inbound``): a command or a desired config is handled when it arrives, not on
the next tick, and a stop request (``stop`` or SIGTERM) ends the wait at once, so the
outputs go off without waiting for the tick. The tick here is far longer than the test's
waits, so an answer at all means it did not wait for the tick."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from gpiozero.pins.mock import MockFactory
from link_helpers import (
    FAST,
    LimitApp,
    command,
    desired_config,
    replies,
    statuses,
    unit_toml,
    unit_topic,
    wait_until,
)

from edge import hardware
from edge.daemon import run_unit
from protocol import Channel

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
TICK_S = 600.0  # the unit's loop would tick again only after this
WAIT_S = 10.0  # how long the test waits for an answer
VALVE_PIN = 17  # valve1 of zone lawn


def start_daemon(config, stop, exit_status, **kwargs) -> threading.Thread:
    daemon = threading.Thread(target=lambda: exit_status.append(run_unit(
        config, pin_factory="mock", stop=stop, link_options=FAST, tick_s=TICK_S,
        install_signals=False, **kwargs)), daemon=True)
    daemon.start()
    return daemon


def test_run_unit_answers_a_command_and_applies_a_config_between_ticks(tmp_path, mosquitto,
                                                                       controller):
    config = tmp_path / "unit.toml"
    config.write_text(unit_toml(mosquitto, tmp_path / "state"))
    stop = threading.Event()
    exit_status = []
    daemon = start_daemon(config, stop, exit_status)
    try:
        # Online: the unit subscribed before it published this status.
        wait_until(lambda: any(s.online for s in statuses(controller)), WAIT_S, "online")

        controller.publish(unit_topic(Channel.CMD), command("stop_all", cmd_id="cmd-1"), qos=1)
        reply = wait_until(lambda: replies(controller, "cmd-1"), WAIT_S, "reply")[0]
        assert reply.status == "done"

        controller.publish(unit_topic(Channel.CONFIG),
                           desired_config(1, {"watering_pct": 80, "programs": []}), qos=1,
                           retain=True)
        wait_until(lambda: any(s.config_version == 1 for s in statuses(controller)), WAIT_S,
                   "status reporting config 1")
    finally:
        stop.set()  # wakes the loop's wait for inbound messages (up to TICK_S)
        daemon.join(WAIT_S)
    assert not daemon.is_alive() and exit_status == [0]
    assert [r.status for r in replies(controller, "cmd-1")] == ["done"]  # answered once


def test_a_stop_request_ends_run_unit_mid_tick_with_every_output_off(tmp_path, mosquitto,
                                                                     controller, mocker):
    config = tmp_path / "unit.toml"
    config.write_text(unit_toml(mosquitto, tmp_path / "state"))
    factory = MockFactory()
    mocker.patch.object(hardware, "make_pin_factory", lambda kind="auto": factory)
    stop = threading.Event()
    exit_status = []
    daemon = start_daemon(config, stop, exit_status, app_class=LimitApp)
    try:
        wait_until(lambda: any(s.online for s in statuses(controller)), WAIT_S, "online")
        controller.publish(unit_topic(Channel.CMD),
                           command("run_zone", {"zone": "lawn", "duration_s": 200},
                                   cmd_id="run-1"), qos=1)
        wait_until(lambda: replies(controller, "run-1"), WAIT_S, "reply")
        valve = factory.pin(VALVE_PIN)
        assert valve.state  # watering, for minutes yet

        stop.set()  # and nothing else: no message comes to wake the loop
        daemon.join(WAIT_S)
        assert not daemon.is_alive(), "run_unit kept waiting for the end of its tick"
    finally:
        if daemon.is_alive():  # free the thread, whatever the test says
            stop.set()
            controller.publish(unit_topic(Channel.CMD), command("stop_all"), qos=1)
            daemon.join(WAIT_S)
    assert exit_status == [0]
    assert not valve.state  # the valve went off with the stop, not at its end of run
    assert wait_until(lambda: statuses(controller)[-1], WAIT_S, "status").online is False


def test_sigterm_ends_the_daemon_mid_tick_with_every_output_off(tmp_path, mosquitto,
                                                                controller):
    config = tmp_path / "unit.toml"
    config.write_text(unit_toml(mosquitto, tmp_path / "state"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    log_path = tmp_path / "unit.log"
    with log_path.open("ab") as log:
        unit = subprocess.Popen([sys.executable, str(HERE / "unit_runner.py"), str(config),
                                 "1", "1", str(TICK_S)], cwd=ROOT, env=env, stdout=log,
                                stderr=log)
    try:
        wait_until(lambda: any(s.online for s in statuses(controller)), 20, "online")
        controller.publish(unit_topic(Channel.CMD),
                           command("run_zone", {"zone": "lawn", "duration_s": 200},
                                   cmd_id="run-1"), qos=1)
        [reply] = wait_until(lambda: replies(controller, "run-1"), WAIT_S, "reply")
        assert reply.status == "accepted"  # watering, for minutes yet

        unit.send_signal(signal.SIGTERM)
        assert unit.wait(WAIT_S) == 0
    finally:
        if unit.poll() is None:
            unit.kill()
            unit.wait()
    log = log_path.read_text()
    assert "signal SIGTERM: stopping" in log
    assert "stopped; every output is off" in log
    assert wait_until(lambda: statuses(controller)[-1], WAIT_S, "status").online is False
