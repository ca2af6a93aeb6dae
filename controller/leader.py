"""Which controller instance runs the periodic work: one at a time, whoever is alive.

Several instances may share one database (docs/scaling.md). Each ingests and serves the
API, but the work that must happen once runs only in the *leader*: expiring unanswered
commands, the alarm sweep of offline and stale units, telemetry roll-ups and retention,
notification delivery, and publishing again the commands an instance left pending when
it died.

Leadership is a lock the operating system or the database frees when its holder dies:

- on PostgreSQL, a session-level ``pg_try_advisory_lock`` held on a connection of its own
  (`PgLeaderLock`). The holder's death closes that connection and PostgreSQL frees the
  lock; a holder that loses the connection stops leading at its next check.
- on SQLite (one machine), an exclusive ``fcntl`` lock on ``<database>.leader`` beside the
  database file (`FileLeaderLock`); the kernel frees it when the process dies.

`Leader` is the thread that keeps trying: every ``[database] leader_poll_s`` an instance
that does not lead tries to take the lock, and the leader checks it still holds it. It
logs ``leading`` and ``no longer leading``, sets the ``smartcity_controller_leader`` gauge
and answers `Leader.leading`, which the periodic work reads before each round.

>>> leader = Leader(AlwaysLeader())
>>> leader.poll(), leader.leading
(True, True)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

LOCK_KEY = zlib.crc32(b"smartcity-controller leader")
"""The advisory lock key of the leadership (a 32-bit number, so it never collides with
the two-part keys of other advisory locks)."""


class LeaderLock(Protocol):
    """A lock only one process holds; freed when the holder dies."""

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True if this process holds it now."""

    def still_held(self) -> bool:
        """True while the lock is held (False once its connection is gone)."""

    def release(self) -> None:
        """Let go of the lock (idempotent)."""


class AlwaysLeader:
    """No other instance can exist (an in-memory database): always the leader."""

    def try_acquire(self) -> bool:
        return True

    def still_held(self) -> bool:
        return True

    def release(self) -> None:
        return None


class FileLeaderLock:
    """An exclusive ``fcntl`` lock on a file beside the SQLite database."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class PgLeaderLock:
    """``pg_try_advisory_lock(LOCK_KEY)`` on a dedicated PostgreSQL connection.

    The connection has TCP keepalives and a short statement timeout, so a server that
    went away is noticed within a few seconds by `still_held`.
    """

    def __init__(self, url: str, *, key: int = LOCK_KEY, timeout_s: float = 5.0):
        self.url, self.key, self.timeout_s = url, key, timeout_s
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        timeout_ms = int(self.timeout_s * 1000)
        return psycopg.connect(
            self.url, autocommit=True, connect_timeout=max(1, int(self.timeout_s)),
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2,
            options=f"-c statement_timeout={timeout_ms}",
            application_name="smartcity-controller leader")

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.still_held()
        try:
            conn = self._connect()
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - the database down: not leading, try again
            logger.debug("leader lock: cannot reach the database: %s", exc)
            return False
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1").fetchone()
        except Exception as exc:  # noqa: BLE001 - any failure: the lock may be gone
            logger.warning("leader lock connection lost: %s", exc)
            self.release()
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # closing the session frees the lock
            self._conn = None


def lock_for(database: str) -> LeaderLock:
    """The leadership lock for a database: a ``postgresql://`` URL or a SQLite path."""
    if database.startswith(("postgresql://", "postgres://")):
        return PgLeaderLock(database)
    if database == ":memory:":
        return AlwaysLeader()
    return FileLeaderLock(f"{database}.leader")


class Leader:
    """Keeps trying to lead, on a thread of its own; `leading` says whether it does.

    ``on_change(leading)`` runs on that thread after each change; ``gauge`` (a Prometheus
    gauge) is set to 1 while leading.
    """

    def __init__(self, lock: LeaderLock, *, poll_s: float = 2.0, gauge: Any = None,
                 on_change: Callable[[bool], None] | None = None):
        self.lock, self.poll_s, self.gauge, self.on_change = lock, poll_s, gauge, on_change
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if gauge is not None:
            gauge.set(0)

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    def poll(self) -> bool:
        """One round: take the lock if free, or check it is still held. Returns `leading`."""
        was = self.leading
        try:
            now = self.lock.still_held() if was else self.lock.try_acquire()
        except Exception:  # noqa: BLE001 - never let the loop die: not leading meanwhile
            logger.exception("leader lock check failed")
            with contextlib.suppress(Exception):
                self.lock.release()
            now = False
        if now != was:
            (self._leading.set if now else self._leading.clear)()
            if self.gauge is not None:
                self.gauge.set(1 if now else 0)
            if now:
                logger.info("leading: this instance runs the periodic work")
            else:
                logger.warning("no longer leading: another instance takes the periodic work")
            if self.on_change is not None:
                try:
                    self.on_change(now)
                except Exception:  # noqa: BLE001 - a hook must not stop the loop
                    logger.exception("leadership change hook failed")
        return now

    def start(self) -> Leader:
        """Try at once, then every ``poll_s`` on a thread."""
        self.poll()
        self._thread = threading.Thread(target=self._run, name="leader", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def wait_leading(self, timeout: float) -> bool:
        return self._leading.wait(timeout)

    def stop(self) -> None:
        """Stop trying and let go of the lock (another instance takes it at its next poll)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.poll_s + 6.0)
            self._thread = None
        was = self.leading
        self._leading.clear()
        self.lock.release()
        if self.gauge is not None:
            self.gauge.set(0)
        if was:
            logger.info("no longer leading: stopping")
