"""The fault campaigns' ledger: what each unit's outbox assigned against what the
controller stored, so ``lost`` and ``doubled`` are counted, never guessed.

- ``count_device``: the ledger of one device: the seqs its outbox assigned, those still
  waiting in it, and the rows the controller stored.
- ``drained``, ``count_numbered``, ``stored_rows``, and ``settle_fleet``, which lets the
  controller catch up, drains the producers and counts every device into a ``Report``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from faults.processes import UnitProcess, wait_until

if TYPE_CHECKING:
    from faults.report import Report

Database = Path | str
"""The controller's database: a SQLite file, or a ``postgresql://`` URL (several
instances on one PostgreSQL database, ``faults.instance_kills``)."""


def is_postgres(db: Database) -> bool:
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def query(db: Database, sql: str, params: tuple | list = ()) -> list[tuple]:
    """Rows of one read of the controller's database (``?`` placeholders on both)."""
    if is_postgres(db):
        import psycopg

        with psycopg.connect(str(db), autocommit=True) as conn:
            return [tuple(r) for r in conn.execute(sql.replace("?", "%s"), params).fetchall()]
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _json_field(db: Database, column: str, key: str) -> str:
    """A JSON text column's field, in the backend's spelling."""
    if is_postgres(db):
        return f"({column}::jsonb ->> '{key}')"
    return f"json_extract({column}, '$.\"{key}\"')"

CATCH_UP_S = 30.0
"""A busy unit's ack must pass a gap within this (the campaigns resend after 5 s)."""


def outbox_state(path: Path) -> tuple[int, set[int]]:
    """(the last seq the unit's outbox assigned, the seqs still waiting in it), read from
    outside the unit. (0, set()) before the outbox file exists."""
    if not path.exists():
        return 0, set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        db.execute("BEGIN")  # one snapshot for both reads
        next_seq = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        waiting = {r[0] for r in db.execute("SELECT seq FROM messages")}
        db.execute("COMMIT")
    except sqlite3.OperationalError:
        return 0, set()  # the schema is not there yet
    finally:
        db.close()
    return (next_seq[0] - 1 if next_seq else 0), waiting


@dataclass
class DeviceCount:
    """One device's ledger: what its outbox assigned against what the controller holds."""

    device: str
    assigned: int = 0  # the outbox assigned seq 1..assigned
    waiting: int = 0  # of those, still in the unit's outbox (safe there, not yet acked)
    rows: int = 0  # controller rows (telemetry + events) with seq <= assigned
    distinct: int = 0  # distinct seqs among them
    missing: list[int] = field(default_factory=list)  # neither stored nor waiting: lost
    unknown: int = 0  # stored seqs the unit never assigned
    acked: int = 0  # the controller's ack watermark
    redelivered: int = 0  # redeliveries the controller ignored by (device, seq)
    dropped: int = 0  # seqs the unit announced as dropped (outbox thinning)

    @property
    def lost(self) -> int:
        return len(self.missing)

    @property
    def doubled(self) -> int:
        return self.rows - self.distinct + self.unknown


def count_device(db_path: Database, device: str, outbox_path: Path) -> DeviceCount:
    """The ledger of ``device``. The outbox is read first: a seq that leaves it in the
    meantime was acked, so committed, so it is in the database read after."""
    assigned, waiting = outbox_state(outbox_path)
    count = DeviceCount(device, assigned=assigned, waiting=len(waiting))
    seqs = [r[0] for r in query(db_path,
            "SELECT seq FROM telemetry WHERE device_id = ? UNION ALL "
            "SELECT seq FROM events WHERE device_id = ?", (device, device))]
    rows = query(db_path, "SELECT acked_seq, duplicates, dropped_total FROM device_seq "
                 "WHERE device_id = ?", (device,))
    row = rows[0] if rows else None
    # What the unit announced as dropped (outbox thinning), from its outbox_dropped
    # events: seq_dropped forgets a range once the ack has passed it.
    dropped = []
    for (details,) in query(db_path, "SELECT details FROM events WHERE device_id = ? AND "
                            "type = 'outbox_dropped'", (device,)):
        doc = json.loads(details)
        dropped += [(s, s) for s in doc.get("seqs", [])]
        dropped += [(r["from"], r["to"]) for r in doc.get("ranges", [])]
    if row:
        count.acked, count.redelivered, count.dropped = row
    mine = [s for s in seqs if s <= assigned]
    count.rows, count.distinct = len(mine), len(set(mine))
    count.unknown = len(set(seqs)) - count.distinct
    announced = {s for a, b in dropped for s in range(a, b + 1)}
    stored = set(mine)
    count.missing = [s for s in range(1, assigned + 1)
                     if s not in stored and s not in waiting and s not in announced]
    return count


