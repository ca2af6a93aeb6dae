"""A unit killed with SIGKILL: the broker publishes its Last Will, retained."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from link_helpers import statuses, unit_toml, unit_topic, wait_until

from protocol import Channel

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
KEEPALIVE_S = 5


def test_link_killed_unit_is_reported_offline_by_its_last_will(mosquitto, mqtt_client_factory,
                                                               tmp_path):
    config = tmp_path / "unit.toml"
    config.write_text(unit_toml(mosquitto, tmp_path / "state", keepalive_s=KEEPALIVE_S))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    with (tmp_path / "unit.log").open("ab") as log:
        unit = subprocess.Popen([sys.executable, str(HERE / "unit_runner.py"), str(config), "5"],
                                cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        watcher = mqtt_client_factory(mosquitto, client_id="watcher")
        watcher.subscribe(unit_topic(Channel.STATUS))
        online = wait_until(lambda: [s for s in statuses(watcher) if s.online], 20,
                            "online status")[-1]
        unit.send_signal(signal.SIGKILL)
        unit.wait(5)
        killed = time.monotonic()
        wait_until(lambda: not statuses(watcher)[-1].online, KEEPALIVE_S * 1.5,
                   "offline status")
        delay = time.monotonic() - killed
    finally:
        if unit.poll() is None:
            unit.kill()
    assert delay < KEEPALIVE_S * 1.5
    late = mqtt_client_factory(mosquitto, client_id="late")
    late.subscribe(unit_topic(Channel.STATUS))
    [will] = wait_until(lambda: statuses(late), 5, "retained status")
    assert will.online is False
    assert will.fw == online.fw
    assert will.outputs == {}
