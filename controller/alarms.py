"""Alarms as records: raised -> acknowledged -> cleared. The one module with alarm SQL.

A unit's ``alarm`` event raises an alarm; its ``alarm_cleared`` event (or a code that ends
another, `protocol.events.CLEARED_BY`) clears it. Both happen in the transaction that
stores the event (`on_event`, called by `controller.store.Store.commit_batch`), so an
alarm never exists without its event, nor an event without its alarm. The controller
raises two codes itself (`sweep`, from the ingest's housekeeping): ``unit_offline`` for a
unit not heard from for ``[alarms] offline_after_s``, ``data_stale`` for a unit online
whose latest telemetry is older than ``[alarms] stale_after_s``; both clear when the
unit is heard again (at once, in the batch that hears it: `on_seen`).

A person acknowledges an alarm (`acknowledge`: who, when, a note) and may clear it
(`clear`): directly for latched and controller-raised codes; a code the unit holds locked
until a command (`protocol.events.CLEAR_BY_COMMAND`: a feeder's jam) is cleared by that
command: the API sends it and marks the alarm (`mark_clear_requested`), and the alarm
is cleared when the unit's ``alarm_cleared`` arrives.

There is one alarm record not cleared per (device, code, subject): the subject is the
zone, feeder, pond or output the alarm names (or the sensor, with its quantity), or
``''``. A unit raising the same alarm again bumps its ``count`` and ``last_raised_at``.

Every change is written to the audit log and handed to each change hook
(`add_change_hook`) inside the same transaction: ``fn(db, alarm, change, now)`` with the
store's ``sqlite_utils.Database``, the alarm as a dict (`alarm_dict`), ``change`` one of
``"raised"``, ``"acknowledged"``, ``"cleared"``, and the time of the change. A hook that
raises rolls the whole transaction back (the event that raised the alarm too, so the
broker delivers it again). A repeat raise calls the hooks with ``"raised"`` and a count
above 1; it is not audited (the event log holds every repeat). Hooks are per process,
and the ingest's writer process is spawned (not forked): it has the hooks that the
modules it imports register, not those added later in the controller's process. So a
hook that must see the units' alarms is registered at the import of a module that
`controller.ingest` imports (or in ``_writer_main``); with ``ingest.writer = "thread"``
the controller's own hooks run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlite_utils

from controller.errors import Conflict, NotFound
from protocol.errors import ProtocolError
from protocol.events import (
    ALARM_SEVERITY,
    CLEAR_BY_COMMAND,
    CLEARED_BY,
    CONTROLLER_CODES,
    Alarm,
    AlarmCleared,
    AlarmCode,
    details_of,
)
from protocol.models import EventType, Status, Telemetry

if TYPE_CHECKING:  # the store imports this module
    from controller.store import Inbound, Store

logger = logging.getLogger(__name__)

STATES = ("open", "acknowledged", "cleared")
Change = Literal["raised", "acknowledged", "cleared"]
ChangeHook = Callable[[sqlite_utils.Database, dict[str, Any], str, datetime], None]
StateFilter = Literal["open", "acknowledged", "cleared", "all", "active"]
"""``active``: open or acknowledged (not cleared yet)."""
BACKFILL_WINDOW = timedelta(hours=24)
CONTROLLER = "controller"

_hooks: list[ChangeHook] = []


def add_change_hook(fn: ChangeHook) -> None:
    """Call ``fn(db, alarm, change, now)`` on every alarm change, inside its transaction
    (once, however often it is added)."""
    if fn not in _hooks:
        _hooks.append(fn)


def remove_change_hook(fn: ChangeHook) -> None:
    """Stop calling ``fn`` (no error if it was not added)."""
    if fn in _hooks:
        _hooks.remove(fn)


def _iso(dt: datetime) -> str:
    from controller.store import iso
    return iso(dt)


# --------------------------------------------------------------------------- schema

def migration(db: sqlite_utils.Database) -> None:
    """``alarms``: each alarm as a record (raised, acknowledged, cleared), one not cleared
    per (device, code, subject). Alarms of the last 24 hours of events that no later
    event cleared are opened from the events, so an upgrade loses none."""
    db.executescript("""
    CREATE TABLE alarms (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(device_id),
        opd TEXT NOT NULL,
        code TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        severity TEXT NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
        state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'cleared')),
        raised_at TEXT NOT NULL,
        last_raised_at TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 1,
        details TEXT NOT NULL DEFAULT '{}',
        acked_by TEXT,
        acked_at TEXT,
        ack_note TEXT,
        cleared_at TEXT,
        cleared_by TEXT,
        clear_note TEXT,
        clear_command TEXT
    );
    CREATE UNIQUE INDEX alarms_one_open ON alarms(device_id, code, subject)
        WHERE state != 'cleared';
    CREATE INDEX alarms_open ON alarms(opd, severity) WHERE state != 'cleared';
    CREATE INDEX alarms_device ON alarms(device_id, id);
    """)
    since = _iso(datetime.now(UTC) - BACKFILL_WINDOW)
    rows = db.execute(
        "SELECT e.device_id, d.opd, e.ts, e.type, e.details FROM events e "
        "JOIN devices d ON d.device_id = e.device_id WHERE e.type IN (?, ?) AND e.ts >= ? "
        "ORDER BY e.device_id, e.ts, e.seq",
        [EventType.ALARM.value, EventType.ALARM_CLEARED.value, since]).fetchall()
    active: dict[tuple[str, str, str], dict[str, Any]] = {}
    for device_id, opd, ts, type_, details in rows:
        step = _step(type_, json.loads(details))
        if step is None:
            continue
        action, code, subject, facts = step
        key = (device_id, code, subject)
        if action == "clear":
            active.pop(key, None)
        elif key in active:
            active[key].update(last_raised_at=ts, count=active[key]["count"] + 1,
                               details=json.dumps(facts, sort_keys=True))
        else:
            active[key] = {"device_id": device_id, "opd": opd, "code": code,
                           "subject": subject, "severity": ALARM_SEVERITY[AlarmCode(code)],
                           "state": "open", "raised_at": ts, "last_raised_at": ts,
                           "count": 1, "details": json.dumps(facts, sort_keys=True)}
    if active:
        db["alarms"].insert_all(active.values())
        logger.info("opened %d alarm(s) from the last 24 hours of events", len(active))


def subject_of(details: Alarm) -> str:
    """What an alarm concerns: its zone, feeder, pond or output, or its sensor (with the
    quantity), or ``''``."""
    place = details.zone or details.feeder or details.pond or details.output
    if place:
        return place
    extra = details.model_extra or {}
    sensor = extra.get("sensor")
    if isinstance(sensor, str) and sensor:
        quantity = extra.get("quantity")
        return f"{sensor}.{quantity}" if isinstance(quantity, str) and quantity else sensor
    return ""


def _step(event_type: str, details: dict[str, Any]
          ) -> tuple[str, str, str, dict[str, Any]] | None:
    """What an alarm event does: ("raise" | "clear", code, subject, details), or None."""
    try:
        d = details_of(event_type, details)
    except (ProtocolError, ValueError):
        logger.warning("an %s event with details that do not fit: no alarm change",
                       event_type)
        return None
    if not isinstance(d, Alarm) or d.code in CONTROLLER_CODES:  # a unit cannot send these
        return None
    subject = subject_of(d)
    if isinstance(d, AlarmCleared):
        return "clear", d.code.value, subject, details
    if d.code in CLEARED_BY:
        return "clear", CLEARED_BY[d.code].value, subject, details
    return "raise", d.code.value, subject, details


# --------------------------------------------------------------------------- reading

_ALARM_SQL = """
    SELECT a.*, d.name AS device_name, d.kind FROM alarms a
    JOIN devices d ON d.device_id = a.device_id
