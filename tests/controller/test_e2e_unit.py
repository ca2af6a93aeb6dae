"""End to end: a real Mosquitto, the controller (API + ingest) and a real irrigation unit.

The unit is ``edge.irrigation`` with its MQTT link and outbox, in its own process, on
mock pins that log every valve change (``unit_process.py``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from controller_support import add_device, auth, broker_settings, make_token, wait_until
from fastapi.testclient import TestClient
from support.unit_toml import write_unit_toml

from controller.api.main import create_app
from controller.reports import WITA
from controller.store import Store

HERE = Path(__file__).parent
DEVICE, OPD = "taman-e2e", "dlh"
BASE = f"/api/v1/devices/{DEVICE}"
FINAL = ("done", "failed", "rejected", "expired")
RUN_S = 10  # edge.irrigation.rules.MIN_RUN_S: shorter manual runs are refused

PROGRAM = {"watering_pct": 80, "rain_delay_h": 6,
           "programs": [{"name": "pagi", "start_times": ["05:30"],
                         "zones": [{"zone": "zone1", "duration_min": 5}]}]}


@pytest.fixture
def telemetry_s():
    return 1


@pytest.fixture
def unit(tmp_path, mosquitto, telemetry_s):
    config = write_unit_toml(tmp_path / "unit.toml", device_id=DEVICE, opd=OPD,
                             state_dir=tmp_path / "unit", host=mosquitto.host,
                             port=mosquitto.port, telemetry_s=telemetry_s)
    pins = tmp_path / "pins.log"
    log = (tmp_path / "unit.log").open("w")
    proc = subprocess.Popen([sys.executable, str(HERE / "unit_process.py"), str(config),
                             str(pins)], stdout=log, stderr=log, start_new_session=True)
    yield proc, pins
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    log.close()


@pytest.fixture
def api(tmp_path, mosquitto, unit, database):
    """The controller (API + ingest) on the test broker, an operator's client, and the
    unit registered and online."""
    settings = broker_settings(tmp_path, mosquitto, database=database)
    with Store.open(settings.database.target) as store:
        add_device(store, DEVICE, OPD)
        token = make_token(store, "op", "operator", OPD)
        with TestClient(create_app(settings, store=store)) as client:
            client.headers.update(auth(token))
            wait_until(lambda: client.get(BASE).json()["online"], timeout=20, what="online")
            yield client


def command(api, action: str, **params) -> str:
    """Send a command through the API (202); its URL."""
    r = api.post(f"{BASE}/commands", json={"action": action, "params": params})
    assert r.status_code == 202, r.text
    return f"/api/v1/commands/{r.json()['id']}"


def valve_changes(pins: Path) -> list[tuple[float, int]]:
    if not pins.exists():
        return []
    return [(float(t), int(s)) for t, name, s in
            (line.split() for line in pins.read_text().splitlines()) if name == "GPIO17"]


def test_e2e_unit_online_command_schedule_and_last_will(api, unit):
    proc, pins = unit

    # Online, with telemetry.
    wait_until(lambda: api.get(f"{BASE}/telemetry").json()["items"], timeout=10,
               what="telemetry")
    device = api.get(BASE).json()
    assert device["app"] == "irrigation" and device["clock_synced"] is True
    assert device["outputs"] == {"valve-1": False}
    started = wait_until(lambda: api.get(f"{BASE}/events?type=started").json()["items"],
                         timeout=10, what="the started event")
    assert started[0]["details"]["outputs"] == {"valve-1": False}

    # Run now (10 s, the unit's shortest run) and, while it runs, a schedule edit.
    r = api.post(f"{BASE}/commands", json={
        "action": "run_zone", "params": {"zone": "zone1", "duration_s": RUN_S}})
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("pending", "sent")
    url = f"/api/v1/commands/{r.json()['id']}"
    r = api.put(f"{BASE}/schedule", json={"body": PROGRAM})
    assert r.status_code == 200 and r.json()["state"] in ("pending", "in_sync")

    # The schedule: pending until the unit's status reports it applied.
    def in_sync():
        schedule = api.get(f"{BASE}/schedule").json()
        return schedule if schedule["state"] == "in_sync" else None

    synced = wait_until(in_sync, timeout=15, what="schedule in sync")
    assert synced["reported_version"] == synced["desired"]["version"] == 1
    # the status (not queued) may come before the event (through the outbox)
    applied = wait_until(lambda: api.get(f"{BASE}/events?type=config_applied").json()["items"],
                         timeout=10, what="the config_applied event")
    assert applied[-1]["details"]["version"] == 1

    # The command: sent -> accepted -> done, and the valve really ran RUN_S.
    seen = []

    def finished_command():
        command = api.get(url).json()
        seen.append(command["status"])
        return command if command["status"] in FINAL else None

    done = wait_until(finished_command, timeout=RUN_S + 10, what="command done",
                      interval=0.05)
    assert done["status"] == "done", (done["detail"], done["replies"])
    assert [(x["status"], x["code"]) for x in done["replies"]] == [
        ("accepted", "run_accepted"), ("done", "run_completed")]
    assert done["replies"][0]["params"] == {"zone": "zone1", "duration_s": RUN_S}
    assert done["reply_code"] == "run_completed"
    assert "accepted" in seen
    changes = valve_changes(pins)
    assert [s for _, s in changes] == [1, 0], changes
    assert changes[1][0] - changes[0][0] == pytest.approx(RUN_S, abs=0.5)
    finished = wait_until(lambda: api.get(f"{BASE}/events?type=run_finished").json()
                          ["items"], timeout=5, what="run_finished")
    assert finished[0]["details"]["cmd_id"] == done["id"]

    # Every message the unit sent is acked: its outbox drains to nothing.
    wait_until(lambda: api.get(BASE).json()["backlog"] == 0, timeout=15,
               what="unit outbox drained")
    assert api.get(BASE).json()["seq"]["missing"] == 0

    # Killed: the broker publishes its Last Will.
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    t0 = time.monotonic()
    wait_until(lambda: not api.get(BASE).json()["online"], timeout=15, what="offline")
    print(f"offline seen {time.monotonic() - t0:.2f} s after SIGKILL")


@pytest.mark.parametrize("telemetry_s", [300])  # no telemetry during the test: the status
def test_e2e_unit_holds_and_next_start_shown_at_once(api):
    """Pause, resume, rain delay and skip-next reach the device object from the unit's own
    status as soon as they change (telemetry every 300 s could not carry them)."""
    assert api.put(f"{BASE}/schedule", json={"body": PROGRAM}).status_code == 200

    def device_when(check, what):
        t0 = time.monotonic()
        device = wait_until(lambda: d if check(d := api.get(BASE).json()) else None,
                            timeout=10, what=what, interval=0.05)
        print(f"{what}: {time.monotonic() - t0:.2f} s")
        return device

    device = device_when(lambda d: d["next_start"] is not None, "next start")
    first = datetime.fromisoformat(device["next_start"]["at"])
    assert device["next_start"]["program"] == "pagi"
    assert device["next_start"]["start"] == "05:30"
    assert first.astimezone(WITA).strftime("%H:%M") == "05:30"
    assert device["next_start_reason"] is None and device["paused_until"] is None


    until = (datetime.now(UTC) + timedelta(hours=24)).replace(microsecond=0)
    command(api, "pause", until=until.isoformat())
    device = device_when(lambda d: d["next_start_reason"] == "paused", "paused")
    assert datetime.fromisoformat(device["paused_until"]) == until
    assert device["next_start"] is None

    command(api, "resume")
    device = device_when(lambda d: d["next_start"] is not None, "resumed")
    assert device["paused_until"] is None and device["next_start_reason"] is None

    command(api, "rain_delay", hours=12)
    device = device_when(lambda d: d["next_start_reason"] == "rain_delay", "rain delay")
    delay = datetime.fromisoformat(device["rain_delay_until"]) - datetime.now(UTC)
    assert timedelta(hours=11, minutes=59) < delay <= timedelta(hours=12)
    command(api, "rain_delay", hours=0)
    device_when(lambda d: d["next_start"] is not None, "rain delay ended")

    command(api, "skip_next")
    device = device_when(lambda d: d["skip_next"] == ["*"], "skip next")
    assert datetime.fromisoformat(device["next_start"]["at"]) == first + timedelta(days=1)
    listed = next(d for d in api.get("/api/v1/devices").json()
                  if d["device_id"] == DEVICE)
    assert {k: listed[k] for k in ("skip_next", "next_start", "next_start_reason")} == {
        k: device[k] for k in ("skip_next", "next_start", "next_start_reason")}


def test_e2e_unit_stop_zone_replies_zone_stopped_and_the_run_ends_stopped(api, unit):
    """A person stops one zone: the valve closes, the reply arrives with its code, and
    the run's end says it was stopped, and by which command."""
    proc, pins = unit


    def final(url):
        return wait_until(lambda: c if (c := api.get(url).json())["status"] in FINAL
                          else None, timeout=15, what=f"{url} answered", interval=0.05)

    run = command(api, "run_zone", zone="zone1", duration_s=600)
    wait_until(lambda: [s for _, s in valve_changes(pins)] == [1], timeout=15,
               what="the valve open")
    stop = command(api, "stop_zone", zone="zone1")
    stopped = final(stop)
    assert stopped["status"] == "done", stopped
    assert [(x["status"], x["code"], x["params"]) for x in stopped["replies"]] == [
        ("done", "zone_stopped", {"zone": "zone1"})]
    assert stopped["replies"][0]["detail"] == "zone zone1 stopped"
    assert (stopped["reply_code"], stopped["reply_params"]) == (
        "zone_stopped", {"zone": "zone1"})
    ran = final(run)
    assert [(x["status"], x["code"]) for x in ran["replies"]] == [
        ("accepted", "run_accepted"), ("failed", "run_ended")]
    assert ran["replies"][1]["params"]["ended"] == "stopped"
    assert [s for _, s in valve_changes(pins)] == [1, 0]
    (end,) = wait_until(lambda: api.get(f"{BASE}/events?type=run_finished").json()
                        ["items"], timeout=5, what="run_finished")
    assert end["details"]["ended"] == "stopped"
    assert end["details"]["stopped_by"] == stopped["id"]
    assert end["details"]["cmd_id"] == ran["id"]

    # Nothing runs now: refused by the unit, with a code (the zone exists).
    again = final(command(api, "stop_zone", zone="zone1"))
    assert (again["status"], again["reply_code"], again["reply_params"]) == (
        "rejected", "zone_not_running", {"zone": "zone1"})
