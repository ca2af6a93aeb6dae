"""Can one controller and one broker carry a city's fleet, and answer the API meanwhile?

A private Mosquitto with the project's login and ACL files (written from the controller
database, as ``smartcity-controller mqtt-acl`` does: every unit may publish only its own
topics), the controller (``smartcity-controller serve``) and simulated units:

- **Units**: one MQTT 5 connection per unit, each with its own login, client id, Last
  Will, persistent session, subscriptions (cmd, config, ack), retained online status and
  per-unit seq, publishing QoS 1 telemetry and events as the edge link does. They are
  light (no outbox, no app): several simulator processes each drive thousands of paho
  clients from one ``selectors`` loop. What is realistic: the broker's and the
  controller's side (connections, logins, ACL checks, sessions, acks to each unit).
- **Steady**: every unit reports once per ``--interval-s`` (default 60 s: 10,000 units
  make about 170 msg/s, one in ten an event). Controller CPU from /proc.
- **Burst**: ``--burst-rate`` msg/s (default 1,000) for ``--burst-s``; then how long the
  controller takes to catch up.
- **API**: ``GET /api/v1/devices`` for one OPD of 1,000 devices (an operator's token),
  while the fleet keeps reporting: latency with one client, throughput with 10
  connections; side by side with a plain FastAPI endpoint returning the same rows as
  pydantic models through FastAPI's default encoder (``jsonable_encoder``), served the
  same way (uvicorn, one process) from the same database.
- **Check**: every message sent is stored once (count in the database, missing seqs).

The simulated units are in ``bench/fleet_units.py``; the plain FastAPI app and the
latency and throughput clients in ``bench/fleet_api.py``.

    .venv/bin/python bench/fleet.py [--units 10000] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/
from bench.common import (  # noqa: E402
    Controller,
    Figure,
    cpu_seconds,
    machine,
    percentile,
    print_figures,
    print_table,
    register_devices,
    start_broker,
    wait_until,
    write_json,
)
from bench.fleet_api import (  # noqa: E402
    get,
    latency,
    plain_api_process,
    start_plain_api,
    throughput,
)
from bench.fleet_units import (  # noqa: E402
    LIST_OPD,
    UNIT_PASSWORD,
    SimGroup,
    fleet,
    sim_process,
)

CONTROLLER_PASSWORD = "bench-controller-password"


# --------------------------------------------------------------------------- phases

def committed(db: sqlite3.Connection) -> int:
    return db.execute("SELECT coalesce(sum(acked_seq), 0) FROM device_seq").fetchone()[0]


def window(controller: Controller, broker, sims: SimGroup, db: sqlite3.Connection,
           seconds: float) -> dict:
    """CPU (controller, broker, simulators) and messages committed over ``seconds``."""
    def sample():
        return (controller.cpu_seconds(), cpu_seconds(broker.pid), sims.cpu_seconds(),
                committed(db), time.monotonic())

    c0, b0, s0, m0, t0 = sample()
    time.sleep(seconds)
    c1, b1, s1, m1, t1 = sample()
    span = t1 - t0
    return {"seconds": span, "cores": (c1 - c0) / span,
            "cpu_pct_of_machine": 100 * (c1 - c0) / span / os.cpu_count(),
            "broker_cores": (b1 - b0) / span, "sim_cores": (s1 - s0) / span,
            "msg_per_s": (m1 - m0) / span}


def run(args, workdir: Path) -> dict:
    from controller.api.schemas import DeviceOut
    from controller.auth import hash_token, new_token
    from controller.broker_files import pbkdf2_hash
    from controller.enrolment import write_broker_files
    from controller.settings import parse_settings
    from controller.store import Store

    units = fleet(args.units, args.list_size)
    out: dict = {"units": len(units)}
    t0 = time.monotonic()
    db_path = workdir / "controller.db"
    register_devices(db_path, units, password_hash=pbkdf2_hash(UNIT_PASSWORD),
                     token_role=None)
    operator = new_token()
    with Store.open(db_path) as store:
        store.create_token(name="bench-operator", role="operator", opd=LIST_OPD,
                           token_hash=hash_token(operator), actor="bench")
        settings = parse_settings({"mqtt": {"password": CONTROLLER_PASSWORD}}, environ={})
        write_broker_files(store, settings, acl_path=workdir / "acl",
                           password_path=workdir / "passwd")
    out["setup_s"] = time.monotonic() - t0
    headers = {"Authorization": f"Bearer {operator}"}
    list_path = f"/api/v1/devices?opd={LIST_OPD}"
    broker = start_broker({"allow_anonymous": False, "password_file": workdir / "passwd",
                           "acl_file": workdir / "acl"})
    controller = sims = plain = None
    try:
        controller = Controller(workdir, broker, db_path=db_path,
                                password=CONTROLLER_PASSWORD).start()
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        t0 = time.monotonic()
        sims = SimGroup(workdir, broker, units, args.processes, args.connect_rate)

        def all_connected():
            stats = sims.stats()
            if stats["refused"]:
                raise RuntimeError(f"broker refused {stats['refused']} unit logins")
            return stats["connected"] == len(units)

        limit = args.units / args.connect_rate + 60
        wait_until(all_connected, limit, "every unit connected", interval=0.5)
        out["connect_s"] = time.monotonic() - t0
        out["connect_cpu_s"] = {"simulators": sims.cpu_seconds(),
                                "broker": cpu_seconds(broker.pid),
                                "controller": controller.cpu_seconds()}
        wait_until(lambda: db.execute("SELECT count(*) FROM device_state WHERE online = 1"
                                      ).fetchone()[0] == len(units),
                   limit, "every unit online in the controller", interval=0.5)
        out["online_s"] = time.monotonic() - t0

        steady_rate = len(units) / args.interval_s
        sims.rate(steady_rate)
        time.sleep(args.settle_s)
        out["steady"] = window(controller, broker, sims, db, args.steady_s) | {
            "offered": steady_rate}

        sims.rate(args.burst_rate)
        time.sleep(args.settle_s)
        out["burst"] = window(controller, broker, sims, db, args.burst_s) | {
            "offered": args.burst_rate}
        sims.rate(steady_rate)
        t_catch = time.monotonic()
        sent = sims.stats()["seq_sent"]
        wait_until(lambda: committed(db) >= sent, 120, "controller caught up", interval=0.1)
        out["catch_up_s"] = time.monotonic() - t_catch

        # The API, while the fleet keeps reporting.
        plain, plain_port = start_plain_api(workdir, db_path)
        endpoints = [
            ("controller /api/v1/devices", controller.port, list_path, headers,
             args.requests),
            ("plain FastAPI, dicts", plain_port, f"/devices?opd={LIST_OPD}", {},
             min(args.requests, 20)),
            ("plain FastAPI, pydantic models", plain_port,
             f"/devices-models?opd={LIST_OPD}", {}, min(args.requests, 10))]
        # Latency with the fleet connected but quiet, then while it reports.
        sims.rate(0)
        sent = sims.stats()["seq_sent"]
        wait_until(lambda: committed(db) >= sent, 60, "quiet", interval=0.1)
        # The controller's body: the API's schema, and the plain endpoint's content.
        from pydantic import TypeAdapter
        adapter = TypeAdapter(list[DeviceOut])
        status, body = controller.get(list_path, headers)
        ours = adapter.validate_json(body)
        theirs = adapter.validate_json(get(plain_port, f"/devices-models?opd={LIST_OPD}")[1])
        out["list"] = {"status": status, "devices": len(ours), "bytes": len(body),
                       "same_as_plain": ours == theirs}
        api = {}
        for name, port, path, h, count in endpoints:
            latency(port, path, h, 3)
            ms = latency(port, path, h, count)
            api[name] = {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}
        sims.rate(steady_rate)
        time.sleep(args.settle_s)
        for name, port, path, h, count in endpoints:
            ms = latency(port, path, h, count)
            api[name] |= {"busy_p50_ms": percentile(ms, 50), "busy_p99_ms": percentile(ms, 99),
                          "rps_10": throughput(port, path, h, 10, args.throughput_s)}
        out["api"] = api

        sims.rate(0)
        sent = sims.stats()["seq_sent"]
        wait_until(lambda: committed(db) >= sent, 60, "every message committed",
                   interval=0.1)
        final = sims.stop()
        out["sims"] = final
        stored = sum(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("telemetry", "events"))
        out["check"] = {
            "sent": final["sent"], "stored": stored,
            "missing": db.execute("SELECT coalesce(sum(missing), 0) FROM device_seq"
                                  ).fetchone()[0],
            "disconnects": final["disconnects"],
            "refused_publishes": final["refused_publishes"]}
        db.close()
    finally:
        if sims is not None:
            sims.kill()
        if plain is not None:
            plain.send_signal(signal.SIGTERM)
            plain.wait(10)
        if controller is not None:
            controller.stop()
        broker.close()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--list-size", type=int, default=1_000,
                        help="units in the OPD whose device list is fetched")
    parser.add_argument("--interval-s", type=float, default=60.0,
                        help="each unit reports this often in the steady phase")
    parser.add_argument("--steady-s", type=float, default=15.0)
    parser.add_argument("--burst-rate", type=float, default=1_000.0)
    parser.add_argument("--burst-s", type=float, default=15.0)
    parser.add_argument("--processes", type=int, default=2, help="simulator processes")
    parser.add_argument("--connect-rate", type=float, default=2_000.0,
                        help="new unit connections per second, in total")
    parser.add_argument("--requests", type=int, default=200,
                        help="latency samples of the controller's list (each state)")
    parser.add_argument("--throughput-s", type=float, default=3.0)
    parser.add_argument("--settle-s", type=float, default=2.0,
                        help="pause after each rate change before measuring")
    parser.add_argument("--quick", action="store_true",
                        help="300 units (100 in the list), 3 s windows")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--sim-process", help=argparse.SUPPRESS)
    parser.add_argument("--plain-api", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sim_process:
        return sim_process(args.sim_process)
    if args.plain_api:
        return plain_api_process(*args.plain_api)
    if args.quick:
        args.units, args.list_size, args.interval_s = 300, 100, 6.0
        args.steady_s, args.burst_rate, args.burst_s = 2.0, 200.0, 2.0
        args.requests, args.throughput_s, args.settle_s = 10, 0.5, 0.5
    logging.basicConfig(level=logging.WARNING)
    print(f"fleet: {args.units:,} units, one MQTT connection each, {args.processes} "
          f"simulator processes; {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        r = run(args, Path(tmp))
    steady, burst, api, check = r["steady"], r["burst"], r["api"], r["check"]
    print(f"  setup {r['setup_s']:.1f} s (register units, write the broker's password and "
          f"ACL files); {r['units']:,} units connected in {r['connect_s']:.1f} s, online in "
          f"the controller in {r['online_s']:.1f} s")
    print("  CPU seconds used by then: " + ", ".join(
        f"{k} {v:.1f}" for k, v in r["connect_cpu_s"].items()))
    print_table("Ingest under the fleet (CPU in cores: 1.0 = one core busy)",
                ["phase", "offered msg/s", "stored msg/s", "controller", "% of machine",
                 "broker", "simulators"],
                [(name, w["offered"], w["msg_per_s"], f"{w['cores']:.3f}",
                  f"{w['cpu_pct_of_machine']:.1f}", f"{w['broker_cores']:.3f}",
                  f"{w['sim_cores']:.3f}") for name, w in (("steady", steady),
                                                           ("burst", burst))])
    print(f"  after the burst, the controller caught up in {r['catch_up_s']:.1f} s")
    c = api["controller /api/v1/devices"]
    best_plain = max(rps for name, a in api.items() if name.startswith("plain")
                     for rps in [a["rps_10"]])
    ratio = c["rps_10"] / best_plain if best_plain else float("inf")
    print_table(f"GET the device list of {r['list']['devices']:,} devices "
                f"({r['list']['bytes'] / 1024:.0f} KiB); one client: fleet quiet / fleet "
                f"reporting {steady['offered']:.0f} msg/s; 10 connections: reporting",
                ["endpoint", "p50 ms", "p99 ms", "busy p50", "busy p99", "req/s (10)"],
                [(name, a["p50_ms"], a["p99_ms"], a["busy_p50_ms"], a["busy_p99_ms"],
                  a["rps_10"]) for name, a in api.items()])
    lost = check["sent"] - check["stored"]
    burst_ok = burst["msg_per_s"] >= 0.95 * burst["offered"]
    figures = [
        Figure("units connected (one connection each)", f"{args.units:,}",
               f"{r['units']:,}", check["disconnects"] == 0),
        Figure("controller CPU, steady", "< 25 % of 2 cores",
               f"{steady['cpu_pct_of_machine']:.1f} % ({steady['msg_per_s']:.0f} msg/s)",
               steady["cpu_pct_of_machine"] < 25),
        Figure(f"burst {burst['offered']:.0f} msg/s sustained", "stored >= 95 % of offered",
               f"{burst['msg_per_s']:.0f} msg/s, CPU {burst['cpu_pct_of_machine']:.0f} %",
               burst_ok),
        Figure("device list p99, one client, fleet quiet", "<= 20 ms",
               f"{c['p99_ms']:.1f} ms", c["p99_ms"] <= 20),
        Figure("device list p99, one client, fleet reporting", "<= 20 ms",
               f"{c['busy_p99_ms']:.1f} ms", c["busy_p99_ms"] <= 20),
        Figure("device list throughput vs faster plain FastAPI", ">= 5x",
               f"{ratio:.1f}x", ratio >= 5),
        Figure("lost (sent - stored)", "0", str(lost), lost == 0),
        Figure("missing seqs", "0", str(check["missing"]), check["missing"] == 0),
        Figure("list body = plain endpoint's DeviceOut models", "yes",
               "yes" if r["list"]["same_as_plain"] else "no", r["list"]["same_as_plain"]),
    ]
    print_figures("Figures", figures)
    write_json(args.json, {"bench": "fleet", **r, "lost": lost, "ratio": ratio,
                           "figures": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
