"""What the fault campaigns share: a broker, the controller and units in their own
processes, the ledger that counts lost and doubled messages, and the report.

The pieces, in the order a campaign uses them:

- ``start_broker(workdir)``: a private Mosquitto (``tests/support/broker.py``) on a free
  loopback port with the persistence and queue options of the shipped
  ``config/mosquitto.conf`` (``shipped_broker_options``), so a SIGKILL loses what the
  real broker would lose: everything since its last 30 s autosave.
- ``ControllerProcess``: ``smartcity-controller serve`` with its own config file and
  SQLite database; ``register`` adds devices and an admin token before the first start;
  ``start`` waits until ``/healthz`` says the ingest is connected; ``kill`` is SIGKILL.
- ``UnitProcess``: one unit in its own process (``python -m faults.unit_process``), with
  its own config file, state directory and outbox.
- ``count_device``: the ledger of one device: the seqs its outbox assigned, those still
  waiting in it, and the rows the controller stored, so ``lost`` and ``doubled`` are
  counted, never guessed.
- ``Report``: the figures a campaign prints, and whether they pass.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.broker import MosquittoBroker, free_port  # noqa: E402
from tests.support.unit_toml import write_unit_toml  # noqa: E402

logger = logging.getLogger(__name__)

CATCH_UP_S = 30.0
"""A busy unit's ack must pass a gap within this (the campaigns resend after 5 s)."""

OUTPUTS_OFF_LIMIT_S = 2.0
"""DESIGN.md invariant 1: a restarted unit drives every output off within 2 s of start."""

SHIPPED_BROKER_CONF = ROOT / "config" / "mosquitto.conf"
BROKER_KEYS = ("autosave_interval", "autosave_on_changes", "max_queued_messages",
               "max_queued_bytes", "max_inflight_messages", "persistent_client_expiration")
"""The options of the shipped broker config that decide what a crash loses."""


# --------------------------------------------------------------------------- waiting
def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               step: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no {what} within {timeout:g} s")
        time.sleep(step)


class Budget:
    """The campaign's wall-clock cap: no new cycle starts once too little is left."""

    def __init__(self, max_s: float):
        self.max_s = max_s
        self.t0 = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.t0

    @property
    def left_s(self) -> float:
        return self.max_s - self.elapsed_s

    def exhausted(self, reserve_s: float) -> bool:
        """True when less than ``reserve_s`` is left (kept for draining and checking)."""
        return self.left_s < reserve_s


# --------------------------------------------------------------------------- processes
def _spawn(cmd: list[str], log_path: Path) -> subprocess.Popen:
    """Start a child in its own session; it dies with us (pdeathsig) where possible."""
    if shutil.which("setpriv") and threading.current_thread() is threading.main_thread():
        cmd = ["setpriv", "--pdeathsig", "KILL", "--", *cmd]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    with log_path.open("ab") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                cwd=ROOT, env=env, start_new_session=True)


def _signal(proc: subprocess.Popen | None, sig: signal.Signals, timeout: float) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("pid %d ignored %s for %g s: SIGKILL", proc.pid, sig.name, timeout)
            proc.kill()
            return proc.wait(5)
    return proc.returncode


def shipped_broker_options(path: Path = SHIPPED_BROKER_CONF) -> dict[str, str]:
    """The crash-relevant options of the shipped mosquitto.conf, as written there."""
    options: dict[str, str] = {}
    for line in path.read_text().splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] in BROKER_KEYS:
            options[parts[0]] = parts[1].strip()
    return options


def start_broker(workdir: Path) -> MosquittoBroker:
    """A started private Mosquitto configured like the shipped one (anonymous login)."""
    options = shipped_broker_options()
    broker = MosquittoBroker(
        workdir=workdir / "broker",
        autosave_interval=int(options.pop("autosave_interval", 1800)),
        max_queued_messages=int(options.pop("max_queued_messages", 1000)),
        max_queued_bytes=int(options.pop("max_queued_bytes", 0)),
        log_all=False,
        conf_overrides=options,
    )
    return broker.start()


CONTROLLER_TOML = """\
log_level = "WARNING"

[database]
path = "{db}"

[mqtt]
host = "{host}"
port = {port}
client_id = "{client_id}"
share_group = "{share_group}"
reconnect_min_s = 1
reconnect_max_s = 2

[ingest]
ack_interval_s = {ack_interval_s}

[api]
host = "127.0.0.1"
port = {api_port}
"""


