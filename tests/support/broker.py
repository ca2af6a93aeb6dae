"""A real Mosquitto broker for tests, on its own loopback port.

Every `MosquittoBroker` runs ``mosquitto -c <generated conf>`` out of a private
temporary directory holding the config, the persistence database, the log and,
when asked for, a password file and an ACL file.  It never touches the
system broker on 127.0.0.1:1883.

What persistence promises (Mosquitto 2.0, see mosquitto.conf(5)):

* The broker keeps sessions, subscriptions and queued QoS 1/2 messages in
  memory and writes the whole in-memory database to
  ``<persistence_location>/mosquitto.db`` only (a) on a clean shutdown
  (SIGTERM, `stop`), (b) on SIGUSR1 (`save_now`) and (c) on autosave.
* Autosave is time based by default: with ``autosave_interval N`` the main loop
  saves when ``last_save + N < now`` (whole seconds), so ``N = 1`` saves about
  every 2 s.  With ``autosave_on_changes true`` the same number is instead a
  count of changes (subscriptions, queued messages, ...); ``1`` saves after
  every loop iteration that changed anything, which is as close to "every
  message" as Mosquitto goes.
* Each save writes ``mosquitto.db.new`` and renames it over ``mosquitto.db``,
  so a SIGKILL leaves the previous complete save, never a torn file.  Whatever
  was acknowledged (PUBACK) after the last save is lost on SIGKILL.

`persistence_snapshot` and `wait_for_save` let a test prove a save happened
after a given point instead of sleeping and hoping.

TLS: pass ``tls=TlsListener(cafile, certfile, keyfile)`` and the broker opens a
second listener, MQTT over TLS, on its own free loopback port (``tls_port``), next
to the plain one on ``port``.  `tests.support.tls.make_test_pki` makes the files.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SYSTEM_BROKER_PORT = 1883  # the machine's own broker: never ours
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

# A queued message must survive an outage of hours, so the project raises
# Mosquitto's default of 1000 queued messages per client; bytes stay bounded.
DEFAULT_MAX_QUEUED_MESSAGES = 100_000
DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024


class BrokerError(RuntimeError):
    """The broker would not start, or died; the message carries the log tail."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (often in /usr/sbin, which is not always on PATH)."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def free_port(host: str = HOST) -> int:
    """Ask the kernel for a free TCP port on `host` (bind to port 0, then release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    if port == SYSTEM_BROKER_PORT:  # cannot happen (ephemeral range), but never risk it
        return free_port(host)
    return port


def pbkdf2_password_line(username: str, password: str, iterations: int = 101) -> str:
    """One password-file line in Mosquitto 2's ``$7$`` (PBKDF2-HMAC-SHA512) format.

    Same layout `mosquitto_passwd` writes: ``user:$7$iterations$b64(salt)$b64(hash)``
    with a 12-byte salt and a 64-byte hash.  Used when mosquitto_passwd is absent.
    """
    if ":" in username:
        raise ValueError("a Mosquitto username cannot contain ':'")
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    b64 = base64.b64encode
    return f"{username}:$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def write_password_file(path: Path, users: Mapping[str, str], *, use_tool: bool | None = None) -> None:
    """Write a Mosquitto password file for ``{username: password}``.

    Uses ``mosquitto_passwd -b`` when installed (``use_tool=None`` means "if
    available"), otherwise `pbkdf2_password_line`.  The file is mode 0600.
    """
    tool = shutil.which("mosquitto_passwd")
    if use_tool is None:
        use_tool = tool is not None
    path.write_text("")
    path.chmod(0o600)
    if use_tool:
        if tool is None:
            raise FileNotFoundError("mosquitto_passwd is not installed")
        for username, password in users.items():
            subprocess.run([tool, "-b", str(path), username, password], check=True,
                           capture_output=True, timeout=10)
    else:
        path.write_text("".join(pbkdf2_password_line(u, p) + "\n" for u, p in users.items()))


@dataclass(frozen=True)
class TlsListener:
    """Files of a Mosquitto TLS listener (see mosquitto.conf(5), "Certificate based SSL/TLS
    Support").  With ``require_certificate`` the broker also asks clients for a
    certificate signed by ``cafile``."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False

    def conf_lines(self) -> list[str]:
        return [f"cafile {self.cafile}", f"certfile {self.certfile}",
                f"keyfile {self.keyfile}",
                f"require_certificate {_conf_value(self.require_certificate)}"]


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kill_process(proc: subprocess.Popen) -> None:
    """Finalizer: make sure a broker process does not outlive the tests."""
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


class MosquittoBroker:
    """One Mosquitto process on a private loopback port, restartable in place.

    >>> with MosquittoBroker() as broker:       # doctest: +SKIP
    ...     client.connect(broker.host, broker.port)

    Config: ``conf`` holds the generated options (name -> value; a list/tuple
    value writes the option once per item, ``None`` drops it).  Pass
    ``conf_overrides`` to change or add any mosquitto.conf option, e.g.
    ``{"autosave_on_changes": True, "persistent_client_expiration": "1d"}``.

    ``password_users`` ({user: password}) writes a password file; ``acl`` is the
    text of an ACL file (Mosquitto denies everything not granted once an ACL
    file is set).  `restart` keeps the port and the persistence directory.

    ``tls`` adds a TLS listener on ``tls_port`` (same host); the plain listener on
    ``port`` stays, so tests can still look at the broker without certificates.
    """

    def __init__(
        self,
        *,
        password_users: Mapping[str, str] | None = None,
        acl: str | None = None,
        allow_anonymous: bool = True,
        autosave_interval: int = 1,
        autosave_on_changes: bool = False,
        max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        log_all: bool = True,
        conf_overrides: Mapping[str, Any] | None = None,
        workdir: str | os.PathLike | None = None,
        executable: str | None = None,
        use_mosquitto_passwd: bool | None = None,
        tls: TlsListener | None = None,
    ) -> None:
        self.executable = executable or find_mosquitto()
        if not self.executable:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mosquitto-test-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._own_workdir:  # removed on close(), or at exit if never closed
            self._dir_finalizer = weakref.finalize(self, shutil.rmtree, self.workdir, True)
        self.host = HOST
        self.port = free_port(self.host)
        self.tls = tls
        self.tls_port: int | None = self._free_tls_port() if tls is not None else None
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.stderr_path = self.workdir / "mosquitto.stderr"
        self.db_path = self.workdir / "mosquitto.db"
        self._proc: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None

        conf: dict[str, Any] = {
            "persistence": True,
            "persistence_location": f"{self.workdir}/",  # Mosquitto wants the trailing /
            "persistence_file": self.db_path.name,
            "autosave_interval": autosave_interval,
            "autosave_on_changes": autosave_on_changes,
            "max_queued_messages": max_queued_messages,
            "max_queued_bytes": max_queued_bytes,
            "allow_anonymous": allow_anonymous,
            "log_dest": f"file {self.log_path}",
            "log_type": "all" if log_all else ["error", "warning", "notice", "information"],
            "log_timestamp_format": "%Y-%m-%dT%H:%M:%S",
        }
        if os.geteuid() == 0:
            # As root, Mosquitto drops to user "mosquitto", which cannot write
            # our private 0700 temp dir.  Stay as the invoking user instead.
            conf["user"] = getpass.getuser()
        if password_users is not None:
            pw_path = self.workdir / "passwd"
            write_password_file(pw_path, password_users, use_tool=use_mosquitto_passwd)
            conf["password_file"] = str(pw_path)
        if acl is not None:
            acl_path = self.workdir / "acl"
            acl_path.write_text(acl if acl.endswith("\n") else acl + "\n")
            acl_path.chmod(0o600)
            conf["acl_file"] = str(acl_path)
        conf.update(conf_overrides or {})
        self.conf = conf
        self.write_conf()

    # ----------------------------------------------------------------- config
    def conf_text(self) -> str:
        """The mosquitto.conf this broker runs with."""
        lines = ["# generated by tests/support/broker.py", f"listener {self.port} {self.host}"]
        for name, value in self.conf.items():
            if value is None:
                continue
            values: Iterable[Any] = value if isinstance(value, (list, tuple)) else [value]
            lines.extend(f"{name} {_conf_value(v)}" for v in values)
        if self.tls is not None:
            # Listener options apply to the listener line they follow: keep this last.
            lines.append(f"listener {self.tls_port} {self.host}")
            lines.extend(self.tls.conf_lines())
        return "\n".join(lines) + "\n"

    def _free_tls_port(self) -> int:
        port = free_port(self.host)
        while port == self.port:
            port = free_port(self.host)
        return port

    def write_conf(self) -> None:
        """(Re)write mosquitto.conf from `conf`; takes effect on the next (re)start."""
        self.conf_path.write_text(self.conf_text())

    # -------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_address(self) -> tuple[str, int]:
        """``(host, port)`` of the TLS listener; an error if the broker has none."""
        if self.tls_port is None:
            raise BrokerError("this broker has no TLS listener (pass tls=TlsListener(...))")
        return self.host, self.tls_port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> MosquittoBroker:
        """Spawn mosquitto and wait until the port accepts TCP connections.

        On a first start a port stolen in the meantime is replaced by a fresh
        one; on a restart the port is kept and binding is retried briefly.
        """
        if self.is_running():
            raise BrokerError(f"broker already running (pid {self.pid})")
        first_start = self._proc is None
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._spawn_and_wait(deadline)
                return self
            except BrokerError as exc:
                port_taken = "Address already in use" in str(exc)
                if not port_taken or time.monotonic() >= deadline:
                    raise
                if first_start:
                    self.port = free_port(self.host)
                    if self.tls is not None:
                        self.tls_port = self._free_tls_port()
                    self.write_conf()
                log.info("port busy, retrying mosquitto on %s:%s", self.host, self.port)
                time.sleep(0.2)

    def _spawn_and_wait(self, deadline: float) -> None:
        cmd = [self.executable, "-c", str(self.conf_path)]
        if shutil.which("setpriv") and threading.current_thread() is threading.main_thread():
            # If the test process dies hard (os._exit, SIGKILL), the kernel
            # kills the broker too.  Tied to the spawning thread, hence main only.
            cmd = ["setpriv", "--pdeathsig", "KILL", "--", *cmd]
        log.info("starting mosquitto on %s:%s (%s)", self.host, self.port, self.workdir)
        with self.stderr_path.open("ab") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    cwd=self.workdir, start_new_session=True)
        if self._finalizer is not None:
            self._finalizer.detach()  # the previous process is already gone
        self._proc = proc
        self._finalizer = weakref.finalize(self, _kill_process, proc)
        while True:
            if proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {proc.returncode}\n{self.log_tail()}")
            # Mosquitto opens its listeners before entering the main loop; a
            # failed bind makes it exit, so "alive and accepting" means ours.
            if self._accepting(self.port) and (
                    self.tls_port is None or self._accepting(self.tls_port)):
                if proc.poll() is None:
                    return
            if time.monotonic() >= deadline:
                self._signal_and_wait(signal.SIGKILL)
                raise BrokerError(f"mosquitto did not listen on {self.port} in time\n{self.log_tail()}")
            time.sleep(0.02)

    def _accepting(self, port: int) -> bool:
        try:
            socket.create_connection((self.host, port), 0.2).close()
        except OSError:
            return False
        return True

    def _signal_and_wait(self, sig: signal.Signals, timeout: float = STOP_TIMEOUT) -> int | None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("mosquitto ignored %s for %ss; killing it", sig.name, timeout)
            proc.kill()
            return proc.wait(timeout=5)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Clean shutdown (SIGTERM): Mosquitto saves its persistence database first."""
        return self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """Hard crash (SIGKILL): only what the last save wrote survives."""
        return self._signal_and_wait(signal.SIGKILL)

    def restart(self, timeout: float = START_TIMEOUT) -> MosquittoBroker:
        """Stop if running (cleanly), then start again on the same port and data dir."""
        if self.is_running():
            self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the broker and remove its directory if we created it."""
        self.stop()
        if self._finalizer:
            self._finalizer()
        if self._own_workdir:
            self._dir_finalizer()

    def __enter__(self) -> MosquittoBroker:
        return self if self.is_running() else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else "stopped"
        return f"<MosquittoBroker {self.host}:{self.port} {state}>"

    # ------------------------------------------------------------ persistence
    def persistence_snapshot(self) -> tuple[int, int, int] | None:
        """Identity of the current mosquitto.db (inode, mtime_ns, size), None if absent.

        Every save renames a freshly written file over the old one, so the
        inode changes on each save.
        """
        try:
            st = self.db_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def wait_for_save(self, since: tuple[int, int, int] | None, timeout: float = 5.0) -> None:
        """Block until mosquitto.db differs from the `since` snapshot.

        Take ``since`` *after* the client saw the acknowledgements that matter:
        the broker is single threaded and queues a message before it sends the
        PUBACK, and no PUBACK goes out while a save runs, so any save completing
        after that snapshot contains the message.

        With the time-based autosave the next save always comes.  With
        ``autosave_on_changes`` the save for the last change may already be done
        when the snapshot is taken and none follows until something else
        changes; use `save_now` there.
        """
        deadline = time.monotonic() + timeout
        while self.persistence_snapshot() == since:
            if not self.is_running():
                raise BrokerError("broker stopped while waiting for a save")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no persistence save within {timeout}s\n{self.log_tail()}")
            time.sleep(0.02)

    def save_now(self, timeout: float = 5.0) -> None:
        """Force a save (SIGUSR1) and wait until it is on disk."""
        before = self.persistence_snapshot()
        if self._proc is None or not self.is_running():
            raise BrokerError("broker is not running")
        self._proc.send_signal(signal.SIGUSR1)
        self.wait_for_save(before, timeout)

    # -------------------------------------------------------------------- log
    def log_text(self) -> str:
        """Everything the broker logged (log file plus anything on stdout/stderr)."""
        parts = []
        for path in (self.stderr_path, self.log_path):
            with contextlib.suppress(FileNotFoundError):
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
