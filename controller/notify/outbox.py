"""The notification outbox in the controller's database: the one module of notify with SQL.

Tables (`migration`):

- ``notify_outbox``: one row per (alarm change x channel). ``notification_id`` is
  ``<alarm id>-<change>-<channel>``, stored once and sent with every attempt, so a
  receiver drops a repeat. ``state``: ``held`` (waiting for the flap hold, the quiet
  hours or the escalation time, ``held_for`` says which), ``pending`` (due at
  ``next_attempt_at``; also while being sent), ``sent``, ``failed`` (gave up; counted and
  logged), ``cancelled`` (an escalation the acknowledgement made unneeded, or a raise
  folded into a summary).
- ``notify_policy``: one row, the running controller's ``[notify]`` minus its secrets
  (`write_policy`), so `enqueue` needs nothing but the database: it runs in whichever
  process changes an alarm (the API's, the ingest's writer).

`enqueue` runs inside the transaction that changes the alarm: the rows exist exactly
when the change does. The worker (`controller.notify.worker`) claims one due row at a
time in its own short transaction (``attempts`` + 1, leased for ``send_timeout_s``),
sends it with no transaction open, and marks it sent (or schedules the retry) in
another: a controller killed in between sends it again after the lease, with the same
``notification_id``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils

from controller.notify import rules, words

logger = logging.getLogger(__name__)

CHANGES = ("raised", "acknowledged", "cleared")
SUMMARY = "flapping"
"""The change of a summary row: an alarm raised and cleared again before its raise went
out (possibly several times: ``times`` in its payload)."""
WAITING = ("pending", "held")
APPRISE_TYPES = {("raised", "critical"): "failure", ("raised", None): "warning",
                 ("acknowledged", None): "info", ("cleared", None): "success",
                 (SUMMARY, None): "info"}


def migration(db: sqlite_utils.Database) -> None:
    """``notify_outbox`` and ``notify_policy``: alarm notifications, durable until sent."""
    db.executescript("""
    CREATE TABLE notify_outbox (
        id INTEGER PRIMARY KEY,
        notification_id TEXT NOT NULL UNIQUE,
        alarm_id NOT NULL,
        device_id TEXT NOT NULL,
        code TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        severity TEXT NOT NULL,
        change TEXT NOT NULL
            CHECK (change IN ('raised', 'acknowledged', 'cleared', 'flapping')),
        channel TEXT NOT NULL,
        escalation INTEGER NOT NULL DEFAULT 0,
        payload TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'held', 'sent', 'failed', 'cancelled')),
        held_for TEXT CHECK (held_for IN ('flap', 'quiet_hours', 'escalation')),
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        sent_at TEXT
    );
    CREATE INDEX notify_outbox_due ON notify_outbox(next_attempt_at)
        WHERE state IN ('pending', 'held');
    CREATE INDEX notify_outbox_alarm ON notify_outbox(alarm_id, channel);
    CREATE TABLE notify_policy (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        policy TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """)


def iso(dt: datetime) -> str:
    """UTC text as the store writes it (sorts as time)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@contextmanager
def transaction(store: Any) -> Iterator[sqlite_utils.Database]:
    """One write transaction on ``store`` (`controller.store.Store`), yielding its db."""
    with store._write():
        yield store.db


@contextmanager
def reading(store: Any) -> Iterator[sqlite_utils.Database]:
    """``store``'s db for reads, its connection held for us (shared between threads)."""
    with store._lock:
        yield store.db


# --------------------------------------------------------------------------- policy

def policy_of(settings: Any) -> dict:
    """What `enqueue` needs from the controller's settings (no secrets)."""
    notify = settings.notify
    return {
        "timezone": notify.timezone,
        "quiet_hours": notify.quiet_hours,
        "flap_hold_s": notify.flap_hold_s,
        "escalate_after_s": notify.escalate_after_s,
        "public_url": settings.api.base_url(),
        "channels": [{"name": c.name, "type": kind, "opd": c.opd,
                      "min_severity": c.min_severity, "escalation": c.escalation}
                     for kind, c in notify.channels()],
    }


def write_policy(db: sqlite_utils.Database, policy: dict, now: datetime) -> None:
    """Store ``policy`` (`policy_of`) for `enqueue`; inside a transaction."""
    db.execute("INSERT INTO notify_policy (id, policy, updated_at) VALUES (1, ?, ?) "
               "ON CONFLICT (id) DO UPDATE SET policy = excluded.policy, "
               "updated_at = excluded.updated_at",
               [json.dumps(policy, sort_keys=True), iso(now)])


def read_policy(db: sqlite_utils.Database) -> dict | None:
    row = db.execute("SELECT policy FROM notify_policy WHERE id = 1").fetchone()
    return None if row is None else json.loads(row[0])


# --------------------------------------------------------------------------- enqueue

def enqueue(db: sqlite_utils.Database, alarm: dict, change: str, now: datetime) -> int:
    """Write the notifications of one alarm change; returns how many rows it wrote.

    A hook of `controller.alarms` (``add_change_hook(enqueue)``): it runs inside the
    transaction that changes the alarm, so an exception here rolls the change back; it
    raises only when the database fails. A repeated raise of an open alarm (``count`` >
    1) is not a state change and tells nobody.
    """
    if change not in CHANGES:
        logger.warning("alarm %s: unknown change %r, nobody notified", alarm.get("id"), change)
        return 0
    if change == "raised" and (alarm.get("count") or 1) > 1:
        return 0
    policy = read_policy(db)
    if not policy:
        return 0
    written = 0
    for channel in policy["channels"]:
        if not rules.matches(channel, alarm):
            continue
        if change == "raised":
            written += _raised(db, policy, channel, alarm, now)
        else:
            written += _ended(db, policy, channel, alarm, change, now)
    return written


def _raised(db, policy: dict, channel: dict, alarm: dict, now: datetime) -> int:
    severity = rules.severity_of(alarm)
    raised_at = parse_time(alarm.get("raised_at")) or now
    if channel["escalation"]:
        due, held_for = raised_at + timedelta(seconds=policy["escalate_after_s"]), "escalation"
    else:
        hold_s = policy["flap_hold_s"]
        due, held_for = now + timedelta(seconds=hold_s), ("flap" if hold_s > 0 else None)
    due, quiet = rules.release_at(due, severity, policy)
    if quiet:
        held_for = "quiet_hours"
    escalated = policy["escalate_after_s"] if channel["escalation"] else None
    text = words.text(alarm, "raised", policy["timezone"], at=raised_at,
                      escalated_after_s=escalated)
    return _insert(db, policy, channel, alarm, "raised", text, now, due, held_for)


def _ended(db, policy: dict, channel: dict, alarm: dict, change: str, now: datetime) -> int:
    """An acknowledgement or a clearing, for one channel."""
    name = channel["name"]
    raised = _row(db, f"{alarm['id']}-raised-{name}")
    unsent = raised is not None and raised["state"] in WAITING and raised["attempts"] == 0
    if channel["escalation"]:
        if unsent:  # acknowledged (or over) in time: the next contact need not know
            _cancel(db, raised["id"], f"{change} before escalation")
            return 0
        if raised is None or raised["state"] == "cancelled":
            return 0  # never escalated: nothing to follow up
    if unsent and change == "cleared":  # raised and over before anyone was told
        _cancel_unsent(db, alarm["id"], name)
        return _fold_summary(db, policy, channel, alarm, raised, now)
    at = parse_time(alarm.get("acked_at" if change == "acknowledged" else "cleared_at")) or now
    due, quiet = rules.release_at(now, rules.severity_of(alarm), policy)
    text = words.text(alarm, change, policy["timezone"], at=at)
    return _insert(db, policy, channel, alarm, change, text, now, due,
                   "quiet_hours" if quiet else None)


def _fold_summary(db, policy: dict, channel: dict, alarm: dict, raised: dict,
                  now: datetime) -> int:
    """One summary per flapping alarm and channel while it waits: a new one, or the one
    still waiting with this alarm added to it."""
    name, zone = channel["name"], policy["timezone"]
    cleared_at = parse_time(alarm.get("cleared_at")) or now
    waiting = db.execute(
        "SELECT id, payload FROM notify_outbox WHERE change = ? AND channel = ? "
        "AND device_id = ? AND code = ? AND subject = ? AND state IN ('pending', 'held') "
        "AND attempts = 0 ORDER BY id LIMIT 1",
        [SUMMARY, name, alarm["device_id"], alarm["code"], alarm.get("subject") or ""]
    ).fetchone()
    if waiting is not None:
        payload = json.loads(waiting[1])
        payload["times"] += 1
        payload["alarm_ids"].append(alarm["id"])
        payload["last_cleared_at"] = iso(cleared_at)
        payload["text"] = words.summary_text(
            alarm, zone, first=parse_time(payload["first_raised_at"]), last=cleared_at,
            times=payload["times"])
        payload["body"] = f"{payload['text']}\n{payload['url']}"
        db.execute("UPDATE notify_outbox SET payload = ? WHERE id = ?",
                   [json.dumps(payload), waiting[0]])
        return 0
    first = parse_time(alarm.get("raised_at")) or now
    text = words.summary_text(alarm, zone, first=first, last=cleared_at, times=1)
    extra = {"times": 1, "alarm_ids": [alarm["id"]], "first_raised_at": iso(first),
             "last_cleared_at": iso(cleared_at)}
    return _insert(db, policy, channel, alarm, SUMMARY, text, now,
                   parse_time(raised["next_attempt_at"]), raised["held_for"], extra)


def _insert(db, policy: dict, channel: dict, alarm: dict, change: str, text: str,
            now: datetime, due: datetime, held_for: str | None,
            extra: dict | None = None) -> int:
    notification_id = f"{alarm['id']}-{change}-{channel['name']}"
    payload = {
        "notification_id": notification_id,
        "alarm_id": alarm["id"],
        "device_id": alarm["device_id"],
        "device_name": alarm.get("device_name") or alarm["device_id"],
        "opd": alarm.get("opd"),
        "code": alarm["code"],
        "subject": alarm.get("subject") or "",
        "severity": rules.severity_of(alarm),
        "state": alarm.get("state"),
        "change": change,
        "escalated": bool(channel["escalation"]),
        "at": iso(now),
        "text": text,
        "url": rules.unit_url(policy["public_url"], alarm["device_id"]),
        **(extra or {}),
    }
    # The same again as an Apprise API (/notify/<key>) reads it: title, body, type.
    payload["title"] = words.title(alarm)
    payload["body"] = f"{text}\n{payload['url']}"
    payload["type"] = APPRISE_TYPES.get((change, payload["severity"])) or \
        APPRISE_TYPES[change, None]
    state = "held" if held_for is not None and due > now else "pending"
    cursor = db.execute(
        "INSERT INTO notify_outbox (notification_id, alarm_id, device_id, code, "
        "subject, severity, change, channel, escalation, payload, state, held_for, "
        "created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        [notification_id, alarm["id"], alarm["device_id"], alarm["code"],
         alarm.get("subject") or "", payload["severity"], change, channel["name"],
         channel["escalation"], json.dumps(payload), state, held_for, iso(now), iso(due)])
    return cursor.rowcount


