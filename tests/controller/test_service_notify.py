"""``serve`` under systemd: READY, WATCHDOG and STOPPING on a notify socket, and /healthz
answering 503 with the reason when the broker has been gone too long or the writer died.

The notify socket is the test's own datagram socket (``NOTIFY_SOCKET``), as systemd's.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from controller_support import broker_settings, wait_until
from fastapi.testclient import TestClient
from support.broker import free_port

from controller.api.main import create_app
from controller.ingest import _STOP
from controller.service import ServiceNotifier

REPO = Path(__file__).resolve().parents[2]


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="notify-")  # short: AF_UNIX paths are limited
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def wait_for(self, wanted: str, timeout: float) -> list[str]:
        """Every message until one containing ``wanted`` line arrived; TimeoutError if not."""
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.messages):
                if wanted in message.splitlines():
                    seen, self.messages = self.messages[:i + 1], self.messages[i + 1:]
                    return seen
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {wanted} within {timeout} s; got {self.messages}")
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def drain(self, for_s: float) -> list[str]:
        """What arrives within ``for_s`` seconds."""
        deadline = time.monotonic() + for_s
        got = []
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        return self.messages + got

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify_socket(monkeypatch):
    sock = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    yield sock
    sock.close()


def _write_config(tmp_path: Path, broker, api_port: int, **api) -> Path:
    lines = [f'[database]\npath = "{tmp_path / "controller.db"}"',
             f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "ctl-notify"'
             "\nreconnect_max_s = 2",
             f"[api]\nport = {api_port}" + "".join(f"\n{k} = {v}" for k, v in api.items())]
    path = tmp_path / "controller.toml"
    path.write_text("\n\n".join(lines) + "\n")
    return path


def test_serve_notify_ready_watchdog_stopping(tmp_path, mosquitto, notify_socket):
    port = free_port()
    config = _write_config(tmp_path, mosquitto, port)
    env = {**os.environ, "WATCHDOG_USEC": "400000"}  # a ping every 0.2 s
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "serve", "--config",
                             str(config)], cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        before_ready = notify_socket.wait_for("READY=1", timeout=30)
        assert not any("WATCHDOG=1" in m for m in before_ready)
        # READY means the API answers already
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        pings = [m for m in notify_socket.drain(1.5) if m == "WATCHDOG=1"]
        assert len(pings) >= 4, pings
        proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1", timeout=15)
        # uvicorn ends by the signal it caught: systemd counts SIGTERM as a clean exit
        assert proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _fake_server():
    return SimpleNamespace(started=True, should_exit=False)


def _running_app(tmp_path, mosquitto, **api):
    settings = broker_settings(tmp_path, mosquitto, api=api)
    return create_app(settings)


def test_service_watchdog_withheld_while_writer_dead(tmp_path, mosquitto, notify_socket):
    app = _running_app(tmp_path, mosquitto)
    with TestClient(app) as client:
        ingest = app.state.controller.ingest
        wait_until(lambda: ingest.connected, what="ingest connected")
        server = _fake_server()
        notifier = ServiceNotifier(server, app, interval_s=0.1, poll_s=0.02)
        notifier.start()
        try:
            notify_socket.wait_for("READY=1", timeout=5)
            notify_socket.wait_for("WATCHDOG=1", timeout=5)
            ingest._queue.put(_STOP)  # the writer thread ends, as if it had died
            wait_until(lambda: not ingest._writer.is_alive(), what="writer thread ended")
            notify_socket.drain(0.3)  # a ping already under way may still arrive
            notify_socket.messages.clear()
            assert "WATCHDOG=1" not in notify_socket.drain(1.0)
            r = client.get("/healthz")
            assert r.status_code == 503
            assert r.json()["status"] == "failing"
            assert "ingest writer thread is not running" in r.json()["problems"]
        finally:
            server.should_exit = True
            notifier.stop()
        assert "STOPPING=1" in notify_socket.drain(0.5)


def test_service_watchdog_withheld_while_database_not_writable(tmp_path, mosquitto,
                                                               notify_socket):
    app = _running_app(tmp_path, mosquitto)
    with TestClient(app):
        store = app.state.controller.store
        notifier = ServiceNotifier(_fake_server(), app, interval_s=0.1, poll_s=0.02)
        notifier.start()
        try:
            notify_socket.wait_for("WATCHDOG=1", timeout=5)
            store.db.execute("PRAGMA query_only = ON")  # writes refused, as on a read-only disk
            try:
                notify_socket.drain(0.3)
                notify_socket.messages.clear()
                assert "WATCHDOG=1" not in notify_socket.drain(1.0)
            finally:
                store.db.execute("PRAGMA query_only = OFF")
            notify_socket.wait_for("WATCHDOG=1", timeout=5)  # resumes once it is writable
        finally:
            notifier.stop()


def test_service_watchdog_goes_on_while_another_writer_holds_the_database(
        tmp_path, mosquitto, notify_socket):
    app = _running_app(tmp_path, mosquitto)
    with TestClient(app):
        store = app.state.controller.store
        notifier = ServiceNotifier(_fake_server(), app, interval_s=0.1, poll_s=0.02)
        notifier.start()
        other = sqlite3.connect(store.path, isolation_level=None)
        try:
            notify_socket.wait_for("WATCHDOG=1", timeout=5)
            other.execute("BEGIN IMMEDIATE")  # a long write transaction elsewhere
            notify_socket.messages.clear()
            assert "WATCHDOG=1" in notify_socket.drain(2.5)  # busy is not dead
        finally:
            other.execute("ROLLBACK")
            other.close()
            notifier.stop()


def test_healthz_503_when_broker_unreachable_past_grace(tmp_path, mosquitto):
    app = _running_app(tmp_path, mosquitto, health_broker_grace_s=1.0)
    with TestClient(app) as client:
        ingest = app.state.controller.ingest
        wait_until(lambda: ingest.connected, what="ingest connected")
        ok = client.get("/healthz")
        assert ok.status_code == 200 and ok.json()["status"] == "ok"
        assert ok.json()["problems"] == []
        mosquitto.stop()
        wait_until(lambda: not ingest.connected, what="ingest disconnected")
        within = client.get("/healthz")
        assert within.status_code == 200 and within.json()["status"] == "degraded"
        failing = wait_until(lambda: (r := client.get("/healthz")).status_code == 503 and r,
                             timeout=5, what="503")
        body = failing.json()
        assert body["status"] == "failing" and body["mqtt_connected"] is False
        assert any(p.startswith("broker unreachable for") for p in body["problems"])
        mosquitto.restart()
        wait_until(lambda: client.get("/healthz").status_code == 200, timeout=15,
                   what="healthy again")
