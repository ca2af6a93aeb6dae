"""At least once across a kill: the controller dies after the receiver got a notification
and before it recorded it as sent; restarted, it sends it again with the same
notification_id, and every other notification arrives too.

The controller is a real process (``notify_runner.py``: the store and the delivery
worker). The webhook receiver holds its answer to the first request, so the controller
is SIGKILLed while it waits for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from controller_support import wait_until
from notify_fakes import HttpReceiver, alarm

from controller.notify import outbox
from controller.store import Store

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ALARMS = 5


def run_controller(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, str(HERE / "notify_runner.py"), str(config)],
                                stdout=subprocess.PIPE, stderr=out, env=env, cwd=ROOT)
    assert proc.stdout.readline().strip() == b"ready", log.read_text()
    return proc


def states(store: Store) -> dict[str, tuple[str, int]]:
    return {r["notification_id"]: (r["state"], r["attempts"])
            for r in store.db.query("SELECT * FROM notify_outbox")}


def test_notify_sigkill_mid_delivery_sends_again_with_the_same_id(tmp_path):
    hold = threading.Event()
    log = tmp_path / "controller.log"
    with HttpReceiver(hold=hold) as hook:
        config = tmp_path / "controller.toml"
        config.write_text(f"""
[database]
path = "controller.db"
[mqtt]
enabled = false
[notify]
flap_hold_s = 0
retry_min_s = 1
send_timeout_s = 2
poll_interval_s = 0.1
[[notify.webhooks]]
url = "{hook.url}/hook"
""")
        proc = run_controller(config, log)
        with Store.open(tmp_path / "controller.db") as store:
            try:
                with outbox.transaction(store) as db:
                    for n in range(1, ALARMS + 1):
                        outbox.enqueue(db, alarm(n), "raised", datetime.now(UTC))
                assert hook.received.wait(10), log.read_text()
                first = hook.requests[0].body["notification_id"]
                proc.send_signal(signal.SIGKILL)  # the receiver has it; no answer yet
                proc.wait(10)
                assert proc.returncode == -signal.SIGKILL
                assert states(store)[first] == ("pending", 1)  # not recorded as sent
                assert hook.answered == []
                hold.set()  # the receiver answers from now on

                proc = run_controller(config, log)
                wait_until(lambda: all(s == "sent" for s, _ in states(store).values()),
                           timeout=20, what="every notification sent")
            finally:
                proc.terminate()
                proc.wait(10)
            final = states(store)
    assert proc.returncode == 0, log.read_text()
    received = Counter(r.body["notification_id"] for r in hook.requests)
    assert set(received) == set(final) and len(final) == ALARMS  # nothing lost
    assert received[first] == 2 and final[first] == ("sent", 2)  # sent again, same id
    assert all(n == 1 for nid, n in received.items() if nid != first)
    assert {r.body["notification_id"] for r in hook.answered} == set(final)
