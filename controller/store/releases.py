"""Releases the controller keeps, and rollouts of them to units (docs/updates.md).

- ``releases``: one row per bundle kept under ``[releases] dir`` (version, SHA-256 and
  size of the whole file, platforms, who added it).
- ``rollouts``: a version offered to a set of units in stages (canary first), with its
  failure threshold and stage timeout; ``state`` running -> completed | stopped (with
  ``reason``: ``failure_threshold`` or ``stopped_by_admin``).
- ``rollout_units``: each unit of a rollout: its stage, its ``state`` (waiting, offered,
  accepted, applied, failed, skipped), the ``update`` command it was sent, and the
  ``result`` (a code) and ``reason`` (the unit's words) of its outcome.

`controller.rollouts.RolloutEngine` moves rollouts on; the unit's ``update_applied`` and
``update_failed`` events close its ``update`` command here, in the ingest's transaction.
SQL stays portable (no SQLite-only functions); `DDL_10` is written once, for both
backends (`controller.store.pg_schema.pg_ddl` translates its types for PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime

import sqlite_utils

from controller.errors import Conflict, NotFound
from controller.store.base import StoreBase, _dumps, _loads, iso, utcnow
from protocol.models import Event, EventType

ROLLOUT_STATES = ("running", "completed", "stopped")
UNIT_STATES = ("waiting", "offered", "accepted", "applied", "failed", "skipped")
UNIT_DONE = ("applied", "failed", "skipped")


DDL_10 = """
CREATE TABLE releases (
    version TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    platforms TEXT NOT NULL,
    manifest_created_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    added_by TEXT NOT NULL
);
CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL REFERENCES releases(version),
    target TEXT NOT NULL,
    canary INTEGER NOT NULL,
    stage_percents TEXT NOT NULL,
    max_failure_share REAL NOT NULL,
    stage_timeout_s REAL NOT NULL,
    stages INTEGER NOT NULL,
    stage INTEGER NOT NULL DEFAULT 0,
    stage_started_at TEXT,
    state TEXT NOT NULL CHECK (state IN ('running', 'completed', 'stopped')),
    reason TEXT,
    note TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    stopped_by TEXT
);
CREATE INDEX rollouts_state ON rollouts(state);
CREATE TABLE rollout_units (
    rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
    device_id TEXT NOT NULL REFERENCES devices(device_id),
    opd TEXT NOT NULL,
    stage INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'offered', 'accepted', 'applied',
                                         'failed', 'skipped')),
    command_id TEXT,
    offered_version TEXT,
    result TEXT,
    reason TEXT NOT NULL DEFAULT '',
    step TEXT,
    offered_at TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_units_device ON rollout_units(device_id);