def _row(db, notification_id: str) -> dict | None:
    rows = list(db.query("SELECT * FROM notify_outbox WHERE notification_id = ?",
                         [notification_id]))
    return rows[0] if rows else None


def _cancel(db, row_id: int, why: str) -> None:
    db.execute("UPDATE notify_outbox SET state = 'cancelled', last_error = ? "
               "WHERE id = ? AND attempts = 0 AND state IN ('pending', 'held')",
               [why, row_id])


def _cancel_unsent(db, alarm_id: Any, channel: str) -> None:
    db.execute("UPDATE notify_outbox SET state = 'cancelled', last_error = ? "
               "WHERE alarm_id = ? AND channel = ? AND change != ? AND attempts = 0 "
               "AND state IN ('pending', 'held')",
               ["folded into a summary: cleared before it went out", alarm_id, channel,
                SUMMARY])


# --------------------------------------------------------------------------- delivery

def claim_next(db: sqlite_utils.Database, now: datetime, lease_s: float) -> dict | None:
    """The next due row (oldest first; never one whose alarm has an earlier row for the
    same channel still waiting, so each receiver hears an alarm's changes in order),
    with its attempt counted and leased for ``lease_s``; inside a transaction."""
    rows = list(db.query(
        "SELECT * FROM notify_outbox AS o WHERE o.state IN ('pending', 'held') "
        "AND o.next_attempt_at <= ? AND NOT EXISTS (SELECT 1 FROM notify_outbox AS e "
        "WHERE e.alarm_id = o.alarm_id AND e.channel = o.channel AND e.id < o.id "
        "AND e.state IN ('pending', 'held')) ORDER BY o.next_attempt_at, o.id LIMIT 1",
        [iso(now)]))
    if not rows:
        return None
    row = rows[0]
    row["attempts"] += 1
    db.execute("UPDATE notify_outbox SET state = 'pending', attempts = ?, "
               "next_attempt_at = ? WHERE id = ?",
               [row["attempts"], iso(now + timedelta(seconds=lease_s)), row["id"]])
    row["payload"] = json.loads(row["payload"])
    return row


