"""Storing what units send: a batch of decoded messages in one transaction, telemetry and
events once per ``(device, seq)``, the seq accounting behind the ack
(`controller.seqs.SeqTracker`), the latest status and its history (``status_history``).
A command reply, or a run's end event, moves its command on (`controller.store.commands`);
an update's end event its ``update`` command (`controller.store.releases`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from controller import alarms
from controller.seqs import SeqTracker
from controller.store.base import StoreBase, _dumps, iso, utcnow
from protocol.models import (
    CommandReply,
    Event,
    EventType,
    Message,
    Status,
    Telemetry,
    dropped_ranges,
)
from protocol.topics import Channel

_RUN_ENDS = (EventType.RUN_FINISHED, EventType.RUN_SKIPPED, EventType.RUN_INTERRUPTED,
             EventType.FEED_DISPENSED, EventType.FEEDING_SKIPPED)
_UPDATE_ENDS = (EventType.UPDATE_APPLIED, EventType.UPDATE_FAILED)
_DUPLICATE = "duplicate"
_ROWS = json.JSONEncoder(separators=(",", ":"))


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


class IngestMixin(StoreBase):
    """`commit_batch` and the seq accounting."""

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
            fresh = None
            if self.postgres:  # a few statements for the batch, not a few per device
                fresh = self._insert_telemetry(items, registry)
                trackers = self._load_trackers([
                    i.device_id for i in items if registry.get(i.device_id) == i.opd
                    and isinstance(i.message, Telemetry | Event)])
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
                problem = self._apply(item, trackers, result, fresh)
                if item.channel in (Channel.TELEMETRY, Channel.EVENT):
                    heard[item.device_id] = max(item.received_at, heard.get(
                        item.device_id, item.received_at))
                if problem == _DUPLICATE:
                    continue
                if problem:
                    result.rejected.append((item, *problem))
                    continue
                result.stored[item.channel.value] = result.stored.get(item.channel.value, 0) + 1
            if self.postgres:
                self._save_trackers(trackers)
            for device_id, tracker in trackers.items():
                if not self.postgres:
                    self._save_tracker(device_id, tracker)
                result.acks[device_id] = (registry[device_id], tracker.acked)
            # Once per device and batch, not once per message.
            last_seen = self.dialect.greatest("coalesce(last_seen, '')", "?")
            self.db.conn.executemany(
                f"UPDATE device_state SET last_seen = {last_seen} WHERE device_id = ?",
                [(iso(at), dev) for dev, at in heard.items()])
            alarms.on_seen(self, items, registry)
        return result

    def _registry(self, device_ids: set[str]) -> dict[str, str]:
        marks = ",".join("?" * len(device_ids))
        cursor = self.db.execute(
            f"SELECT device_id, opd FROM devices WHERE device_id IN ({marks})",
            sorted(device_ids))
        return dict(cursor.fetchall())

    def _insert_telemetry(self, items: list[Inbound], registry: dict[str, str]
                          ) -> set[tuple[str, int]]:
        """PostgreSQL: the batch's telemetry in one statement (one round trip, not one per
        sample); returns the (device, seq) newly stored, which `_apply` then takes as
        SQLite's per-row insert would have answered."""
        rows = [(i.device_id, i.message.seq, iso(i.message.ts), iso(i.received_at),
                 _dumps(i.message.readings), _dumps(i.message.outputs))
                for i in items if isinstance(i.message, Telemetry)
                and registry.get(i.device_id) == i.opd]
        if not rows:
            return set()
        # One JSON text parameter (encoded in C) is several times cheaper to send than
        # six arrays that psycopg would quote element by element in Python.
        cursor = self.db.execute(
            "INSERT INTO telemetry (device_id, seq, ts, received_at, readings, outputs) "
            "SELECT r ->> 0, (r ->> 1)::bigint, r ->> 2, r ->> 3, r ->> 4, r ->> 5 "
            "FROM json_array_elements(?::json) AS r "
            "ON CONFLICT DO NOTHING RETURNING device_id, seq", [_ROWS.encode(rows)])
        return {(dev, seq) for dev, seq in cursor.fetchall()}

    def _apply(self, item: Inbound, trackers: dict[str, SeqTracker],
               result: BatchResult, fresh: set[tuple[str, int]] | None = None
               ) -> tuple[str, str] | str | None:
        """Store one message: None if stored, `_DUPLICATE`, or (reason, why) if refused."""
        msg, dev, now = item.message, item.device_id, iso(item.received_at)
        if isinstance(msg, Telemetry | Event):
            tracker = trackers.get(dev) or self._load_tracker(dev)
            trackers[dev] = tracker
            gaps_before = tracker.gaps_opened
            if isinstance(msg, Telemetry):
                if fresh is not None:  # stored already (PostgreSQL); the first one is new
                    key = (dev, msg.seq)
                    stored = key in fresh
                    fresh.discard(key)
                else:
                    stored = self.db.execute(
                        "INSERT INTO telemetry (device_id, seq, ts, received_at, readings, "
                        "outputs) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (dev, msg.seq, iso(msg.ts), now, _dumps(msg.readings),
                         _dumps(msg.outputs))).rowcount > 0
            else:
                stored = self.db.execute(
                    "INSERT INTO events (device_id, seq, ts, received_at, type, details) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (dev, msg.seq, iso(msg.ts), now, msg.type.value,
                     _dumps(msg.details))).rowcount > 0
                if stored and msg.type in _RUN_ENDS:
                    self._close_command_from_event(dev, msg, now)
                elif stored and msg.type in _UPDATE_ENDS:
                    self._close_update_command(dev, msg, now)  # controller.store.releases
                alarms.on_event(self, item, new=stored)
                if msg.type is EventType.OUTBOX_DROPPED:
                    announced = sum(tracker.drop(a, b) for a, b in dropped_ranges(msg))
                    if stored:
                        result.dropped_announced += announced
                        self.db.execute("UPDATE device_seq SET dropped_total = dropped_total + ?"
                                        " WHERE device_id = ?", (announced, dev))
            # Committed now, whether inserted or already there: it counts for the ack.
            tracker.add(msg.seq)
            result.gaps_opened += tracker.gaps_opened - gaps_before
            if not stored:
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
                "outputs = ?, dropped = ?, backlog = ?, limits = coalesce(?, limits), "
                "outlook = coalesce(?, outlook), "
                # an online status says the window as it is (none: the unit takes no
                # offers); the Last Will never carries one, so the last one stays
                "update_window = CASE WHEN ? = 1 THEN ? ELSE update_window END "
                "WHERE device_id = ?",
                (int(msg.online), now, now, iso(msg.ts), msg.fw, msg.app, int(msg.clock_synced),
                 msg.config_version, _dumps(dict(msg.outputs)) if msg.online else None,
                 msg.dropped, msg.backlog,
                 None if msg.limits is None else msg.limits.model_dump_json(),
                 None if msg.outlook is None else msg.outlook.model_dump_json(),
                 int(msg.online), msg.update_window, dev))
            if msg.online:
                result.came_online.append((dev, item.opd))
            return None
        if isinstance(msg, CommandReply):
            return self._apply_reply(dev, msg, now)
        return ("bad_channel", f"{item.channel.value} is not a channel units publish on")

    def _load_trackers(self, device_ids: list[str]) -> dict[str, SeqTracker]:
        """PostgreSQL: `_load_tracker` of several devices at once."""
        devices = sorted(set(device_ids))
        if not devices:
            return {}
        state = {r[0]: r[1:] for r in self.db.execute(
            "SELECT device_id, acked_seq, max_seq, gaps_opened FROM device_seq "
            "WHERE device_id = ANY(?)", [devices])}
        missing = [(d,) for d in devices if d not in state]
        if missing:
            self.db.conn.executemany("INSERT INTO device_seq (device_id) VALUES (?)", missing)
        pending: dict[str, list[int]] = {d: [] for d in devices}
        for dev, seq in self.db.execute("SELECT device_id, seq FROM seq_pending WHERE "
                                        "device_id = ANY(?) ORDER BY device_id, seq",
                                        [devices]):
            pending[dev].append(seq)
        dropped: dict[str, list[tuple[int, int]]] = {d: [] for d in devices}
        for dev, first, last in self.db.execute(
                "SELECT device_id, first_seq, last_seq FROM seq_dropped WHERE "
                "device_id = ANY(?) ORDER BY device_id, first_seq", [devices]):
            dropped[dev].append((first, last))
        return {d: SeqTracker.restore(*state.get(d, (0, 0, 0)), pending[d], dropped[d])
                for d in devices}

    def _save_trackers(self, trackers: dict[str, SeqTracker]) -> None:
        """PostgreSQL: `_save_tracker` of several devices at once."""
        if not trackers:
            return
        for tracker in trackers.values():
            tracker.advance()
        devices = list(trackers)
        self.db.conn.executemany(
            "UPDATE device_seq SET acked_seq = ?, max_seq = ?, missing = ?, gaps_opened = ? "
            "WHERE device_id = ?", [(t.acked, t.max_seen, t.missing, t.gaps_opened, d)
                                    for d, t in trackers.items()])
        self.db.execute("DELETE FROM seq_pending WHERE device_id = ANY(?)", [devices])
        self.db.conn.executemany("INSERT INTO seq_pending (device_id, seq) VALUES (?, ?)",
                                 [(d, s) for d, t in trackers.items() for s in sorted(t.pending)])
        self.db.execute("DELETE FROM seq_dropped WHERE device_id = ANY(?)", [devices])
        self.db.conn.executemany(
            "INSERT INTO seq_dropped (device_id, first_seq, last_seq) VALUES (?, ?, ?)",
            [(d, a, b) for d, t in trackers.items() for a, b in t.dropped])

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

    def settle_lost_seqs(self, *, actor: str, device_id: str | None = None,
                         now: datetime | None = None) -> list[tuple[str, int, int]]:
        """Account as lost, per device (or only ``device_id``), the seqs between its ack and
        the lowest seq stored above it, so that the ack moves on.

        For after a restore from a backup: what units sent between the backup and the
        restore, the controller had acknowledged and the units deleted, so it never comes
        again and the ack would wait for it for ever. Run it once the units have sent
        again what they still hold (their oldest first). A message with a settled seq that
        still arrives is stored as usual. Returns ``(device, first, last)`` for each device
        settled; each is audited.
        """
        now = now or utcnow()
        settled: list[tuple[str, int, int]] = []
        with self._write():
            sql = ("SELECT s.device_id, d.opd FROM device_seq s "
                   "JOIN devices d ON d.device_id = s.device_id")
            if device_id is not None:
                self._device_opd(device_id)  # NotFound if there is no such device
                rows = self.db.execute(sql + " WHERE s.device_id = ?", [device_id]).fetchall()
            else:
                rows = self.db.execute(sql + " ORDER BY s.device_id").fetchall()
            for dev, opd in rows:
                tracker = self._load_tracker(dev)
                tracker.advance()
                if not tracker.pending:
                    continue
                first, last = tracker.acked + 1, min(tracker.pending) - 1
                tracker.drop(first, last)
                self._save_tracker(dev, tracker)
                self._audit(actor, "device.seqs_settled", f"device:{dev}", opd,
                            {"acked_seq": first - 1},
                            {"acked_seq": tracker.acked, "lost": [first, last]}, now)
                settled.append((dev, first, last))
        return settled

    def acked_seq(self, device_id: str) -> int:
        row = self._one("SELECT acked_seq FROM device_seq WHERE device_id = ?", [device_id])
        return row["acked_seq"] if row else 0
