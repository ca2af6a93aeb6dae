"""Commands and their lifecycle: pending -> sent -> accepted -> done | failed; rejected;
expired (by the unit's reply or by `expire_commands`). Also how a unit's reply, or the
event that ends a commanded run, moves a command on (called by the ingest)."""

from __future__ import annotations

from datetime import datetime

from controller.errors import Conflict
from controller.store.base import StoreBase, _dumps, _loads, iso, utcnow
from protocol.models import (
    Command,
    CommandReply,
    Event,
    EventType,
    ReplyCode,
    ReplyStatus,
    reply_text,
)

COMMAND_STATES = ("pending", "sent", "accepted", "done", "failed", "rejected", "expired")
_TERMINAL = {"done", "failed", "rejected", "expired"}
_RANK = {"pending": 0, "sent": 1, "accepted": 2}


class CommandsMixin(StoreBase):
    """Commands to units and the units' replies."""

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
            except self.dialect.integrity_errors:
                raise Conflict(f"command id {command.id!r} already exists") from None
            self._audit(actor, "command.create", f"device:{device_id}", opd, None,
                        command.model_dump(mode="json", by_alias=True), now)
        return self.get_command(command.id)

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
        row["reply_params"] = _loads(row["reply_params"])
        return row

    def get_command(self, command_id: str) -> dict | None:
        row = self._one("SELECT * FROM commands WHERE id = ?", [command_id])
        if row is None:
            return None
        row = self._command_row(row)
        row["replies"] = [dict(r, clamped=_loads(r["clamped"]), params=_loads(r["params"]))
                          for r in self._rows(
            "SELECT status, detail, ts, received_at, clamped, code, params "
            "FROM command_replies WHERE command_id = ? ORDER BY id", [command_id])]
        return row

    def list_commands(self, device_id: str, limit: int = 100) -> list[dict]:
        return [self._command_row(r) for r in self._rows(
            "SELECT * FROM commands WHERE device_id = ? ORDER BY issued_at DESC, id LIMIT ?",
            [device_id, limit])]

    # ------------------------------------------------------------------ from the ingest
    def _close_command_from_event(self, device_id: str, event: Event, now: str) -> None:
        """A run or feeding started by a command ended in a way no reply will report: the
        unit restarted mid-run (its reply callback died with it) and then dropped the run,
        or resumed it and later finished it. Close the command from that event."""
        cmd_id = event.details.get("cmd_id")
        if not isinstance(cmd_id, str):
            return
        d = event.details
        if event.type is EventType.RUN_FINISHED:  # as the unit's own reply would say
            ended = d.get("ended", "completed")
            params = {"zone": d.get("zone"), "duration_s": d.get("duration_s"),
                      "litres": d.get("litres")}
            status, code = ("done", ReplyCode.RUN_COMPLETED) if ended == "completed" else (
                "failed", ReplyCode.RUN_ENDED)
            if code is ReplyCode.RUN_ENDED:
                params["ended"] = ended
        elif event.type is EventType.RUN_SKIPPED:
            status, code = "failed", ReplyCode.RUN_SKIPPED
            params = {"zone": d.get("zone"), "reason": d.get("reason")}
        elif event.type is EventType.FEED_DISPENSED:  # as the feeder's own reply would say
            fault = d.get("fault")
            params = {"feeder": d.get("feeder"), "dispensed_g": d.get("measured_g")}
            if fault:
                status, code = "failed", ReplyCode.FEEDING_FAILED
                params["fault"] = fault
            else:
                status, code = "done", ReplyCode.FEEDING_DONE
                params["planned_g"] = d.get("planned_g")
        elif event.type is EventType.FEEDING_SKIPPED:
            status, code = "failed", ReplyCode.FEEDING_SKIPPED
            params = {"feeder": d.get("feeder"), "reason": d.get("reason")}
        elif d.get("action") == "dropped":
            status, code = "failed", ReplyCode.RUN_DROPPED
            params = {"zone": d.get("zone"), "feeder": d.get("feeder")}
        else:
            return  # resumed: its run_finished will close it
        params = {k: v for k, v in params.items()
                  if isinstance(v, str | int | float | bool)}
        self.db.execute(
            "UPDATE commands SET status = ?, detail = ?, reply_code = ?, reply_params = ?, "
            "updated_at = ? WHERE id = ? AND device_id = ? "
            "AND status NOT IN ('done', 'failed', 'rejected', 'expired')",
            (status, reply_text(code, params), code.value, _dumps(params), now, cmd_id,
             device_id))

    def _apply_reply(self, device_id: str, reply: CommandReply, now: str
                     ) -> tuple[str, str] | None:
        row = self.db.execute("SELECT device_id, status FROM commands WHERE id = ?",
                              [reply.id]).fetchone()
        if row is None:
            return ("unknown_command", f"no command with id {reply.id!r}")
        if row[0] != device_id:
            return ("wrong_device", f"command {reply.id!r} was sent to {row[0]!r}")
        clamped = reply.clamped.model_dump(mode="json") if reply.clamped else None
        code = reply.code.value if reply.code else None
        params = _dumps(reply.params) if code else None
        self.db.execute(
            "INSERT INTO command_replies (command_id, device_id, status, detail, ts, "
            "received_at, clamped, code, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (reply.id, device_id, reply.status.value, reply.detail, iso(reply.ts), now,
             _dumps(clamped), code, params))
        current = row[1]
        if reply.status is ReplyStatus.DUPLICATE:
            self.db.execute("UPDATE commands SET duplicates = duplicates + 1, updated_at = ? "
                            "WHERE id = ?", (now, reply.id))
        elif current not in _TERMINAL and (
                reply.status.value in _TERMINAL
                or _RANK.get(reply.status.value, 0) > _RANK[current]):
            self.db.execute(
                "UPDATE commands SET status = ?, detail = ?, clamped = coalesce(?, clamped), "
                "reply_code = ?, reply_params = ?, updated_at = ? WHERE id = ?",
                (reply.status.value, reply.detail, _dumps(clamped), code, params, now,
                 reply.id))
        return None
