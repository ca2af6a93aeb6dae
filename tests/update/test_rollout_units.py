"""A rollout from the controller to three real units, one of which cannot run the new
version: ``smartcity-controller serve`` (its own process: HTTP, ingest, the rollout
engine), a real Mosquitto, and three unit trees (``support.release``) whose daemons run
the release under ``/opt/smartcity/current`` and update through the stand-in systemctl.

The three run 9.0.1. The admin adds 9.0.2 over HTTP and rolls it out: a canary, then the
rest. The release is built so that its daemon dies at start on a unit holding the file
``broken-on-this-unit`` in its state folder (a release that does not work on one unit's
hardware, say); that file is put on one unit of the second stage. It must roll back by
itself to 9.0.1 and report why; the rollout stops itself on the failure threshold; the
other two run 9.0.2. Every unit is offered once; the counts are printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.broker import free_port
from support.release import make_tree

from controller.auth import hash_token, new_token
from controller.broker_files import pbkdf2_hash
from controller.store import Store

REPO = Path(__file__).resolve().parents[2]
UNITS = ["dlh-roll-01", "dlh-roll-02", "dlh-roll-03"]
MARKER = "broken-on-this-unit"


def _break_on_marked_unit(src: Path) -> None:
    """The release's daemon exits at start where the unit's state folder holds MARKER."""
    path = src / "edge" / "daemon.py"
    text = path.read_text()
    marker = "    config = validate_config(config_path)\n"
    assert marker in text and "from pathlib import Path" in text
    path.write_text(text.replace(marker, marker + (
        f"    if (Path(config.state_dir) / {MARKER!r}).exists():\n"
        "        raise SystemExit('this release does not start on this unit')\n"), 1))


def _http(method: str, url: str, token: str, body: bytes | dict | None = None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/octet-stream" if isinstance(body, bytes)
        else "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(what: str, fn, timeout: float, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture
def controller(tmp_path, kit, mosquitto):
    """``serve`` on a free port with the three units registered and an admin token."""
    port = free_port()
    db = tmp_path / "controller.db"
    token = new_token()
    with Store.open(db) as store:
        for device in UNITS:
            store.add_device(device, "dlh", kind="irrigation", name=device,
                             mqtt_password_hash=pbkdf2_hash("pw-" + device), actor="test")
        store.create_token(name="admin", role="admin", opd=None, token_hash=hash_token(token),
                           actor="test")
    config = tmp_path / "controller.toml"
    config.write_text("\n".join([
        "[database]", f'path = "{db}"', "",
        "[mqtt]", f'host = "{mosquitto.host}"', f"port = {mosquitto.port}",
        'client_id = "ctl-rollout"', "reconnect_max_s = 2", "",
        "[ingest]", "sweep_interval_s = 0.5", "ack_interval_s = 0.2", "",
        "[api]", 'host = "127.0.0.1"', f"port = {port}",
        f'public_url = "http://127.0.0.1:{port}"', "",
        "[releases]", f'dir = "{tmp_path / "releases"}"', f'trusted_keys = ["{kit.public}"]',
        ""]))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = open(tmp_path / "controller.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "serve", "--config",
                             str(config)], stdout=log, stderr=log, env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for("the controller's /healthz", healthy, 30, 0.2)
        yield base, token, db
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_rollout_to_three_units_one_rolls_back_and_the_rollout_stops(
        tmp_path, kit, mosquitto, controller):
    base, token, db = controller
    good = kit.bundle("9.0.1")
    new = kit.bundle("9.0.2", patch=_break_on_marked_unit)
    trees = {}
    for device in UNITS:
        tree = make_tree(tmp_path / device, kit, mosquitto, health_timeout_s=20,
                         device_id=device)
        config = tree.root / "etc/smartcity/irrigation.toml"
        launcher = ["{python}", "-m", "edge.cli", "update", "--request", "{request}",
                    "--root", str(tree.root), "--systemctl", str(tree.systemctl)]
        config.write_text(config.read_text().replace(
            "wait_idle_s = 20\n",
            "wait_idle_s = 20\nlauncher = " + json.dumps(launcher) + "\n"))
        trees[device] = tree
    try:
        with ThreadPoolExecutor(len(trees)) as pool:  # three units installing at once
            for first in pool.map(lambda t: t.update("--bundle", str(good)),
                                  trees.values()):
                assert first.returncode == 0, first.stdout + first.stderr
        assert {d: t.running_version() for d, t in trees.items()} == dict.fromkeys(
            UNITS, "9.0.1")

        def devices() -> dict[str, dict]:
            status, body = _http("GET", base + "/api/v1/devices", token)
            assert status == 200, body
            items = body["items"] if isinstance(body, dict) else body
            return {d["device_id"]: d for d in items}

        wait_for("every unit online on 9.0.1 in the API", lambda: all(
            d.get("online") and d.get("fw") == "9.0.1" for d in devices().values())
            and len(devices()) == 3, 60)

        status, body = _http("POST", base + "/api/v1/releases", token, new.read_bytes())
        assert status == 201, body
        status, body = _http("POST", base + "/api/v1/rollouts", token, {
            "version": "9.0.2", "target": {"devices": UNITS}, "canary": 1,
            "stage_percents": [100], "max_failure_share": 0.2, "stage_timeout_s": 900})
        assert status == 201, body
        rid = body["id"]

        def rollout() -> dict:
            status, body = _http("GET", f"{base}/api/v1/rollouts/{rid}", token)
            assert status == 200, body
            return body

        units = {u["device_id"]: u for u in rollout()["units"]}
        canary = [d for d, u in units.items() if u["stage"] == 0]
        assert len(canary) == 1, units
        rest = [d for d in UNITS if d not in canary]
        broken = rest[-1]
        (trees[broken].state / MARKER).touch()

        t0 = time.monotonic()
        wait_for("the canary applied", lambda: {u["device_id"]: u for u in rollout()[
            "units"]}[canary[0]]["state"] == "applied", 240)
        took_canary = time.monotonic() - t0
        final = wait_for("the rollout stopped", lambda: (r := rollout())["state"] != "running"
                         and r, 300)
        took = time.monotonic() - t0
        by_unit = {u["device_id"]: u for u in final["units"]}

        assert final["state"] == "stopped", final
        assert final["reason"] == "failure_threshold", final
        assert by_unit[broken]["state"] == "failed", by_unit[broken]
        assert by_unit[broken]["step"] == "health", by_unit[broken]
        for device in UNITS:
            if device != broken:
                assert by_unit[device]["state"] == "applied", by_unit[device]

        # What runs on each unit: the two on 9.0.2, the broken one back on 9.0.1 by itself.
        running = {d: t.running_version() for d, t in trees.items()}
        assert running == {d: ("9.0.1" if d == broken else "9.0.2") for d in UNITS}
        assert trees[broken].target() == "releases/9.0.1"
        journal = trees[broken].journal()
        assert (journal["outcome"], journal["rolled_back"]) == ("failed", True)
        wait_for("the API reports what each unit runs", lambda: {
            d: v.get("fw") for d, v in devices().items()} == running, 60)

        # Every unit offered once: one update command per unit, each answered.
        with Store.open(db, migrate=False) as store:
            offers = store._rows("SELECT device_id, status FROM commands "
                                 "WHERE action = 'update'")
        assert sorted(o["device_id"] for o in offers) == sorted(UNITS)
        assert sorted(o["status"] for o in offers) == ["done", "done", "failed"]
        print(f"\nrollout of 9.0.2 to 3 units: canary applied in {took_canary:.1f} s, "
              f"stopped ({final['reason']}) {took:.1f} s after the start; offers "
              f"{len(offers)}; running after: {running}")
    finally:
        for tree in trees.values():
            tree.stop()
