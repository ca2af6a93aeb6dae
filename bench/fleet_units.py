"""The fleet bench's simulated units: thousands of light MQTT units per process.

Each unit has one MQTT 5 connection with its own login, client id, Last Will, persistent
session, subscriptions (cmd, config, ack), retained online status and per-unit seq, and
publishes QoS 1 telemetry and events as the edge link does; no outbox, no app. A
``Simulator`` drives thousands of them from one ``selectors`` loop in its own process
(``bench/fleet.py --sim-process SPEC``); ``SimGroup`` starts those processes and adds up
their stats.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import selectors
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import ROOT, cpu_seconds

FLEET_SCRIPT = Path(__file__).resolve().with_name("fleet.py")
"""The bench's entry point, which runs one simulator with ``--sim-process SPEC``."""

UNIT_PASSWORD = "bench-unit-password"
LIST_OPD = "dlh"  # the OPD whose device list is fetched (1,000 devices)
OTHER_OPDS = ("dp3", "pupr", "dkp", "disperkim")
EVENT_EVERY = 10


def fleet(units: int, list_size: int) -> list[tuple[str, str]]:
    """(opd, device_id): ``list_size`` units in LIST_OPD, the rest spread over others."""
    out = [(LIST_OPD, f"{LIST_OPD}-unit-{i:05d}") for i in range(min(units, list_size))]
    for i in range(units - len(out)):
        opd = OTHER_OPDS[i % len(OTHER_OPDS)]
        out.append((opd, f"{opd}-unit-{i:05d}"))
    return out


# --------------------------------------------------------------------------- simulator

