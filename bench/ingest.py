"""How fast does the controller's ingest take in messages, against the broker's own limit?

One private Mosquitto, one message stream (default 50 units x 400 telemetry samples and
events, QoS 1, seqs 1..400 per unit, interleaved as a fleet sends them), consumed twice
in the same run from a persistent session the broker filled while the consumer was away
(what happens each time the controller restarts):

1. a bare paho-mqtt subscriber (MQTT 5, Receive Maximum as the controller's) that only
   counts: the limit of one Python MQTT client on this broker;
2. the controller (``smartcity-controller serve`` in a subprocess): decode and validate
   each payload, store by (device, seq) in SQLite (WAL, synchronous=FULL), PUBACK after
   the commit, publish each unit's ack.

Rates are counted from the first message received to the last one received (bare) or
committed (controller: the moment every unit's acked seq reaches its last seq). Then
the database is checked: every message stored once, none missing, none refused.

    .venv/bin/python bench/ingest.py [--units 50] [--per-unit 400] [--quick]
    .venv/bin/python bench/ingest.py --profile     # the ingest in-process under cProfile
    .venv/bin/python bench/ingest.py --stages      # µs per message: topic, payload, commit
    .venv/bin/python bench/ingest.py --stages --database postgresql://user@host/emptydb
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/
from bench.common import (  # noqa: E402
    Controller,
    Figure,
    machine,
    print_figures,
    print_table,
    register_devices,
    start_broker,
    wait_until,
    write_json,
)
from controller.settings import MqttSettings  # noqa: E402
from protocol import Channel, Event, Status, Telemetry, encode, topic  # noqa: E402

OPD = "dlh"
RECEIVE_MAXIMUM = MqttSettings().receive_maximum  # as the controller by default
CONTROLLER_ID = "bench-ingest-controller"
BARE_ID = "bench-ingest-bare"
ZONES = ("rumput-utara", "rumput-selatan", "bunga", "pohon-median")
EVENT_EVERY = 10  # one message in ten is an event


def device_ids(units: int) -> list[str]:
    return [f"bench-unit-{i:05d}" for i in range(units)]


def stream(devices: list[str], per_unit: int, first_seq: int = 1
           ) -> list[tuple[str, bytes]]:
    """(topic, payload) of every message, seq by seq across the units."""
    t0 = datetime.now(UTC) - timedelta(days=1)
    outputs = {f"valve-{z}": False for z in ZONES} | {"pompa": False}
    messages = []
    for seq in range(first_seq, first_seq + per_unit):
        ts = t0 + timedelta(seconds=60 * seq)
        for n, device in enumerate(devices):
            if seq % EVENT_EVERY == 0:
                zone = ZONES[seq % len(ZONES)]
                message = Event(seq=seq, ts=ts, type="run_finished", details={
                    "run_id": f"pagi:{seq}:{zone}", "zone": zone, "trigger": "schedule",
                    "duration_s": 1200, "litres": 1000.5, "ended": "completed"})
                channel = Channel.EVENT
            else:
                readings = {f"moisture_pct.{z}": 20.0 + (seq + n + i) % 15
                            for i, z in enumerate(ZONES)}
                readings |= {"flow_lpm.main": 0.0, "rain.sensor-hujan": False}
                message = Telemetry(seq=seq, ts=ts, readings=readings, outputs=outputs)
                channel = Channel.TELEMETRY
            messages.append((topic(OPD, device, channel), encode(message)))
    return messages


def _client(client_id: str, **kwargs) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=MQTTProtocolVersion.MQTTv5, **kwargs)


def _connect_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props


def _filters() -> list[str]:
    from controller.ingest import subscription_filters
    return subscription_filters()


def publish_all(broker, messages: list[tuple[str, bytes]]) -> float:
    """Publish every message with QoS 1 and wait for every PUBACK; returns seconds."""
    client = _client(f"bench-publisher-{time.monotonic_ns()}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = threading.Semaphore(0)
    client.on_publish = lambda *args: acked.release()
    client.connect(broker.host, broker.port, clean_start=True)
    client.loop_start()
    t0 = time.perf_counter()
    for topic_, payload in messages:
        client.publish(topic_, payload, qos=1)
    for _ in messages:
        if not acked.acquire(timeout=60):
            raise TimeoutError("broker did not acknowledge every published message")
    seconds = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return seconds


class BareSubscriber:
    """Counts messages; paho acknowledges each one when ``on_message`` returns."""

    def __init__(self, broker):
        self.broker = broker
        self.count = 0
        self.first = self.last = 0.0
        self.expected = 0
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self.client = _client(BARE_ID)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        if self.count == 0:
            self.first = time.time()
        self.count += 1
        if self.count >= self.expected:
            self.last = time.time()
            self.done.set()

    def create_session(self) -> None:
        self.client.connect(self.broker.host, self.broker.port, clean_start=False,
                            properties=_connect_props())
        self.client.loop_start()
        self.client.subscribe([(f, SubscribeOptions(qos=1)) for f in _filters()])
        if not self.subscribed.wait(10):
            raise TimeoutError("bare subscriber: no SUBACK")
        self.client.disconnect()
        self.client.loop_stop()

    def drain(self, expected: int, timeout: float) -> dict:
        self.expected, self.count = expected, 0
        self.done.clear()
        self.client.connect(self.broker.host, self.broker.port, clean_start=False,
                            properties=_connect_props())
        self.client.loop_start()
        finished = self.done.wait(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        if not finished:
            raise TimeoutError(f"bare subscriber got {self.count} of {expected} messages")
        seconds = self.last - self.first
        return {"messages": self.count, "seconds": seconds,
                "rate": self.count / seconds if seconds > 0 else float("inf")}


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def controller_session(workdir: Path, broker, devices: list[str]) -> Controller:
    """Register the units, start the controller once so the broker keeps its session."""
    controller = Controller(workdir, broker, client_id=CONTROLLER_ID)
    register_devices(controller.db_path, [(OPD, d) for d in devices], token_role=None)
    controller.start()
    # A probe proves the subscriptions are in place (the controller stores it).
    probe = _client(f"bench-probe-{time.monotonic_ns()}")
    probe.connect(broker.host, broker.port)
    probe.loop_start()
    status = Status(online=True, fw="bench", clock_synced=True, ts=datetime.now(UTC))

    def seen():
        probe.publish(topic(OPD, devices[0], Channel.STATUS), encode(status), qos=1)
        with sqlite3.connect(controller.db_path) as db:
            return db.execute("SELECT online FROM device_state WHERE device_id = ?",
                              [devices[0]]).fetchone()[0]

    wait_until(seen, 20, "controller subscribed", interval=0.3)
    probe.disconnect()
    probe.loop_stop()
    controller.stop()
    return controller


def controller_drain(controller: Controller, expected: int, after_seq: int,
                     timeout: float) -> dict:
    """Start the controller on its filled session (``expected`` new messages, seqs above
    ``after_seq``); time until every one is committed."""
    db = sqlite3.connect(f"file:{controller.db_path}?mode=ro", uri=True)
    total = expected + after_seq * db.execute("SELECT count(*) FROM device_seq").fetchone()[0]
    t_start = time.time()
    controller.start()

    def committed():
        return db.execute("SELECT coalesce(sum(acked_seq), 0) FROM device_seq"
                          ).fetchone()[0] >= total

    wait_until(committed, timeout, "every message committed", interval=0.01)
    t_done = time.time()
    first = min(_epoch(db.execute(f"SELECT min(received_at) FROM {t} WHERE seq > ?",
                                  [after_seq]).fetchone()[0]) for t in ("telemetry", "events"))
    seconds = t_done - first
    check = {
        "stored": sum(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("telemetry", "events")),
        "missing": db.execute("SELECT coalesce(sum(missing), 0) FROM device_seq").fetchone()[0],
        "duplicates": db.execute("SELECT coalesce(sum(duplicates), 0) FROM device_seq"
                                 ).fetchone()[0],
        "startup_s": first - t_start,
    }
    db.close()
    status, body = controller.get("/metrics")
    check["rejected"] = sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                            if line.startswith("smartcity_ingest_rejected_total{"))
    controller.stop()
    return {"messages": expected, "seconds": seconds, "rate": expected / seconds} | check


def run(args) -> dict:
    """``args.rounds`` rounds: publish a fresh stream (the next seqs), drain it with the
    bare subscriber, then with the controller."""
    devices = device_ids(args.units)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, start_broker() as broker:
        controller = controller_session(Path(tmp), broker, devices)
        bare = BareSubscriber(broker)
        bare.create_session()
        for n in range(args.rounds):
            after_seq = n * args.per_unit
            messages = stream(devices, args.per_unit, first_seq=after_seq + 1)
            publish_s = publish_all(broker, messages)
            bare_result = bare.drain(len(messages), timeout=120)
            ingest = controller_drain(controller, len(messages), after_seq, timeout=300)
            rounds.append({"messages": len(messages), "publish_s": publish_s,
                           "bare": bare_result, "ingest": ingest,
                           "ratio": ingest["rate"] / bare_result["rate"]})
    return {"messages": sum(r["messages"] for r in rounds), "rounds": rounds}


def profile(args) -> None:
    """The ingest in this process under cProfile (writer thread and paho's thread)."""
    from controller.ingest import Ingest
    from controller.metrics import Metrics
    from controller.settings import parse_settings
    from controller.store import Store

    profiles: list[cProfile.Profile] = []

    def profiled(fn):
        def wrapper(*a, **kw):
            prof = cProfile.Profile()
            prof.enable()
            try:
                return fn(*a, **kw)
            finally:
                prof.disable()
                profiles.append(prof)
        return wrapper

    Ingest._run = profiled(Ingest._run)
    mqtt.Client._thread_main = profiled(mqtt.Client._thread_main)
    devices = device_ids(args.units)
    messages = stream(devices, args.per_unit)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, start_broker() as broker:
        db_path = Path(tmp) / "controller.db"
        register_devices(db_path, [(OPD, d) for d in devices], token_role=None)
        settings = parse_settings({"database": {"path": str(db_path)},
                                   "mqtt": {"host": broker.host, "port": broker.port,
                                            "client_id": CONTROLLER_ID}}, environ={})
        with Store.open(db_path) as store:
            ingest = Ingest(settings, store, Metrics()).start()
            ingest.wait_connected()
            time.sleep(0.5)
            publish_all(broker, messages)
            t0 = time.perf_counter()
            wait_until(lambda: store.db.execute("SELECT sum(acked_seq) FROM device_seq"
                                                ).fetchone()[0] >= len(messages), 300,
                       "committed", interval=0.05)
            seconds = time.perf_counter() - t0
            ingest.stop()
    print(f"{len(messages)} messages committed {seconds:.2f} s after publishing ended")
    for prof, name in zip(profiles, ("paho network thread", "ingest writer"), strict=False):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(f"\n=== {name}\n{out.getvalue()}")


def stages(args) -> None:
    """Per-message cost of each stage of storing, in this process, without MQTT: read
    the topic, decode and validate the payload, commit in batches of ``batch_max``."""
    from controller.settings import IngestSettings
    from controller.store import Inbound, Store
    from protocol.codec import decode
    from protocol.topics import parse_topic

    devices = device_ids(args.units)
    messages = stream(devices, args.per_unit)
    n, batch = len(messages), IngestSettings().batch_max
    t0 = time.perf_counter()
    parts = [parse_topic(t) for t, _ in messages]
    t1 = time.perf_counter()
    decoded = [decode(p.channel, payload) for p, (_, payload) in zip(parts, messages,
                                                                     strict=True)]
    t2 = time.perf_counter()
    now = datetime.now(UTC)
    inbound = [Inbound(p.opd, p.device, p.channel, m, now)
               for p, m in zip(parts, decoded, strict=True)]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        db_path = args.database or Path(tmp) / "controller.db"
        register_devices(db_path, [(OPD, d) for d in devices], token_role=None)
        with Store.open(db_path) as store:
            t3 = time.perf_counter()
            for i in range(0, n, batch):
                store.commit_batch(inbound[i:i + batch])
            t4 = time.perf_counter()
    where = "PostgreSQL" if args.database else "SQLite"
    print_table(f"Per message, {n:,} messages ({args.units} units), one process, no MQTT, "
                f"{where}",
                ["stage", "µs per message"],
                [("topic (parse_topic)", f"{(t1 - t0) / n * 1e6:.1f}"),
                 ("payload (protocol.decode)", f"{(t2 - t1) / n * 1e6:.1f}"),
                 (f"commit (Store.commit_batch, {batch} a transaction)",
                  f"{(t4 - t3) / n * 1e6:.1f}")])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--per-unit", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3, help="the figure is the median")
    parser.add_argument("--quick", action="store_true", help="one round, 10 units x 100")
    parser.add_argument("--profile", action="store_true",
                        help="run the ingest in this process under cProfile instead")
    parser.add_argument("--stages", action="store_true",
                        help="only the per-message cost of each storing stage, no MQTT")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--database", help="with --stages: commit into this empty "
                        "PostgreSQL database (postgresql://...) instead of a SQLite file")
    args = parser.parse_args(argv)
    if args.quick:
        args.units, args.per_unit, args.rounds = 10, 100, 1
    logging.basicConfig(level=logging.WARNING)
    if args.profile:
        profile(args)
        return 0
    if args.stages:
        print(f"ingest stages; {machine()}")
        stages(args)
        return 0
    print(f"ingest: {args.units} units x {args.per_unit} messages, QoS 1, {args.rounds} "
          f"round(s); {machine()}")
    r = run(args)
    rows = []
    for n, rnd in enumerate(r["rounds"], 1):
        bare, ingest = rnd["bare"], rnd["ingest"]
        rows.append((n, rnd["messages"], bare["rate"], ingest["rate"], f"{rnd['ratio']:.2f}",
                     f"{ingest['startup_s']:.1f}"))
    print_table("Draining the same queued stream (msg/s, from first message to last)",
                ["round", "messages", "bare paho (counts)", "controller (stores)",
                 "ratio", "ctl start s"], rows)
    median = sorted(r["rounds"], key=lambda x: x["ratio"])[len(r["rounds"]) // 2]
    last = r["rounds"][-1]["ingest"]
    lost = r["messages"] - last["stored"]
    figures = [
        Figure("ingest / bare rate (median round)", ">= 0.9",
               f"{median['ratio']:.2f} ({median['ingest']['rate']:,.0f} / "
               f"{median['bare']['rate']:,.0f} msg/s)", median["ratio"] >= 0.9),
        Figure("lost (sent - stored)", "0", str(lost), lost == 0),
        Figure("missing seqs", "0", str(last["missing"]), last["missing"] == 0),
        Figure("refused", "0", f"{last['rejected']:.0f}", last["rejected"] == 0),
        Figure("duplicates stored", "-", str(last["duplicates"]), None),
    ]
    print_figures("Figures", figures)
    write_json(args.json, {"bench": "ingest", "messages": r["messages"], "lost": lost,
                           "missing": last["missing"], "rejected": last["rejected"],
                           "ratio": median["ratio"], "rounds": r["rounds"],
                           "figures": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
