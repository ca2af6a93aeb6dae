"""Enrolment tokens: one-time tokens (hashes only) a new unit trades for its MQTT
credentials (``smartcity-controller enrol create``, ``POST /api/v1/enrol``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from controller.errors import Conflict
from controller.store.base import StoreBase, iso, utcnow


class EnrolmentMixin(StoreBase):
    """Enrolment tokens and their one-time use."""

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
