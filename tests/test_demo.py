"""The README's demo brings both simulated units online in the API within 60 seconds,
and Ctrl-C leaves every simulated output off."""

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("broker", ["auto", "amqtt"])
def test_demo_units_online_within_60_s_and_ctrl_c_leaves_outputs_off(tmp_path, broker):
    """``auto`` uses Mosquitto (the test set-up installs it); ``amqtt`` is the fallback
    for a machine without Mosquitto, speaking MQTT 3.1.1."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--http-port", "0",
         "--workdir", str(tmp_path / "demo"), "--broker", broker],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    started = time.monotonic()
    try:
        base = token = None
        while time.monotonic() - started < 60 and not (base and token):
            text = "".join(lines)
            base = (re.search(r"Dashboard:\s+(http://\S+)/", text) or [None, None])[1]
            token = (re.search(r"Admin token \(Diskominfo\):\s+(\S+)", text) or [None, None])[1]
            time.sleep(0.2)
        assert base and token, "".join(lines)
        online = set()
        while time.monotonic() - started < 60 and len(online) < 2:
            req = urllib.request.Request(base + "/api/v1/devices",
                                         headers={"Authorization": f"Bearer {token}"})
            body = json.loads(urllib.request.urlopen(req, timeout=5).read())
            items = body["items"] if isinstance(body, dict) else body
            online = {d["device_id"] for d in items if d.get("online")}
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        print(f"both demo units online {elapsed:.1f} s after the demo started ({broker})")
        assert online == {"dlh-taman-bekapai-01", "dp3-tambak-manggar-01"}, "".join(lines)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=40)
        reader.join(5)
    assert code == 0, "".join(lines)
    assert "every simulated output is off" in "".join(lines)
    want = "amqtt (embedded" if broker == "amqtt" else "Mosquitto ("
    assert want in "".join(lines)
