"""What do several controller instances on PostgreSQL give, against one on SQLite?

One private Mosquitto and one message stream (default 50 units x 200 telemetry samples
and events, QoS 1, as ``bench/ingest.py`` makes it). For each set-up, a fresh database,
the instances started and connected (each its own client id and HTTP port, one share
group: ``$share/bench/...``), then the whole stream published at once; the rate is the
messages over the time from the first publish to the moment every unit's acked seq
reaches its last seq (every message committed). Set-ups:

1. one instance on SQLite (the embedded default), the reference;
2. one, two and three instances on one PostgreSQL database (a server of its own,
   ``tests/support/postgres.PostgresServer``, fsync on).

Then the device list of 1,000 units (``GET /api/v1/devices?opd=...``, each unit with a
status stored), sequential requests on one connection, p50 and p99 on each backend.

    .venv/bin/python bench/instances.py [--units 50] [--per-unit 200] [--quick]

The ingest writers of all instances take one advisory lock per batch on PostgreSQL
(one writer at a time, as SQLite), so more instances add receiving and validating
hands, not commit hands; on a machine with few cores they also share the CPU with the
broker, the server and this script. The table says what this machine gave.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/
from bench.common import (  # noqa: E402
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
from bench.fleet_api import latency  # noqa: E402
from bench.ingest import OPD, device_ids, publish_all, stream  # noqa: E402

LIST_SIZE = 1_000
LIST_OPD = "dlh"


def query(db: Path | str, sql: str) -> list[tuple]:
    if isinstance(db, str):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def start_instances(workdir: Path, broker, db: Path | str, count: int) -> list[Controller]:
    database = {"url": db} if isinstance(db, str) else {}
    instances = []
    for i in range(count):
        instance = Controller(workdir / f"instance-{i}", broker,
                              db_path=workdir / "controller.db",
                              client_id=f"bench-instance-{i}",
                              sections={"database": database,
                                        "mqtt": {"share_group": "bench"}})
        instances.append(instance.start())
    time.sleep(0.5)  # every SUBACK in: a shared subscription routes only to members
    return instances


def ingest_rate(workdir: Path, broker, db: Path | str, count: int, units: int,
                per_unit: int) -> dict:
    devices = device_ids(units)
    register_devices(db, [(OPD, d) for d in devices], token_role=None)
    instances = start_instances(workdir, broker, db, count)
    messages = stream(devices, per_unit)
    try:
        t0 = time.perf_counter()
        publish_s = publish_all(broker, messages)
        wait_until(lambda: query(db, "SELECT coalesce(sum(acked_seq), 0) FROM device_seq"
                                 )[0][0] >= units * per_unit, 600, "every message committed",
                   interval=0.02)
        seconds = time.perf_counter() - t0
        stored = (query(db, "SELECT count(*) FROM telemetry")[0][0]
                  + query(db, "SELECT count(*) FROM events")[0][0])
        missing = query(db, "SELECT coalesce(sum(missing), 0) FROM device_seq")[0][0]
    finally:
        for instance in instances:
            instance.stop()
    return {"instances": count, "messages": len(messages), "seconds": seconds,
            "publish_s": publish_s, "rate": len(messages) / seconds, "stored": stored,
            "missing": missing}


def device_list(workdir: Path, broker, db: Path | str, requests: int) -> dict:
    from controller.store import Inbound, Store
    from protocol import Channel, Status

    token = register_devices(db, [(LIST_OPD, f"list-unit-{i:05d}") for i in range(LIST_SIZE)])
    now = datetime.now(UTC)
    with Store.open(db, migrate=False) as store:
        store.commit_batch([Inbound(LIST_OPD, f"list-unit-{i:05d}", Channel.STATUS,
                                    Status(online=True, fw="bench", clock_synced=True, ts=now),
                                    now) for i in range(LIST_SIZE)])
    instance = start_instances(workdir, broker, db, 1)[0]
    try:
        headers = {"Authorization": f"Bearer {token}"}
        path = f"/api/v1/devices?opd={LIST_OPD}"
        latency(instance.port, path, headers, 20)  # warm up
        ms = latency(instance.port, path, headers, requests)
    finally:
        instance.stop()
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "requests": requests}


def run(args) -> dict:
    from tests.support.postgres import PostgresServer

    results: dict = {"ingest": [], "list": {}}
    with start_broker() as broker, PostgresServer() as server:
        setups: list[tuple[str, int]] = [("sqlite", 1)] + [("postgres", n)
                                                           for n in args.instances]
        for backend, count in setups:
            with tempfile.TemporaryDirectory(prefix="bench-instances-") as tmp:
                db: Path | str = (Path(tmp) / "controller.db" if backend == "sqlite"
                                  else server.create_database())
                r = ingest_rate(Path(tmp), broker, db, count, args.units, args.per_unit)
                r["backend"] = backend
                results["ingest"].append(r)
                print(f"  {backend} x{count}: {r['rate']:,.0f} msg/s", flush=True)
        for backend in ("sqlite", "postgres"):
            with tempfile.TemporaryDirectory(prefix="bench-instances-") as tmp:
                db = (Path(tmp) / "controller.db" if backend == "sqlite"
                      else server.create_database())
                results["list"][backend] = device_list(Path(tmp), broker, db, args.requests)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--per-unit", type=int, default=200)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 3],
                        help="PostgreSQL set-ups by instance count (default 1 2 3)")
    parser.add_argument("--requests", type=int, default=200,
                        help="device list requests per backend (default 200)")
    parser.add_argument("--quick", action="store_true", help="10 units x 100, 50 requests")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.units, args.per_unit, args.requests = 10, 100, 50
    logging.basicConfig(level=logging.WARNING)
    print(f"instances: {args.units} units x {args.per_unit} messages, QoS 1; {machine()}")
    r = run(args)
    base = r["ingest"][0]["rate"]
    rows = [(f"{x['backend']} x{x['instances']}", x["messages"], f"{x['rate']:,.0f}",
             f"{x['rate'] / base:.2f}", x["stored"], x["missing"]) for x in r["ingest"]]
    print_table("Ingest: the whole stream published at once, until every message committed",
                ["set-up", "messages", "msg/s", "vs SQLite x1", "stored", "missing"], rows)
    lists = r["list"]
    print_table(f"Device list of {LIST_SIZE:,} units (one instance, sequential requests)",
                ["backend", "p50 ms", "p99 ms", "p50 vs SQLite"],
                [(b, f"{v['p50_ms']:.1f}", f"{v['p99_ms']:.1f}",
                  f"{v['p50_ms'] / lists['sqlite']['p50_ms']:.2f}") for b, v in lists.items()])
    lost = [x for x in r["ingest"] if x["stored"] != x["messages"] or x["missing"]]
    figures = [Figure("every set-up stored every message once", "yes",
                      "yes" if not lost else f"no: {lost}", not lost)]
    print_figures("Figures", figures)
    write_json(args.json, {"bench": "instances", **r, "figures": figures})
    return 0 if not lost else 1


if __name__ == "__main__":
    sys.exit(main())
