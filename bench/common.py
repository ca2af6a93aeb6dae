"""What the benchmark scripts share: a private broker, a controller process, figures.

Every bench runs on loopback only, against a Mosquitto it starts itself on a free port
(`tests.support.broker.MosquittoBroker`; never the machine's broker on 1883) and, when it
needs one, a controller it starts itself as a subprocess (``python -m controller.cli
serve``) with a config generated in a temporary directory.

Figures: `percentile`, `print_table` (plain text a reader can paste into
docs/benchmarks.md), `Figure` rows (goal, measured, pass/miss) and `write_json` for the
smoke tests, which assert on counters, never on timings.

Process figures come from /proc (Linux): `cpu_seconds` (user + system) and `memory_kb`
(VmRSS, VmHWM = peak resident set).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.broker import MosquittoBroker, free_port  # noqa: E402

__all__ = ["ROOT", "Controller", "Figure", "MosquittoBroker", "cpu_seconds", "descendants",
           "tree_cpu_seconds", "free_port",
           "machine", "memory_kb", "percentile", "print_figures", "print_table",
           "register_devices", "shipped_broker_options", "start_broker", "wait_until",
           "write_json"]

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- figures

def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0..100) of ``values``, linear between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a plain table: title, header, one line per row, columns aligned."""
    text = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(text):
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" \
            if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


@dataclass
class Figure:
    """One measured figure against its goal."""

    name: str
    goal: str
    measured: str
    ok: bool | None  # None: no goal, information only

    @property
    def verdict(self) -> str:
        return "-" if self.ok is None else ("pass" if self.ok else "MISS")


def print_figures(title: str, figures: Sequence[Figure]) -> None:
    print_table(title, ["figure", "goal", "measured", "result"],
                [(f.name, f.goal, f.measured, f.verdict) for f in figures])


def machine() -> str:
    """One line: CPU model, cores, memory, Python, date, and how busy the machine was."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_gib = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    load = os.getloadavg()[0]
    return (f"{model}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, "
            f"Python {platform.python_version()}, {datetime.now().astimezone():%Y-%m-%d}, "
            f"load average {load:.2f} at start")


def write_json(path: str | None, data: dict) -> None:
    """Write the figures as JSON (for the smoke tests) when ``--json PATH`` was given."""
    if path:
        def default(value):
            if isinstance(value, Figure):
                return asdict(value) | {"verdict": value.verdict}
            return str(value)

        Path(path).write_text(json.dumps(data, indent=2, default=default))


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f} s")
        time.sleep(interval)


# --------------------------------------------------------------------------- processes

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """Every running process below ``pid`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and every process it started that is still running (the
    controller's ingest writer process, for one)."""
    total = 0.0
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            total += cpu_seconds(each)
    return total


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak resident set) of process ``pid``, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


SHIPPED_BROKER_CONF = ROOT / "config" / "mosquitto.conf"
BROKER_TUNING = ("autosave_interval", "max_queued_messages", "max_queued_bytes",
                 "max_inflight_messages", "persistent_client_expiration", "set_tcp_nodelay",
                 "max_connections")
"""Options taken from the shipped broker config: listeners, logins and paths are the
bench's own."""


def shipped_broker_options(path: Path = SHIPPED_BROKER_CONF) -> dict[str, str]:
    """The tuning options (`BROKER_TUNING`) set in ``config/mosquitto.conf``."""
    options = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.split("#", 1)[0].strip().partition(" ")
            if key in BROKER_TUNING:
                options[key] = value.strip()
    return options


def start_broker(conf_overrides: dict[str, Any] | None = None, **kwargs: Any
                 ) -> MosquittoBroker:
    """A started private Mosquitto on a free loopback port, tuned as the shipped config
    (`shipped_broker_options`) plus ``conf_overrides``; quiet log."""
    kwargs.setdefault("log_all", False)
    conf = shipped_broker_options() | dict(conf_overrides or {})
    return MosquittoBroker(conf_overrides=conf, **kwargs).start()


def _toml(data: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)


class Controller:
    """``smartcity-controller serve`` in a subprocess, on a free port, with its own config.

    ``sections`` override or add config values (``{"ingest": {"batch_window_ms": 0}}``).
    The log goes to ``workdir/controller.log``.
    """

    def __init__(self, workdir: Path, broker: MosquittoBroker | None, *,
                 db_path: Path | None = None, client_id: str | None = None,
                 password: str | None = None,
                 sections: dict[str, dict[str, Any]] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = db_path or self.workdir / "controller.db"
        self.port = free_port()
        mqtt: dict[str, Any] = {"enabled": broker is not None}
        if broker is not None:
            mqtt |= {"host": broker.host, "port": broker.port,
                     "client_id": client_id or f"bench-ctl-{secrets.token_hex(3)}"}
        if password is not None:
            secret = self.workdir / "controller-mqtt.secret"
            secret.write_text(password + "\n")
            mqtt |= {"username": "smartcity-controller", "password_file": str(secret)}
        data: dict[str, dict[str, Any]] = {
            "database": {"path": str(self.db_path)},
            "mqtt": mqtt,
            "api": {"host": HOST, "port": self.port},
        }
        for name, values in (sections or {}).items():
            data.setdefault(name, {}).update(values)
        self.config = data
        self.config_path = self.workdir / "controller.toml"
        self.config_path.write_text("log_level = \"WARNING\"\n\n" + _toml(data))
        self.log_path = self.workdir / "controller.log"
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0, wait_mqtt: bool = True) -> Controller:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller.cli", "serve", "--config",
                 str(self.config_path)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                status, body = self.get("/healthz", timeout=1.0)
            except OSError:
                return False
            health = json.loads(body) if status == 200 else {}
            return health.get("database") and (health.get("mqtt_connected")
                                               or not wait_mqtt)

        wait_until(ready, timeout, "controller ready", interval=0.05)
        return self

    def get(self, path: str, headers: dict[str, str] | None = None,
            timeout: float = 10.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            payload = None if body is None else json.dumps(body)
            conn.request(method, path, body=payload,
                         headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def cpu_seconds(self) -> float:
        """The controller's CPU seconds, its writer process included."""
        return tree_cpu_seconds(self.pid)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (the ingest commits and acks what it holds), then SIGKILL if stuck."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- database

def register_devices(db_path: Path | str, devices: Iterable[tuple[str, str]], *,
                     kind: str = "irrigation", password_hash: str = "$7$101$bench$bench",
                     token_role: str | None = "admin") -> str | None:
    """Register ``(opd, device_id)`` pairs in the controller database (a SQLite file or a
    PostgreSQL URL; through `Store`, as ``device add`` does) and return a fresh API token
    of ``token_role`` (or None).

    Seeding runs with ``synchronous=OFF`` on this connection only: thousands of devices
    in seconds; the controller opens its own connection with ``synchronous=FULL``.
    """
    from controller.auth import hash_token, new_token
    from controller.store import Store

    with Store.open(db_path) as store:
        if not store.postgres:
            store.db.execute("PRAGMA synchronous = OFF")
        for opd, device_id in devices:
            store.add_device(device_id, opd, kind=kind, name=device_id,
                             mqtt_password_hash=password_hash, actor="bench")
        if token_role is None:
            return None
        token = new_token()
        store.create_token(name=f"bench-{token_role}", role=token_role, opd=None,
                           token_hash=hash_token(token), actor="bench")
        return token
