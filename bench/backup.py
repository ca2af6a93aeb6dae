"""How long does a backup of the controller's database take, how big is it, and how long
does a restore take?

Builds a controller database (SQLite, the real schema) of ``--units`` units with
``--days`` days of telemetry at ``--interval-s`` (the example unit config's 300 s; a
reading of moisture and flow per sample, as an irrigation unit sends) and a few events a
day, then times ``controller.backup.make_backup`` gzipped and plain, and ``restore`` of
each into a new file. With ``--writer``, a thread commits telemetry one message per
transaction (as the ingest at its slowest) during the gzipped backup, and its rate is
printed beside its rate without a backup.

    .venv/bin/python bench/backup.py                 # 50 units, 90 days (the retention)
    .venv/bin/python bench/backup.py --quick         # 5 units, 3 days
    .venv/bin/python bench/backup.py --dir /var/tmp  # on a real disk (default: /var/tmp)
    .venv/bin/python bench/backup.py --writer        # and a writer's rate during a backup
    .venv/bin/python bench/backup.py --postgres      # pg_dump and pg_restore, a server of
                                                     # its own (tests/support/postgres.py)

``--json FILE`` writes the figures and the rows counted in each restored copy (the smoke
test checks that every row came back).

Figures have no goal: they are for the docs (how long the nightly backup runs, how much
disk ``keep`` backups take).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import Figure, machine, print_figures, print_table, write_json  # noqa: E402
from controller.backup import make_backup, restore  # noqa: E402
from controller.store import Inbound, Store, iso  # noqa: E402
from protocol.models import Telemetry  # noqa: E402
from protocol.topics import Channel  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rows_of(dev: str, days: int, interval_s: int) -> tuple[list[tuple], list[tuple]]:
    """One unit's telemetry and events rows, as the ingest stores them."""
    telemetry = []
    for i in range(days * (86_400 // interval_s)):
        ts = iso(T0 + timedelta(seconds=i * interval_s))
        readings = json.dumps({"moisture_pct.zone1": 20 + (i % 30) * 0.5,
                               "moisture_pct.zone2": 25 + (i % 20) * 0.5,
                               "flow_lpm": 0.0 if i % 12 else 14.2, "rain": False},
                              separators=(",", ":"), sort_keys=True)
        telemetry.append((dev, i + 1, ts, ts, readings,
                          '{"master":false,"zone1":false,"zone2":false}'))
    events = [(dev, 10_000_000 + d, iso(T0 + timedelta(days=d)), iso(T0 + timedelta(days=d)),
               "run_finished", '{"zone":"zone1","duration_s":600}') for d in range(days)]
    return telemetry, events


def build(target: str, units: int, days: int, interval_s: int) -> int:
    """The database (SQLite path or PostgreSQL URL), filled with plain INSERTs (SQLite) or
    COPY (PostgreSQL): the ingest's own rows, without its cost."""
    devices = [f"taman-{n:03d}" for n in range(units)]
    with Store.open(target) as store:
        for dev in devices:
            store.add_device(dev, "dlh", kind="irrigation", name=dev, mqtt_password_hash="x",
                             actor="bench")
    rows = 0
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target) as conn:
            for dev in devices:
                telemetry, events = rows_of(dev, days, interval_s)
                for table, batch in (("telemetry", telemetry), ("events", events)):
                    with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                        for row in batch:
                            copy.write_row(row)
                conn.commit()
                rows += len(telemetry)
        return rows
    conn = sqlite3.connect(target)
    try:
        for dev in devices:
            telemetry, events = rows_of(dev, days, interval_s)
            with conn:
                conn.executemany("INSERT INTO telemetry VALUES (?, ?, ?, ?, ?, ?)", telemetry)
                conn.executemany("INSERT INTO events (device_id, seq, ts, received_at, type, "
                                 "details) VALUES (?, ?, ?, ?, ?, ?)", events)
            rows += len(telemetry)
    finally:
        conn.close()
    return rows


def size_mb(target: str) -> float:
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target) as conn:
            return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 1e6
    return Path(target).stat().st_size / 1e6


