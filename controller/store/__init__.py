"""The controller's database, SQLite or PostgreSQL: the one package that holds SQL.

`Store.open(target)` connects and migrates the schema: a ``schema_version`` table and the
ordered migrations of the backend; a database newer than this build is refused.
``target`` is a SQLite file (WAL, ``synchronous=FULL``, foreign keys on; ``:memory:``) or a
PostgreSQL URL (``postgresql://...``, `controller.store.dialect`). Every write runs in one
transaction that takes the one write lock first (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL:
an advisory lock), so the ingest and the API (separate connections, threads, processes
or machines) never half-write and never interleave a read-decide-write.

Both backends run the same SQL, written in SQLite's spelling with ``?`` placeholders and
only what both understand; what differs goes through ``self.dialect`` or, for the three
queries that walk JSON, a second spelling beside the first (``if self.postgres``).
Results are the same Python values on both (ints, floats, text timestamps, JSON decoded
by the store).

A schema change is two functions with the same version number:

1. SQLite: append ``_migration_N(db)`` to `MIGRATIONS` in `controller.store.schema`
   (``db`` is a ``sqlite_utils.Database``).
2. PostgreSQL: append ``(N, fn)`` to `controller.store.pg_schema.PG_MIGRATIONS`; ``fn(db)``
   gets the store's `controller.store.dialect.PgDatabase` (``db.execute``,
   ``db.executescript``). Use the same table, column and index names, in the same column
   order (``ALTER TABLE ... ADD COLUMN`` appends on both). A change written in the
   portable subset (no SQLite-only functions or triggers) is one DDL text for both:
   SQLite runs it as it is and PostgreSQL runs ``pg_ddl(text)``
   (`controller.store.pg_schema.pg_ddl`: ``INTEGER PRIMARY KEY`` -> an identity column,
   other integers BIGINT, REAL -> DOUBLE PRECISION, BLOB -> BYTEA, text ``COLLATE
   "C"``), as migrations 10 (`controller.store.releases.DDL_10`) and 11 do.

``tests/controller/test_store_backends.py`` opens a database of each and fails while the
two differ (tables, columns, index names, version numbers).

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
- ``releases``, ``rollouts``, ``rollout_units``: bundles kept and their rollouts.

Timestamps are stored as UTC text ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (sorts as time).

`Store` is composed of one mixin per area, each in its own module:

- `controller.store.base`: the connection, the lock, the write transaction, the audit
  entry; how values are stored (`iso`, `utcnow`).
- `controller.store.dialect`: what differs between SQLite and PostgreSQL, and the
  PostgreSQL connection (`PgDatabase`).
- `controller.store.schema`: the migrations (`MIGRATIONS`) and `Store.migrate`;
  `controller.store.pg_schema`: PostgreSQL's (`PG_MIGRATIONS`).
- `controller.store.devices`: OPDs, devices, the device list.
- `controller.store.ingest`: `Inbound`, `BatchResult` and `Store.commit_batch` (telemetry,
  events, statuses, replies; the seq accounting).
- `controller.store.commands`: commands and their lifecycle.
- `controller.store.schedules`: desired configs.
- `controller.store.reports`: reading history back, roll-ups and retention, the queries of
  the dashboard and the monthly reports.
- `controller.store.enrolment`: enrolment tokens.
- `controller.store.auth`: users, API tokens, the audit log.
- `controller.store.releases`: releases kept, rollouts and their units.
"""

from __future__ import annotations

from controller.errors import Conflict, Invalid, NotFound, StoreError
from controller.store.auth import ROLES, AuthMixin
from controller.store.base import StoreBase, iso, utcnow
from controller.store.commands import COMMAND_STATES, CommandsMixin
from controller.store.devices import DevicesMixin
from controller.store.enrolment import EnrolmentMixin
from controller.store.ingest import BatchResult, Inbound, IngestMixin
from controller.store.releases import ReleasesMixin
from controller.store.reports import ReportsMixin
from controller.store.schedules import SchedulesMixin
from controller.store.schema import MIGRATIONS, SchemaMixin

__all__ = [
    "COMMAND_STATES",
    "MIGRATIONS",
    "ROLES",
    "BatchResult",
    "Conflict",
    "Inbound",
    "Invalid",
    "NotFound",
    "Store",
    "StoreError",
    "iso",
    "utcnow",
]


class Store(SchemaMixin, DevicesMixin, IngestMixin, ReportsMixin, CommandsMixin,
            SchedulesMixin, EnrolmentMixin, AuthMixin, ReleasesMixin, StoreBase):
    """All reads and writes of the controller database. Thread-safe (one lock)."""