class ControllerProcess:
    """``smartcity-controller serve`` in its own process, restartable on the same files.

    Several of them make several ingest workers: give each its own ``name`` (its
    directory and MQTT client id), the first one's ``db`` and the same ``share_group``.
    """

    def __init__(self, workdir: Path, broker: MosquittoBroker, *, ack_interval_s: float = 0.5,
                 name: str = "controller", db: Path | None = None, share_group: str = ""):
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = db or self.dir / "controller.db"
        self.config = self.dir / "controller.toml"
        self.log = self.dir / "controller.log"
        self.api_port = free_port()
        client_id = "smartcity-controller" if name == "controller" else f"smartcity-{name}"
        self.config.write_text(CONTROLLER_TOML.format(
            db=self.db, host=broker.host, port=broker.port, ack_interval_s=ack_interval_s,
            api_port=self.api_port, client_id=client_id, share_group=share_group))
        self.proc: subprocess.Popen | None = None
        self.token: str | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def register(self, devices: list[tuple[str, str, str]]) -> None:
        """Register ``(device_id, opd, kind)`` devices and make an admin token."""
        from controller.auth import hash_token, new_token
        from controller.broker_files import new_password, pbkdf2_hash
        from controller.store import Store

        with Store.open(self.db) as store:
            for device_id, opd, kind in devices:
                store.add_device(device_id, opd, kind=kind, name=device_id,
                                 mqtt_password_hash=pbkdf2_hash(new_password()),
                                 actor="faults")
            self.token = new_token()
            store.create_token(name="faults-admin", role="admin", opd=None,
                               token_hash=hash_token(self.token), actor="faults")

    def start(self, timeout: float = 30.0) -> float:
        """Start and wait until healthy with MQTT connected; returns the seconds it took."""
        t0 = time.monotonic()
        self.proc = _spawn([sys.executable, "-m", "controller.cli", "serve", "--config",
                            str(self.config)], self.log)
        self.starts += 1
        wait_until(self._healthy, timeout, "healthy controller")
        return time.monotonic() - t0

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"controller exited with {self.proc.returncode}; see {self.log}")
        try:
            doc = httpx.get(f"{self.url}/healthz", timeout=1.0).json()
        except (httpx.HTTPError, ValueError):
            return False
        return doc.get("mqtt_connected") is True

    def kill(self) -> None:
        _signal(self.proc, signal.SIGKILL, 10)

    def stop(self) -> int | None:
        return _signal(self.proc, signal.SIGTERM, 15)

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10.0,
                             **kwargs)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """``/metrics`` as {(name, sorted label items): value}."""
        text = httpx.get(f"{self.url}/metrics", timeout=5.0).text
        return parse_metrics(text)

    def db_connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db, timeout=30)


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text exposition into {(name, ((label, value), ...)): value}."""
    out: dict[tuple[str, tuple], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        items = []
        for part in filter(None, labels.rstrip("}").split(",")):
            key, _, val = part.partition("=")
            items.append((key, val.strip('"')))
        try:
            out[(name, tuple(sorted(items)))] = float(value)
        except ValueError:
            continue
    return out


def metric_sum(metrics: dict[tuple[str, tuple], float], name: str) -> float:
    return sum(v for (n, _), v in metrics.items() if n == name)


class UnitProcess:
    """One unit in its own process: ``python -m faults.unit_process ROLE CONFIG ...``."""

    def __init__(self, workdir: Path, device: str, opd: str, config: dict[str, Any],
                 role: str, role_args: list[str]):
        self.device, self.opd = device, opd
        self.dir = workdir / device
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.dir / "state"
        self.outbox = self.state_dir / "outbox.db"
        self.config = self.dir / "unit.toml"
        self.log = self.dir / "unit.log"
        self.role, self.role_args = role, role_args
        self.config_knobs = config  # for tests.support.unit_toml, beside id and state dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def write_config(self, **knobs: Any) -> None:
        """Write the unit's config; ``knobs`` add to or override the ones it was made with."""
        write_unit_toml(self.config, device_id=self.device, opd=self.opd,
                        state_dir=self.state_dir, **{**self.config_knobs, **knobs})

    def start(self) -> float:
        """Spawn the unit; returns the wall time (``time.time()``) just before the spawn."""
        t = time.time()
        self.proc = _spawn([sys.executable, "-m", "faults.unit_process", self.role,
                            str(self.config), *self.role_args], self.log)
        self.starts += 1
        return t

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        _signal(self.proc, signal.SIGKILL, 10)

    def stop(self, timeout: float = 15.0) -> int | None:
        return _signal(self.proc, signal.SIGTERM, timeout)


