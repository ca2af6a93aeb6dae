"""``serve --no-api`` (ingest and periodic work, no HTTP server, still READY and WATCHDOG
for systemd) and ``serve --no-ingest`` (the API, publishing commands on an MQTT
connection of its own, subscribed to nothing), each a real process on a real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from controller_support import add_device, make_token, wait_until
from support.broker import free_port
from test_service_notify import notify_socket  # noqa: F401 - a fixture

from controller.cli import main
from controller.store import Store
from protocol.codec import decode, encode
from protocol.models import Ack, Command, Telemetry
from protocol.topics import topic

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, broker, name: str, api_port: int) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[database]\npath = "{tmp_path / "controller.db"}"\n\n'
                    f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                    f'client_id = "ctl-{name}"\nreconnect_max_s = 2\n\n'
                    f"[ingest]\nack_interval_s = 0.1\n\n[api]\nport = {api_port}\n")
    return path


def _serve(config: Path, *flags: str, env: dict | None = None) -> subprocess.Popen:
    log = (config.parent / f"{config.stem}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "controller.cli", "serve", "--config",
                             str(config), *flags], cwd=REPO, env=env or dict(os.environ),
                            stdout=log, stderr=log)


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def test_serve_no_api_ingests_and_tells_systemd(tmp_path, mosquitto, mqtt_client_factory,
                                                notify_socket):  # noqa: F811
    port = free_port()
    config = _config(tmp_path, mosquitto, "ingest", port)
    with Store.open(tmp_path / "controller.db") as store:
        add_device(store, "taman-na-1", "dlh")
    unit = mqtt_client_factory(mosquitto)
    unit.subscribe(topic("dlh", "taman-na-1", "ack"))
    proc = _serve(config, "--no-api", env={**os.environ, "WATCHDOG_USEC": "400000"})
    try:
        ready = notify_socket.wait_for("READY=1", timeout=30)
        assert any("STATUS=ingest running (no API)" in m for m in ready), ready
        with pytest.raises(httpx.ConnectError):  # no HTTP server at all
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        for seq in (1, 2, 3):
            unit.publish(topic("dlh", "taman-na-1", "telemetry"), encode(Telemetry(
                seq=seq, ts=datetime.now(UTC), readings={"flow_lpm.main": 1.0})))
        acks = unit.wait_for(lambda: [decode(Ack, m.payload).seq for m in unit.received()
                                      if decode(Ack, m.payload).seq == 3], timeout=15)
        assert acks
        with Store.open(tmp_path / "controller.db", migrate=False) as store:
            assert store.acked_seq("taman-na-1") == 3
        pings = [m for m in notify_socket.drain(1.0) if m == "WATCHDOG=1"]
        assert len(pings) >= 2, pings
        proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1", timeout=15)
        assert proc.wait(20) == 0
    finally:
        _stop(proc)
    log = (tmp_path / "ingest.log").read_text()
    assert "leading" in log  # the only instance runs the periodic work


def test_serve_no_ingest_publishes_commands_and_stores_nothing(tmp_path, mosquitto,
                                                               mqtt_client_factory):
    port = free_port()
    config = _config(tmp_path, mosquitto, "api", port)
    with Store.open(tmp_path / "controller.db") as store:
        add_device(store, "taman-ni-1", "dlh")
        token = make_token(store, "admin", "admin")
    unit = mqtt_client_factory(mosquitto)
    unit.subscribe(topic("dlh", "taman-ni-1", "cmd"))
    proc = _serve(config, "--no-ingest")
    url = f"http://127.0.0.1:{port}"
    try:
        health = wait_until(lambda: _health(url), timeout=30, what="API up")
        assert health["mqtt_connected"] is True
        assert health["leader"] is None  # takes no part in the periodic work
        r = httpx.post(f"{url}/api/v1/devices/taman-ni-1/commands", json={"action": "stop_all"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code in (200, 201, 202), r.text
        command_id = r.json()["id"]
        got = unit.wait_for(lambda: [decode(Command, m.payload) for m in unit.received()],
                            timeout=10)
        assert [c.id for c in got] == [command_id]
        wait_until(lambda: httpx.get(f"{url}/api/v1/commands/{command_id}", headers={
            "Authorization": f"Bearer {token}"}, timeout=5).json()["status"] == "sent",
            timeout=10, what="command marked sent on the broker's PUBACK")
        # Nothing subscribed: what a unit publishes is not stored by this instance.
        unit.publish(topic("dlh", "taman-ni-1", "telemetry"), encode(Telemetry(
            seq=1, ts=datetime.now(UTC), readings={"flow_lpm.main": 1.0})))
        time.sleep(1.0)
        with Store.open(tmp_path / "controller.db", migrate=False) as store:
            assert store.acked_seq("taman-ni-1") == 0
    finally:
        assert _stop(proc) in (0, -signal.SIGTERM)


def _health(url: str) -> dict | None:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).json()
    except httpx.HTTPError:
        return None


def test_serve_refuses_no_api_with_no_ingest(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[mqtt]\nenabled = false\n')
    with pytest.raises(SystemExit) as info:
        main(["serve", "--config", str(config), "--no-api", "--no-ingest"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
