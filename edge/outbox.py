"""The unit's outbox: every event and telemetry sample, on disk, until the controller has it.

Why: a broker's PUBACK only says the broker received a message, not that it is safe (a
broker killed before its next save forgets it), and paho's own queue lives in memory.
So each message is written here first, in one SQLite transaction that also gives it the
next per-device sequence number (``seq``), and it stays here until the controller's
``ack`` says every message up to some seq is committed in its database. Then
``ack(seq)`` deletes those rows. Sequence numbers survive restarts and are never reused.

Two classes:

- ``Outbox``: the SQLite file (WAL, synchronous=FULL). ``add(kind, build)`` stores one
  message; ``build(seq)`` turns the assigned seq into the payload bytes, inside the
  transaction, so a message that cannot be encoded never takes a seq. ``ack(seq)``
  deletes rows with seq <= ``seq``. Command replies live in a second table
  (``add_reply``/``pending_replies``/``reply_delivered``): they are not part of the seq
  stream, but must survive a disconnect too.
- ``Drain``: hands rows to a ``send`` function oldest first, at most ``window`` of them
  waiting for the broker's PUBACK at a time and at most ``rate_per_s`` per second. After
  a reconnect (``restart()``) it starts again from the lowest unacknowledged seq; if the
  controller's ack stops moving while everything was handed over, it resends from there
  too, after ``resend_after_s``, doubling up to ``resend_max_s``.

Size bound: when the outbox holds ``max_rows`` rows, the oldest telemetry is thinned:
of the ``2 * thin_batch`` oldest telemetry samples every other one is deleted. Events are
never dropped; if only events are left the bound is exceeded (and logged) rather than
lose one. Each thinning is counted (``dropped``, persisted) and announced in the same
transaction by an event built with ``announce(seq, dropped_seqs)``, so the controller
accounts for the missing seqs and its ack can move past them.

Messages stored once: ``add_once(kind, key, build)`` (``Link.event_once``) stores the
message only if none was ever stored under ``key``, in the same transaction that records
the key. A daemon that reports something at start-up (a run interrupted by a crash) and
then saves in its own state file that it has done so can be killed between the two
writes; on its next start it reports again under the same key, and the outbox keeps the
first copy. The most recent ``max_keys`` keys are kept, acknowledged or not.
``has_key(key)`` says whether a message was stored under ``key``: a daemon that reports
something (a run finished) before saving that it happened asks it at its next start.

A lost outbox file (a new SD card) restarts seq at 1. The controller then answers with
an ack above anything this outbox has assigned; ``ack`` notices, moves ``next_seq`` past
it and renumbers the waiting rows (``reseq``), so new messages are not taken for
redeliveries.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

EVENT = "event"
TELEMETRY = "telemetry"
KINDS = (EVENT, TELEMETRY)

Builder = Callable[[int], bytes]
"""``build(seq) -> payload bytes`` for a message given its seq."""
Announcer = Callable[[int, list[int]], bytes]
"""``announce(seq, dropped_seqs) -> payload bytes`` of the outbox_dropped event."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('event', 'telemetry')),
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_kind ON messages (kind, seq);
CREATE TABLE IF NOT EXISTS replies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS message_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    seq INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Row:
    seq: int
    kind: str
    payload: bytes


def json_reseq(payload: bytes, seq: int) -> bytes:
    """Default ``reseq``: rewrite the ``seq`` field of a JSON payload."""
    doc = json.loads(payload)
    doc["seq"] = seq
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _default_announce(seq: int, dropped: list[int]) -> bytes:
    return json.dumps({"seq": seq, "type": "outbox_dropped", "seqs": dropped}).encode()


