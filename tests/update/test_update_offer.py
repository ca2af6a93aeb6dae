"""A release the controller offers (the ``update`` command), end to end: a real Mosquitto,
the real unit daemon on mock pins, a local HTTP server with Range support serving a real
bundle (``support.release``), and for the whole path a unit tree whose update process
restarts the daemon through the stand-in systemctl (tests/update/fake_systemctl.py)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from bundle_server import BundleServer, Fault

from protocol import Command, encode

REPO = Path(__file__).resolve().parents[2]
RECORDER = Path(__file__).with_name("record_launch.py")
DEVICE = "dlh-offer-01"
TOPIC = f"smartcity/v1/dlh/{DEVICE}"
TREE_TOPIC = "smartcity/v1/dlh/dlh-upd-01"
WITA = ZoneInfo("Asia/Makassar")


# --------------------------------------------------------------------------------------
# Helpers: the daemon, the controller's side on MQTT
# --------------------------------------------------------------------------------------
def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


class Daemon:
    """``smartcity-edge run`` of this checkout on mock pins, in its own session."""

    def __init__(self, base: Path, broker, *, keys: list[str], window: str = "00:00-24:00",
                 launcher: list[str] | None = None):
        self.state = base / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.config = base / "unit.toml"
        self.log = base / "daemon.log"
        self.config.write_text("\n".join([
            'kind = "irrigation"', f'state_dir = "{self.state}"', "",
            "[unit]", f'device_id = "{DEVICE}"', 'opd = "dlh"', "",
            "[broker]", f'host = "{broker.host}"', f"port = {broker.port}", "",
            "[hardware]", 'pin_factory = "mock"', "",
            "[clock]", 'sync_check = "assume_synced"', "",
            "[update]", f"trusted_keys = {toml_list(keys)}", f'window = "{window}"',
            *([f"launcher = {toml_list(launcher)}"] if launcher else []), "",
            "[[outputs]]", 'name = "valve1"', "pin = 17", "max_on_s = 600", "",
            "[[zones]]", 'name = "lawn"', 'valve = "valve1"', ""]))
        self.proc: subprocess.Popen | None = None

    def start(self) -> Daemon:
        env = {k: v for k, v in os.environ.items() if k != "SMARTCITY_UPDATE_KILL_AT"}
        env["PYTHONPATH"] = str(REPO)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(self.config)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.state, env=env,
                start_new_session=True)
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def part(self, version: str) -> Path:
        return self.state / "downloads" / f"{version}.bundle.part"


@pytest.fixture
def daemons():
    started: list[Daemon] = []

    def make(*args, **kwargs) -> Daemon:
        daemon = Daemon(*args, **kwargs)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()


@pytest.fixture
def server():
    found: list[BundleServer] = []

    def make(files: dict[str, bytes]) -> BundleServer:
        srv = BundleServer(files).start()
        found.append(srv)
        return srv

    yield make
    for srv in found:
        srv.close()


def wait_for(what: str, fn, timeout: float = 30.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {what}")


def messages(client, topic: str, suffix: str) -> list[dict]:
    return [json.loads(m.payload) for m in client.received()
            if m.topic == f"{topic}/{suffix}" and m.payload]


def offer(client, cmd_id: str, version: str, url: str, data: bytes, *, topic: str = TOPIC,
          sha256: str | None = None) -> None:
    now = datetime.now(UTC)
    client.publish(f"{topic}/cmd", encode(Command(
        id=cmd_id, issued_at=now, expires_at=now + timedelta(minutes=30), action="update",
        params={"version": version, "url": url, "size": len(data),
                "sha256": sha256 or hashlib.sha256(data).hexdigest()})))


def reply(client, cmd_id: str, topic: str = TOPIC, timeout: float = 20.0) -> dict:
    return wait_for(f"reply to {cmd_id}", lambda: next(
        (r for r in messages(client, topic, "cmd/reply") if r["id"] == cmd_id), None),
        timeout)


def event(client, type_: str, update_id: str, topic: str = TOPIC,
          timeout: float = 60.0) -> dict:
    def found():
        hits = {e["seq"]: e["details"] for e in messages(client, topic, "event")
                if e["type"] == type_ and e["details"].get("update_id") == update_id}
        return list(hits.values())

    hits = wait_for(f"{type_} for {update_id}", found, timeout)
    assert len(hits) == 1, hits  # reported once
    return hits[0]


def running_fw(client, topic: str = TOPIC, timeout: float = 30.0) -> str:
    return wait_for("an online status", lambda: next(
        (s["fw"] for s in reversed(messages(client, topic, "status")) if s["online"]), None),
        timeout)


def launches(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def watcher(mosquitto, mqtt_client_factory):
    client = mqtt_client_factory(mosquitto)
    client.subscribe("smartcity/v1/#")
    return client


# --------------------------------------------------------------------------------------
# The refusals and the answers that need no download
# --------------------------------------------------------------------------------------
def test_offer_refused_on_a_unit_with_no_trusted_key(tmp_path, mosquitto, watcher, daemons,
                                                    server):
    data = os.urandom(50_000)
    srv = server({"/r.bundle": data})
    daemons(tmp_path, mosquitto, keys=[]).start()
    running_fw(watcher)
    offer(watcher, "offer-e1", "9.1.0", srv.url("/r.bundle"), data)
    got = reply(watcher, "offer-e1")
    assert (got["status"], got["code"], got["params"]) == (
        "rejected", "update_not_trusted", {"version": "9.1.0"})
    time.sleep(1.0)
    assert srv.requests == []  # nothing downloaded
    assert not (tmp_path / "state" / "update-offer.json").exists()


def test_offer_with_a_wrong_sha256_fails_at_download_and_installs_nothing(
        tmp_path, kit, mosquitto, watcher, daemons, server):
    data = os.urandom(300_000)
    srv = server({"/w.bundle": data})
    record = tmp_path / "launched.jsonl"
    daemon = daemons(tmp_path, mosquitto, keys=[kit.public],
                     launcher=[sys.executable, str(RECORDER), "{request}", str(record)]).start()
    fw = running_fw(watcher)

    offer(watcher, "offer-c0", fw, srv.url("/w.bundle"), data)
    got = reply(watcher, "offer-c0")  # the version it runs: nothing to do
    assert (got["status"], got["code"], got["params"]) == (
        "done", "update_current", {"version": fw})

    offer(watcher, "offer-c1", "9.1.0", srv.url("/w.bundle"), data, sha256="0" * 64)
    got = reply(watcher, "offer-c1")
    assert (got["status"], got["code"]) == ("accepted", "update_accepted")
    assert got["params"] == {"version": "9.1.0", "window": "00:00-24:00"}
    failed = event(watcher, "update_failed", "offer-c1")
    assert failed["step"] == "download" and failed["version"] == "9.1.0"
    assert "not the release offered" in failed["reason"]
    assert failed["rolled_back"] is False and failed["running"] == fw
    assert launches(record) == []  # nothing handed to the update
    downloads = daemon.state / "downloads"
    assert sorted(p.name for p in downloads.iterdir()) == []  # the file deleted
    wait_for("the offer forgotten", lambda: not (daemon.state / "update-offer.json").exists())
    assert not (daemon.state / "update-request.json").exists()
    assert [r.range for r in srv.requests] == [None]


# --------------------------------------------------------------------------------------
# The maintenance window
# --------------------------------------------------------------------------------------
def test_offer_waits_for_the_maintenance_window(tmp_path, kit, mosquitto, watcher, daemons,
                                                server):
    data = os.urandom(400_000)
    srv = server({"/d.bundle": data})
    record = tmp_path / "launched.jsonl"
    now = datetime.now(WITA)
    opens = (now + timedelta(minutes=1 if now.second < 45 else 2)).replace(second=0,
                                                                           microsecond=0)
    closes = opens + timedelta(minutes=30)
    window = f"{opens:%H:%M}-{closes:%H:%M}"
    daemon = daemons(tmp_path, mosquitto, keys=[kit.public], window=window,
                     launcher=[sys.executable, str(RECORDER), "{request}", str(record)]).start()
    running_fw(watcher)
    online = [s for s in messages(watcher, TOPIC, "status") if s["online"]]
    assert online[-1]["update_window"] == window  # the controller can show it
    offer(watcher, "offer-d1", "9.1.0", srv.url("/d.bundle"), data)
    got = reply(watcher, "offer-d1")
    assert (got["status"], got["params"]) == ("accepted", {"version": "9.1.0",
                                                           "window": window})
    # another offer while this one waits: busy
    offer(watcher, "offer-d2", "9.1.1", srv.url("/d.bundle"), data)
    got = reply(watcher, "offer-d2")
    assert (got["status"], got["code"], got["params"]) == (
        "rejected", "update_busy", {"version": "9.1.1", "busy_with": "9.1.0"})
    # the offer survives a restart while it waits
    daemon.stop()
    daemon.start()
    running_fw(watcher)

    first = wait_for("the download", lambda: srv.requests, timeout=200, step=0.05)
    asked_at = datetime.now(WITA)
    assert asked_at >= opens, (asked_at, opens)
    assert first[0].range is None
    (launched,) = wait_for("the update launched", lambda: launches(record), timeout=30)
    assert launched["id"] == "offer-d1" and launched["version"] == "9.1.0"
    assert launched["sha256_on_disk"] == hashlib.sha256(data).hexdigest()
    print(f"\nwindow {window}: first request at {asked_at:%H:%M:%S} (opens {opens:%H:%M})")


# --------------------------------------------------------------------------------------
# A cut download resumes, within one run and across a SIGKILL
# --------------------------------------------------------------------------------------
def test_offer_download_cut_and_killed_resumes_with_range(tmp_path, kit, mosquitto, watcher,
                                                         daemons, server):
    data = kit.bundle("9.0.2").read_bytes()
    size = len(data)
    srv = server({"/releases/9.0.2/bundle": data})
    cut = size // 3
    held = size // 4
    srv.faults += [Fault(cut_after=cut), Fault(hold_after=held)]
    record = tmp_path / "launched.jsonl"
    daemon = daemons(tmp_path, mosquitto, keys=[kit.public],
                     launcher=[sys.executable, str(RECORDER), "{request}", str(record)]).start()
    running_fw(watcher)
    offer(watcher, "offer-b1", "9.0.2", srv.url("/releases/9.0.2/bundle"), data)
    assert reply(watcher, "offer-b1")["status"] == "accepted"

    # cut after `cut` bytes: the daemon asks again from there; then the server holds
    part = daemon.part("9.0.2")
    wait_for("the second response held", lambda: len(srv.requests) == 2
             and part.exists() and part.stat().st_size == cut + held, timeout=60)
    daemon.kill()
    resume_at = part.stat().st_size
    srv.release()
    daemon.start()

    (launched,) = wait_for("the update launched", lambda: launches(record), timeout=90)
    assert launched["id"] == "offer-b1"
    assert launched["sha256_on_disk"] == hashlib.sha256(data).hexdigest()
    ranges = [r.range for r in srv.requests]
    assert ranges == [None, f"bytes={cut}-", f"bytes={resume_at}-"], ranges
    assert resume_at == cut + held
    assert srv.bytes_served < 2 * size
    assert srv.bytes_served == size  # not a byte twice
    print(f"\nbundle {size} bytes; cut at {cut}, killed at {resume_at}, "
          f"requests {ranges}; bytes served {srv.bytes_served} ({srv.bytes_served / size:.2f}x)")


# --------------------------------------------------------------------------------------
# The whole path: offered, downloaded, installed, reported
# --------------------------------------------------------------------------------------
def test_offer_applied_end_to_end(unit_tree, kit, mosquitto, watcher, server):
    tree = unit_tree
    config = tree.root / "etc/smartcity/irrigation.toml"
    launcher = ["{python}", "-m", "edge.cli", "update", "--request", "{request}",
                "--root", str(tree.root), "--systemctl", str(tree.systemctl)]
    config.write_text(config.read_text().replace(
        "wait_idle_s = 20\n", f"wait_idle_s = 20\nlauncher = {toml_list(launcher)}\n"))
    first = tree.update("--bundle", str(kit.bundle("9.0.1")))
    assert first.returncode == 0, first.stdout + first.stderr
    assert running_fw(watcher, TREE_TOPIC) == "9.0.1"

    data = kit.bundle("9.0.2").read_bytes()
    srv = server({"/api/v1/releases/9.0.2/bundle": data})
    t0 = time.monotonic()
    offer(watcher, "offer-a1", "9.0.2", srv.url("/api/v1/releases/9.0.2/bundle"), data,
          topic=TREE_TOPIC)
    got = reply(watcher, "offer-a1", TREE_TOPIC)
    assert (got["status"], got["code"], got["params"]) == (
        "accepted", "update_accepted", {"version": "9.0.2", "window": "00:00-24:00"})
    applied = event(watcher, "update_applied", "offer-a1", TREE_TOPIC, timeout=180)
    took = time.monotonic() - t0
    assert applied["version"] == "9.0.2" and applied["previous"] == "9.0.1"
    assert tree.target() == "releases/9.0.2"
    assert tree.running_version() == "9.0.2"
    wait_for("status fw 9.0.2", lambda: running_fw(watcher, TREE_TOPIC) == "9.0.2")
    assert tree.journal()["id"] == "offer-a1"
    state = tree.state
    wait_for("the offer and its download cleared", lambda: not (
        state / "update-offer.json").exists() and not any((state / "downloads").glob(
            "*.bundle*")))
    assert not (state / "update-request.json").exists()

    # offered again (a new command id): it runs it already
    offer(watcher, "offer-a2", "9.0.2", srv.url("/api/v1/releases/9.0.2/bundle"), data,
          topic=TREE_TOPIC)
    got = reply(watcher, "offer-a2", TREE_TOPIC)
    assert (got["status"], got["code"]) == ("done", "update_current")
    assert len(srv.requests) == 1
    print(f"\noffer to update_applied: {took:.1f} s (bundle {len(data)} bytes)")
