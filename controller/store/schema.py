"""The schema: its migrations (`MIGRATIONS`) and how a database is brought up to date.

A schema change is a new function appended to `MIGRATIONS`; one that has shipped is
never edited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlite_utils

from controller import alarms
from controller.auth import DEFAULT_TOKEN_TTL_DAYS
from controller.errors import StoreError
from controller.notify.outbox import migration as notify_migration
from controller.store.base import StoreBase, iso, utcnow
from controller.store.pg_schema import PG_MIGRATIONS
from controller.store.releases import migration as releases_migration

logger = logging.getLogger(__name__)


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


def _migration_8(db: sqlite_utils.Database) -> None:
    """``device_state.outlook``: the holds in force and the next start the unit last
    reported (``protocol.outlook.Outlook``), so the device shows them at once."""
    db.execute("ALTER TABLE device_state ADD COLUMN outlook TEXT")


def _migration_9(db: sqlite_utils.Database) -> None:
    """Reply codes (``protocol.models.ReplyCode``): ``command_replies.code`` and ``params``
    as the unit sent them, and ``commands.reply_code`` and ``reply_params`` of the answer
    that set the command's status, so a reader says them in its own language. NULL for
    replies stored before, and from older units."""
    db.execute("ALTER TABLE command_replies ADD COLUMN code TEXT")
    db.execute("ALTER TABLE command_replies ADD COLUMN params TEXT")
    db.execute("ALTER TABLE commands ADD COLUMN reply_code TEXT")
    db.execute("ALTER TABLE commands ADD COLUMN reply_params TEXT")


def _migration_11(db: sqlite_utils.Database) -> None:
    """``device_state.update_window``: the maintenance window the unit last reported
    (``HH:MM-HH:MM``, its local time), when an accepted release will install. NULL until
    the unit reports one (older units never do)."""
    db.execute("ALTER TABLE device_state ADD COLUMN update_window TEXT")


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _migration_1, _migration_2, _migration_3, _migration_4, _migration_5, alarms.migration,
    notify_migration, _migration_8, _migration_9, releases_migration, _migration_11)
"""Schema migrations in order; migration ``i`` (1-based) brings the schema to version i.
Append new ones; never edit one that has shipped."""


class SchemaMixin(StoreBase):
    """The schema version of the database, and `migrate`."""

    @property
    def schema_version(self) -> int:
        with self._lock:
            if not self.db["schema_version"].exists():
                return 0
            row = self.db.execute("SELECT max(version) FROM schema_version").fetchone()
            return row[0] or 0

    def _steps(self) -> list[tuple[int, Callable[[Any], None]]]:
        """This backend's migrations as (version, function), oldest first."""
        if self.postgres:
            return list(PG_MIGRATIONS)
        return [(i + 1, fn) for i, fn in enumerate(MIGRATIONS)]

    def _create_schema_version(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                        "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")

    def migrate(self) -> int:
        """Apply every migration above the stored version, each in its own transaction
        (on PostgreSQL under the write lock, so controllers starting together apply each
        once)."""
        head = len(MIGRATIONS)
        with self._lock:
            if self.postgres:  # under the write lock: controllers may start together
                with self._write():
                    self._create_schema_version()
            else:
                self._create_schema_version()
            current = self.schema_version
            if current > head:
                raise StoreError(f"{self.where}: schema version {current} is newer than this "
                                 f"build ({head}); upgrade the controller")
            for version, step in self._steps():
                if version <= current:
                    continue
                with self._write():
                    if self.postgres and self.schema_version >= version:
                        continue  # another controller applied it meanwhile
                    step(self.db)
                    self.db.execute("INSERT INTO schema_version VALUES (?, ?)",
                                    (version, iso(utcnow())))
                current = version
                logger.info("database %s migrated to schema version %d", self.where, version)
            return head