def mark_sent(db: sqlite_utils.Database, row_id: int, now: datetime) -> None:
    db.execute("UPDATE notify_outbox SET state = 'sent', sent_at = ?, last_error = '' "
               "WHERE id = ?", [iso(now), row_id])


def mark_failed_attempt(db: sqlite_utils.Database, row: dict, error: str, now: datetime, *,
                        retry_at: datetime | None) -> None:
    """An attempt failed: retry at ``retry_at``, or (None) give up: ``failed``."""
    if retry_at is None:
        db.execute("UPDATE notify_outbox SET state = 'failed', last_error = ? WHERE id = ?",
                   [error[:1000], row["id"]])
    else:
        db.execute("UPDATE notify_outbox SET state = 'pending', last_error = ?, "
                   "next_attempt_at = ? WHERE id = ?",
                   [error[:1000], iso(retry_at), row["id"]])


def prune(db: sqlite_utils.Database, before: datetime) -> int:
    """Delete notifications made before ``before`` that are done with (sent, failed or
    cancelled); inside a transaction. Returns how many."""
    return db.execute("DELETE FROM notify_outbox WHERE created_at < ? "
                      "AND state IN ('sent', 'failed', 'cancelled')", [iso(before)]).rowcount


def next_due(db: sqlite_utils.Database) -> datetime | None:
    row = db.execute("SELECT min(next_attempt_at) FROM notify_outbox "
                     "WHERE state IN ('pending', 'held')").fetchone()
    return parse_time(row[0]) if row and row[0] else None


def waiting_count(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT count(*) FROM notify_outbox "
                      "WHERE state IN ('pending', 'held')").fetchone()[0]


def channel_counts(db: sqlite_utils.Database) -> dict[str, dict[str, int]]:
    """Per channel name, its rows per state (e.g. ``{"webhook-1": {"sent": 3}}``)."""
    counts: dict[str, dict[str, int]] = {}
    for channel, state, n in db.execute(
            "SELECT channel, state, count(*) FROM notify_outbox GROUP BY channel, state"):
        counts.setdefault(channel, {})[state] = n
    return counts
