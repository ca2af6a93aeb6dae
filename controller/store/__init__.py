"""The controller's SQLite database: the one package that holds SQL.

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
- ``releases``, ``rollouts``, ``rollout_units``: bundles kept and their rollouts.

Timestamps are stored as UTC text ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (sorts as time).

`Store` is composed of one mixin per area, each in its own module:

- `controller.store.base`: the connection, the lock, the write transaction, the audit
  entry; how values are stored (`iso`, `utcnow`).
- `controller.store.schema`: the migrations (`MIGRATIONS`) and `Store.migrate`.
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
