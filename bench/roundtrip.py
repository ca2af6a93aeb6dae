"""How long from an operator's command to the unit's answer stored in the controller?

A private Mosquitto, the controller (``smartcity-controller serve``) and a real irrigation
unit (``smartcity-edge run --pin-factory mock``: the daemon with its link and outbox),
each in its own process, on loopback. The bench POSTs commands to the API one after the
other (``stop_all`` and ``skip_next``, which the unit completes at once) and times each
from the POST until the command's status in the controller's database is final (it
polls the database every millisecond). The path: API -> SQLite -> MQTT -> unit's link ->
app -> reply in the unit's outbox -> MQTT -> controller ingest -> SQLite.

The broker runs with the tuning of config/mosquitto.conf; if that file does not set
``set_tcp_nodelay true``, a second run shows the difference it makes (Mosquitto's
default leaves Nagle's algorithm on, which holds a small packet back for the TCP ack of
the previous one, about 40 ms on Linux).

    .venv/bin/python bench/roundtrip.py [--commands 200] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/
from bench.common import (  # noqa: E402
    ROOT,
    Controller,
    Figure,
    machine,
    percentile,
    print_figures,
    print_table,
    register_devices,
    shipped_broker_options,
    start_broker,
    wait_until,
    write_json,
)
from tests.support.unit_toml import TWO_ZONES, write_unit_toml  # noqa: E402

OPD, DEVICE = "dlh", "bench-taman-01"
FINAL = ("done", "failed", "rejected", "expired")
WARMUP = 5

COMMANDS = [{"action": "stop_all", "params": {}},
            {"action": "skip_next", "params": {"zone": "zone1"}}]


def start_unit(workdir: Path, broker) -> subprocess.Popen:
    config = write_unit_toml(workdir / "unit.toml", device_id=DEVICE, opd=OPD,
                             state_dir=workdir / "unit-state", host=broker.host,
                             port=broker.port, keepalive_s=None, telemetry_s=60,
                             zones=TWO_ZONES)
    log = (workdir / "unit.log").open("ab")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config),
                             "--pin-factory", "mock"], cwd=ROOT, env=env, stdout=log,
                            stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def broker_variants() -> list[tuple[str, dict]]:
    """The shipped broker config; plus ``set_tcp_nodelay true`` if it lacks that."""
    variants = [("broker as shipped", {})]
    if shipped_broker_options().get("set_tcp_nodelay") != "true":
        variants.append(("broker + set_tcp_nodelay true", {"set_tcp_nodelay": True}))
    return variants


def run(args, broker_conf: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-roundtrip-") as tmp, \
            start_broker(broker_conf) as broker:
        workdir = Path(tmp)
        controller = Controller(workdir, broker)
        token = register_devices(controller.db_path, [(OPD, DEVICE)], token_role="admin")
        headers = {"Authorization": f"Bearer {token}"}
        controller.start()
        unit = start_unit(workdir, broker)
        try:
            wait_until(lambda: controller.request("GET", f"/api/v1/devices/{DEVICE}",
                                                  headers=headers)[1]["online"],
                       30, "unit online", interval=0.1)
            return measure(controller, headers, args.commands)
        finally:
            unit.send_signal(signal.SIGTERM)
            try:
                unit.wait(10)
            except subprocess.TimeoutExpired:
                unit.kill()
            controller.stop()


def measure(controller: Controller, headers: dict, count: int) -> dict:
    db = sqlite3.connect(f"file:{controller.db_path}?mode=ro", uri=True)
    url = f"/api/v1/devices/{DEVICE}/commands"
    total, post, to_reply, to_commit, ids = [], [], [], [], []
    for n in range(WARMUP + count):
        body = COMMANDS[n % len(COMMANDS)]
        t0 = time.perf_counter()
        wall0 = time.time()
        status, created = controller.request("POST", url, body, headers)
        t_post = time.perf_counter()
        if status != 202:
            raise RuntimeError(f"POST {url} answered {status}: {created}")
        command_id = created["id"]

        def final(command_id=command_id):
            row = db.execute("SELECT status FROM commands WHERE id = ?",
                             [command_id]).fetchone()
            return row if row and row[0] in FINAL else None

        wait_until(final, 10, f"command {command_id} final", interval=0.001)
        t_final = time.perf_counter()
        wall_final = time.time()
        if n < WARMUP:
            continue
        ids.append(command_id)
        received = db.execute("SELECT min(received_at) FROM command_replies "
                              "WHERE command_id = ?", [command_id]).fetchone()[0]
        total.append((t_final - t0) * 1000)
        post.append((t_post - t0) * 1000)
        to_reply.append((_epoch(received) - wall0) * 1000)
        to_commit.append((wall_final - _epoch(received)) * 1000)
    statuses = dict(db.execute(
        f"SELECT status, count(*) FROM commands WHERE id IN ({','.join('?' * len(ids))}) "
        "GROUP BY status", ids).fetchall())
    db.close()
    return {"commands": count, "total_ms": total, "post_ms": post, "reply_ms": to_reply,
            "commit_ms": to_commit, "statuses": statuses}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="20 commands")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.commands = 20
    logging.basicConfig(level=logging.WARNING)
    print(f"roundtrip: {args.commands} commands (stop_all, skip_next) after {WARMUP} "
          f"warm-up; {machine()}")
    results = []
    for label, conf in broker_variants():
        r = run(args, conf)
        rows = []
        for name, key in (("POST answered (stored, published)", "post_ms"),
                          ("POST -> reply received by the controller", "reply_ms"),
                          ("reply received -> committed, status final", "commit_ms"),
                          ("POST -> status final (the roundtrip)", "total_ms")):
            values = r[key]
            rows.append((name, percentile(values, 50), percentile(values, 90),
                         percentile(values, 99), max(values)))
        print_table(f"Command roundtrip, milliseconds ({label})",
                    ["stage", "p50", "p90", "p99", "max"], rows)
        results.append((label, r))
    figures = []
    for label, r in results:
        done = r["statuses"].get("done", 0)
        p99 = percentile(r["total_ms"], 99)
        figures += [
            Figure(f"roundtrip p50, {label}", "-",
                   f"{percentile(r['total_ms'], 50):.1f} ms", None),
            Figure(f"roundtrip p99, {label}", "<= 50 ms", f"{p99:.1f} ms", p99 <= 50),
            Figure(f"commands done, {label}", str(r["commands"]), str(done),
                   done == r["commands"]),
        ]
    print_figures("Figures", figures)
    write_json(args.json, {"bench": "roundtrip", "runs": [
        {"broker": label, "commands": r["commands"], "done": r["statuses"].get("done", 0),
         "statuses": r["statuses"], "p50_ms": percentile(r["total_ms"], 50),
         "p99_ms": percentile(r["total_ms"], 99)} for label, r in results],
        "figures": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
