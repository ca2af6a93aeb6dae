"""Nothing lost, nothing doubled: a unit producing 1,000 messages while the broker is
SIGKILLed and restarted three times and the unit itself is SIGKILLed and restarted once.

The controller stand-in stores by seq and acks what it stored; at the end it holds
exactly seq 1..N, a redelivered seq always carried the same message, and the unit's
outbox is empty.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from link_helpers import (
    AckingController,
    outbox_rows,
    statuses,
    unit_toml,
    unit_topic,
    wait_until,
)

from protocol import Channel

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
TOTAL = 1000


def start_unit(config_path, log, total=TOTAL):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    return subprocess.Popen([sys.executable, str(HERE / "unit_runner.py"), str(config_path),
                             str(total)], cwd=ROOT, env=env, stdout=log, stderr=log)


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)


@pytest.fixture
def broker(mosquitto_factory):
    """A broker that saves to disk only on a clean stop: a SIGKILL loses everything it
    had queued or acknowledged, the worst case a unit must survive."""
    return mosquitto_factory(autosave_interval=3600)


@pytest.fixture
def unit_files(tmp_path, broker):
    state_dir = tmp_path / "state"
    config = tmp_path / "unit.toml"
    config.write_text(unit_toml(broker, state_dir, keepalive_s=5, telemetry_s=1))
    log = (tmp_path / "unit.log").open("ab")
    procs = []
    yield config, state_dir / "outbox.db", log, procs
    for proc in procs:
        if proc.poll() is None:
            kill(proc)
    log.close()


def produced(outbox_path):
    try:
        return outbox_rows(outbox_path)[1] - 1
    except Exception:  # noqa: BLE001 - the file may not exist yet
        return 0


def test_link_nothing_lost_nothing_doubled_through_broker_and_unit_kills(
        broker, mqtt_client_factory, unit_files):
    config, outbox_path, log, procs = unit_files
    controller = AckingController(broker).start()
    try:
        started = time.monotonic()
        procs.append(start_unit(config, log))
        broker_kills = 0

        def crash_broker_at(count):
            nonlocal broker_kills
            wait_until(lambda: produced(outbox_path) >= count, 30, f"{count} produced")
            broker.kill()
            time.sleep(0.3)
            broker.start()
            broker_kills += 1

        # 1: the controller is away, the broker queues for its session and dies: those
        # messages were PUBACKed and are gone
        wait_until(lambda: produced(outbox_path) >= 100, 30, "100 produced")
        controller.close()
        crash_broker_at(200)
        controller.start()
        # 2: the controller is there
        crash_broker_at(350)

        # the unit dies without a word: its Last Will says offline
        wait_until(lambda: produced(outbox_path) >= 500, 30, "500 produced")
        watcher = mqtt_client_factory(broker, client_id="status-watcher")
        watcher.subscribe(unit_topic(Channel.STATUS))
        wait_until(lambda: any(s.online for s in statuses(watcher)), 10, "online status")
        kill(procs[-1])
        killed_at = time.monotonic()
        wait_until(lambda: statuses(watcher) and not statuses(watcher)[-1].online, 10,
                   "offline status (Last Will)")
        will_delay_s = time.monotonic() - killed_at
        assert will_delay_s < 5 * 1.5  # within the keepalive window
        watcher.close()
        procs.append(start_unit(config, log))

        # 3: the controller is away again when the broker dies
        wait_until(lambda: produced(outbox_path) >= 650, 30, "650 produced")
        controller.close()
        crash_broker_at(750)
        controller.start()

        wait_until(lambda: controller.seqs() == list(range(1, TOTAL + 1)), 40,
                   f"seq 1..{TOTAL} at the controller")
        wait_until(lambda: outbox_rows(outbox_path)[0] == 0, 20, "an empty outbox")
        elapsed = time.monotonic() - started

        assert controller.seqs() == list(range(1, TOTAL + 1))
        assert controller.conflicts == []  # a seq redelivered always carried the same data
        assert outbox_rows(outbox_path) == (0, TOTAL + 1)
        kinds = {p.get("type", "telemetry") for p in controller.payloads().values()}
        assert {"run_started", "started", "telemetry"} <= kinds
        assert broker_kills == 3
        print(f"\n{TOTAL} messages through 3 broker kills and 1 unit kill in {elapsed:.1f} s; "
              f"{controller.deliveries} deliveries ({controller.deliveries - TOTAL} "
              f"redelivered), Last Will after {will_delay_s:.2f} s")

        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(10) == 0
    finally:
        controller.close()