def drained(db_path: Database, units: list[UnitProcess]) -> bool:
    """True when every unit's outbox is empty and the controller acked its last seq."""
    for unit in units:
        assigned, waiting = outbox_state(unit.outbox)
        if waiting:
            return False
        rows = query(db_path, "SELECT acked_seq FROM device_seq WHERE device_id = ?",
                     (unit.device,))
        if not rows or rows[0][0] < assigned:
            return False
    return True


def count_numbered(db_path: Database, device: str) -> tuple[int, int, int]:
    """For producer units: (messages carrying a producer number ``n``, distinct numbers,
    numbers missing below the highest). A logical message stored twice under two seqs
    shows as rows > distinct."""
    numbers = [int(r[0]) for r in query(
        db_path,
        f"SELECT {_json_field(db_path, 'readings', 'n.count')} FROM telemetry "
        "WHERE device_id = ? UNION ALL "
        f"SELECT {_json_field(db_path, 'details', 'n')} FROM events WHERE device_id = ?",
        (device, device)) if r[0] is not None]
    distinct = set(numbers)
    top = max(distinct, default=0)
    return len(numbers), len(distinct), top - len(distinct)


def stored_rows(db_path: Database) -> int:
    """Telemetry and event rows in the controller database (all devices)."""
    try:
        return (query(db_path, "SELECT count(*) FROM telemetry")[0][0]
                + query(db_path, "SELECT count(*) FROM events")[0][0])
    except Exception:  # noqa: BLE001 - no schema yet (or the database not up yet)
        return 0


def settle_fleet(report: Report, db_path: Database, fleet: list[UnitProcess], stop_file: Path,
                 timeout_s: float) -> None:
    """Let the controller catch up while the producers still run, stop them, wait until
    every outbox is drained and acked, then count every device into ``report`` (seqs,
    and the producers' own numbers).

    Catching up while busy is checked on purpose: a unit that keeps sending must still
    get past a gap below the controller's ack (a resend after ``resend_after_s``), not
    only once it falls quiet."""
    t0 = time.monotonic()
    targets = {u.device: outbox_state(u.outbox)[0] for u in fleet}

    def caught_up() -> bool:
        acked = dict(query(db_path, "SELECT device_id, acked_seq FROM device_seq"))
        return all(acked.get(d, 0) >= n for d, n in targets.items())

    try:
        wait_until(caught_up, min(CATCH_UP_S, max(timeout_s, 1.0)),
                   "ack caught up while the units kept producing", step=0.2)
        report.figures["catch_up_s"] = (f"{time.monotonic() - t0:.1f} (ack past every seq "
                                        f"assigned at the last fault, producers running)")
    except TimeoutError as exc:
        report.problems.append(str(exc))
    stop_file.touch()
    t0 = time.monotonic()
    try:
        wait_until(lambda: drained(db_path, fleet), max(timeout_s, 1.0),
                   "drained outboxes", step=0.2)
        report.figures["drain_s"] = f"{time.monotonic() - t0:.1f} (after the last fault)"
    except TimeoutError as exc:
        report.problems.append(f"{exc} (see the unit logs)")
    for unit in fleet:
        count = count_device(db_path, unit.device, unit.outbox)
        report.add(count)
        rows, distinct, gaps = count_numbered(db_path, unit.device)
        if rows != distinct or gaps:
            report.problems.append(f"{unit.device}: producer numbers stored {rows} times "
                                   f"for {distinct} messages, {gaps} missing")
        report.doubled += rows - distinct
