"""How soon does an open dashboard learn of a unit's change, and what do open ones cost?

A private Mosquitto with the project's login and ACL files, the controller
(``smartcity-controller serve``, the ingest in its writer process) and:

- **Fleet**: ``--units`` simulated units (``bench/fleet_units.py``: one MQTT connection
  each) reporting every ``--interval-s`` (default 1,000 units every 10 s: 100 msg/s, one
  in ten an event, so ten pushed changes a second).
- **Streams**: ``--streams`` open dashboards (``GET /api/v1/stream``, each with its own
  ticket, as the page opens it; an admin's: every unit's changes), read by threads.
- **Latency**: one more unit, a real MQTT client with its own login, publishes its status
  with a new outlook (a pause until another minute) ``--changes`` times, 0.2 to 0.6 s
  apart at random (so changes fall anywhere in the poll interval); each is timed from
  the publish to its ``state`` change on one more open stream.
- **CPU**: the controller's CPU (its writer process included, from /proc) over
  ``--window-s`` with the fleet reporting and no stream open, then with the streams open.

    .venv/bin/python bench/live.py [--units 1000] [--streams 50] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import random
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/
from bench.common import (  # noqa: E402
    HOST,
    Controller,
    Figure,
    machine,
    percentile,
    print_figures,
    print_table,
    register_devices,
    start_broker,
    wait_until,
    write_json,
)
from bench.fleet_units import UNIT_PASSWORD, SimGroup, fleet  # noqa: E402

CONTROLLER_PASSWORD = "bench-controller-password"
PROBE = ("dlh", "dlh-live-probe")


class Stream(threading.Thread):
    """One open dashboard: a ticket, then ``GET /api/v1/stream``; each change with the
    time it arrived."""

    def __init__(self, port: int, token: str, keep: bool = False):
        super().__init__(daemon=True)
        self.port, self.token, self.keep = port, token, keep
        self.changes = 0
        self.got: list[tuple[float, dict]] = []
        self.open = threading.Event()
        self.conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
        conn.request("POST", "/api/v1/stream/tickets",
                     headers={"Authorization": f"Bearer {self.token}"})
        ticket = json.loads(conn.getresponse().read())["ticket"]
        conn.close()
        self.conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
        self.conn.request("GET", f"/api/v1/stream?ticket={ticket}")
        response = self.conn.getresponse()
        assert response.status == 200, response.status
        self.open.set()
        try:
            for raw in response:
                if raw.startswith(b"data: "):
                    self.changes += 1
                    if self.keep:
                        self.got.append((time.monotonic(), json.loads(raw[6:])))
        except (OSError, ValueError):  # closed at the end
            pass

    def close(self) -> None:
        if self.conn is not None and self.conn.sock is not None:
            self.conn.sock.close()


def probe_client(broker):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"unit-{PROBE[1]}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.username_pw_set(PROBE[1], UNIT_PASSWORD)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def publish_outlook(client, minute: int) -> None:
    from protocol import Channel, Status, encode, topic
    from protocol.outlook import NextStartReason, Outlook

    now = datetime.now(UTC)
    status = Status(online=True, fw="bench", clock_synced=True, ts=now, app="irrigation",
                    outputs={"valve-1": False},
                    outlook=Outlook(paused_until=now + timedelta(minutes=60 + minute),
                                    next_start_reason=NextStartReason.PAUSED))
    info = client.publish(topic(*PROBE, Channel.STATUS), encode(status), qos=1, retain=True)
    info.wait_for_publish(5)


def cpu_window(controller: Controller, seconds: float) -> float:
    """The controller's CPU over ``seconds``, in % of one core."""
    c0, t0 = controller.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return 100 * (controller.cpu_seconds() - c0) / (time.monotonic() - t0)


