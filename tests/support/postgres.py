"""A real PostgreSQL server for tests, in a temporary directory on its own loopback port.

`PostgresServer` runs Debian's ``initdb`` and ``pg_ctl`` (``/usr/lib/postgresql/<v>/bin``,
installed by ``scripts/bootstrap --postgres``) on a free port, with its socket in the
same directory, trust authentication for local connections and ``fsync`` left on (the
store's promises are about a server that keeps what it acknowledged). PostgreSQL refuses
to run as root, so as root the server runs as the unprivileged ``nobody`` (``runuser``).
It never touches the machine's own server on 5432.

Or a server named by ``SMARTCITY_TEST_POSTGRES_URL`` (``postgresql://user@host:port/db``,
a user allowed to create databases): `external_url` returns it, and the fixtures create a
fresh database on it for each test instead of starting a server.

`PostgresServer.create_database()` makes a new empty database and returns its URL, so
tests sharing one server never see each other's rows. ``kill()`` (SIGKILL of the
postmaster) and ``start()`` again let a test take the database away and bring it back.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.broker import HOST, free_port

ENV_URL = "SMARTCITY_TEST_POSTGRES_URL"
SYSTEM_PORT = 5432  # the machine's own server: never ours
START_TIMEOUT = 30.0


def bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` holding pg_ctl, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name.split(".")[0]))
    return Path(found[-1]).parent if found else None


def external_url() -> str | None:
    return os.environ.get(ENV_URL) or None


class PostgresServer:
    """One throwaway cluster: ``initdb`` into a temporary directory, ``pg_ctl start``."""

    def __init__(self, *, port: int | None = None, user: str = "smartcity"):
        bindir = bin_dir()
        if bindir is None:
            raise RuntimeError("PostgreSQL's server programs are missing "
                               "(scripts/bootstrap --postgres installs Debian's postgresql)")
        self.bindir = bindir
        self.user = user
        self.port = port or free_port()
        if self.port == SYSTEM_PORT:
            self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="smartcity-pg-"))
        self.datadir = self.root / "data"
        self.sockdir = self.root / "sock"
        self.logfile = self.root / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "nobody", "--"]
            os.chmod(self.root, 0o755)
        self.sockdir.mkdir()
        if self._as:
            shutil.chown(self.root, "nobody")
            shutil.chown(self.sockdir, "nobody")
        self._run([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.user,
                   "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"])
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '{HOST}'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.sockdir}'\n"
                       "max_connections = 200\nshared_buffers = 64MB\n")

    # ------------------------------------------------------------------ processes
    def _run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self._as + argv, check=True, capture_output=True, text=True,
                              cwd=self.root, **kwargs)

    def start(self) -> PostgresServer:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l",
                   str(self.logfile), "-w", "-t", str(int(START_TIMEOUT)), "start"])
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast",
                       "-w", "stop"])

    def pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster (a power cut of the database machine, as far as clients
        can tell); `start` brings it back through crash recovery."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        # the backends die with their postmaster; wait until the port is free
        time.sleep(0.2)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ databases
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/{dbname}"

    def create_database(self, name: str | None = None, *, template: str | None = None
                        ) -> str:
        """A new empty database on this server (or a copy of ``template``); its URL."""
        return create_database(self.url(), name, template=template)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text().splitlines()[-lines:])
        except OSError:
            return ""


def create_database(admin_url: str, name: str | None = None, *,
                    template: str | None = None) -> str:
    """Create an empty database through ``admin_url`` (a user allowed to), or a copy of
    the database ``template`` (no one may be connected to it); its URL."""
    import psycopg

    name = name or f"t_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"