CREATE INDEX rollout_units_command ON rollout_units(command_id);
"""
"""Migration 10 as SQLite runs it; `controller.store.pg_schema.pg_ddl` makes PostgreSQL's
twin of it (identity ids, BIGINT, DOUBLE PRECISION)."""


def migration(db: sqlite_utils.Database) -> None:
    """Migration 10: ``releases``, ``rollouts``, ``rollout_units``."""
    db.executescript(DDL_10)

_UPDATE_EVENTS = (EventType.UPDATE_APPLIED, EventType.UPDATE_FAILED)


class ReleasesMixin(StoreBase):
    """Releases, rollouts and their units."""

    # ------------------------------------------------------------------ releases
    def add_release(self, *, version: str, sha256: str, size: int, platforms: list[str],
                    manifest_created_at: str, key_id: str, actor: str,
                    now: datetime | None = None) -> dict:
        """Keep a verified release's row. `Conflict` if the version is kept already."""
        now = now or utcnow()
        row = {"version": version, "sha256": sha256, "size": size,
               "platforms": _dumps(platforms), "manifest_created_at": manifest_created_at,
               "key_id": key_id, "created_at": iso(now), "added_by": actor}
        with self._write():
            try:
                self.db.execute(
                    "INSERT INTO releases (version, sha256, size, platforms, "
                    "manifest_created_at, key_id, created_at, added_by) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", list(row.values()))
            except self.dialect.integrity_errors:
                raise Conflict(f"release {version} is kept already") from None
            self._audit(actor, "release.add", f"release:{version}", None, None,
                        {"version": version, "sha256": sha256, "size": size,
                         "platforms": platforms, "key_id": key_id}, now)
        return self.get_release(version)  # type: ignore[return-value]

    @staticmethod
    def _release_row(row: dict) -> dict:
        row["platforms"] = _loads(row["platforms"])
        return row

    def get_release(self, version: str) -> dict | None:
        row = self._one("SELECT * FROM releases WHERE version = ?", [version])
        return None if row is None else self._release_row(row)

    def list_releases(self) -> list[dict]:
        return [self._release_row(r) for r in self._rows(
            "SELECT * FROM releases ORDER BY created_at DESC, version")]

    # ------------------------------------------------------------------ rollouts
    def create_rollout(self, *, version: str, target: dict, canary: int,
                       stage_percents: list[int], max_failure_share: float,
                       stage_timeout_s: float, stages: list[list[str]], actor: str,
                       now: datetime | None = None) -> dict:
        """Store a running rollout and its units (``stages``: device ids per stage, the
        canary first), all waiting. `Conflict` while another rollout runs."""
        now = now or utcnow()
        now_s = iso(now)
        with self._write():
            running = self.db.execute(
                "SELECT id, version FROM rollouts WHERE state = 'running'").fetchone()
            if running is not None:
                raise Conflict(f"rollout {running[0]} of {running[1]} is running; stop it "
                               "or let it finish first")
            rollout_id = self.db.execute(  # RETURNING: SQLite 3.35+ and PostgreSQL alike
                "INSERT INTO rollouts (version, target, canary, stage_percents, "
                "max_failure_share, stage_timeout_s, stages, stage, state, created_at, "
                "created_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 'running', ?, ?, ?) "
                "RETURNING id",
                (version, _dumps(target), canary, _dumps(stage_percents), max_failure_share,
                 stage_timeout_s, len(stages), now_s, actor, now_s)).fetchone()[0]
            for stage, device_ids in enumerate(stages):
                for device_id in device_ids:
                    self.db.execute(
                        "INSERT INTO rollout_units (rollout_id, device_id, opd, stage, state, "
                        "updated_at) VALUES (?, ?, ?, ?, 'waiting', ?)",
                        (rollout_id, device_id, self._device_opd(device_id), stage, now_s))
            self._audit(actor, "rollout.start", f"rollout:{rollout_id}", None, None,
                        {"version": version, "target": target, "canary": canary,
                         "stage_percents": stage_percents,
                         "max_failure_share": max_failure_share,
                         "stage_timeout_s": stage_timeout_s, "stages": stages}, now)
        return self.get_rollout(rollout_id)  # type: ignore[arg-type,return-value]

    @staticmethod
    def _rollout_row(row: dict) -> dict:
        row["target"] = _loads(row["target"])
        row["stage_percents"] = _loads(row["stage_percents"])
        return row

    def get_rollout(self, rollout_id: int, opd: str | None = None) -> dict | None:
        """A rollout with its units (only ``opd``'s when given; None if it has none)."""
        row = self._one("SELECT * FROM rollouts WHERE id = ?", [rollout_id])
        if row is None:
            return None
        row = self._rollout_row(row)
        row["units"] = self.rollout_units(rollout_id, opd)
        if opd is not None and not row["units"]:
            return None
        row["counts"] = _counts(self.rollout_units(rollout_id))
        return row

    def list_rollouts(self, opd: str | None = None, limit: int = 100) -> list[dict]:
        """Rollouts, newest first (only those with a unit of ``opd`` when given)."""
        where, params = "", []
        if opd is not None:
            where = ("WHERE id IN (SELECT rollout_id FROM rollout_units WHERE opd = ?)")
            params.append(opd)
        rows = [self._rollout_row(r) for r in self._rows(
            f"SELECT * FROM rollouts {where} ORDER BY id DESC LIMIT ?", [*params, limit])]
        for row in rows:
            row["counts"] = _counts(self.rollout_units(row["id"]))
        return rows

    def rollout_units(self, rollout_id: int, opd: str | None = None) -> list[dict]:
        """The rollout's units with the version each runs now (its status's ``fw``)."""
        where, params = "", [rollout_id]
        if opd is not None:
            where, params = " AND u.opd = ?", [rollout_id, opd]
        return self._rows(
            "SELECT u.device_id, u.opd, s.fw AS running, u.offered_version AS offered, "
            "s.update_window, u.stage, u.state, u.result, u.reason, u.step, u.command_id, "
            "u.offered_at, u.updated_at FROM rollout_units u LEFT JOIN device_state s "
            f"ON s.device_id = u.device_id WHERE u.rollout_id = ?{where} "
            "ORDER BY u.stage, u.device_id", params)

    def ended_rollouts_with_open_units(self) -> list[int]:
        """Stopped or completed rollouts with units still offered or accepted."""
        return [r["rollout_id"] for r in self._rows(
            "SELECT DISTINCT u.rollout_id FROM rollout_units u JOIN rollouts r "
            "ON r.id = u.rollout_id WHERE r.state <> 'running' "
            "AND u.state IN ('offered', 'accepted') ORDER BY u.rollout_id")]

    def device_version(self, device_id: str) -> dict:
        """The version a unit runs and the one last offered to it (`device_versions`)."""
        row = self._one(
            "SELECT s.fw AS running, u.offered_version AS offered, u.state AS offer_state, "
            "s.update_window FROM devices d "
            "LEFT JOIN device_state s ON s.device_id = d.device_id "
            "LEFT JOIN rollout_units u ON u.device_id = d.device_id "
            "AND u.offered_version IS NOT NULL WHERE d.device_id = ? "
            "ORDER BY u.rollout_id DESC LIMIT 1", [device_id])
        return row or {"running": None, "offered": None, "offer_state": None,
                       "update_window": None}

    def running_rollouts(self) -> list[dict]:
        return [self._rollout_row(r) for r in self._rows(
            "SELECT * FROM rollouts WHERE state = 'running' ORDER BY id")]

    def stop_rollout(self, rollout_id: int, *, reason: str, note: str = "", actor: str,
                     now: datetime | None = None) -> dict:
        """running -> stopped (no further offers; units offered keep their result)."""
        now = now or utcnow()
        now_s = iso(now)
        with self._write():
            row = self.db.execute("SELECT state FROM rollouts WHERE id = ?",
                                  [rollout_id]).fetchone()
            if row is None:
                raise NotFound(f"rollout {rollout_id} not found")
            if row[0] != "running":
                raise Conflict(f"rollout {rollout_id} is {row[0]}, not running")
            self.db.execute(
                "UPDATE rollouts SET state = 'stopped', reason = ?, note = ?, stopped_by = ?, "
                "finished_at = ?, updated_at = ? WHERE id = ?",
                (reason, note, actor, now_s, now_s, rollout_id))
            self._audit(actor, "rollout.stop", f"rollout:{rollout_id}", None,
                        {"state": "running"}, {"state": "stopped", "reason": reason,
                                               "note": note}, now)
        return self.get_rollout(rollout_id)  # type: ignore[return-value]

    def advance_rollout(self, rollout_id: int, from_stage: int | None, to_stage: int | None,
                        now: datetime) -> bool:
        """Move a running rollout on, only from where the caller saw it (so two
        controllers' periodic work never moves it twice): ``from_stage`` None starts the
        clock of stage 0; otherwise ``to_stage`` starts that stage, or (None) the rollout
        is completed. False if it had moved already."""
        now_s = iso(now)
        with self._write():
            if from_stage is None:
                return bool(self.db.execute(
                    "UPDATE rollouts SET stage_started_at = ?, updated_at = ? WHERE id = ? "
                    "AND state = 'running' AND stage_started_at IS NULL",
                    (now_s, now_s, rollout_id)).rowcount)
            if to_stage is None:
                done = self.db.execute(
                    "UPDATE rollouts SET state = 'completed', finished_at = ?, updated_at = ? "
                    "WHERE id = ? AND state = 'running' AND stage = ?",
                    (now_s, now_s, rollout_id, from_stage)).rowcount
                if done:
                    self._audit("controller", "rollout.complete", f"rollout:{rollout_id}",
                                None, {"state": "running"}, {"state": "completed"}, now)
                return bool(done)
            return bool(self.db.execute(
                "UPDATE rollouts SET stage = ?, stage_started_at = ?, updated_at = ? "
                "WHERE id = ? AND state = 'running' AND stage = ?",
                (to_stage, now_s, now_s, rollout_id, from_stage)).rowcount)

    def claim_rollout_unit(self, rollout_id: int, device_id: str, command_id: str,
                           version: str, now: datetime) -> bool:
        """waiting -> offered with this command, once: False if it was claimed already
        (by another controller's periodic work) or the rollout is no longer running."""
        now_s = iso(now)
        with self._write():
            return bool(self.db.execute(
                "UPDATE rollout_units SET state = 'offered', command_id = ?, "
                "offered_version = ?, offered_at = ?, result = NULL, reason = '', "
                "updated_at = ? WHERE rollout_id = ? AND device_id = ? AND state = 'waiting' "
                "AND EXISTS (SELECT 1 FROM rollouts WHERE id = ? AND state = 'running')",
                (command_id, version, now_s, now_s, rollout_id, device_id, rollout_id)
            ).rowcount)

    def set_rollout_unit(self, rollout_id: int, device_id: str, now: datetime,
                         **fields: object) -> None:
        """Change a rollout unit's columns (state, command_id, result, reason, ...)."""
        allowed = {"state", "command_id", "offered_version", "result", "reason", "step",
                   "offered_at"}
        assert set(fields) <= allowed, fields
        sets = ", ".join(f"{name} = ?" for name in fields)
        with self._write():
            self.db.execute(
                f"UPDATE rollout_units SET {sets}, updated_at = ? "
                "WHERE rollout_id = ? AND device_id = ?",
                [*fields.values(), iso(now), rollout_id, device_id])

    def rollout_unit_commands(self, rollout_id: int) -> list[dict]:
        """The rollout's units with the status and answer of their ``update`` command."""
        rows = self._rows(
            "SELECT u.device_id, u.opd, u.stage, u.state, u.result, u.command_id, "
            "u.offered_at, s.fw AS running, c.status AS command_status, c.reply_code, "
            "c.reply_params, c.detail FROM rollout_units u "
            "LEFT JOIN device_state s ON s.device_id = u.device_id "
            "LEFT JOIN commands c ON c.id = u.command_id "
            "WHERE u.rollout_id = ? ORDER BY u.stage, u.device_id", [rollout_id])
        for row in rows:
            row["reply_params"] = _loads(row["reply_params"]) or {}
        return rows

    def device_versions(self, opd: str | None = None) -> list[dict]:
        """Each unit's version running and the version last offered to it (any rollout)."""
        where, params = "", []
        if opd is not None:
            where, params = "WHERE d.opd = ?", [opd]
        return self._rows(
            "SELECT d.device_id, d.opd, s.fw AS running, "
            "(SELECT u.offered_version FROM rollout_units u WHERE u.device_id = d.device_id "
            " AND u.offered_version IS NOT NULL ORDER BY u.rollout_id DESC LIMIT 1) "
            "AS offered, "
            "(SELECT u.state FROM rollout_units u WHERE u.device_id = d.device_id "
            " AND u.offered_version IS NOT NULL ORDER BY u.rollout_id DESC LIMIT 1) "
            "AS offer_state, s.update_window "
            f"FROM devices d LEFT JOIN device_state s ON s.device_id = d.device_id {where} "
            "ORDER BY d.device_id", params)

    # ------------------------------------------------------------------ from the ingest
    def _close_update_command(self, device_id: str, event: Event, now: str) -> None:
        """An ``update_applied`` or ``update_failed`` event whose ``update_id`` is an
        ``update`` command's id ends that command: done or failed, with the step and
        reason in its ``reply_params`` (as run-end events close run commands)."""
        if event.type not in _UPDATE_EVENTS:
            return
        d = event.details
        cmd_id = d.get("update_id")
        if not isinstance(cmd_id, str):
            return
        if event.type is EventType.UPDATE_APPLIED:
            status = "done"
            params = {"version": d.get("version"), "previous": d.get("previous")}
            detail = f"release {d.get('version')} applied"
        else:
            status = "failed"
            params = {"version": d.get("version"), "running": d.get("running"),
                      "step": d.get("step"), "reason": d.get("reason"),
                      "rolled_back": d.get("rolled_back")}
            detail = f"update failed at {d.get('step')}: {d.get('reason')}"
        params = {k: v for k, v in params.items() if isinstance(v, str | int | float | bool)}
        self.db.execute(
            "UPDATE commands SET status = ?, detail = ?, reply_code = NULL, "
            "reply_params = ?, updated_at = ? WHERE id = ? AND device_id = ? "
            "AND action = 'update' AND status NOT IN ('done', 'failed', 'rejected')",
            (status, detail[:500], _dumps(params), now, cmd_id, device_id))


def _counts(units: list[dict]) -> dict[str, int]:
    counts = dict.fromkeys(UNIT_STATES, 0)
    for unit in units:
        counts[unit["state"]] += 1
    return counts