def producer_unit(workdir: Path, device: str, opd: str, broker: MosquittoBroker, *,
                  rate_per_s: float, stop_file: Path) -> UnitProcess:
    """A unit whose app publishes ``rate_per_s`` messages (telemetry and events, half
    each) through the real link and outbox until ``stop_file`` exists."""
    unit = UnitProcess(workdir, device, opd,
                       {"host": broker.host, "port": broker.port, "telemetry_s": 3600},
                       "producer", ["--rate", str(rate_per_s), "--stop-file", str(stop_file)])
    unit.write_config()
    return unit


# --------------------------------------------------------------------------- the ledger
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


def count_device(db_path: Path, device: str, outbox_path: Path) -> DeviceCount:
    """The ledger of ``device``. The outbox is read first: a seq that leaves it in the
    meantime was acked, so committed, so it is in the database read after."""
    assigned, waiting = outbox_state(outbox_path)
    count = DeviceCount(device, assigned=assigned, waiting=len(waiting))
    db = sqlite3.connect(db_path, timeout=30)
    try:
        seqs = [r[0] for r in db.execute(
            "SELECT seq FROM telemetry WHERE device_id = ? UNION ALL "
            "SELECT seq FROM events WHERE device_id = ?", (device, device))]
        row = db.execute("SELECT acked_seq, duplicates, dropped_total FROM device_seq "
                         "WHERE device_id = ?", (device,)).fetchone()
        # What the unit announced as dropped (outbox thinning), from its outbox_dropped
        # events: seq_dropped forgets a range once the ack has passed it.
        dropped = []
        for (details,) in db.execute("SELECT details FROM events WHERE device_id = ? AND "
                                     "type = 'outbox_dropped'", (device,)):
            doc = json.loads(details)
            dropped += [(s, s) for s in doc.get("seqs", [])]
            dropped += [(r["from"], r["to"]) for r in doc.get("ranges", [])]
    finally:
        db.close()
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


def drained(db_path: Path, units: list[UnitProcess]) -> bool:
    """True when every unit's outbox is empty and the controller acked its last seq."""
    for unit in units:
        assigned, waiting = outbox_state(unit.outbox)
        if waiting:
            return False
        db = sqlite3.connect(db_path, timeout=30)
        try:
            row = db.execute("SELECT acked_seq FROM device_seq WHERE device_id = ?",
                             (unit.device,)).fetchone()
        finally:
            db.close()
        if not row or row[0] < assigned:
            return False
    return True


