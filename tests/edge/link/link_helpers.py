"""Shared pieces of the edge link tests: a small app with one hard limit, a unit config
for a test broker, a unit running in a thread, and a controller stand-in that stores by
seq and acks what it stored."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.app import App
from edge.config import parse_config
from edge.errors import ConfigError
from edge.limits import Clamp
from edge.link import LinkOptions
from protocol import Ack, Channel, Command, DesiredConfig, ReplyCode, decode, encode, topic

try:  # under pytest
    from support.unit_toml import unit_toml as shared_unit_toml
except ImportError:  # a script that put the repository root on sys.path
    from tests.support.unit_toml import unit_toml as shared_unit_toml

OPD, DEVICE = "dlh", "taman-uji-01"
MAX_RUN_S = 300  # the test app's local hard limit on one run

FAST = LinkOptions(reconnect_min_s=0.1, reconnect_max_s=0.5, resend_after_s=2.0,
                   status_min_interval_s=0.2, drain_rate_per_s=1000.0)


def unit_toml(broker, state_dir, *, telemetry_s=3600, **knobs) -> str:
    """The config of the test unit (one valve, zone ``lawn``) for ``broker``; ``knobs``
    as for ``support.unit_toml.unit_toml`` (keepalive_s, username, password_file...)."""
    return shared_unit_toml(device_id=DEVICE, opd=OPD, state_dir=state_dir,
                            host=broker.host, port=broker.port, telemetry_s=telemetry_s,
                            zones={"lawn": ("valve1", 17)}, **knobs)


def unit_config(broker, state_dir, **kwargs):
    return parse_config(tomllib.loads(unit_toml(broker, state_dir, **kwargs)))


def unit_topic(channel) -> str:
    return topic(OPD, DEVICE, channel)


class LimitApp(App):
    """One valve, one command (run_zone) and a local hard limit of MAX_RUN_S per run.

    Its desired config is ``{"interval_min": <int 1..1440>}``, persisted in its state.
    """

    kind = "irrigation"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.runs: list[tuple[str, int]] = []
        self.body = self.state.get("test.body")

    def handle_command(self, cmd_id, action, params, reply):
        if action == "stop_all":
            self.outputs.all_off()
            reply("done", ReplyCode.STOPPED_ALL, runs=0)
            return
        if action != "run_zone":
            reply("rejected", ReplyCode.UNKNOWN_ACTION, action=action)
            return
        if params.zone != "lawn":  # the link hands the protocol's typed params
            reply("rejected", ReplyCode.UNKNOWN_ZONE, zone=params.zone)
            return
        asked = params.duration_s
        allowed = min(asked, MAX_RUN_S)
        clamp = None
        if allowed < asked:
            clamp = Clamp("duration_s", asked, allowed, "max_run_s")
            self.publisher.event("limit_clamped", command=cmd_id, **clamp.as_dict())
        self.outputs["valve1"].on(for_s=allowed)
        self.runs.append((cmd_id, allowed))
        reply("accepted", ReplyCode.RUN_ACCEPTED, clamped=clamp, zone="lawn", duration_s=allowed)

    def apply_remote_config(self, version, body):
        interval = body.get("interval_min")
        if set(body) != {"interval_min"} or not isinstance(interval, int) \
                or not 1 <= interval <= 1440:
            raise ConfigError("desired config", [("interval_min", "must be 1..1440")])
        self.body = body
        self.state.set("test.body", body)

    def readings(self):
        return {"moisture_pct.lawn": 31.5}


class ThreadedUnit:
    """A built unit (``edge.daemon.build_unit``) whose service loop runs in a thread."""

    def __init__(self, unit, tick_s: float = 0.02):
        self.unit = unit
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def link(self):
        return self.unit.link

    @property
    def app(self):
        return self.unit.app

    def start(self) -> ThreadedUnit:
        self.unit.start()
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            self.unit.tick()
            self._stop.wait(self.tick_s)

    def close(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.unit.close()


def wait_until(predicate, timeout: float = 10.0, what: str = "condition", step: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no {what} within {timeout}s")
        time.sleep(step)


def command(action, params=None, *, cmd_id=None, issued_at=None, ttl_s=60.0) -> bytes:
    issued_at = issued_at or datetime.now(UTC)
    return encode(Command(id=cmd_id or uuid.uuid4().hex, issued_at=issued_at,
                          expires_at=issued_at + timedelta(seconds=ttl_s), action=action,
                          params=params or {}))


def desired_config(version, body) -> bytes:
    return encode(DesiredConfig(version=version, issued_at=datetime.now(UTC), body=body))


def replies(client, cmd_id=None):
    out = []
    for m in client.received():
        if m.topic == unit_topic(Channel.CMD_REPLY):
            reply = decode(Channel.CMD_REPLY, m.payload)
            if cmd_id is None or reply.id == cmd_id:
                out.append(reply)
    return out


def events(client, type=None):
    """Events received, once per seq (no controller acks them in most tests, so the unit
    may send them again), in seq order."""
    by_seq = {}
    for m in client.received():
        if m.topic == unit_topic(Channel.EVENT):
            event = decode(Channel.EVENT, m.payload)
            if type is None or event.type == type:
                by_seq.setdefault(event.seq, event)
    return [by_seq[s] for s in sorted(by_seq)]


def statuses(client):
    return [decode(Channel.STATUS, m.payload) for m in client.received()
            if m.topic == unit_topic(Channel.STATUS) and m.payload]


def outbox_rows(path: Path) -> tuple[int, int]:
    """(rows waiting, next seq) of a unit's outbox file, read from outside the unit."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        count = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        next_seq = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
        return count, next_seq
    finally:
        db.close()