class SimUnit:
    """One unit's MQTT side: login, will, session, subscriptions, seq, QoS 1 reports."""

    __slots__ = ("opd", "device", "client", "seq", "acked", "connected", "topics", "sim")

    def __init__(self, sim: Simulator, opd: str, device: str):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        from protocol import Channel, encode, offline_status, topic

        self.sim, self.opd, self.device = sim, opd, device
        self.seq = self.acked = 0
        self.connected = False
        self.topics = {c: topic(opd, device, c) for c in Channel}
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"unit-{opd}-{device}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        client.username_pw_set(device, sim.password)
        client.will_set(self.topics[Channel.STATUS], encode(offline_status(
            "bench", datetime.now(UTC), clock_synced=True, app="irrigation")),
            qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self.client = client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        from protocol import Channel, Status, encode
        if reason_code.is_failure:
            self.sim.stats["refused"] += 1
            return
        self.connected = True
        self.sim.stats["connected"] += 1
        self.sim.live.append(self)
        client.subscribe([(self.topics[c], 1) for c in (Channel.CMD, Channel.CONFIG,
                                                          Channel.ACK)])
        status = Status(online=True, fw="bench", clock_synced=True, ts=datetime.now(UTC),
                        app="irrigation", outputs={"valve-1": False})
        client.publish(self.topics[Channel.STATUS], encode(status), qos=1, retain=True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected:
            self.sim.stats["connected"] -= 1
            if not self.sim.stopping:
                self.sim.stats["disconnects"] += 1
        self.connected = False

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == self.topics["ack"]:
            self.acked = max(self.acked, json.loads(msg.payload)["seq"])
            self.sim.stats["acks"] += 1

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.sim.stats["pubacks"] += 1
        if reason_code.is_failure:
            self.sim.stats["refused_publishes"] += 1

    def report(self) -> None:
        from protocol import Channel, Event, Telemetry, encode
        self.seq += 1
        now = datetime.now(UTC)
        if self.seq % EVENT_EVERY == 0:
            message = Event(seq=self.seq, ts=now, type="run_finished", details={
                "run_id": f"pagi:{self.seq}", "zone": "zone1", "trigger": "schedule",
                "duration_s": 600, "litres": 250.0, "ended": "completed"})
            channel = Channel.EVENT
        else:
            message = Telemetry(seq=self.seq, ts=now, outputs={"valve-1": False}, readings={
                "moisture_pct.zone1": 20.0 + self.seq % 15, "flow_lpm.main": 0.0,
                "rain.sensor-hujan": False})
            channel = Channel.TELEMETRY
        self.client.publish(self.topics[channel], encode(message), qos=1)
        self.sim.stats["sent"] += 1


class Simulator:
    """Thousands of `SimUnit` on one ``selectors`` loop, driven by lines on stdin:
    ``rate N`` (messages/s over all its units, round-robin), ``report``, ``stop``."""

    def __init__(self, spec: dict):
        self.host, self.port = spec["host"], spec["port"]
        self.password = spec["password"]
        self.connect_rate = spec["connect_rate"]
        self.stats = {"units": 0, "connected": 0, "refused": 0, "disconnects": 0, "sent": 0,
                      "pubacks": 0, "acks": 0, "refused_publishes": 0, "seq_sent": 0,
                      "seq_acked": 0}
        self.stopping = False
        self.units = [SimUnit(self, opd, device) for opd, device in spec["units"]]
        self.stats["units"] = len(self.units)
        self.rate = 0.0
        self.live: list[SimUnit] = []  # connected once, in order (round-robin reports)
        self.dirty: set[SimUnit] = set()  # may have bytes waiting to be written
        self.selector = selectors.DefaultSelector()

    def run(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 86_400
        os.set_blocking(sys.stdin.fileno(), False)
        self.selector.register(sys.stdin, selectors.EVENT_READ, None)
        waiting = list(self.units)
        random.shuffle(waiting)
        started = last = last_misc = time.monotonic()
        budget, cursor, buffer = 0.0, 0, ""
        while True:
            now = time.monotonic()
            due = int((now - started) * self.connect_rate) + 1
            while waiting and self.stats["units"] - len(waiting) < due:
                unit = waiting.pop()
                unit.client.connect(self.host, self.port, keepalive=60, clean_start=False,
                                    properties=props)
                self.selector.register(unit.client.socket(), selectors.EVENT_READ, unit)
                self.dirty.add(unit)
            budget = min(budget + self.rate * (now - last), max(self.rate, 1.0))
            last = now
            while budget >= 1 and self.live:
                unit = self.live[cursor % len(self.live)]
                cursor += 1
                budget -= 1
                if unit.connected:
                    unit.report()
                    self.dirty.add(unit)
            for key, _ in self.selector.select(timeout=0.005):
                if key.data is None:
                    buffer += sys.stdin.read()
                    *lines, buffer = buffer.split("\n")
                    for line in lines:
                        if self._command(line.strip()):
                            return
                    continue
                unit = key.data
                if unit.client.loop_read() != 0:
                    self.selector.unregister(key.fileobj)
                    unit._on_disconnect(unit.client, None, None, None, None)
                else:
                    self.dirty.add(unit)
            for unit in list(self.dirty):
                if unit.client.want_write():
                    unit.client.loop_write()
                if not unit.client.want_write():
                    self.dirty.discard(unit)
            if now - last_misc >= 1.0:
                last_misc = now
                for unit in self.units:
                    unit.client.loop_misc()

    def _command(self, line: str) -> bool:
        word, _, value = line.partition(" ")
        if word == "rate":
            self.rate = float(value)
        elif word == "report":
            self._report()
        elif word == "stop":
            self.stopping = True
            for unit in self.units:
                if unit.connected:
                    unit.client.disconnect()
                    unit.client.loop_write()
            self._report()
            return True
        return False

    def _report(self) -> None:
        self.stats["seq_sent"] = sum(u.seq for u in self.units)
        self.stats["seq_acked"] = sum(u.acked for u in self.units)
        print(json.dumps(self.stats), flush=True)


def sim_process(spec_path: str) -> int:
    logging.basicConfig(level=logging.WARNING)
    Simulator(json.loads(Path(spec_path).read_text())).run()
    return 0


class SimGroup:
    """The simulator subprocesses, and their stats."""

    def __init__(self, workdir: Path, broker, units: list[tuple[str, str]], processes: int,
                 connect_rate: float):
        self.procs: list[subprocess.Popen] = []
        self.replies: list[queue.Queue] = []
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for n in range(processes):
            spec = workdir / f"sim-{n}.json"
            spec.write_text(json.dumps({
                "host": broker.host, "port": broker.port, "password": UNIT_PASSWORD,
                "connect_rate": connect_rate / processes, "units": units[n::processes]}))
            proc = subprocess.Popen(
                [sys.executable, str(FLEET_SCRIPT), "--sim-process", str(spec)],
                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=(workdir / f"sim-{n}.log").open("ab"), text=True,
                start_new_session=True)
            replies: queue.Queue = queue.Queue()
            threading.Thread(target=self._read, args=(proc, replies), daemon=True).start()
            self.procs.append(proc)
            self.replies.append(replies)

    @staticmethod
    def _read(proc: subprocess.Popen, replies: queue.Queue) -> None:
        for line in proc.stdout:
            replies.put(json.loads(line))

    def tell(self, line: str) -> None:
        for proc in self.procs:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()

    def rate(self, total: float) -> None:
        self.tell(f"rate {total / len(self.procs)}")

    def stats(self, command: str = "report") -> dict:
        self.tell(command)
        total: dict = {}
        for replies in self.replies:
            for key, value in replies.get(timeout=60).items():
                total[key] = total.get(key, 0) + value
        return total

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.poll() is None)

    def stop(self) -> dict:
        stats = self.stats("stop")
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        return stats

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