class Outbox:
    """Durable, ordered store of outgoing messages; thread-safe."""

    def __init__(self, path, *, max_rows: int = 100_000, thin_batch: int = 100,
                 max_keys: int = 10_000, announce: Announcer | None = None,
                 reseq: Callable[[bytes, int], bytes] = json_reseq):
        if max_rows < 2 or thin_batch < 1 or max_keys < 1:
            raise ValueError("max_rows must be >= 2, thin_batch and max_keys >= 1")
        self.path = Path(path) if str(path) != ":memory:" else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.thin_batch = thin_batch
        self.max_keys = max_keys
        self.announce = announce or _default_announce
        self.reseq = reseq
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', 1), ('dropped', 0)")
        self._count = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        self._dropped = self._meta(self._db, "dropped")
        self._over_bound_logged = False

    # -- the seq stream -----------------------------------------------------------------
    def add(self, kind: str, build: Builder) -> int:
        """Store one message and return its seq. ``build(seq)`` makes the payload.

        Thins old telemetry first when the outbox is full. If ``build`` raises, nothing
        is stored and the seq is not used.
        """
        return self._add(kind, build, None)[0]

    def add_once(self, kind: str, key: str, build: Builder) -> tuple[int, bool]:
        """Store one message unless one was already stored under ``key``.

        Returns ``(seq, True)`` when stored now, ``(seq of the first copy, False)`` when
        the key was known (``build`` is then not called).
        """
        return self._add(kind, build, key)

    def has_key(self, key: str) -> bool:
        """Whether a message was stored under ``key`` (one of the last ``max_keys``)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM message_keys WHERE key = ?",
                                    (key,)).fetchone() is not None

    def _add(self, kind: str, build: Builder, key: str | None) -> tuple[int, bool]:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        with self._lock:
            count = self._count
            try:
                with self._transaction() as db:
                    if key is not None:
                        row = db.execute("SELECT seq FROM message_keys WHERE key = ?",
                                         (key,)).fetchone()
                        if row is not None:
                            return row[0], False
                    seq = self._meta(db, "next_seq")
                    if self._count >= self.max_rows:
                        seq = self._thin(db, seq)
                    payload = build(seq)
                    db.execute("INSERT INTO messages (seq, kind, payload) VALUES (?, ?, ?)",
                               (seq, kind, payload))
                    self._set_meta(db, "next_seq", seq + 1)
                    self._count += 1
                    if key is not None:
                        self._remember(db, key, seq)
            except BaseException:
                self._count = count  # rolled back
                raise
            self._dropped = self._meta(self._db, "dropped")
            return seq, True

    def _remember(self, db, key: str, seq: int) -> None:
        """Record ``key``; forget the oldest keys beyond ``max_keys``."""
        kept = db.execute("INSERT INTO message_keys (key, seq) VALUES (?, ?)",
                          (key, seq)).lastrowid
        db.execute("DELETE FROM message_keys WHERE id <= ?", (kept - self.max_keys,))

    def _thin(self, db, seq: int) -> int:
        """Drop every other of the oldest telemetry rows; announce; return the next seq."""
        oldest = [r[0] for r in db.execute(
            "SELECT seq FROM messages WHERE kind = 'telemetry' ORDER BY seq LIMIT ?",
            (2 * self.thin_batch,))]
        victims = oldest[::2]
        if not victims:
            if not self._over_bound_logged:
                logger.warning("outbox holds %d rows, all events: over its bound of %d "
                               "(events are never dropped)", self._count, self.max_rows)
                self._over_bound_logged = True
            return seq
        self._over_bound_logged = False
        db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s in victims])
        self._count -= len(victims)
        self._set_meta(db, "dropped", self._meta(db, "dropped") + len(victims))
        db.execute("INSERT INTO messages (seq, kind, payload) VALUES (?, 'event', ?)",
                   (seq, self.announce(seq, victims)))
        self._count += 1
        logger.warning("outbox full (%d rows): dropped %d old telemetry samples, seq %d..%d; "
                       "announced as seq %d", self.max_rows, len(victims), victims[0],
                       victims[-1], seq)
        return seq + 1

    def ack(self, seq: int) -> int:
        """The controller has every message up to ``seq``: delete them; returns rows deleted.

        An ack above every seq this outbox has assigned means the controller knew this
        device before this outbox existed: seq moves past the ack, and rows still waiting
        are renumbered after it.
        """
        with self._lock, self._transaction() as db:
            next_seq = self._meta(db, "next_seq")
            if seq >= next_seq:
                self._rebase(db, seq)
                return 0
            deleted = db.execute("DELETE FROM messages WHERE seq <= ?", (seq,)).rowcount
            self._count -= deleted
            return deleted

    def _rebase(self, db, acked: int) -> None:
        rows = db.execute("SELECT seq, kind, payload FROM messages ORDER BY seq").fetchall()
        db.execute("DELETE FROM messages")
        seq = acked + 1
        for old, kind, payload in rows:
            db.execute("INSERT INTO messages (seq, kind, payload) VALUES (?, ?, ?)",
                       (seq, kind, self.reseq(payload, seq)))
            db.execute("UPDATE message_keys SET seq = ? WHERE seq = ?", (seq, old))
            seq += 1
        self._set_meta(db, "next_seq", seq)
        logger.warning("controller acknowledged seq %d, beyond this outbox's last seq: the "
                       "outbox was reset; seq continues at %d (%d waiting rows renumbered)",
                       acked, seq, len(rows))

    def rows_after(self, seq: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows with seq > ``seq``, oldest first."""
        with self._lock:
            return [Row(*r) for r in self._db.execute(
                "SELECT seq, kind, payload FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit))]

    @property
    def backlog(self) -> int:
        """Rows not yet acknowledged by the controller."""
        with self._lock:
            return self._count

    @property
    def dropped(self) -> int:
        """Rows dropped by thinning since the outbox was created."""
        with self._lock:
            return self._dropped

    @property
    def next_seq(self) -> int:
        with self._lock:
            return self._meta(self._db, "next_seq")

    # -- command replies (not in the seq stream) ------------------------------------------
    def add_reply(self, payload: bytes) -> int:
        with self._lock:
            return self._db.execute("INSERT INTO replies (payload) VALUES (?)",
                                    (payload,)).lastrowid

    def pending_replies(self) -> list[tuple[int, bytes]]:
        with self._lock:
            return self._db.execute("SELECT id, payload FROM replies ORDER BY id").fetchall()

    def reply_delivered(self, reply_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM replies WHERE id = ?", (reply_id,))

    # -- plumbing -----------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self):
        return _Transaction(self._db)

    @staticmethod
    def _meta(db, key: str) -> int:
        return db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    @staticmethod
    def _set_meta(db, key: str, value: int) -> None:
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error); caller holds the lock."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


Sender = Callable[[Row], object | None]
"""``send(row) -> token`` (e.g. paho's mid), or None when it cannot send now."""


class Drain:
    """Feeds outbox rows to ``send``: oldest first, bounded window, bounded rate.

    Not thread-safe: one thread (the link's worker) calls every method. ``send`` returns
    a token that ``confirmed(token)`` later frees (the broker's PUBACK), or None when it
    cannot send now (the pump tries again after ``retry_s``). ``stop()`` (disconnected)
    holds the pump until ``restart()``.
    """

    def __init__(self, outbox: Outbox, send: Sender, *, window: int = 100,
                 rate_per_s: float | None = 100.0, resend_after_s: float = 60.0,
                 resend_max_s: float = 3600.0, monotonic: Callable[[], float] = time.monotonic):
        if window < 1 or (rate_per_s is not None and rate_per_s <= 0):
            raise ValueError("window must be >= 1 and rate_per_s > 0 (or None: no limit)")
        self.outbox = outbox
        self.send = send
        self.window = window
        self.rate_per_s = rate_per_s
        self.burst = float(window if rate_per_s is None else max(1, min(window, int(rate_per_s))))
        self.resend_after_s = resend_after_s
        self.resend_max_s = resend_max_s
        self.monotonic = monotonic
        self.cursor = 0  # highest seq handed over since the last (re)start
        self.inflight: dict[object, int] = {}  # token -> seq, waiting for PUBACK
        self.sent = 0  # rows handed over, in total
        self.resends = 0  # times the stream was restarted because the ack stalled
        self.retry_s = 1.0  # after send() could not send
        self._tokens = self.burst
        self._refilled = monotonic()
        self._resend_delay = resend_after_s
        self._last_activity = monotonic()
        self._ack_seen = float("-inf")  # when the controller's last ack came, moved or not
        self._blocked = False

    def restart(self) -> None:
        """(Re)connected: everything the controller has not acked goes out again."""
        self.cursor = 0
        self.inflight.clear()
        self._blocked = False
        self._last_activity = self.monotonic()

    def stop(self) -> None:
        """Disconnected: hand nothing over until ``restart()``."""
        self._blocked = True

    def confirmed(self, token) -> bool:
        """The broker confirmed a row (PUBACK); frees its window slot."""
        return self.inflight.pop(token, None) is not None

    def acked(self, seq: int) -> int:
        """The controller's ack: delete rows <= seq; returns rows deleted."""
        deleted = self.outbox.ack(seq)
        self._ack_seen = self.monotonic()
        if deleted:
            self._resend_delay = self.resend_after_s
            self._last_activity = self.monotonic()
        return deleted

    def pump(self) -> float | None:
        """Hand over what window and rate allow; returns seconds until worth calling again
        (None: wait for an outside event such as a PUBACK, a new row or a reconnect)."""
        if self._blocked:
            return None
        now = self.monotonic()
        self._refill(now)
        while len(self.inflight) < self.window:
            if self._tokens < 1:
                return (1 - self._tokens) / self.rate_per_s
            room = min(self.window - len(self.inflight), int(self._tokens))
            rows = self.outbox.rows_after(self.cursor, room)
            if not rows:
                return self._stall_check(now)
            for row in rows:
                token = self.send(row)
                if token is None:
                    return self.retry_s
                self.inflight[token] = row.seq
                self.cursor = row.seq
                self._tokens -= 1
                self.sent += 1
            # New rows restart the stall clock only while the controller is silent: one
            # that answers with an ack stuck below a gap must get a resend, busy or not.
            if now - self._ack_seen > self.resend_after_s:
                self._last_activity = now
        return None  # window full: the next PUBACK wakes us

    def _refill(self, now: float) -> None:
        if self.rate_per_s is None:
            self._tokens = self.burst
            return
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate_per_s)
        self._refilled = now

    def _stall_check(self, now: float) -> float | None:
        """Everything handed over. If the ack has not moved for a while, send again."""
        if self.inflight or not self.outbox.backlog:
            return None
        due = self._last_activity + self._resend_delay
        if now < due:
            return due - now
        logger.info("controller ack stalled for %.0f s with %d rows waiting: resending from "
                    "the oldest", now - self._last_activity, self.outbox.backlog)
        self.resends += 1
        self.cursor = 0
        self._last_activity = now
        self._resend_delay = min(self._resend_delay * 2, self.resend_max_s)
        return 0.0