"""


def alarm_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A row of `_ALARM_SQL` as the hooks and the API see it."""
    row = dict(row)
    row["details"] = json.loads(row["details"] or "{}")
    row["device_name"] = row["device_name"] or row["device_id"]
    return row


def _get(db: sqlite_utils.Database, alarm_id: int) -> dict[str, Any] | None:
    rows = list(db.query(_ALARM_SQL + " WHERE a.id = ?", [alarm_id]))
    return alarm_dict(rows[0]) if rows else None


def get_alarm(store: Store, alarm_id: int) -> dict[str, Any] | None:
    with store._lock:
        return _get(store.db, alarm_id)


_STATE_WHERE: dict[str, str] = {
    "active": "a.state != 'cleared'", "all": "1 = 1",
    **{state: f"a.state = '{state}'" for state in STATES}}


def list_alarms(store: Store, *, state: StateFilter = "active", opd: str | None = None,
                device_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Alarms newest first (``state``: one state, ``active`` or ``all``)."""
    where, params = [_STATE_WHERE[state]], []
    if opd is not None:
        where.append("a.opd = ?")
        params.append(opd)
    if device_id is not None:
        where.append("a.device_id = ?")
        params.append(device_id)
    with store._lock:
        rows = store.db.query(f"{_ALARM_SQL} WHERE {' AND '.join(where)} "
                              "ORDER BY a.last_raised_at DESC, a.id DESC LIMIT ?",
                              [*params, limit])
        return [alarm_dict(r) for r in rows]


def counts(store: Store, opd: str | None = None) -> dict[str, Any]:
    """Alarms not cleared: how many ``open`` (not acknowledged), ``acknowledged``, and
    per severity (both states)."""
    sql = ("SELECT state, severity, count(*) FROM alarms WHERE state != 'cleared'"
           + (" AND opd = ?" if opd is not None else "") + " GROUP BY state, severity")
    out: dict[str, Any] = {"open": 0, "acknowledged": 0,
                           "by_severity": {"critical": 0, "warning": 0, "info": 0}}
    with store._lock:
        for state, severity, n in store.db.execute(sql, [] if opd is None else [opd]):
            out[state] += n
            out["by_severity"][severity] += n
    return out


def active_marks(store: Store) -> dict[int, tuple[str, str, str, int, str | None]]:
    """Each alarm not cleared: ``id -> (device_id, opd, state, count, clear_command)``;
    what `controller.live` compares to see an alarm raised, repeated, acknowledged,
    asked to clear or cleared (gone from the map)."""
    with store._lock:
        return {r[0]: tuple(r[1:]) for r in store.db.execute(
            "SELECT id, device_id, opd, state, count, clear_command FROM alarms "
            "WHERE state != 'cleared'")}


# --------------------------------------------------------------------------- changes

def _changed(store: Store, alarm_id: int, change: Change, now: datetime, *, opd: str,
             actor: str, action: str, before: Any, after: Any) -> None:
    """Audit a change (unless ``action`` is empty) and call the hooks (in the transaction;
    the alarm is read only when there are hooks)."""
    if action:
        store._audit(actor, action, f"alarm:{alarm_id}", opd, before, after, now)
    if _hooks:
        alarm = _get(store.db, alarm_id)
        for hook in list(_hooks):
            hook(store.db, alarm, change, now)


def _open_id(db: sqlite_utils.Database, device_id: str, code: str, subject: str
             ) -> int | None:
    row = db.execute("SELECT id FROM alarms WHERE device_id = ? AND code = ? "
                     "AND subject = ? AND state != 'cleared'",
                     [device_id, code, subject]).fetchone()
    return None if row is None else row[0]


def _raise(store: Store, device_id: str, opd: str, code: str, subject: str,
           details: dict[str, Any], at: datetime | str, now: datetime, *, actor: str,
           repeat: bool = True) -> int | None:
    """Open an alarm, or bump the open one (``repeat``; otherwise leave it). Inside a
    write transaction. The alarm's id, or None when nothing changed."""
    at_s = at if isinstance(at, str) else _iso(at)
    facts = json.dumps(details, sort_keys=True, separators=(",", ":"))
    open_id = _open_id(store.db, device_id, code, subject)
    if open_id is not None:
        if not repeat:
            return None
        store.db.execute("UPDATE alarms SET count = count + 1, last_raised_at = ?, "
                         "details = ? WHERE id = ?", (at_s, facts, open_id))
        _changed(store, open_id, "raised", now, opd=opd, actor=actor, action="",
                 before=None, after=None)
        return open_id
    severity = ALARM_SEVERITY[AlarmCode(code)].value
    alarm_id = store.db["alarms"].insert(
        {"device_id": device_id, "opd": opd, "code": code, "subject": subject,
         "severity": severity, "state": "open", "raised_at": at_s, "last_raised_at": at_s,
         "count": 1, "details": facts}).last_pk
    _changed(store, alarm_id, "raised", now, opd=opd, actor=actor, action="alarm.raise",
             before=None, after={"device_id": device_id, "code": code, "subject": subject,
                                 "severity": severity, "raised_at": at_s})
    return alarm_id


def _clear(store: Store, alarm_id: int, opd: str, state: str, at: datetime | str,
           now: datetime, *, by: str, note: str | None, actor: str) -> None:
    """Clear an alarm not cleared yet (inside a write transaction)."""
    at_s = at if isinstance(at, str) else _iso(at)
    store.db.execute("UPDATE alarms SET state = 'cleared', cleared_at = ?, cleared_by = ?, "
                     "clear_note = ? WHERE id = ?", (at_s, by, note, alarm_id))
    _changed(store, alarm_id, "cleared", now, opd=opd, actor=actor, action="alarm.clear",
             before={"state": state}, after={"state": "cleared", "cleared_by": by,
                                             "note": note})


# --------------------------------------------------------------------------- from the ingest

def on_event(store: Store, item: Inbound, new: bool) -> None:
    """Raise or clear the alarm a newly stored unit event says (inside the transaction
    that stores it; a redelivered event, ``new`` False, changes nothing)."""
    event = item.message
    if not new or event.type not in (EventType.ALARM, EventType.ALARM_CLEARED):
        return
    step = _step(event.type.value, event.details)
    if step is None:
        return
    action, code, subject, details = step
    actor = f"device:{item.device_id}"
    if action == "raise":
        _raise(store, item.device_id, item.opd, code, subject,
               details | {"seq": event.seq}, event.ts, item.received_at, actor=actor)
        return
    row = store.db.execute("SELECT id, state FROM alarms WHERE device_id = ? "
                           "AND code = ? AND subject = ? AND state != 'cleared'",
                           [item.device_id, code, subject]).fetchone()
    if row is None:
        return
    how = details.get("cleared_by")
    by, note = "unit", how if isinstance(how, str) else None
    cmd_id = details.get("cmd_id")
    if how == "command" and isinstance(cmd_id, str):  # the person who sent the command
        requested = store.db.execute("SELECT created_by FROM commands WHERE id = ? "
                                     "AND device_id = ?", [cmd_id, item.device_id]).fetchone()
        if requested is not None:
            by, note = f"person:{_user_of(requested[0])}", f"command {cmd_id}"
    _clear(store, row[0], item.opd, row[1], event.ts, item.received_at, by=by, note=note,
           actor=actor)


def _user_of(actor: str) -> str:
    """The user name of an audit actor (``name (role ..., token N)``)."""
    return actor.split(" (", 1)[0]


def on_seen(store: Store, items: Iterable[Inbound], registry: dict[str, str]) -> None:
    """Clear ``unit_offline`` of units heard in this batch and ``data_stale`` of units that
    sent telemetry (inside the batch's transaction). ``registry``: device -> its OPD."""
    heard: dict[str, datetime] = {}
    fresh: dict[str, datetime] = {}
    for item in items:
        if registry.get(item.device_id) != item.opd:
            continue
        msg = item.message
        if isinstance(msg, Status) and not msg.online:
            continue  # the Last Will: not a sign of life
        heard[item.device_id] = item.received_at
        if isinstance(msg, Telemetry):
            fresh[item.device_id] = item.received_at
    if not heard:
        return
    marks = ",".join("?" * len(heard))
    rows = store.db.execute(
        f"SELECT id, device_id, code, state FROM alarms WHERE state != 'cleared' "
        f"AND code IN (?, ?) AND device_id IN ({marks})",
        [AlarmCode.UNIT_OFFLINE.value, AlarmCode.DATA_STALE.value, *heard]).fetchall()
    for alarm_id, device_id, code, state in rows:
        if code == AlarmCode.UNIT_OFFLINE.value:
            at, note = heard[device_id], "heard from again"
        elif device_id in fresh:
            at, note = fresh[device_id], "telemetry again"
        else:
            continue
        _clear(store, alarm_id, registry[device_id], state, at, at, by=CONTROLLER, note=note,
               actor=CONTROLLER)


def sweep(store: Store, *, offline_after_s: float, stale_after_s: float,
          now: datetime) -> tuple[int, int]:
    """Raise and clear the controller's own alarms; returns (raised, cleared).

    ``unit_offline``: a unit heard from at least once, not since ``offline_after_s``.
    ``data_stale``: a unit online (its status says so and it was heard within
    ``offline_after_s``) whose latest telemetry arrived more than ``stale_after_s`` ago.
    Reads first and writes only when something changes."""
    offline_cut = _iso(now - timedelta(seconds=offline_after_s))
    stale_cut = _iso(now - timedelta(seconds=stale_after_s))
    with store._lock:
        units = store.db.execute(
            "SELECT d.device_id, d.opd, s.online, s.last_seen, "
            "(SELECT t.received_at FROM telemetry t WHERE t.device_id = d.device_id "
            " ORDER BY t.ts DESC LIMIT 1) FROM devices d "
            "JOIN device_state s ON s.device_id = d.device_id "
            "WHERE s.last_seen IS NOT NULL").fetchall()
        open_ = {(dev, code): (alarm_id, opd) for alarm_id, dev, code, opd in
                 store.db.execute("SELECT id, device_id, code, opd FROM alarms "
                                  "WHERE state != 'cleared' AND code IN (?, ?)",
                                  [AlarmCode.UNIT_OFFLINE.value, AlarmCode.DATA_STALE.value])}
    want: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for dev, opd, online, last_seen, last_telemetry in units:
        if last_seen < offline_cut:
            want[(dev, AlarmCode.UNIT_OFFLINE.value)] = (opd, {
                "last_seen": last_seen, "offline_after_s": offline_after_s})
        elif online and last_telemetry is not None and last_telemetry < stale_cut:
            want[(dev, AlarmCode.DATA_STALE.value)] = (opd, {
                "last_telemetry": last_telemetry, "stale_after_s": stale_after_s})
    to_raise = [key for key in want if key not in open_]
    to_clear = [key for key in open_ if key not in want]
    if not to_raise and not to_clear:
        return 0, 0
    with store._write():
        for dev, code in to_raise:
            opd, details = want[(dev, code)]
            _raise(store, dev, opd, code, "", details, now, now, actor=CONTROLLER,
                   repeat=False)
        for key in to_clear:
            alarm_id, opd = open_[key]
            still = store.db.execute("SELECT state FROM alarms WHERE id = ?",
                                     [alarm_id]).fetchone()
            if still is not None and still[0] != "cleared":
                _clear(store, alarm_id, opd, still[0], now, now, by=CONTROLLER,
                       note="condition ended", actor=CONTROLLER)
    return len(to_raise), len(to_clear)


# --------------------------------------------------------------------------- people

def _for_change(store: Store, alarm_id: int) -> dict[str, Any]:
    alarm = _get(store.db, alarm_id)
    if alarm is None:
        raise NotFound(f"alarm {alarm_id} not found")
    if alarm["state"] == "cleared":
        raise Conflict(f"alarm {alarm_id} was cleared at {alarm['cleared_at']}")
    return alarm


def acknowledge(store: Store, alarm_id: int, *, user: str, actor: str, note: str = "",
                now: datetime) -> dict[str, Any]:
    """Acknowledge an alarm not cleared: who, when, a note. Audited. Acknowledging it
    again changes nothing. `NotFound`; `Conflict` when it is cleared."""
    with store._write():
        alarm = _for_change(store, alarm_id)
        if alarm["state"] == "acknowledged":
            return alarm
        store.db.execute("UPDATE alarms SET state = 'acknowledged', acked_by = ?, "
                         "acked_at = ?, ack_note = ? WHERE id = ?",
                         (user, _iso(now), note, alarm_id))
        _changed(store, alarm_id, "acknowledged", now, opd=alarm["opd"], actor=actor,
                 action="alarm.ack", before={"state": alarm["state"]},
                 after={"state": "acknowledged", "acked_by": user, "note": note})
        return _get(store.db, alarm_id)


def clear_command(alarm: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
    """The command that clears this alarm on its unit (action, params), or None when a
    person clears it directly (latched and controller-raised codes)."""
    found = CLEAR_BY_COMMAND.get(AlarmCode(alarm["code"]))
    if found is None or not alarm["subject"]:
        return None
    action, param = found
    return action, {param: alarm["subject"]}


def clear(store: Store, alarm_id: int, *, user: str, actor: str, note: str = "",
          now: datetime) -> dict[str, Any]:
    """A person clears an alarm directly (``cleared_by = "person:<user>"``). Audited.
    `NotFound`; `Conflict` when it is cleared already."""
    with store._write():
        alarm = _for_change(store, alarm_id)
        _clear(store, alarm_id, alarm["opd"], alarm["state"], now, now, by=f"person:{user}",
               note=note, actor=actor)
        return _get(store.db, alarm_id)


def mark_clear_requested(store: Store, alarm_id: int, command_id: str, *, actor: str,
                         note: str = "", now: datetime) -> dict[str, Any]:
    """Note that ``command_id`` was sent to clear the alarm on its unit (the alarm clears
    when the unit's ``alarm_cleared`` for it arrives). Audited."""
    with store._write():
        alarm = _for_change(store, alarm_id)
        store.db.execute("UPDATE alarms SET clear_command = ?, clear_note = ? WHERE id = ?",
                         (command_id, note, alarm_id))
        store._audit(actor, "alarm.clear_request", f"alarm:{alarm_id}", alarm["opd"],
                     {"clear_command": alarm["clear_command"]},
                     {"clear_command": command_id, "note": note}, now)
    return get_alarm(store, alarm_id)


# Every alarm change is notified (docs/notifications.md): the notification outbox is written
# in the same transaction, in whichever process changes the alarm (the API's, or the
# ingest's writer process, which starts afresh and imports this module).
from controller.notify.outbox import enqueue as _notify  # noqa: E402 - after the hooks exist

add_change_hook(_notify)