class AckingController:
    """Stands in for the controller's ingest: a persistent MQTT session that stores every
    event and telemetry sample by seq and acks the highest seq up to which it has all.

    It reconnects on its own (the broker is killed under it). A seq delivered again must
    carry the same payload as the first time (``conflicts`` lists any that did not).
    ``opd`` and ``device`` name the unit it serves (default: the test unit).
    """

    def __init__(self, broker, client_id="controller-standin", *, opd=OPD, device=DEVICE):
        self.broker = broker
        self.topic = lambda channel: topic(opd, device, channel)
        self.stored: dict[int, bytes] = {}
        self.dropped: set[int] = set()
        self.conflicts: list[int] = []
        self.deliveries = 0
        self.upto = 0
        self.acks_sent = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def start(self) -> AckingController:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=5,
                                  clean_start=False, properties=props)
        self.client.loop_start()
        return self

    def close(self):
        """Go away; the broker keeps the session and queues what arrives meanwhile."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe([(self.topic(Channel.EVENT), 1), (self.topic(Channel.TELEMETRY), 1)])

    def _on_message(self, client, userdata, msg):
        channel = Channel.EVENT if msg.topic.endswith("/event") else Channel.TELEMETRY
        message = decode(channel, msg.payload)
        with self._lock:
            self.deliveries += 1
            payload = bytes(msg.payload)
            if message.seq in self.stored:
                if self.stored[message.seq] != payload:
                    self.conflicts.append(message.seq)
            else:
                self.stored[message.seq] = payload
            if channel is Channel.EVENT and message.type == "outbox_dropped":
                from protocol import dropped_ranges
                for start, end in dropped_ranges(message):
                    self.dropped.update(range(start, end + 1))
            while self.upto + 1 in self.stored or self.upto + 1 in self.dropped:
                self.upto += 1
            upto = self.upto
        client.publish(self.topic(Channel.ACK),
                       encode(Ack(seq=upto, ts=datetime.now(UTC))), qos=1)
        self.acks_sent += 1

    def seqs(self) -> list[int]:
        with self._lock:
            return sorted(self.stored)

    def payloads(self) -> dict[int, dict]:
        with self._lock:
            return {s: json.loads(p) for s, p in self.stored.items()}