def run(args, workdir: Path) -> dict:
    from controller.auth import hash_token, new_token
    from controller.broker_files import pbkdf2_hash
    from controller.enrolment import write_broker_files
    from controller.settings import parse_settings
    from controller.store import Store

    units = fleet(args.units, args.units)
    db_path = workdir / "controller.db"
    register_devices(db_path, [*units, PROBE], password_hash=pbkdf2_hash(UNIT_PASSWORD),
                     token_role=None)
    admin = new_token()
    with Store.open(db_path) as store:
        store.create_token(name="bench-admin", role="admin", opd=None,
                           token_hash=hash_token(admin), actor="bench")
        settings = parse_settings({"mqtt": {"password": CONTROLLER_PASSWORD}}, environ={})
        write_broker_files(store, settings, acl_path=workdir / "acl",
                           password_path=workdir / "passwd")
    broker = start_broker({"allow_anonymous": False, "password_file": workdir / "passwd",
                           "acl_file": workdir / "acl"})
    out: dict = {"units": len(units), "streams": args.streams}
    controller = sims = client = None
    streams: list[Stream] = []
    try:
        controller = Controller(workdir, broker, db_path=db_path,
                                password=CONTROLLER_PASSWORD).start()
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        sims = SimGroup(workdir, broker, units, args.processes, args.connect_rate)
        wait_until(lambda: sims.stats()["connected"] == len(units),
                   len(units) / args.connect_rate + 60, "every unit connected", interval=0.5)
        client = probe_client(broker)
        wait_until(lambda: db.execute("SELECT count(*) FROM device_state WHERE online = 1"
                                      ).fetchone()[0] >= len(units),
                   120, "every unit online in the controller", interval=0.5)
        rate = len(units) / args.interval_s
        sims.rate(rate)
        time.sleep(args.settle_s)
        out["rate_msg_s"] = rate
        out["cpu_no_streams_pct"] = cpu_window(controller, args.window_s)

        streams = [Stream(controller.port, admin) for _ in range(args.streams)]
        timed = Stream(controller.port, admin, keep=True)
        for s in [*streams, timed]:
            s.start()
        for s in [*streams, timed]:
            s.open.wait(30)
        time.sleep(args.settle_s)
        c0, t0 = controller.cpu_seconds(), time.monotonic()
        delivered0 = sum(s.changes for s in streams)
        latencies, lost = [], 0
        for i in range(args.changes):
            seen = len(timed.got)
            sent = time.monotonic()
            publish_outlook(client, i)

            def arrived(seen=seen):
                return next((at for at, c in timed.got[seen:]
                             if c == {"device_id": PROBE[1], "what": "state"}), None)

            try:
                at = wait_until(arrived, 10, "the change on the stream", interval=0.005)
                latencies.append((at - sent) * 1000)
            except Exception:  # noqa: BLE001 - counted, not fatal
                lost += 1
            time.sleep(random.uniform(0.2, 0.6))
        elapsed = time.monotonic() - t0
        out["cpu_streams_pct"] = 100 * (controller.cpu_seconds() - c0) / elapsed
        out["delivered_per_s"] = (sum(s.changes for s in streams) - delivered0) / elapsed
        out["latency_ms"] = {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                             "max": max(latencies) if latencies else None,
                             "samples": len(latencies), "lost": lost}
        db.close()
    finally:
        for s in streams:
            s.close()
        if client is not None:
            client.loop_stop()
            client.disconnect()
        if sims is not None:
            sims.kill()
        if controller is not None:
            controller.stop()
        broker.close()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1_000)
    parser.add_argument("--interval-s", type=float, default=10.0,
                        help="each unit reports this often")
    parser.add_argument("--streams", type=int, default=50, help="open dashboards")
    parser.add_argument("--changes", type=int, default=200, help="timed status changes")
    parser.add_argument("--window-s", type=float, default=30.0,
                        help="CPU window without streams")
    parser.add_argument("--processes", type=int, default=2, help="simulator processes")
    parser.add_argument("--connect-rate", type=float, default=1_000.0)
    parser.add_argument("--settle-s", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true",
                        help="100 units, 10 streams, 30 changes, 5 s windows")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.units, args.streams, args.changes = 100, 10, 30
        args.window_s, args.settle_s = 5.0, 1.0
    logging.basicConfig(level=logging.WARNING)
    print(f"live: {args.units:,} units every {args.interval_s:g} s, {args.streams} open "
          f"streams, {args.changes} timed changes; {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        r = run(args, Path(tmp))
    lat = r["latency_ms"]
    print_table("controller CPU (% of one core, writer process included)",
                ["", "no stream", f"{r['streams']} streams"],
                [[f"{r['units']:,} units, {r['rate_msg_s']:.0f} msg/s",
                  f"{r['cpu_no_streams_pct']:.1f}", f"{r['cpu_streams_pct']:.1f}"]])
    figures = [
        Figure("unit's status published -> change on an open stream, p50",
               "< 1,000 ms", f"{lat['p50']:.0f} ms", lat["p50"] < 1000),
        Figure("... p99", "< 2,000 ms", f"{lat['p99']:.0f} ms", lat["p99"] < 2000),
        Figure("changes lost", "0", str(lat["lost"]), lat["lost"] == 0),
        Figure(f"controller CPU with {r['streams']} streams open", "-",
               f"{r['cpu_streams_pct']:.1f} % (none open: {r['cpu_no_streams_pct']:.1f} %)",
               None),
        Figure("changes delivered to the streams", "-",
               f"{r['delivered_per_s']:.0f}/s", None)]
    print_figures("Figures", figures)
    write_json(args.json, {"bench": "live", **r, "figures": figures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
