"""The ingest path: fuzzed messages on real unit topics, through a private Mosquitto to
the controller in its own process, which must count each as rejected and store none."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faults.fuzz.decoders import TOPIC_LEVEL, decode_strategy
from faults.fuzz.runner import BUFFER_SIZES
from protocol import Channel, ProtocolError, decode, encode, parse_topic


@dataclass
class IngestTally:
    published: int = 0
    expected: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    stored_garbage: int = 0
    crashed: bool = False
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)

    def text(self) -> str:
        return (f"ingest: {self.published} published on unit topics, "
                f"{sum(self.rejected.values())} counted rejected by the controller "
                f"{dict(sorted(self.rejected.items()))}, {self.stored_garbage} stored garbage"
                f"{', CONTROLLER DIED' if self.crashed else ''} ({self.seconds:.0f} s)")


REGISTERED = [("taman-fz-01", "dlh"), ("tambak-fz-01", "dp3")]
UNIT_CHANNELS = [Channel.STATUS, Channel.TELEMETRY, Channel.EVENT, Channel.CMD_REPLY]


def _valid_payload(channel: Channel) -> bytes:
    from protocol.examples import EXAMPLES

    return encode(EXAMPLES[channel])


_DROPPED = '{"v":1,"seq":500,"ts":"2025-03-14T22:20:00Z","type":"outbox_dropped"'
BAD_DROPPED = [(_DROPPED + tail).encode() for tail in (
    "}", ',"details":{}}', ',"details":{"seqs":[]}}', ',"details":{"seqs":[500]}}',
    ',"details":{"seqs":[900]}}', ',"details":{"ranges":[{"from":9,"to":3}]}}',
    ',"details":{"ranges":[{"from":1,"to":700}]}}', ',"details":{"seqs":[0]}}',
    ',"details":{"seqs":[-4]}}', ',"details":{"seqs":["7"]}}')]
"""``outbox_dropped`` events that announce nothing, or seqs at or above their own: an ack
moved by one of these would acknowledge messages that never arrived."""


def ingest_cases(count: int, seed_value: int,
                 problems: list[str] | None = None) -> list[tuple[str, bytes, str]]:
    """(topic, payload, the rejection reason the controller must count), ``count`` of them.

    Every payload is checked here first with the same decoder, so a fuzzed payload that
    happens to be a valid message is never sent as "garbage" by mistake."""
    from protocol import topic

    cases: list[tuple[str, bytes, str]] = []
    problems = problems if problems is not None else []
    kinds = st.sampled_from(["payload"] * 6 + ["device", "opd", "topic", "reply", "big",
                                               "dropped"])
    channels = st.sampled_from(UNIT_CHANNELS)
    garbage = st.one_of(*[decode_strategy(c) for c in UNIT_CHANNELS])

    @settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(kind=kinds, channel=channels, payload=garbage, level=TOPIC_LEVEL,
           n=st.integers(0, 10**6))
    def make(kind, channel, payload, level, n):
        device, opd = REGISTERED[n % 2]
        if kind == "payload":
            try:
                decode(channel, payload)
            except ProtocolError:
                cases.append((topic(opd, device, channel), payload, "bad_payload"))
            return
        if kind == "device":
            cases.append((topic(opd, f"ghost-{n}", channel), _valid_payload(channel),
                          "unknown_device"))
        elif kind == "opd":
            cases.append((topic("dp3" if opd == "dlh" else "dlh", device, channel),
                          _valid_payload(channel), "wrong_opd"))
        elif kind == "topic":
            t = f"smartcity/v1/{level or 'X'}/{device}/{channel.value}"
            try:
                parse_topic(t)
            except ProtocolError:
                if len(t.encode("utf-8")) < 60_000:
                    cases.append((t, payload, "bad_topic"))
        elif kind == "reply":
            reply = json.loads(_valid_payload(Channel.CMD_REPLY))
            reply["id"] = f"nope-{n}"
            cases.append((topic(opd, device, Channel.CMD_REPLY), json.dumps(reply).encode(),
                          "unknown_command"))
        elif kind == "dropped":  # drop announcements that must not move the ack
            payload = BAD_DROPPED[n % len(BAD_DROPPED)]
            try:
                decode(Channel.EVENT, payload)
                problems.append(f"decoded as valid: {payload!r}")
            except ProtocolError:
                cases.append((topic(opd, device, Channel.EVENT), payload, "bad_payload"))
        else:  # larger than any payload a unit may send
            cases.append((topic(opd, device, channel), b'{"v":1,"x":"' + b"a" * 70_000 + b'"}',
                          "bad_payload"))

    rng = random.Random(seed_value)
    for _ in range(20 * count):  # driven like the parser targets (see run_target)
        if len(cases) >= count:
            break
        make.hypothesis.fuzz_one_input(rng.randbytes(rng.choice(BUFFER_SIZES)))
    return cases


def fuzz_ingest(count: int, seed_value: int, workdir: Path) -> IngestTally:
    """Publish ``count`` generated cases to a real broker; the controller must count each
    as rejected and store none of them."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    from faults.processes import ControllerProcess, metric_sum, start_broker, wait_until

    tally = IngestTally()
    cases = ingest_cases(count, seed_value, tally.samples)
    t0 = time.perf_counter()
    broker = start_broker(workdir)
    controller = ControllerProcess(workdir, broker)
    controller.register([(d, o, "irrigation") for d, o in REGISTERED])
    try:
        controller.start()
        before = _db_rows(controller.db)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzzer",
                             protocol=MQTTProtocolVersion.MQTTv5)
        acked = Counter()
        client.on_publish = lambda *a: acked.update(["puback"])
        client.connect(broker.host, broker.port)
        client.loop_start()
        for topic_, payload, reason in cases:
            info = client.publish(topic_, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                tally.samples.append(f"publish refused locally: {topic_!r} rc {info.rc}")
                continue
            tally.published += 1
            tally.expected[reason] += 1
            while tally.published - acked["puback"] > 500:  # keep paho's queue short
                time.sleep(0.005)
        wait_until(lambda: acked["puback"] >= tally.published, 120, "every PUBACK")
        client.disconnect()
        client.loop_stop()

        def counted() -> bool:
            metrics = controller.metrics()
            tally.rejected = Counter({dict(labels)["reason"]: int(v)
                                      for (name, labels), v in metrics.items()
                                      if name == "smartcity_ingest_rejected_total"})
            return metric_sum(metrics, "smartcity_ingest_rejected_total") >= tally.published

        try:
            wait_until(counted, 300, "every fuzzed message counted as rejected", step=0.5)
        except TimeoutError as exc:
            tally.samples.append(str(exc))
        after = _db_rows(controller.db)
        tally.stored_garbage = sum(after[k] - before[k] for k in after)
        if tally.stored_garbage:
            tally.samples.append(f"rows before {before}, after {after}")
        tally.crashed = controller.proc.poll() is not None
    finally:
        controller.stop()
        broker.close()
    tally.seconds = time.perf_counter() - t0
    return tally


def _db_rows(db: Path) -> Counter:
    """Rows a unit's message could create, per table (device_state: filled-in statuses)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        out = Counter()
        for table in ("telemetry", "events", "command_replies", "status_history"):
            out[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
        out["device_state"] = conn.execute(
            "SELECT count(*) FROM device_state WHERE status_at IS NOT NULL").fetchone()[0]
        out["devices"] = conn.execute("SELECT count(*) FROM devices").fetchone()[0]
        return out
    finally:
        conn.close()
