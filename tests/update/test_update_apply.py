"""``smartcity-edge update`` end to end, through the CLI and real processes: a unit tree
under ``--root``, the real daemon started by a stand-in systemctl on mock pins, a real
Mosquitto, bundles built by ``smartcity-controller release build``."""

from __future__ import annotations

import json
import time

from support.release import SERVICE


def _events(client, type_: str) -> dict[int, dict]:
    """The unit's events of ``type_`` by seq (an unacknowledged event comes again after
    a restart: no controller acknowledges here)."""
    found = {}
    for msg in client.received():
        if msg.topic.endswith("/event"):
            doc = json.loads(msg.payload)
            if doc.get("type") == type_:
                found[doc["seq"]] = doc["details"]
    return found


def _wait_event(client, type_: str, version: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [d for d in _events(client, type_).values() if d.get("version") == version]
        if found:
            assert len(found) == 1, found  # reported once
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no {type_} event for {version} within {timeout} s")


def _break_start(src) -> None:
    """A version whose daemon dies at start (its health gate can never pass)."""
    path = src / "edge" / "daemon.py"
    text = path.read_text()
    marker = "    config = validate_config(config_path)\n"
    assert marker in text
    path.write_text(text.replace(marker, marker + "    raise SystemExit('broken build')\n", 1))


def test_update_apply_then_roll_back_a_version_that_fails_its_gate(
        unit_tree, kit, mosquitto, mqtt_client_factory):
    watcher = mqtt_client_factory(mosquitto)
    watcher.subscribe("smartcity/v1/#")
    tree = unit_tree

    # A fresh unit: the first bundle is installed, started and passes its gate.
    t0 = time.monotonic()
    first = tree.update("--bundle", str(kit.bundle("9.0.1")))
    took_first = time.monotonic() - t0
    assert first.returncode == 0, first.stdout + first.stderr
    assert tree.target() == "releases/9.0.1"
    assert tree.running_version() == "9.0.1"
    applied = _wait_event(watcher, "update_applied", "9.0.1")
    assert "previous" not in applied
    # the unit file now names the release symlink
    assert "/opt/smartcity/current/bin/smartcity-edge" in (
        tree.root / "etc/systemd/system" / SERVICE).read_text()

    # The next version: switched to, restarted, healthy; the previous one kept.
    t0 = time.monotonic()
    second = tree.update("--bundle", str(kit.bundle("9.0.2")))
    took_second = time.monotonic() - t0
    assert second.returncode == 0, second.stdout + second.stderr
    assert tree.target() == "releases/9.0.2"
    assert tree.running_version() == "9.0.2"
    assert sorted(p.name for p in tree.releases.iterdir()) == ["9.0.1", "9.0.2"]
    applied = _wait_event(watcher, "update_applied", "9.0.2")
    assert applied["previous"] == "9.0.1" and applied["duration_s"] > 0

    # A version whose daemon dies at start: the gate fails, 9.0.2 is put back.
    third = tree.update("--bundle", str(kit.bundle("9.0.3", patch=_break_start)),
                        "--health-timeout-s", "20")
    assert third.returncode == 1, third.stdout + third.stderr
    assert "switched back to 9.0.2" in third.stdout
    assert tree.target() == "releases/9.0.2"
    assert tree.running_version() == "9.0.2"
    failed = _wait_event(watcher, "update_failed", "9.0.3")
    assert failed["running"] == "9.0.2"
    assert failed["rolled_back"] is True and failed["step"] == "health"
    assert "did not start" in failed["reason"] or "stopped" in failed["reason"]
    journal = tree.journal()
    assert (journal["step"], journal["outcome"]) == ("done", "failed")

    size_mb = kit.bundle("9.0.2").stat().st_size / 1e6
    print(f"\nbundle {size_mb:.1f} MB; first install {took_first:.1f} s, "
          f"update {took_second:.1f} s")


def test_update_keeps_the_last_two_versions(unit_tree, kit):
    tree = unit_tree
    for version in ("9.0.1", "9.0.2", "9.0.4"):
        result = tree.update("--bundle", str(kit.bundle(version)))
        assert result.returncode == 0, result.stdout + result.stderr
    assert tree.running_version() == "9.0.4"
    assert sorted(p.name for p in tree.releases.iterdir()) == ["9.0.2", "9.0.4"]
    assert not (tree.root / "opt/smartcity/staging/9.0.4").exists()


def test_update_waits_until_no_run_is_active(unit_tree, kit, mosquitto, mqtt_client_factory):
    from datetime import UTC, datetime, timedelta

    from protocol import Command, encode

    tree = unit_tree
    assert tree.update("--bundle", str(kit.bundle("9.0.1"))).returncode == 0
    watcher = mqtt_client_factory(mosquitto)
    watcher.subscribe("smartcity/v1/#")
    now = datetime.now(UTC)
    watcher.publish("smartcity/v1/dlh/dlh-upd-01/cmd", encode(Command(
        id="upd-run-1", issued_at=now, expires_at=now + timedelta(seconds=60),
        action="run_zone", params={"zone": "lawn", "duration_s": 45})))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (tree.health() or {}).get("busy"):
        time.sleep(0.1)
    assert tree.health()["busy"] is True

    # A short wait: the run (45 s) outlasts the install and the wait, the update gives
    # up and switches nothing.
    before = tree.snapshot()
    short = tree.update("--bundle", str(kit.bundle("9.0.2")), "--wait-idle-s", "2")
    assert short.returncode == 1, short.stdout + short.stderr
    assert "stayed active" in short.stdout
    assert tree.target() == "releases/9.0.1"
    assert {k: v for k, v in tree.snapshot().items() if not k.startswith("releases/9.0.2")
            } == before  # 9.0.2 is installed for the next try, nothing else changed
    assert tree.journal()["failed_step"] == "idle"

    # A longer wait: the update switches only after the run has finished.
    assert tree.health()["busy"] is True
    result = tree.update("--bundle", str(kit.bundle("9.0.2")), "--wait-idle-s", "120")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept from an earlier attempt" in result.stdout
    finished = [d for d in _events(watcher, "run_finished").values()]
    assert [d.get("ended") for d in finished] == ["completed"]
    assert not _events(watcher, "run_interrupted")
    assert tree.running_version() == "9.0.2"


def _alarm_at_start(src) -> None:
    """A version whose daemon raises an alarm as it starts (it runs, but is not healthy)."""
    path = src / "edge" / "irrigation" / "app.py"
    text = path.read_text()
    marker = "    def start(self) -> None:\n        super().start()\n"
    assert marker in text
    path.write_text(text.replace(marker, marker + "        self.alarm('engine_error', "
                                 "'raised by a broken build at start')\n", 1))


def test_update_rolls_back_a_version_that_raises_an_alarm_at_start(unit_tree, kit):
    tree = unit_tree
    assert tree.update("--bundle", str(kit.bundle("9.0.1"))).returncode == 0
    result = tree.update("--bundle", str(kit.bundle("9.0.6", patch=_alarm_at_start)))
    assert result.returncode == 1, result.stdout + result.stderr
    journal = tree.journal()
    assert journal["reason"] == "alarm raised by the start: engine_error"
    assert (journal["outcome"], journal["rolled_back"]) == ("failed", True)
    assert tree.target() == "releases/9.0.1"
    assert tree.running_version() == "9.0.1"


def test_update_from_a_unit_installed_the_old_way(unit_tree, kit):
    """A unit whose daemon runs /opt/smartcity/venv (its unit file names it): a failed
    update goes back to the venv and its unit file; a good one moves it to releases."""
    import subprocess
    import sys
    import tarfile

    from support.release import clean_env

    tree = unit_tree
    venv = tree.root / "opt/smartcity/venv"
    wheels = tree.root.parent / "wheels"
    with tarfile.open(kit.bundle("9.0.1")) as tar:
        tar.extractall(wheels, filter="data")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--no-index",
                    "--find-links", str(wheels / "wheels"), "--require-hashes", "-r",
                    str(wheels / "requirements.lock")], check=True, env=clean_env())
    unit_file = tree.root / "etc/systemd/system" / SERVICE
    old_unit = unit_file.read_text().replace("/opt/smartcity/current/", "/opt/smartcity/venv/")
    unit_file.write_text(old_unit)
    subprocess.run([str(tree.systemctl), "start", SERVICE], check=True)
    assert tree.running_version() == "9.0.1" and tree.target() is None

    broken = tree.update("--bundle", str(kit.bundle("9.0.3", patch=_break_start)),
                         "--health-timeout-s", "20")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "switched back to venv" in broken.stdout
    assert tree.target() == "venv" and unit_file.read_text() == old_unit
    assert tree.running_version() == "9.0.1"

    good = tree.update("--bundle", str(kit.bundle("9.0.2")))
    assert good.returncode == 0, good.stdout + good.stderr
    assert tree.target() == "releases/9.0.2" and tree.running_version() == "9.0.2"
    assert "/opt/smartcity/current/bin/smartcity-edge" in unit_file.read_text()
    assert tree.journal()["previous_version"] == "venv"
    assert (venv / "bin/python").exists()  # left for the technician to remove
