"""The store's connection and what every area of it shares.

`StoreBase` holds the connection and its one lock, `open` and `close`, the write
transaction (`_write`), the queries (`_rows`, `_one`) and the audit entry (`_audit`) that
the area mixins build on. `open` brings the schema up to date with `migrate`, which
`controller.store.schema` adds to the composed `controller.store.Store`. Also here: how
values are stored (`iso`, `_dumps`, `_loads`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import sqlite_utils

from controller.errors import StoreError
from controller.store.dialect import (
    SQLITE,
    WRITE_LOCK_KEY,
    Dialect,
    PgDatabase,
    PgDialect,
    is_postgres,
    redact,
)


def iso(dt: datetime) -> str:
    """A datetime as the stored UTC text (naive datetimes are taken as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    elif dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    if dt.year >= 1000:  # isoformat is several times faster than strftime; same text
        return dt.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" -> "Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)  # built once, not per call


def _dumps(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


class StoreBase:
    """The connection, the lock and the transaction every area of the store uses."""

    def __init__(self, conn: sqlite3.Connection | PgDatabase, path: str):
        self.path = path
        """The database's target: the SQLite file (or ``:memory:``) or the PostgreSQL URL."""
        self.postgres = isinstance(conn, PgDatabase)
        self.db: Any = conn if self.postgres else sqlite_utils.Database(conn)
        self.dialect: Dialect = PgDialect() if self.postgres else SQLITE
        self._lock = threading.RLock()

    @property
    def where(self) -> str:
        """The database named for people (a PostgreSQL URL without its password)."""
        return redact(self.path) if self.postgres else self.path

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, path: str | Path, *, migrate: bool = True) -> Self:
        """Connect to (and create) the database at ``path`` and bring its schema up to date.

        ``path``: a SQLite file (or ``:memory:``), or a PostgreSQL URL
        (``postgresql://user@host/db``; the database must exist)."""
        if is_postgres(path):
            store = cls(PgDatabase(str(path)), str(path))
            if migrate:
                try:
                    store.migrate()
                except BaseException:
                    store.close()
                    raise
            return store
        path = str(path)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        store = cls(conn, path)
        if path != ":memory:":
            store.db.enable_wal()
        store.db.execute("PRAGMA synchronous = FULL")
        store.db.execute("PRAGMA foreign_keys = ON")
        if migrate:
            store.migrate()
        return store

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check_writable(self) -> None:
        """Raise ``sqlite3.Error`` unless a write transaction can start (file, directory and
        lock writable); writes nothing. Another writer holding the lock past a second
        counts as writable (it is writing), so this never waits long. On PostgreSQL:
        `StoreError` unless the server answers and the database is not read-only."""
        if self.postgres:
            with self._lock:
                row = self.db.execute("SHOW transaction_read_only").fetchone()
                if row is None or row[0] != "off":
                    raise StoreError(f"{self.where}: the database is read-only")
            return
        with self._lock:
            self.db.execute("PRAGMA busy_timeout = 1000")
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorname != "SQLITE_BUSY":
                    raise
            finally:
                self.db.execute("PRAGMA busy_timeout = 30000")

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE: takes the write lock up front). On
        PostgreSQL: BEGIN, then the advisory lock `WRITE_LOCK_KEY` (one writer at a time
        across every process on the database; the seq accounting, the command lifecycle
        and the alarm transitions read, decide and write assuming so)."""
        if self.postgres:
            with self._lock:
                db = self.db
                if db.in_transaction:  # left open by a failure outside any write
                    db.rollback_quietly()
                db.begin()
                try:
                    db.execute("SELECT pg_advisory_xact_lock(?)", [WRITE_LOCK_KEY])
                    yield
                except BaseException:
                    db.rollback_quietly()
                    raise
                else:
                    db.commit()
            return
        with self._lock:
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self.db.conn.in_transaction:
                    self.db.conn.execute("ROLLBACK")
                raise
            else:
                self.db.conn.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict]:
        with self._lock:
            return list(self.db.query(sql, params))

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _audit(self, actor: str, action: str, target: str, opd: str | None,
               before: Any, after: Any, now: datetime) -> None:
        self.db.execute(
            "INSERT INTO audit (ts, actor, action, target, opd, before, after) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (iso(now), actor, action, target, opd, _dumps(before), _dumps(after)))
