"""OPDs and devices: registration, the device list (also as the API's JSON body), the
devices' MQTT accounts."""

from __future__ import annotations

from datetime import datetime

from controller.errors import Conflict, NotFound
from controller.store.base import StoreBase, _loads, iso, utcnow
from controller.store.dialect import PgDialect


class DevicesMixin(StoreBase):
    """OPDs, devices and their latest state."""

    def ensure_opd(self, code: str, name: str = "", *, now: datetime | None = None) -> None:
        with self._write():
            self._ensure_opd(code, name, now or utcnow())

    def _ensure_opd(self, code: str, name: str, now: datetime) -> None:
        self.db.execute("INSERT INTO opds (code, name, created_at) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING",
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

    def change_marks(self) -> dict:
        """Cheap markers of what the ingest committed, for `controller.live`: per device
        its OPD, when its status was last stored and the highest seq stored (telemetry or
        event), and the last command reply's id."""
        with self._lock:
            devices = {r[0]: (r[1], r[2], r[3]) for r in self.db.execute(
                "SELECT d.device_id, d.opd, s.status_at, q.max_seq FROM devices d "
                "LEFT JOIN device_state s USING (device_id) "
                "LEFT JOIN device_seq q USING (device_id)")}
            reply = self.db.execute("SELECT max(id) FROM command_replies").fetchone()[0]
        return {"devices": devices, "reply_id": reply or 0}

    def events_stored(self, device_id: str, after_seq: int, upto_seq: int) -> bool:
        """Whether any event of the device has a seq in (after_seq, upto_seq]."""
        with self._lock:
            return self.db.execute(
                "SELECT 1 FROM events WHERE device_id = ? AND seq > ? AND seq <= ? LIMIT 1",
                [device_id, after_seq, upto_seq]).fetchone() is not None

    def replies_since(self, reply_id: int) -> list[str]:
        """The devices that answered a command after reply ``reply_id``."""
        with self._lock:
            return [r[0] for r in self.db.execute(
                "SELECT DISTINCT device_id FROM command_replies WHERE id > ?", [reply_id])]

    _DEVICE_SQL = """
        SELECT d.device_id, d.opd, d.kind, d.name, d.mqtt_username, d.created_at,
               s.online, s.last_seen, s.status_at, s.status_ts, s.fw, s.app,
               s.clock_synced, s.config_version AS reported_config_version, s.outputs,
               s.dropped, s.backlog, s.limits, s.outlook, s.update_window,
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
        row["outlook"] = _loads(row["outlook"]) or {}
        for key in ("acked_seq", "max_seq", "missing_seqs", "gaps_opened", "duplicates",
                    "dropped_total"):
            row[key] = row[key] or 0
        return row

    def get_device(self, device_id: str) -> dict | None:
        row = self._one(self._DEVICE_SQL + " WHERE d.device_id = ?", [device_id])
        return self._device_row(row) if row else None

    @staticmethod
    def _device_filter(opd: str | None, online: bool | None) -> tuple[str, list]:
        """``WHERE ...`` (or nothing) and its parameters for the device lists."""
        where, params = [], []
        if opd is not None:
            where.append("d.opd = ?")
            params.append(opd)
        if online is not None:
            where.append("coalesce(s.online, 0) = ?")
            params.append(int(online))
        return ("WHERE " + " AND ".join(where) if where else ""), params

    def list_devices(self, opd: str | None = None, online: bool | None = None) -> list[dict]:
        where, params = self._device_filter(opd, online)
        sql = self._DEVICE_SQL + " " + where
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
            'paused_until', json_extract(s.outlook, '$.paused_until'),
            'rain_delay_until', json_extract(s.outlook, '$.rain_delay_until'),
            'skip_next', json(coalesce(json_extract(s.outlook, '$.skip_next'), '[]')),
            'next_start', json(coalesce(json_extract(s.outlook, '$.next_start'), 'null')),
            'next_start_reason', json_extract(s.outlook, '$.next_start_reason'),
            'update_window', s.update_window,
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

    # The same on PostgreSQL.
    _DEVICES_JSON_PG = """
        SELECT coalesce(json_agg(doc ORDER BY id), '[]'::json)::text FROM (
          SELECT d.device_id AS id, json_build_object(
            'device_id', d.device_id, 'opd', d.opd, 'kind', d.kind, 'name', d.name,
            'created_at', d.created_at,
            'online', coalesce(s.online, 0) <> 0,
            'last_seen', s.last_seen, 'status_ts', s.status_ts, 'fw', s.fw, 'app', s.app,
            'clock_synced', s.clock_synced <> 0,
            'outputs', coalesce(s.outputs, '{}')::json,
            'backlog', s.backlog, 'dropped', s.dropped,
            'paused_until', {outlook} ->> 'paused_until',
            'rain_delay_until', {outlook} ->> 'rain_delay_until',
            'skip_next', CASE WHEN coalesce(json_typeof({outlook} -> 'skip_next'),
                                            'null') = 'null' THEN '[]'::json
                              ELSE {outlook} -> 'skip_next' END,
            'next_start', {outlook} -> 'next_start',
            'next_start_reason', {outlook} ->> 'next_start_reason',
            'update_window', s.update_window,
            'reported_config_version', s.config_version,
            'desired_config_version', c.version,
            'config_state', CASE
                WHEN c.version IS NULL THEN 'none'
                WHEN c.version = s.config_version THEN 'in_sync'
                WHEN EXISTS (SELECT 1 FROM events e WHERE e.device_id = d.device_id
                             AND e.type = 'config_rejected'
                             AND {version} = c.version)
                    THEN 'rejected'
                ELSE 'pending' END,
            'seq', json_build_object(
                'acked', coalesce(q.acked_seq, 0), 'max_seen', coalesce(q.max_seq, 0),
                'missing', coalesce(q.missing, 0), 'gaps_opened', coalesce(q.gaps_opened, 0),
                'duplicates', coalesce(q.duplicates, 0),
                'dropped_announced', coalesce(q.dropped_total, 0))) AS doc
        FROM devices d
        LEFT JOIN device_state s ON s.device_id = d.device_id
        LEFT JOIN device_seq q ON q.device_id = d.device_id
        LEFT JOIN desired_configs c ON c.device_id = d.device_id AND c.version = (
            SELECT max(version) FROM desired_configs WHERE device_id = d.device_id)
        {where} ORDER BY d.device_id) AS docs
    """.replace("{outlook}", PgDialect.json("s.outlook")).replace(
        "{version}", PgDialect.json_number("e.details", "version"))

    def list_devices_json(self, opd: str | None = None, online: bool | None = None
                          ) -> bytes:
        """`list_devices` as the API's JSON body: a list of ``DeviceOut`` objects."""
        where, params = self._device_filter(opd, online)
        sql = (self._DEVICES_JSON_PG if self.postgres else self._DEVICES_JSON_SQL
               ).replace("{where}", where)
        with self._lock:
            return self.db.conn.execute(sql, params).fetchone()[0].encode()

    def mqtt_accounts(self) -> list[dict]:
        """Every device's MQTT username, password hash, OPD and device id (for broker files)."""
        return self._rows("SELECT device_id, opd, mqtt_username, mqtt_password_hash "
                          "FROM devices ORDER BY device_id")

    def count_online(self) -> int:
        row = self._one("SELECT count(*) AS n FROM device_state WHERE online = 1")
        return row["n"] if row else 0

    def _device_opd(self, device_id: str) -> str:
        row = self.db.execute("SELECT opd FROM devices WHERE device_id = ?",
                              [device_id]).fetchone()
        if row is None:
            raise NotFound(f"device {device_id!r} is not registered")
        return row[0]