def count(target: str) -> int:
    with Store.open(target) as store:
        return store.db.execute("SELECT count(*) FROM telemetry").fetchone()[0]


def writer_rate(path: Path, stop: threading.Event, counter: list[int]) -> None:
    with Store.open(path) as store:
        seq = 0
        while not stop.is_set():
            seq += 1
            store.commit_batch([Inbound("dlh", "busy-01", Channel.TELEMETRY, Telemetry(
                seq=seq, ts=T0, readings={"x": 1.0}, outputs={}), T0)])
            counter[0] += 1


def timed_writer(path: Path, seconds: float | None, during=None) -> tuple[float, object]:
    """Commits per second of a writer for ``seconds``, or while ``during()`` runs."""
    stop, counter = threading.Event(), [0]
    thread = threading.Thread(target=writer_rate, args=(path, stop, counter), daemon=True)
    thread.start()
    time.sleep(0.5)  # connected, warm
    start, began = counter[0], time.monotonic()
    result = during() if during else time.sleep(seconds)
    rate = (counter[0] - start) / (time.monotonic() - began)
    stop.set()
    thread.join()
    return rate, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--interval-s", type=int, default=300)
    parser.add_argument("--dir", default="/var/tmp", help="where the files go (a real disk)")
    parser.add_argument("--writer", action="store_true",
                        help="also measure a writer's commit rate during the backup")
    parser.add_argument("--quick", action="store_true", help="5 units, 3 days")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--postgres", action="store_true",
                        help="the same on a PostgreSQL server of its own (pg_dump, "
                        "pg_restore; needs Debian's postgresql)")
    args = parser.parse_args()
    if args.quick:
        args.units, args.days = 5, 3
    print(machine())
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-backup-", dir=args.dir))
    figures: list[Figure] = []
    report: dict = {"figures": figures, "restored_rows": []}
    server = None
    try:
        if args.postgres:
            from tests.support.postgres import PostgresServer

            server = PostgresServer().start()
            db, new_target = server.create_database(), server.create_database
            kinds = [("pg_dump", True)]
        else:
            db = str(work / "controller.db")
            kinds = [("gzip", True), ("plain", False)]
            new_target = None
        began = time.monotonic()
        rows = build(db, args.units, args.days, args.interval_s)
        print(f"built {db}: {args.units} units x {args.days} days, {rows:,} telemetry rows, "
              f"{size_mb(db):.1f} MB in {time.monotonic() - began:.0f} s")
        table = []
        for n, (kind, compress) in enumerate(kinds):
            made = make_backup(db, work / "backups", compress=compress,
                               now=T0 + timedelta(seconds=n))
            target = new_target() if new_target else str(work / f"restored-{n}.db")
            done = restore(target, made.path)
            report["restored_rows"].append(count(target))
            table.append((kind, size_mb(db), made.size_bytes / 1e6, made.seconds,
                          done.seconds))
            figures += [Figure(f"backup ({kind})", "-", f"{made.seconds:.2f} s, "
                               f"{made.size_bytes / 1e6:.1f} MB", None),
                        Figure(f"restore ({kind})", "-", f"{done.seconds:.2f} s", None)]
        report["rows"] = rows
        print_table(f"Backup and restore ({'PostgreSQL' if args.postgres else 'SQLite'})",
                    ["backup", "database MB", "backup MB", "backup s", "restore s"], table)
        if args.writer:
            with Store.open(db) as store:
                store.add_device("busy-01", "dlh", kind="irrigation", name="",
                                 mqtt_password_hash="x", actor="bench")
            alone, _ = timed_writer(db, 5.0)
            during, made = timed_writer(db, None, lambda: make_backup(
                db, work / "backups", now=T0 + timedelta(seconds=10)))
            print_table("A writer committing one message per transaction",
                        ["while", "commits/s"],
                        [("nothing else", alone), (f"a backup ({made.seconds:.1f} s)", during)])
            figures.append(Figure("writer during a backup", "-",
                                  f"{during:.0f} commits/s ({alone:.0f} without)", None))
        print_figures("Figures", figures)
        write_json(args.json, report)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
