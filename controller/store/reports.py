"""Reading history back: a device's telemetry and events, the daily roll-ups and retention
of telemetry, and the queries behind the dashboard and the monthly reports
(`controller.reports`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from controller.store.base import StoreBase, _loads, iso, utcnow

logger = logging.getLogger(__name__)


class ReportsMixin(StoreBase):
    """History, roll-ups and report queries."""

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

    _ROLLUP = """
        INSERT OR REPLACE INTO telemetry_daily
            (device_id, day, reading, samples, min, max, avg)
        SELECT t.device_id, substr(t.ts, 1, 10), j.key,
               count(*), min(j.value), max(j.value), avg(j.value)
        FROM telemetry t, json_each(t.readings) j
        WHERE t.ts < ? AND j.type IN ('integer', 'real')
        GROUP BY t.device_id, substr(t.ts, 1, 10), j.key
    """
    _ROLLUP_PG = """
        INSERT INTO telemetry_daily (device_id, day, reading, samples, min, max, avg)
        SELECT t.device_id, substr(t.ts, 1, 10), j.key, count(*),
               min(j.value::double precision), max(j.value::double precision),
               avg(j.value::double precision)
        FROM telemetry t, jsonb_each(t.readings::jsonb) j
        WHERE t.ts < ? AND jsonb_typeof(j.value) = 'number'
        GROUP BY t.device_id, substr(t.ts, 1, 10), j.key
        ON CONFLICT (device_id, day, reading) DO UPDATE SET samples = excluded.samples,
            min = excluded.min, max = excluded.max, avg = excluded.avg
    """

    def rollup_and_prune(self, retention_days: int, now: datetime | None = None) -> int:
        """Roll up every whole UTC day before the cutoff, then delete those raw rows.

        Returns the number of telemetry rows deleted. Safe to run any time, repeatedly.
        """
        now = now or utcnow()
        cutoff_day = (now - timedelta(days=retention_days)).strftime("%Y-%m-%d")
        cutoff = cutoff_day + "T00:00:00.000000Z"
        with self._write():
            self.db.execute(self._ROLLUP_PG if self.postgres else self._ROLLUP, [cutoff])
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
        if self.postgres:
            starts = " OR ".join("starts_with(j.key, ?)" for _ in quantities) or "false"
            return self._rows(
                f"SELECT floor(extract(epoch FROM (t.ts::timestamptz - ?::timestamptz)) "
                f"/ ?)::bigint AS bucket, j.key AS reading, count(*) AS samples, "
                f"avg(j.value::double precision) AS avg, "
                f"min(j.value::double precision) AS min, max(j.value::double precision) AS max "
                f"FROM telemetry t, jsonb_each(t.readings::jsonb) j WHERE t.device_id = ? "
                f"AND t.ts >= ? AND t.ts < ? AND jsonb_typeof(j.value) = 'number' "
                f"AND ({starts}) GROUP BY bucket, j.key ORDER BY bucket, j.key",
                [iso(since), bucket_s, device_id, iso(since), iso(until),
                 *(f"{q}." for q in quantities)])
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
