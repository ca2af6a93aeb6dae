"""The controller SIGKILLed while units publish, then restarted: every seq stored once.

The controller runs as a real process (``smartcity-controller serve``). Each stand-in unit
is a paho client that publishes seq 1..N with QoS 1 and, like the real outbox, forgets a
message only when the controller's ``ack`` covers it and sends again from the last ack
when acks stall.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from controller_support import add_device, wait_until
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from controller.store import Store
from protocol.codec import decode, encode
from protocol.models import Ack, Telemetry
from protocol.topics import topic

UNITS = 4
PER_UNIT = 300


class OutboxUnit:
    """Publishes seq 1..n; keeps each message until acked; resends from the ack on a stall."""

    def __init__(self, broker, opd: str, device: str, n: int, *, rate_per_s: float = 150,
                 stall_s: float = 1.5):
        self.opd, self.device, self.n = opd, device, n
        self.rate_per_s, self.stall_s = rate_per_s, stall_s
        self.acked = 0
        self.resends = 0
        self._ack_at = time.monotonic()
        self._stop = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"unit-{device}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(topic(opd, device, "ack"), qos=1)
        self.client.on_message = self._on_ack
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_ack(self, client, userdata, msg) -> None:
        seq = decode(Ack, msg.payload).seq
        if seq > self.acked:
            self.acked, self._ack_at = seq, time.monotonic()

    def _payload(self, seq: int) -> bytes:
        return encode(Telemetry(seq=seq, ts=datetime.now(UTC),
                                readings={"flow_lpm.main": float(seq)}))

    def _run(self) -> None:
        sent = 0
        while not self._stop.is_set() and self.acked < self.n:
            if sent < self.n:
                sent += 1
                self.client.publish(topic(self.opd, self.device, "telemetry"),
                                    self._payload(sent), qos=1)
                time.sleep(1 / self.rate_per_s)
                continue
            if time.monotonic() - self._ack_at > self.stall_s:
                self.resends += 1
                for seq in range(self.acked + 1, self.n + 1):
                    self.client.publish(topic(self.opd, self.device, "telemetry"),
                                        self._payload(seq), qos=1)
                self._ack_at = time.monotonic()
            time.sleep(0.05)

    def start(self) -> OutboxUnit:
        self.thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def controller_command() -> list[str]:
    script = shutil.which("smartcity-controller", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "controller.cli"]


class ControllerProcess:
    def __init__(self, config: Path, port: int, log: Path):
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> ControllerProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*controller_command(), "serve", "--config",
                                          str(self.config)], stdout=out, stderr=out,
                                         start_new_session=True)
        wait_until(self._ready, timeout=20, what="controller ready", interval=0.05)
        return self

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            health = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).json()
        except httpx.HTTPError:
            return False
        return health["mqtt_connected"] is True

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.mark.parametrize("units_resend", [True, False], ids=["units-resend", "broker-only"])
def test_ingest_sigkill_mid_stream_loses_and_doubles_nothing(tmp_path, mosquitto, units_resend):
    """``broker-only``: the units never resend, so everything rests on the controller's
    persistent session and on acknowledging each delivery only after its commit."""
    db = tmp_path / "controller.db"
    port = free_port()
    config = tmp_path / "controller.toml"
    config.write_text(f"""
[database]
path = "{db}"
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
client_id = "ctl-sigkill-{os.getpid()}"
reconnect_max_s = 2
[ingest]
ack_interval_s = 0.2
[api]
port = {port}
""")
    devices = [f"taman-{i:02d}" for i in range(UNITS)]
    with Store.open(db) as store:
        for device in devices:
            add_device(store, device, "dlh")
    controller = ControllerProcess(config, port, tmp_path / "controller.log").start()
    stall_s = 1.5 if units_resend else 3600
    units = [OutboxUnit(mosquitto, "dlh", d, PER_UNIT, stall_s=stall_s).start() for d in devices]
    try:
        def stored() -> int:
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]

        wait_until(lambda: stored() >= UNITS * PER_UNIT // 4, timeout=20, what="a quarter in")
        controller.kill()
        killed_at = stored()
        assert killed_at < UNITS * PER_UNIT, "killed too late to prove anything"
        time.sleep(0.5)  # units keep publishing into the broker meanwhile
        controller.start()
        wait_until(lambda: all(u.acked == PER_UNIT for u in units), timeout=40,
                   what="every unit fully acked")
    finally:
        for unit in units:
            unit.close()
        controller.stop()

    with sqlite3.connect(db) as conn:
        for device in devices:
            seqs = [r[0] for r in conn.execute(
                "SELECT seq FROM telemetry WHERE device_id = ? ORDER BY seq", [device])]
            assert seqs == list(range(1, PER_UNIT + 1)), device
            acked = conn.execute("SELECT acked_seq, missing FROM device_seq WHERE device_id = ?",
                                 [device]).fetchone()
            assert acked == (PER_UNIT, 0)
    assert killed_at > 0
    if not units_resend:
        assert not any(u.resends for u in units)
    print(f"stored {killed_at} before SIGKILL; resends {[u.resends for u in units]}")


@pytest.fixture(autouse=True)
def _no_system_broker(mosquitto):
    assert mosquitto.port != 1883