# --------------------------------------------------------------------------- the report
@dataclass
class Report:
    """What a campaign counted. ``ok``: nothing lost, nothing doubled, every restarted
    unit's outputs off within 2 s, every cycle done, no other problem."""

    campaign: str
    cycles_asked: int
    cycles_done: int = 0
    sent: int = 0
    stored: int = 0
    lost: int = 0
    doubled: int = 0
    waiting: int = 0
    redelivered: int = 0
    outputs_off_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, count: DeviceCount) -> None:
        self.sent += count.assigned
        self.stored += count.distinct
        self.lost += count.lost
        self.doubled += count.doubled
        self.waiting += count.waiting
        self.redelivered += count.redelivered
        if count.missing:
            self.problems.append(f"{count.device}: seqs lost {count.missing[:20]}")
        if count.doubled:
            self.problems.append(f"{count.device}: {count.doubled} seqs doubled")

    @property
    def max_outputs_off_s(self) -> float | None:
        return max(self.outputs_off_s) if self.outputs_off_s else None

    @property
    def ok(self) -> bool:
        off = self.max_outputs_off_s
        return (not self.problems and self.lost == 0 and self.doubled == 0
                and self.cycles_done == self.cycles_asked
                and (off is None or off <= OUTPUTS_OFF_LIMIT_S))

    def text(self) -> str:
        off = self.max_outputs_off_s
        lines = [
            f"campaign        {self.campaign}",
            f"cycles done     {self.cycles_done} of {self.cycles_asked} "
            f"in {self.wall_s:.1f} s",
            f"sent            {self.sent} (seqs assigned by the units' outboxes)",
            f"stored          {self.stored} (distinct (device, seq) in the controller DB)",
            f"lost            {self.lost}",
            f"doubled         {self.doubled}",
            f"still waiting   {self.waiting} (in a unit's outbox, not yet acked)",
            f"redeliveries    {self.redelivered} (ignored by the controller by (device, seq))",
            "outputs off     " + ("n/a (no unit restarted)" if off is None else
                                  f"max {off:.2f} s, mean "
                                  f"{sum(self.outputs_off_s) / len(self.outputs_off_s):.2f} s "
                                  f"after spawn, over {len(self.outputs_off_s)} restarts "
                                  f"(limit {OUTPUTS_OFF_LIMIT_S:g} s)"),
        ]
        for key, value in self.figures.items():
            lines.append(f"{key:<15} {value}")
        for problem in self.problems[:30]:
            lines.append(f"PROBLEM         {problem}")
        lines.append(f"result          {'PASS' if self.ok else 'FAIL'}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "cycles_asked": self.cycles_asked,
                "cycles_done": self.cycles_done, "sent": self.sent, "stored": self.stored,
                "lost": self.lost, "doubled": self.doubled, "waiting": self.waiting,
                "redelivered": self.redelivered, "max_outputs_off_s": self.max_outputs_off_s,
                "wall_s": round(self.wall_s, 1), "figures": self.figures,
                "problems": self.problems, "ok": self.ok}


# --------------------------------------------------------------------------- the CLI
def parser(description: str, cycles: int, max_s: float) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--cycles", type=int, default=cycles, help=f"kill cycles (default {cycles})")
    p.add_argument("--max-s", type=float, default=max_s,
                   help=f"wall-clock cap in seconds, draining included (default {max_s:g})")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep every file (logs, databases) here; default a temp dir, "
                        "removed when the campaign passes")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


@contextlib.contextmanager
def workspace(workdir: Path | None, prefix: str) -> Iterator[tuple[Path, list[bool]]]:
    """A work directory; a temporary one is removed unless the campaign failed
    (``keep[0] = True``), so its logs stay for a post-mortem."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir, [True]
        return
    path = Path(tempfile.mkdtemp(prefix=f"faults-{prefix}-"))
    keep = [False]
    try:
        yield path, keep
    finally:
        if keep[0]:
            print(f"files kept in {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def main_with(run: Callable[..., Report], args: argparse.Namespace, **kwargs: Any) -> int:
    """Run a campaign from its CLI arguments, print the report; exit status 0 on PASS."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with workspace(args.workdir, run.__module__.rsplit(".", 1)[-1]) as (workdir, keep):
        report = run(workdir=workdir, cycles=args.cycles, max_s=args.max_s, seed=args.seed,
                     **kwargs)
        keep[0] = keep[0] or not report.ok
    print(report.text())
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok else 1


def count_numbered(db_path: Path, device: str) -> tuple[int, int, int]:
    """For producer units: (messages carrying a producer number ``n``, distinct numbers,
    numbers missing below the highest). A logical message stored twice under two seqs
    shows as rows > distinct."""
    db = sqlite3.connect(db_path, timeout=30)
    try:
        numbers = [r[0] for r in db.execute(
            "SELECT json_extract(readings, '$.\"n.count\"') FROM telemetry "
            "WHERE device_id = ? UNION ALL "
            "SELECT json_extract(details, '$.n') FROM events WHERE device_id = ?",
            (device, device)) if r[0] is not None]
    finally:
        db.close()
    distinct = set(numbers)
    top = max(distinct, default=0)
    return len(numbers), len(distinct), top - len(distinct)


def stored_rows(db_path: Path) -> int:
    """Telemetry and event rows in the controller database (all devices)."""
    db = sqlite3.connect(db_path, timeout=30)
    try:
        return (db.execute("SELECT count(*) FROM telemetry").fetchone()[0]
                + db.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def settle_fleet(report: Report, db_path: Path, fleet: list[UnitProcess], stop_file: Path,
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
        db = sqlite3.connect(db_path, timeout=30)
        try:
            acked = dict(db.execute("SELECT device_id, acked_seq FROM device_seq"))
        finally:
            db.close()
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
