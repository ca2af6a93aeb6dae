"""The controller's SQLite database: the one module that holds SQL.

`Store.open(path)` connects (WAL, ``synchronous=FULL``, foreign keys on) and migrates the
schema: a ``schema_version`` table and the ordered functions in `MIGRATIONS`; a database
newer than this build is refused. Every write runs in one ``BEGIN IMMEDIATE``
transaction, so the ingest and the API (separate connections, separate threads or
processes) never half-write.

What it keeps:

- ``opds``, ``devices`` (registered by an admin: OPD, kind, name, MQTT username and
  password hash), ``device_state`` (latest status, online, last seen), ``status_history``
  (every online/offline change, for uptime).
- ``telemetry`` and ``events``, keyed by ``(device_id, seq)`` so a redelivery is a no-op;
  ``telemetry_daily`` roll-ups outlive the raw rows (retention in days).
- ``device_seq``, ``seq_pending``, ``seq_dropped``: what `controller.seqs.SeqTracker`
  needs to say up to which seq a unit may be acknowledged.
- ``commands`` and ``command_replies``: pending -> sent -> accepted -> done | failed;
  rejected; expired (by the unit's reply or by `expire_commands`).
- ``desired_configs``: each schedule edit is a new version per device.
- ``users`` and ``tokens`` (SHA-256 hashes only; each token expires, and keeps when it
  was last used, to the minute).
- ``audit``: append-only (triggers refuse UPDATE and DELETE).

Timestamps are stored as UTC text ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (sorts as time).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from controller.auth import DEFAULT_TOKEN_TTL_DAYS
from controller.errors import Conflict, Invalid, NotFound, StoreError
from controller.notify.outbox import migration as notify_migration
from controller.seqs import SeqTracker
from protocol.models import (
    Command,
    CommandReply,
    Event,
    EventType,
    Message,
    ReplyStatus,
    Status,
    Telemetry,
    dropped_ranges,
)
from protocol.topics import Channel

logger = logging.getLogger(__name__)

ROLES = ("admin", "operator", "viewer")
COMMAND_STATES = ("pending", "sent", "accepted", "done", "failed", "rejected", "expired")
_TERMINAL = {"done", "failed", "rejected", "expired"}
_RUN_ENDS = (EventType.RUN_FINISHED, EventType.RUN_SKIPPED, EventType.RUN_INTERRUPTED,
             EventType.FEED_DISPENSED, EventType.FEEDING_SKIPPED)
_RANK = {"pending": 0, "sent": 1, "accepted": 2}
_DUPLICATE = "duplicate"


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


# --------------------------------------------------------------------------- migrations

def _migration_1(db: sqlite_utils.Database) -> None:
    """The first schema."""
    db.executescript("""
    CREATE TABLE opds (
        code TEXT PRIMARY KEY,
        name TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    );
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        opd TEXT NOT NULL REFERENCES opds(code),
        kind TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        mqtt_username TEXT NOT NULL UNIQUE,
        mqtt_password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE INDEX devices_opd ON devices(opd);
    CREATE TABLE device_state (
        device_id TEXT PRIMARY KEY REFERENCES devices(device_id),
        online INTEGER NOT NULL DEFAULT 0,
        last_seen TEXT,
        status_at TEXT,
        status_ts TEXT,
        fw TEXT,
        app TEXT,
        clock_synced INTEGER,
        config_version INTEGER,
        outputs TEXT,
        dropped INTEGER,
        backlog INTEGER
    );
    CREATE TABLE telemetry (
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts TEXT NOT NULL,
        received_at TEXT NOT NULL,
        readings TEXT NOT NULL,
        outputs TEXT NOT NULL,
        PRIMARY KEY (device_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX telemetry_device_ts ON telemetry(device_id, ts);
    CREATE INDEX telemetry_ts ON telemetry(ts);
    CREATE TABLE telemetry_daily (
        device_id TEXT NOT NULL,
        day TEXT NOT NULL,
        reading TEXT NOT NULL,
        samples INTEGER NOT NULL,
        min REAL,
        max REAL,
        avg REAL,
        PRIMARY KEY (device_id, day, reading)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts TEXT NOT NULL,
        received_at TEXT NOT NULL,
        type TEXT NOT NULL,
        details TEXT NOT NULL,
        PRIMARY KEY (device_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX events_device_ts ON events(device_id, ts);
    CREATE INDEX events_type_ts ON events(type, ts);
    CREATE TABLE device_seq (
        device_id TEXT PRIMARY KEY,
        acked_seq INTEGER NOT NULL DEFAULT 0,
        max_seq INTEGER NOT NULL DEFAULT 0,
        missing INTEGER NOT NULL DEFAULT 0,
        gaps_opened INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        dropped_total INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE seq_pending (
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (device_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE seq_dropped (
        device_id TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        PRIMARY KEY (device_id, first_seq)
    ) WITHOUT ROWID;
    CREATE TABLE commands (
        id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(device_id),
        opd TEXT NOT NULL,
        action TEXT NOT NULL,
        params TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'accepted', 'done',
                                               'failed', 'rejected', 'expired')),
        created_by TEXT NOT NULL,
        sent_at TEXT,
        updated_at TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        clamped TEXT,
        duplicates INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX commands_device ON commands(device_id, issued_at);
    CREATE INDEX commands_open ON commands(status, expires_at);
    CREATE TABLE command_replies (
        id INTEGER PRIMARY KEY,
        command_id TEXT NOT NULL REFERENCES commands(id),
        device_id TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL,
        ts TEXT NOT NULL,
        received_at TEXT NOT NULL,
        clamped TEXT
    );
    CREATE INDEX command_replies_command ON command_replies(command_id);
    CREATE TABLE desired_configs (
        device_id TEXT NOT NULL REFERENCES devices(device_id),
        version INTEGER NOT NULL,
        body TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        issued_by TEXT NOT NULL,
        PRIMARY KEY (device_id, version)
    );
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        opd TEXT REFERENCES opds(code),
        created_at TEXT NOT NULL,
        CHECK ((role = 'operator') = (opd IS NOT NULL))
    );
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        token_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        revoked_at TEXT,
        revoked_by TEXT
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        opd TEXT,
        before TEXT,
        after TEXT
    );
    CREATE INDEX audit_opd ON audit(opd, id);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """)


def _migration_2(db: sqlite_utils.Database) -> None:
    """``status_history``: each unit's online/offline changes (uptime in the reports)."""
    db.executescript("""
    CREATE TABLE status_history (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(device_id),
        at TEXT NOT NULL,
        online INTEGER NOT NULL
    );
    CREATE INDEX status_history_device_at ON status_history(device_id, at);
    INSERT INTO status_history (device_id, at, online)
        SELECT device_id, status_at, online FROM device_state WHERE status_at IS NOT NULL;
    """)


def _migration_3(db: sqlite_utils.Database) -> None:
    """``enrolment_tokens``: one-time tokens a new unit trades for its MQTT credentials
    (``smartcity-controller enrol create``, ``POST /api/v1/enrol``). Hashes only."""
    db.executescript("""
    CREATE TABLE enrolment_tokens (
        id INTEGER PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        device_id TEXT NOT NULL,
        opd TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        broker_host TEXT NOT NULL,
        broker_port INTEGER NOT NULL,
        broker_tls INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT,
        used_from TEXT
    );
    CREATE INDEX enrolment_tokens_device ON enrolment_tokens(device_id);
    """)


def _migration_4(db: sqlite_utils.Database) -> None:
    """API tokens expire (``expires_at``) and show when they were last used
    (``last_used_at``). Tokens made before expiry existed get ``DEFAULT_TOKEN_TTL_DAYS``
    from now, so a running city keeps working and has that long to rotate them."""
    db.execute("ALTER TABLE tokens ADD COLUMN expires_at TEXT")
    db.execute("ALTER TABLE tokens ADD COLUMN last_used_at TEXT")
    expires_at = iso(utcnow() + timedelta(days=DEFAULT_TOKEN_TTL_DAYS))
    live = db.execute("UPDATE tokens SET expires_at = ? WHERE revoked_at IS NULL",
                      [expires_at]).rowcount
    db.execute("UPDATE tokens SET expires_at = revoked_at WHERE revoked_at IS NOT NULL")
    if live:
        logger.warning("%d API token(s) made before tokens expired now expire at %s; "
                       "rotate them before then (smartcity-controller token rotate)",
                       live, expires_at)


def _migration_5(db: sqlite_utils.Database) -> None:
    """``device_state.limits``: what the unit last reported it has (zones or feeders and
    ponds, with their local limits), so schedules and commands are checked before they
    are stored or sent."""
    db.execute("ALTER TABLE device_state ADD COLUMN limits TEXT")


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _migration_1, _migration_2, _migration_3, _migration_4, _migration_5,
    notify_migration)
"""Schema migrations in order; migration ``i`` (1-based) brings the schema to version i.
Append new ones; never edit one that has shipped."""


# --------------------------------------------------------------------------- ingest types

@dataclass(frozen=True)
class Inbound:
    """One valid message to store, read off ``topic`` of ``opd``/``device``."""

    opd: str
    device_id: str
    channel: Channel
    message: Message
    received_at: datetime


@dataclass
class BatchResult:
    """What one committed batch changed."""

    acks: dict[str, tuple[str, int]] = field(default_factory=dict)
    """device_id -> (opd, acked seq) for every device that sent telemetry or events."""
    rejected: list[tuple[Inbound, str, str]] = field(default_factory=list)
    """(message, reason, explanation) for messages not stored."""
    stored: dict[str, int] = field(default_factory=dict)
    """channel -> messages newly stored (or applied)."""
    duplicates: int = 0
    dropped_announced: int = 0
    gaps_opened: int = 0
    came_online: list[tuple[str, str]] = field(default_factory=list)
    """(device_id, opd) whose status just said online."""

    def add(self, other: BatchResult) -> None:
        """Take in what another batch changed (for a batch committed in parts)."""
        self.acks.update(other.acks)
        self.rejected += other.rejected
        for channel, n in other.stored.items():
            self.stored[channel] = self.stored.get(channel, 0) + n
        self.duplicates += other.duplicates
        self.dropped_announced += other.dropped_announced
        self.gaps_opened += other.gaps_opened
        self.came_online += other.came_online


# --------------------------------------------------------------------------- store

class Store:
    """All reads and writes of the controller database. Thread-safe (one lock)."""

    def __init__(self, conn: sqlite3.Connection, path: str):
        self.path = path
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, path: str | Path, *, migrate: bool = True) -> Store:
        """Connect to (and create) the database at ``path`` and bring its schema up to date."""
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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check_writable(self) -> None:
        """Raise ``sqlite3.Error`` unless a write transaction can start (file, directory and
        lock writable); writes nothing. Another writer holding the lock past a second
        counts as writable (it is writing), so this never waits long."""
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

    @property
    def schema_version(self) -> int:
        with self._lock:
            if not self.db["schema_version"].exists():
                return 0
            row = self.db.execute("SELECT max(version) FROM schema_version").fetchone()
            return row[0] or 0

    def migrate(self) -> int:
        """Apply every migration above the stored version, each in its own transaction."""
        with self._lock:
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                            "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            current = self.schema_version
            if current > len(MIGRATIONS):
                raise StoreError(f"{self.path}: schema version {current} is newer than this "
                                 f"build ({len(MIGRATIONS)}); upgrade the controller")
            for version in range(current + 1, len(MIGRATIONS) + 1):
                with self._write():
                    MIGRATIONS[version - 1](self.db)
                    self.db.execute("INSERT INTO schema_version VALUES (?, ?)",
                                    (version, iso(utcnow())))
                logger.info("database %s migrated to schema version %d", self.path, version)
            return len(MIGRATIONS)

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE: takes the write lock up front)."""
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

    # ------------------------------------------------------------------ opds, devices
    def ensure_opd(self, code: str, name: str = "", *, now: datetime | None = None) -> None:
        with self._write():
            self._ensure_opd(code, name, now or utcnow())

    def _ensure_opd(self, code: str, name: str, now: datetime) -> None:
        self.db.execute("INSERT OR IGNORE INTO opds (code, name, created_at) VALUES (?, ?, ?)",
                        (code, name, iso(now)))

    def list_opds(self, opd: str | None = None) -> list[dict]:
        if opd is None:
            return self._rows("SELECT code, name FROM opds ORDER BY code")
        return self._rows("SELECT code, name FROM opds WHERE code = ?", [opd])

    def add_device(self, device_id: str, opd: str, *, kind: str, name: str,
                   mqtt_password_hash: str, actor: str, now: datetime | None = None) -> dict:
        """Register a device (its MQTT username is its device id). Audited."""
        now = now or utcnow()
        with self._write():
            if self.db.execute("SELECT 1 FROM devices WHERE device_id = ?",
                               [device_id]).fetchone():
                raise Conflict(f"device {device_id!r} is already registered")
            self._insert_device(device_id, opd, kind=kind, name=name,
                                mqtt_password_hash=mqtt_password_hash, actor=actor, now=now)
        return self.get_device(device_id)

    def _insert_device(self, device_id: str, opd: str, *, kind: str, name: str,
                       mqtt_password_hash: str, actor: str, now: datetime) -> None:
        """The inserts of a new device (inside a write transaction). Audited."""
        self._ensure_opd(opd, "", now)
        row = {"device_id": device_id, "opd": opd, "kind": kind, "name": name,
               "mqtt_username": device_id, "mqtt_password_hash": mqtt_password_hash,
               "created_at": iso(now), "created_by": actor}
        self.db["devices"].insert(row)
        self.db["device_state"].insert({"device_id": device_id, "online": 0})
        self.db["device_seq"].insert({"device_id": device_id})
        public = {k: v for k, v in row.items() if k != "mqtt_password_hash"}
        self._audit(actor, "device.add", f"device:{device_id}", opd, None, public, now)

    _DEVICE_SQL = """
        SELECT d.device_id, d.opd, d.kind, d.name, d.mqtt_username, d.created_at,
               s.online, s.last_seen, s.status_at, s.status_ts, s.fw, s.app,
               s.clock_synced, s.config_version AS reported_config_version, s.outputs,
               s.dropped, s.backlog, s.limits,
               q.acked_seq, q.max_seq, q.missing AS missing_seqs, q.gaps_opened,
               q.duplicates, q.dropped_total,
               (SELECT max(version) FROM desired_configs c WHERE c.device_id = d.device_id)
                   AS desired_config_version
        FROM devices d
        LEFT JOIN device_state s ON s.device_id = d.device_id
        LEFT JOIN device_seq q ON q.device_id = d.device_id
    """

    @staticmethod
    def _device_row(row: dict) -> dict:
        row["online"] = bool(row["online"])
        row["clock_synced"] = None if row["clock_synced"] is None else bool(row["clock_synced"])
        row["outputs"] = _loads(row["outputs"]) or {}
        row["limits"] = _loads(row["limits"])
        for key in ("acked_seq", "max_seq", "missing_seqs", "gaps_opened", "duplicates",
                    "dropped_total"):
            row[key] = row[key] or 0
        return row

    def get_device(self, device_id: str) -> dict | None:
        row = self._one(self._DEVICE_SQL + " WHERE d.device_id = ?", [device_id])
        return self._device_row(row) if row else None

    def list_devices(self, opd: str | None = None, online: bool | None = None) -> list[dict]:
        where, params = [], []
        if opd is not None:
            where.append("d.opd = ?")
            params.append(opd)
        if online is not None:
            where.append("coalesce(s.online, 0) = ?")
            params.append(int(online))
        sql = self._DEVICE_SQL + (" WHERE " + " AND ".join(where) if where else "")
        return [self._device_row(r) for r in self._rows(sql + " ORDER BY d.device_id", params)]

    # The device list as the API's JSON (``DeviceOut`` items), built by SQLite: a city's
    # list is thousands of rows, and shaping each one in Python cost 30-80 ms a request.
    # ``config_state`` follows ``controller.api.views.config_state``.
    # Each device is one json_object text; they are joined as text, in the subquery's
    # order (re-reading each one with json() to feed json_group_array took 40 % longer).
    _DEVICES_JSON_SQL = """
        SELECT '[' || coalesce(group_concat(doc, ','), '') || ']' FROM (SELECT json_object(
            'device_id', d.device_id, 'opd', d.opd, 'kind', d.kind, 'name', d.name,
            'created_at', d.created_at,
            'online', json(CASE WHEN s.online THEN 'true' ELSE 'false' END),
            'last_seen', s.last_seen, 'status_ts', s.status_ts, 'fw', s.fw, 'app', s.app,
            'clock_synced', json(CASE WHEN s.clock_synced IS NULL THEN 'null'
                                      WHEN s.clock_synced THEN 'true' ELSE 'false' END),
            'outputs', json(coalesce(s.outputs, '{}')),
            'backlog', s.backlog, 'dropped', s.dropped,
            'reported_config_version', s.config_version,
            'desired_config_version', c.version,
            'config_state', CASE
                WHEN c.version IS NULL THEN 'none'
                WHEN c.version = s.config_version THEN 'in_sync'
                WHEN EXISTS (SELECT 1 FROM events e WHERE e.device_id = d.device_id
                             AND e.type = 'config_rejected'
                             AND json_extract(e.details, '$.version') = c.version)
                    THEN 'rejected'
                ELSE 'pending' END,
            'seq', json_object(
                'acked', coalesce(q.acked_seq, 0), 'max_seen', coalesce(q.max_seq, 0),
                'missing', coalesce(q.missing, 0), 'gaps_opened', coalesce(q.gaps_opened, 0),
                'duplicates', coalesce(q.duplicates, 0),
                'dropped_announced', coalesce(q.dropped_total, 0))) AS doc
        FROM devices d
        LEFT JOIN device_state s ON s.device_id = d.device_id
        LEFT JOIN device_seq q ON q.device_id = d.device_id
        LEFT JOIN desired_configs c ON c.device_id = d.device_id AND c.version = (
            SELECT max(version) FROM desired_configs WHERE device_id = d.device_id)
        {where} ORDER BY d.device_id)
    """

    def list_devices_json(self, opd: str | None = None, online: bool | None = None
                          ) -> bytes:
        """`list_devices` as the API's JSON body: a list of ``DeviceOut`` objects."""
        where, params = [], []
        if opd is not None:
            where.append("d.opd = ?")
            params.append(opd)
        if online is not None:
            where.append("coalesce(s.online, 0) = ?")
            params.append(int(online))
        sql = self._DEVICES_JSON_SQL.replace(
            "{where}", "WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            return self.db.conn.execute(sql, params).fetchone()[0].encode()

    def mqtt_accounts(self) -> list[dict]:
        """Every device's MQTT username, password hash, OPD and device id (for broker files)."""
        return self._rows("SELECT device_id, opd, mqtt_username, mqtt_password_hash "
                          "FROM devices ORDER BY device_id")

    def count_online(self) -> int:
        row = self._one("SELECT count(*) AS n FROM device_state WHERE online = 1")
        return row["n"] if row else 0

    # ------------------------------------------------------------------ ingest
    def commit_batch(self, items: Iterable[Inbound]) -> BatchResult:
        """Store one batch of decoded messages in one transaction.

        Messages of unregistered devices, of a device under another OPD than the topic
        says, and command replies for unknown commands are returned in ``rejected`` and
        not stored. Telemetry and events are inserted once per ``(device, seq)``; every
        device that sent any gets its acked seq in ``acks``.
        """
        items = list(items)
        result = BatchResult()
        if not items:
            return result
        with self._write():
            registry = self._registry({i.device_id for i in items})
            trackers: dict[str, SeqTracker] = {}
            heard: dict[str, datetime] = {}  # device -> latest telemetry/event received_at
            for item in items:
                opd = registry.get(item.device_id)
                if opd is None:
                    result.rejected.append((item, "unknown_device",
                                            f"device {item.device_id!r} is not registered"))
                    continue
                if opd != item.opd:
                    result.rejected.append((item, "wrong_opd",
                                            f"device {item.device_id!r} belongs to OPD {opd!r}, "
                                            f"not {item.opd!r}"))
                    continue
                problem = self._apply(item, trackers, result)
                if item.channel in (Channel.TELEMETRY, Channel.EVENT):
                    heard[item.device_id] = max(item.received_at, heard.get(
                        item.device_id, item.received_at))
                if problem == _DUPLICATE:
                    continue
                if problem:
                    result.rejected.append((item, *problem))
                    continue
                result.stored[item.channel.value] = result.stored.get(item.channel.value, 0) + 1
            for device_id, tracker in trackers.items():
                self._save_tracker(device_id, tracker)
                result.acks[device_id] = (registry[device_id], tracker.acked)
            # Once per device and batch, not once per message.
            self.db.conn.executemany(
                "UPDATE device_state SET last_seen = max(coalesce(last_seen, ''), ?) "
                "WHERE device_id = ?", [(iso(at), dev) for dev, at in heard.items()])
        return result

    def _registry(self, device_ids: set[str]) -> dict[str, str]:
        marks = ",".join("?" * len(device_ids))
        cursor = self.db.execute(
            f"SELECT device_id, opd FROM devices WHERE device_id IN ({marks})",
            sorted(device_ids))
        return dict(cursor.fetchall())

    def _apply(self, item: Inbound, trackers: dict[str, SeqTracker],
               result: BatchResult) -> tuple[str, str] | str | None:
        """Store one message: None if stored, `_DUPLICATE`, or (reason, why) if refused."""
        msg, dev, now = item.message, item.device_id, iso(item.received_at)
        if isinstance(msg, Telemetry | Event):
            tracker = trackers.get(dev) or self._load_tracker(dev)
            trackers[dev] = tracker
            gaps_before = tracker.gaps_opened
            if isinstance(msg, Telemetry):
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO telemetry (device_id, seq, ts, received_at, "
                    "readings, outputs) VALUES (?, ?, ?, ?, ?, ?)",
                    (dev, msg.seq, iso(msg.ts), now, _dumps(msg.readings), _dumps(msg.outputs)))
            else:
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO events (device_id, seq, ts, received_at, type, "
                    "details) VALUES (?, ?, ?, ?, ?, ?)",
                    (dev, msg.seq, iso(msg.ts), now, msg.type.value, _dumps(msg.details)))
                if cursor.rowcount and msg.type in _RUN_ENDS:
                    self._close_command_from_event(dev, msg, now)
                if msg.type is EventType.OUTBOX_DROPPED:
                    announced = sum(tracker.drop(a, b) for a, b in dropped_ranges(msg))
                    if cursor.rowcount:
                        result.dropped_announced += announced
                        self.db.execute("UPDATE device_seq SET dropped_total = dropped_total + ?"
                                        " WHERE device_id = ?", (announced, dev))
            # Committed now, whether inserted or already there: it counts for the ack.
            tracker.add(msg.seq)
            result.gaps_opened += tracker.gaps_opened - gaps_before
            if not cursor.rowcount:
                result.duplicates += 1
                self.db.execute("UPDATE device_seq SET duplicates = duplicates + 1 "
                                "WHERE device_id = ?", [dev])
                return _DUPLICATE
            return None
        if isinstance(msg, Status):
            prev = self.db.execute("SELECT online, status_at FROM device_state "
                                   "WHERE device_id = ?", [dev]).fetchone()
            if prev is None or prev[1] is None or bool(prev[0]) != msg.online:
                self.db.execute("INSERT INTO status_history (device_id, at, online) "
                                "VALUES (?, ?, ?)", (dev, now, int(msg.online)))
            self.db.execute(
                "UPDATE device_state SET online = ?, last_seen = ?, status_at = ?, "
                "status_ts = ?, fw = ?, app = ?, clock_synced = ?, config_version = ?, "
                "outputs = ?, dropped = ?, backlog = ?, limits = coalesce(?, limits) "
                "WHERE device_id = ?",
                (int(msg.online), now, now, iso(msg.ts), msg.fw, msg.app, int(msg.clock_synced),
                 msg.config_version, _dumps(dict(msg.outputs)) if msg.online else None,
                 msg.dropped, msg.backlog,
                 None if msg.limits is None else msg.limits.model_dump_json(), dev))
            if msg.online:
                result.came_online.append((dev, item.opd))
            return None
        if isinstance(msg, CommandReply):
            return self._apply_reply(dev, msg, now)
        return ("bad_channel", f"{item.channel.value} is not a channel units publish on")

    def _close_command_from_event(self, device_id: str, event: Event, now: str) -> None:
        """A run or feeding started by a command ended in a way no reply will report: the
        unit restarted mid-run (its reply callback died with it) and then dropped the run,
        or resumed it and later finished it. Close the command from that event."""
        cmd_id = event.details.get("cmd_id")
        if not isinstance(cmd_id, str):
            return
        if event.type is EventType.RUN_FINISHED:  # as the unit's own reply would say
            ended = event.details.get("ended", "completed")
            status = "done" if ended == "completed" else "failed"
            detail = f"the run finished ({ended})"
        elif event.type is EventType.RUN_SKIPPED:
            status, detail = "failed", f"the run was skipped ({event.details.get('reason')})"
        elif event.type is EventType.FEED_DISPENSED:  # as the feeder's own reply would say
            fault = event.details.get("fault")
            status = "failed" if fault else "done"
            detail = f"dispensed {event.details.get('measured_g')} g" + (
                f" ({fault})" if fault else "")
        elif event.type is EventType.FEEDING_SKIPPED:
            status = "failed"
            detail = f"the feeding was skipped ({event.details.get('reason')})"
        elif event.details.get("action") == "dropped":
            status, detail = "failed", "the unit restarted mid-run and dropped the run"
        else:
            return  # resumed: its run_finished will close it
        self.db.execute(
            "UPDATE commands SET status = ?, detail = ?, updated_at = ? WHERE id = ? "
            "AND device_id = ? AND status NOT IN ('done', 'failed', 'rejected', 'expired')",
            (status, detail, now, cmd_id, device_id))

    def _apply_reply(self, device_id: str, reply: CommandReply, now: str
                     ) -> tuple[str, str] | None:
        row = self.db.execute("SELECT device_id, status FROM commands WHERE id = ?",
                              [reply.id]).fetchone()
        if row is None:
            return ("unknown_command", f"no command with id {reply.id!r}")
        if row[0] != device_id:
            return ("wrong_device", f"command {reply.id!r} was sent to {row[0]!r}")
        clamped = reply.clamped.model_dump(mode="json") if reply.clamped else None
        self.db.execute(
            "INSERT INTO command_replies (command_id, device_id, status, detail, ts, "
            "received_at, clamped) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (reply.id, device_id, reply.status.value, reply.detail, iso(reply.ts), now,
             _dumps(clamped)))
        current = row[1]
        if reply.status is ReplyStatus.DUPLICATE:
            self.db.execute("UPDATE commands SET duplicates = duplicates + 1, updated_at = ? "
                            "WHERE id = ?", (now, reply.id))
        elif current not in _TERMINAL and (
                reply.status.value in _TERMINAL
                or _RANK.get(reply.status.value, 0) > _RANK[current]):
            self.db.execute(
                "UPDATE commands SET status = ?, detail = ?, clamped = coalesce(?, clamped), "
                "updated_at = ? WHERE id = ?",
                (reply.status.value, reply.detail, _dumps(clamped), now, reply.id))
        return None

    def _load_tracker(self, device_id: str) -> SeqTracker:
        row = self.db.execute("SELECT acked_seq, max_seq, gaps_opened FROM device_seq "
                              "WHERE device_id = ?", [device_id]).fetchone()
        if row is None:
            self.db.execute("INSERT INTO device_seq (device_id) VALUES (?)", [device_id])
            row = (0, 0, 0)
        pending = [r[0] for r in self.db.execute(
            "SELECT seq FROM seq_pending WHERE device_id = ?", [device_id])]
        dropped = self.db.execute("SELECT first_seq, last_seq FROM seq_dropped "
                                  "WHERE device_id = ?", [device_id]).fetchall()
        return SeqTracker.restore(row[0], row[1], row[2], pending, dropped)

    def _save_tracker(self, device_id: str, tracker: SeqTracker) -> None:
        tracker.advance()
        self.db.execute("UPDATE device_seq SET acked_seq = ?, max_seq = ?, missing = ?, "
                        "gaps_opened = ? WHERE device_id = ?",
                        (tracker.acked, tracker.max_seen, tracker.missing, tracker.gaps_opened,
                         device_id))
        self.db.execute("DELETE FROM seq_pending WHERE device_id = ?", [device_id])
        self.db.conn.executemany("INSERT INTO seq_pending (device_id, seq) VALUES (?, ?)",
                            [(device_id, s) for s in sorted(tracker.pending)])
        self.db.execute("DELETE FROM seq_dropped WHERE device_id = ?", [device_id])
        self.db.conn.executemany("INSERT INTO seq_dropped (device_id, first_seq, last_seq) "
                            "VALUES (?, ?, ?)", [(device_id, a, b) for a, b in tracker.dropped])

    def acked_seq(self, device_id: str) -> int:
        row = self._one("SELECT acked_seq FROM device_seq WHERE device_id = ?", [device_id])
        return row["acked_seq"] if row else 0

    # ------------------------------------------------------------------ history
    def telemetry(self, device_id: str, *, since: datetime | None = None,
                  until: datetime | None = None, after_seq: int = 0, limit: int = 100
                  ) -> list[dict]:
        """Telemetry of one device in seq order, ``since <= ts < until``, seq > after_seq."""
        where, params = self._range(device_id, since, until, after_seq)
        rows = self._rows(f"SELECT seq, ts, received_at, readings, outputs FROM telemetry "
                          f"WHERE {where} ORDER BY seq LIMIT ?", [*params, limit])
        for row in rows:
            row["readings"], row["outputs"] = _loads(row["readings"]), _loads(row["outputs"])
        return rows

    def events(self, device_id: str, *, since: datetime | None = None,
               until: datetime | None = None, after_seq: int = 0, type: str | None = None,
               limit: int = 100) -> list[dict]:
        where, params = self._range(device_id, since, until, after_seq)
        if type is not None:
            where += " AND type = ?"
            params.append(type)
        rows = self._rows(f"SELECT seq, ts, received_at, type, details FROM events "
                          f"WHERE {where} ORDER BY seq LIMIT ?", [*params, limit])
        for row in rows:
            row["details"] = _loads(row["details"])
        return rows

    @staticmethod
    def _range(device_id: str, since: datetime | None, until: datetime | None,
               after_seq: int) -> tuple[str, list[Any]]:
        where, params = ["device_id = ?", "seq > ?"], [device_id, after_seq]
        if since is not None:
            where.append("ts >= ?")
            params.append(iso(since))
        if until is not None:
            where.append("ts < ?")
            params.append(iso(until))
        return " AND ".join(where), params

    def telemetry_daily(self, device_id: str, *, since_day: str | None = None,
                        until_day: str | None = None) -> list[dict]:
        """Daily roll-ups (UTC days, ``YYYY-MM-DD``) of numeric readings, oldest first."""
        sql = ("SELECT day, reading, samples, min, max, avg FROM telemetry_daily "
               "WHERE device_id = ?")
        params: list[Any] = [device_id]
        if since_day:
            sql += " AND day >= ?"
            params.append(since_day)
        if until_day:
            sql += " AND day <= ?"
            params.append(until_day)
        return self._rows(sql + " ORDER BY day, reading", params)

    def rollup_and_prune(self, retention_days: int, now: datetime | None = None) -> int:
        """Roll up every whole UTC day before the cutoff, then delete those raw rows.

        Returns the number of telemetry rows deleted. Safe to run any time, repeatedly.
        """
        now = now or utcnow()
        cutoff_day = (now - timedelta(days=retention_days)).strftime("%Y-%m-%d")
        cutoff = cutoff_day + "T00:00:00.000000Z"
        with self._write():
            self.db.execute("""
                INSERT OR REPLACE INTO telemetry_daily
                    (device_id, day, reading, samples, min, max, avg)
                SELECT t.device_id, substr(t.ts, 1, 10), j.key,
                       count(*), min(j.value), max(j.value), avg(j.value)
                FROM telemetry t, json_each(t.readings) j
                WHERE t.ts < ? AND j.type IN ('integer', 'real')
                GROUP BY t.device_id, substr(t.ts, 1, 10), j.key
            """, [cutoff])
            deleted = self.db.execute("DELETE FROM telemetry WHERE ts < ?", [cutoff]).rowcount
        if deleted:
            logger.info("retention: rolled up and deleted %d telemetry rows before %s",
                        deleted, cutoff_day)
        return deleted

    # ------------------------------------------------------------------ dashboard, reports
    def latest_telemetry(self, device_id: str) -> dict | None:
        """The device's newest telemetry sample (highest seq), or None."""
        row = self._one("SELECT seq, ts, received_at, readings, outputs FROM telemetry "
                        "WHERE device_id = ? ORDER BY seq DESC LIMIT 1", [device_id])
        if row:
            row["readings"], row["outputs"] = _loads(row["readings"]), _loads(row["outputs"])
        return row

    def recent_events(self, device_id: str, since: datetime, types: Sequence[str],
                      limit: int = 1000) -> list[dict]:
        """Events of ``types`` with ``ts >= since``, newest first."""
        marks = ",".join("?" * len(types))
        rows = self._rows(f"SELECT seq, ts, type, details FROM events WHERE device_id = ? "
                          f"AND ts >= ? AND type IN ({marks}) ORDER BY ts DESC, seq DESC "
                          "LIMIT ?", [device_id, iso(since), *types, limit])
        for row in rows:
            row["details"] = _loads(row["details"])
        return rows

    def opd_events(self, opd: str, since: datetime, until: datetime,
                   types: Sequence[str]) -> list[dict]:
        """Events of ``types`` of every device of ``opd``, ``since <= ts < until``, oldest
        first, each with its ``device_id``."""
        marks = ",".join("?" * len(types))
        rows = self._rows(
            f"SELECT e.device_id, e.seq, e.ts, e.type, e.details FROM events e "
            f"JOIN devices d ON d.device_id = e.device_id WHERE d.opd = ? AND e.ts >= ? "
            f"AND e.ts < ? AND e.type IN ({marks}) ORDER BY e.ts, e.device_id, e.seq",
            [opd, iso(since), iso(until), *types])
        for row in rows:
            row["details"] = _loads(row["details"])
        return rows

    def status_transitions(self, device_id: str, since: datetime, until: datetime
                           ) -> tuple[dict | None, list[dict]]:
        """(the last online/offline change before ``since`` or None, the changes in
        ``since <= at < until`` oldest first); ``at`` is the controller's receive time."""
        before = self._one("SELECT at, online FROM status_history WHERE device_id = ? "
                           "AND at < ? ORDER BY at DESC, id DESC LIMIT 1",
                           [device_id, iso(since)])
        rows = self._rows("SELECT at, online FROM status_history WHERE device_id = ? "
                          "AND at >= ? AND at < ? ORDER BY at, id",
                          [device_id, iso(since), iso(until)])
        for row in [before, *rows]:
            if row is not None:
                row["online"] = bool(row["online"])
        return before, rows

    def telemetry_buckets(self, device_id: str, since: datetime, until: datetime,
                          bucket_s: int, quantities: Sequence[str]) -> list[dict]:
        """Numeric readings named ``<quantity>.<place>`` averaged per ``bucket_s`` from
        ``since``: rows of bucket index, reading, samples, avg, min, max."""
        globs = " OR ".join("j.key GLOB ?" for _ in quantities) or "0"
        return self._rows(
            f"SELECT CAST((julianday(t.ts) - julianday(?)) * 86400.0 / ? AS INTEGER) "
            f"AS bucket, j.key AS reading, count(*) AS samples, avg(j.value) AS avg, "
            f"min(j.value) AS min, max(j.value) AS max "
            f"FROM telemetry t, json_each(t.readings) j WHERE t.device_id = ? AND t.ts >= ? "
            f"AND t.ts < ? AND j.type IN ('integer', 'real') AND ({globs}) "
            f"GROUP BY bucket, j.key ORDER BY bucket, j.key",
            [iso(since), bucket_s, device_id, iso(since), iso(until),
             *(f"{q}.*" for q in quantities)])

    def desired_config_at(self, device_id: str, at: datetime) -> dict | None:
        """The newest desired config version issued at or before ``at``, or None."""
        row = self._one("SELECT * FROM desired_configs WHERE device_id = ? AND issued_at <= ? "
                        "ORDER BY version DESC LIMIT 1", [device_id, iso(at)])
        if row:
            row["body"] = _loads(row["body"])
        return row

    # ------------------------------------------------------------------ commands
    def create_command(self, device_id: str, command: Command, *, actor: str,
                       now: datetime | None = None) -> dict:
        """Store a new command as pending. Audited."""
        now = now or utcnow()
        with self._write():
            opd = self._device_opd(device_id)
            row = {"id": command.id, "device_id": device_id, "opd": opd,
                   "action": command.action.value,
                   "params": _dumps(command.params.model_dump(mode="json", by_alias=True)),
                   "issued_at": iso(command.issued_at), "expires_at": iso(command.expires_at),
                   "status": "pending", "created_by": actor, "updated_at": iso(now)}
            try:
                self.db["commands"].insert(row)
            except sqlite3.IntegrityError:
                raise Conflict(f"command id {command.id!r} already exists") from None
            self._audit(actor, "command.create", f"device:{device_id}", opd, None,
                        command.model_dump(mode="json", by_alias=True), now)
        return self.get_command(command.id)

    def _device_opd(self, device_id: str) -> str:
        row = self.db.execute("SELECT opd FROM devices WHERE device_id = ?",
                              [device_id]).fetchone()
        if row is None:
            raise NotFound(f"device {device_id!r} is not registered")
        return row[0]

    def mark_command_sent(self, command_id: str, now: datetime | None = None) -> bool:
        """pending -> sent (the broker took it). False if it had moved on already."""
        now_s = iso(now or utcnow())
        with self._write():
            cursor = self.db.execute(
                "UPDATE commands SET status = 'sent', sent_at = ?, updated_at = ? "
                "WHERE id = ? AND status = 'pending'", (now_s, now_s, command_id))
            if not cursor.rowcount:
                self.db.execute("UPDATE commands SET sent_at = coalesce(sent_at, ?) "
                                "WHERE id = ?", (now_s, command_id))
        return bool(cursor.rowcount)

    def expire_commands(self, now: datetime | None = None) -> list[str]:
        """Mark pending or sent commands past ``expires_at`` as expired; returns their ids."""
        now_s = iso(now or utcnow())
        with self._write():
            ids = [r[0] for r in self.db.execute(
                "SELECT id FROM commands WHERE status IN ('pending', 'sent') "
                "AND expires_at <= ?", [now_s])]
            if ids:
                self.db.conn.executemany(
                    "UPDATE commands SET status = 'expired', updated_at = ?, "
                    "detail = 'no answer from the unit before expires_at' WHERE id = ?",
                    [(now_s, i) for i in ids])
        return ids

    def open_commands(self, now: datetime | None = None) -> list[dict]:
        """Pending commands not yet expired (to publish again after a restart)."""
        return [self._command_row(r) for r in self._rows(
            "SELECT * FROM commands WHERE status = 'pending' AND expires_at > ? "
            "ORDER BY issued_at", [iso(now or utcnow())])]

    @staticmethod
    def _command_row(row: dict) -> dict:
        row["params"] = _loads(row["params"])
        row["clamped"] = _loads(row["clamped"])
        return row

    def get_command(self, command_id: str) -> dict | None:
        row = self._one("SELECT * FROM commands WHERE id = ?", [command_id])
        if row is None:
            return None
        row = self._command_row(row)
        row["replies"] = [dict(r, clamped=_loads(r["clamped"])) for r in self._rows(
            "SELECT status, detail, ts, received_at, clamped FROM command_replies "
            "WHERE command_id = ? ORDER BY id", [command_id])]
        return row

    def list_commands(self, device_id: str, limit: int = 100) -> list[dict]:
        return [self._command_row(r) for r in self._rows(
            "SELECT * FROM commands WHERE device_id = ? ORDER BY issued_at DESC, id LIMIT ?",
            [device_id, limit])]

    # ------------------------------------------------------------------ desired config
    def create_desired_config(self, device_id: str, body: dict, *, actor: str,
                              now: datetime | None = None,
                              based_on: int | None = None) -> dict:
        """Store the next desired config version of a device. Audited.

        ``based_on``: the version the editor started from (0: none yet), checked in the
        same transaction; another version in force raises ``Conflict`` and stores nothing.
        None: not checked, and the audit entry says so (``"unchecked": true``)."""
        now = now or utcnow()
        with self._write():
            opd = self._device_opd(device_id)
            prev = self.db.execute(
                "SELECT version, body FROM desired_configs WHERE device_id = ? "
                "ORDER BY version DESC LIMIT 1", [device_id]).fetchone()
            current = prev[0] if prev else 0
            if based_on is not None and based_on != current:
                raise Conflict(f"the schedule changed: version {current} is in force, not "
                               f"{based_on}")
            version = current + 1
            row = {"device_id": device_id, "version": version, "body": _dumps(body),
                   "issued_at": iso(now), "issued_by": actor}
            self.db["desired_configs"].insert(row)
            before = {"version": prev[0], "body": _loads(prev[1])} if prev else None
            after = {"version": version, "body": body}
            if based_on is None:
                after["unchecked"] = True  # sent without If-Match: not checked for a race
            self._audit(actor, "schedule.update", f"device:{device_id}", opd, before,
                        after, now)
        return self.desired_config(device_id, version)

    def desired_config(self, device_id: str, version: int | None = None) -> dict | None:
        if version is None:
            row = self._one("SELECT * FROM desired_configs WHERE device_id = ? "
                            "ORDER BY version DESC LIMIT 1", [device_id])
        else:
            row = self._one("SELECT * FROM desired_configs WHERE device_id = ? AND version = ?",
                            [device_id, version])
        if row:
            row["body"] = _loads(row["body"])
        return row

    def desired_config_versions(self, device_id: str, limit: int = 100) -> list[dict]:
        rows = self._rows("SELECT * FROM desired_configs WHERE device_id = ? "
                          "ORDER BY version DESC LIMIT ?", [device_id, limit])
        for row in rows:
            row["body"] = _loads(row["body"])
        return rows

    def config_rejection(self, device_id: str, version: int) -> dict | None:
        """The latest ``config_rejected`` event naming ``version``, if any."""
        row = self._one(
            "SELECT seq, ts, details FROM events WHERE device_id = ? AND type = ? "
            "AND json_extract(details, '$.version') = ? ORDER BY seq DESC LIMIT 1",
            [device_id, EventType.CONFIG_REJECTED.value, version])
        if row:
            row["details"] = _loads(row["details"])
        return row

    # ------------------------------------------------------------------ enrolment
    _ENROLMENT_SQL = """
        SELECT id, device_id, opd, kind, name, broker_host, broker_port, broker_tls,
               created_at, created_by, expires_at, used_at, used_from
        FROM enrolment_tokens
    """

    def create_enrolment(self, *, token_hash: str, device_id: str, opd: str, kind: str,
                         name: str, broker_host: str, broker_port: int, broker_tls: bool,
                         expires_at: datetime, actor: str,
                         now: datetime | None = None) -> dict:
        """Store a one-time enrolment token (its hash) for ``device_id``. Audited.

        The device is registered when the token is used, if it is not already; a device
        id already registered under another OPD or kind is a `Conflict`."""
        now = now or utcnow()
        with self._write():
            device = self.db.execute("SELECT opd, kind FROM devices WHERE device_id = ?",
                                     [device_id]).fetchone()
            if device is not None and tuple(device) != (opd, kind):
                raise Conflict(f"device {device_id!r} is registered as {device[1]} "
                               f"under {device[0]!r}")
            row = {"token_hash": token_hash, "device_id": device_id, "opd": opd,
                   "kind": kind, "name": name, "broker_host": broker_host,
                   "broker_port": broker_port, "broker_tls": int(broker_tls),
                   "created_at": iso(now), "created_by": actor, "expires_at": iso(expires_at)}
            token_id = self.db["enrolment_tokens"].insert(row).last_pk
            public = {k: v for k, v in row.items() if k != "token_hash"} | {"id": token_id}
            self._audit(actor, "enrolment.create", f"device:{device_id}", opd, None, public,
                        now)
        return self.get_enrolment(token_id)

    def get_enrolment(self, enrolment_id: int) -> dict | None:
        return self._one(self._ENROLMENT_SQL + " WHERE id = ?", [enrolment_id])

    def find_enrolment(self, token_hash: str) -> dict | None:
        """The enrolment token with this hash (used or not), or None."""
        return self._one(self._ENROLMENT_SQL + " WHERE token_hash = ?", [token_hash])

    def list_enrolments(self, device_id: str | None = None) -> list[dict]:
        if device_id is None:
            return self._rows(self._ENROLMENT_SQL + " ORDER BY id")
        return self._rows(self._ENROLMENT_SQL + " WHERE device_id = ? ORDER BY id", [device_id])

    def claim_enrolment(self, token_hash: str, *, mqtt_password_hash: str, used_from: str,
                        now: datetime | None = None,
                        before_commit: Callable[[], None] | None = None
                        ) -> tuple[str, dict | None]:
        """Use an enrolment token, once, in one transaction.

        Returns ``("claimed", row)`` after registering the device (or giving an already
        registered one the new MQTT password hash) and marking the token used; or
        ``("unknown", None)``, ``("used", row)``, ``("expired", row)``, changing nothing.
        ``before_commit()`` runs inside the transaction, after the changes (it sees the new
        hash); when it raises, nothing is stored. Audited as ``device.enrol``.
        """
        now = now or utcnow()
        with self._write():
            row = self._one(self._ENROLMENT_SQL + " WHERE token_hash = ?", [token_hash])
            if row is None:
                return "unknown", None
            if row["used_at"] is not None:
                return "used", row
            if row["expires_at"] <= iso(now):
                return "expired", row
            actor = f"enrolment token {row['id']} (from {used_from})"
            device_id, opd, kind = row["device_id"], row["opd"], row["kind"]
            device = self.db.execute("SELECT opd, kind FROM devices WHERE device_id = ?",
                                     [device_id]).fetchone()
            if device is None:
                self._insert_device(device_id, opd, kind=kind, name=row["name"],
                                    mqtt_password_hash=mqtt_password_hash, actor=actor,
                                    now=now)
                before = None
            elif tuple(device) != (opd, kind):
                raise Conflict(f"device {device_id!r} is registered as {device[1]} "
                               f"under {device[0]!r}")
            else:
                self.db.execute("UPDATE devices SET mqtt_password_hash = ? "
                                "WHERE device_id = ?", (mqtt_password_hash, device_id))
                before = {"mqtt_password": "replaced"}
            self.db.execute("UPDATE enrolment_tokens SET used_at = ?, used_from = ? "
                            "WHERE id = ?", (iso(now), used_from, row["id"]))
            self._audit(actor, "device.enrol", f"device:{device_id}", opd, before,
                        {"enrolment_id": row["id"], "device_id": device_id, "kind": kind,
                         "from": used_from}, now)
            if before_commit is not None:
                before_commit()
        return "claimed", self.get_enrolment(row["id"])

    # ------------------------------------------------------------------ users, tokens
    def create_token(self, *, name: str, role: str, opd: str | None, token_hash: str,
                     actor: str, expires_at: datetime | None = None,
                     now: datetime | None = None) -> dict:
        """Add a token for user ``name`` (created on first use). Audited.

        It expires at ``expires_at`` (default: ``DEFAULT_TOKEN_TTL_DAYS`` from now). A user
        keeps one role and OPD: asking for another one for an existing name is a
        `Conflict`.
        """
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}", field="role")
        if (role == "operator") != (opd is not None):
            raise Invalid("an operator needs an OPD; admins and viewers have none",
                          field="opd")
        now = now or utcnow()
        expires_at = self._token_expiry(expires_at, now)
        with self._write():
            if opd is not None and not self.db.execute(
                    "SELECT 1 FROM opds WHERE code = ?", [opd]).fetchone():
                raise NotFound(f"OPD {opd!r} does not exist (add a device under it first)")
            user = self.db.execute("SELECT id, role, opd FROM users WHERE name = ?",
                                   [name]).fetchone()
            if user is None:
                user_id = self.db["users"].insert(
                    {"name": name, "role": role, "opd": opd, "created_at": iso(now)}).last_pk
            elif (user[1], user[2]) != (role, opd):
                raise Conflict(f"user {name!r} exists as {user[1]}"
                               + (f" of {user[2]}" if user[2] else ""))
            else:
                user_id = user[0]
            token_id = self._insert_token(user_id, token_hash, actor, expires_at, now)
            after = {"token_id": token_id, "user": name, "role": role, "opd": opd,
                     "expires_at": expires_at}
            self._audit(actor, "token.create", f"token:{token_id}", opd, None, after, now)
        return self.get_token(token_id)

    @staticmethod
    def _token_expiry(expires_at: datetime | None, now: datetime) -> str:
        if expires_at is None:
            return iso(now + timedelta(days=DEFAULT_TOKEN_TTL_DAYS))
        if iso(expires_at) <= iso(now):
            raise Invalid("a token must expire in the future", field="expires_at")
        return iso(expires_at)

    def _insert_token(self, user_id: int, token_hash: str, actor: str, expires_at: str,
                      now: datetime) -> int:
        return self.db["tokens"].insert(
            {"user_id": user_id, "token_hash": token_hash, "created_at": iso(now),
             "created_by": actor, "expires_at": expires_at}).last_pk

    _TOKEN_SQL = """
        SELECT t.id, t.user_id, u.name AS user, u.role, u.opd, t.created_at, t.created_by,
               t.expires_at, t.last_used_at, t.revoked_at, t.revoked_by
        FROM tokens t JOIN users u ON u.id = t.user_id
    """

    def get_token(self, token_id: int) -> dict | None:
        return self._one(self._TOKEN_SQL + " WHERE t.id = ?", [token_id])

    def list_tokens(self, opd: str | None = None) -> list[dict]:
        if opd is None:
            return self._rows(self._TOKEN_SQL + " ORDER BY t.id")
        return self._rows(self._TOKEN_SQL + " WHERE u.opd = ? ORDER BY t.id", [opd])

    def principal_for(self, token_hash: str) -> dict | None:
        """The not revoked token with this hash and its user, or None. The caller checks
        ``expires_at`` (an expired token is told apart from an unknown one)."""
        return self._one(self._TOKEN_SQL + " WHERE t.token_hash = ? AND t.revoked_at IS NULL",
                         [token_hash])

    def touch_token(self, token_id: int, now: datetime) -> bool:
        """Set a token's ``last_used_at`` to ``now`` unless it is already within the same
        minute (so a busy token is written at most once a minute, whichever process
        serves it). Not audited. True if it wrote."""
        with self._write():
            return self.db.execute(
                "UPDATE tokens SET last_used_at = :now WHERE id = :id AND "
                "(last_used_at IS NULL OR substr(last_used_at, 1, 16) < substr(:now, 1, 16))",
                {"now": iso(now), "id": token_id}).rowcount > 0

    def rotate_token(self, token_id: int, *, token_hash: str, actor: str,
                     expires_at: datetime | None = None, now: datetime | None = None) -> dict:
        """Replace a token by a new one of the same user (so the same role and OPD) in one
        transaction: the old one is revoked at once, the new one (``token_hash``) expires
        at ``expires_at`` (default as `create_token`). Audited. A revoked token cannot be
        rotated (`Conflict`); an expired one can. Returns the new token."""
        now = now or utcnow()
        expires_at = self._token_expiry(expires_at, now)
        with self._write():
            row = self.db.execute(
                "SELECT t.user_id, t.revoked_at, t.expires_at, u.opd FROM tokens t "
                "JOIN users u ON u.id = t.user_id WHERE t.id = ?", [token_id]).fetchone()
            if row is None:
                raise NotFound(f"no token with id {token_id}")
            user_id, revoked_at, old_expiry, opd = row
            if revoked_at is not None:
                raise Conflict(f"token {token_id} was revoked at {revoked_at}; create a new one")
            self.db.execute("UPDATE tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?",
                            (iso(now), actor, token_id))
            new_id = self._insert_token(user_id, token_hash, actor, expires_at, now)
            self._audit(actor, "token.rotate", f"token:{token_id}", opd,
                        {"token_id": token_id, "expires_at": old_expiry},
                        {"token_id": new_id, "expires_at": expires_at}, now)
        return self.get_token(new_id)

    def revoke_token(self, token_id: int, *, actor: str, now: datetime | None = None) -> dict:
        """Revoke a token (idempotent). Audited when it changes anything."""
        now = now or utcnow()
        with self._write():
            row = self.db.execute(
                "SELECT t.revoked_at, u.opd FROM tokens t JOIN users u ON u.id = t.user_id "
                "WHERE t.id = ?", [token_id]).fetchone()
            if row is None:
                raise NotFound(f"no token with id {token_id}")
            if row[0] is None:
                self.db.execute("UPDATE tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?",
                                (iso(now), actor, token_id))
                self._audit(actor, "token.revoke", f"token:{token_id}", row[1],
                            {"revoked_at": None}, {"revoked_at": iso(now)}, now)
        return self.get_token(token_id)

    def list_users(self, opd: str | None = None, now: datetime | None = None) -> list[dict]:
        """Users with their count of live tokens (neither revoked nor expired)."""
        sql = ("SELECT u.id, u.name, u.role, u.opd, u.created_at, "
               "(SELECT count(*) FROM tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL"
               " AND t.expires_at > :now) AS live_tokens FROM users u")
        params: dict[str, Any] = {"now": iso(now or utcnow())}
        if opd is None:
            return self._rows(sql + " ORDER BY u.id", params)
        return self._rows(sql + " WHERE u.opd = :opd ORDER BY u.id", params | {"opd": opd})

    # ------------------------------------------------------------------ audit
    def list_audit(self, *, opd: str | None = None, before_id: int | None = None,
                   limit: int = 100) -> list[dict]:
        """Audit entries, newest first; ``before_id`` pages backwards."""
        where, params = ["1 = 1"], []
        if opd is not None:
            where.append("opd = ?")
            params.append(opd)
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        rows = self._rows(f"SELECT * FROM audit WHERE {' AND '.join(where)} "
                          "ORDER BY id DESC LIMIT ?", [*params, limit])
        for row in rows:
            row["before"], row["after"] = _loads(row["before"]), _loads(row["after"])
        return rows
