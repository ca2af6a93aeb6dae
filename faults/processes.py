"""The fault campaigns' processes: a private broker, the controller and units, each in
its own process, and waiting on them.

- ``start_broker(workdir)``: a private Mosquitto (``tests/support/broker.py``) on a free
  loopback port with the persistence and queue options of the shipped
  ``config/mosquitto.conf`` (``shipped_broker_options``), so a SIGKILL loses what the
  real broker would lose: everything since its last 30 s autosave.
- ``ControllerProcess``: ``smartcity-controller serve`` with its own config file and
  SQLite database; ``register`` adds devices and an admin token before the first start;
  ``start`` waits until ``/healthz`` says the ingest is connected; ``kill`` is SIGKILL.
- ``UnitProcess``: one unit in its own process (``python -m faults.unit_process``), with
  its own config file, state directory and outbox.
- ``wait_until`` and ``Budget``, the campaign's wall-clock cap.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.broker import MosquittoBroker, free_port  # noqa: E402
from tests.support.unit_toml import write_unit_toml  # noqa: E402

logger = logging.getLogger("faults.common")  # the name the campaigns have always logged as

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
{database_url}leader_poll_s = {leader_poll_s}

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
    With ``url`` (a ``postgresql://`` database) ``db`` is that URL.
    """

    def __init__(self, workdir: Path, broker: MosquittoBroker, *, ack_interval_s: float = 0.5,
                 name: str = "controller", db: Path | None = None, share_group: str = "",
                 url: str | None = None, leader_poll_s: float = 2.0):
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url_db = url  # a PostgreSQL database instead of the SQLite file
        self.db: Path | str = url or db or self.dir / "controller.db"
        self.config = self.dir / "controller.toml"
        self.log = self.dir / "controller.log"
        self.api_port = free_port()
        client_id = "smartcity-controller" if name == "controller" else f"smartcity-{name}"
        self.config.write_text(CONTROLLER_TOML.format(
            db=self.dir / "controller.db" if url else self.db,
            database_url=f'url = "{url}"\n' if url else "", leader_poll_s=leader_poll_s,
            host=broker.host, port=broker.port, ack_interval_s=ack_interval_s,
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

    def health(self) -> dict | None:
        """``/healthz`` as a dict; None when it does not answer."""
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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

