"""Desired configs (schedules and rules): each edit is the next version for its device,
checked against the version the editor started from."""

from __future__ import annotations

from datetime import datetime

from controller.errors import Conflict
from controller.store.base import StoreBase, _dumps, _loads, iso, utcnow
from protocol.models import EventType


class SchedulesMixin(StoreBase):
    """Desired config versions per device."""

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
            f"AND {self.dialect.json_number('details', 'version')} = ? "
            "ORDER BY seq DESC LIMIT 1",
            [device_id, EventType.CONFIG_REJECTED.value, version])
        if row:
            row["details"] = _loads(row["details"])
        return row
