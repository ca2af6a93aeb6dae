"""Alarm records (controller.alarms): raised, repeated, acknowledged, cleared, hooked.

Events are stored the way the ingest stores them (``Store.commit_batch``), so the alarm
changes happen in the very transaction that stores each event.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from controller_support import T0

from controller import alarms
from controller.errors import Conflict, NotFound
from controller.store import MIGRATIONS, Inbound, Store, iso
from protocol.models import CommandReply, Event, Status, Telemetry
from protocol.topics import Channel


class Unit:
    def __init__(self, store: Store, device_id: str, opd: str):
        self.store, self.device_id, self.opd, self.seq = store, device_id, opd, 0

    def commit(self, channel, message, at):
        result = self.store.commit_batch([Inbound(self.opd, self.device_id, channel,
                                                  message, at)])
        assert not result.rejected, result.rejected
        return result

    def event(self, at, type_, seq=None, **details):
        if seq is None:
            self.seq += 1
            seq = self.seq
        return self.commit(Channel.EVENT, Event(seq=seq, ts=at, type=type_, details=details),
                           at)

    def telemetry(self, at):
        self.seq += 1
        return self.commit(Channel.TELEMETRY, Telemetry(seq=self.seq, ts=at,
                                                        readings={"x": 1.0}, outputs={}), at)

    def status(self, at, online=True):
        return self.commit(Channel.STATUS, Status(online=online, fw="1", ts=at,
                                                  clock_synced=True, app="irrigation",
                                                  outputs={}), at)


@pytest.fixture
def park(store, seeded):
    return Unit(store, "taman-01", "dlh")


@pytest.fixture
def ponds(store, seeded):
    return Unit(store, "tambak-01", "dp3")


@pytest.fixture
def recorded():
    """A change hook that records (change, id, state, count, in a transaction)."""
    seen: list[tuple] = []

    def hook(db, alarm, change, now):
        seen.append((change, alarm["id"], alarm["state"], alarm["count"],
                     db.conn.in_transaction, alarm["device_name"], now))

    alarms.add_change_hook(hook)
    yield seen
    alarms.remove_change_hook(hook)


def _only(store, **kw):
    rows = alarms.list_alarms(store, state="all", **kw)
    assert len(rows) == 1, rows
    return rows[0]


def test_alarms_unit_event_raises_one_record_with_severity(store, park, recorded):
    park.event(T0, "alarm", code="leak", message="12 L/min with every valve closed",
               flow_lpm=12.0)
    alarm = _only(store)
    assert (alarm["device_id"], alarm["opd"], alarm["code"], alarm["subject"],
            alarm["severity"], alarm["state"], alarm["count"]) == (
        "taman-01", "dlh", "leak", "", "critical", "open", 1)
    assert alarm["raised_at"] == iso(T0) == alarm["last_raised_at"]
    assert alarm["details"]["flow_lpm"] == 12.0 and alarm["details"]["seq"] == 1
    assert [(c, s, n, tx) for c, _, s, n, tx, _, _ in recorded] == [
        ("raised", "open", 1, True)]
    audit = store.list_audit(opd="dlh")[0]
    assert (audit["actor"], audit["action"], audit["target"]) == (
        "device:taman-01", "alarm.raise", f"alarm:{alarm['id']}")


def test_alarms_repeat_raise_bumps_count_and_a_redelivery_changes_nothing(
        store, park, recorded):
    park.event(T0, "alarm", code="sensor_stale", zone="rumput", message="a")
    park.event(T0 + timedelta(minutes=5), "alarm", code="sensor_stale", zone="rumput",
               message="b")
    park.event(T0 + timedelta(minutes=6), "alarm", code="sensor_stale", zone="bunga")
    park.event(T0 + timedelta(minutes=5), "alarm", seq=2, code="sensor_stale",
               zone="rumput", message="b")  # the broker delivers seq 2 again
    rumput = [a for a in alarms.list_alarms(store) if a["subject"] == "rumput"][0]
    assert (rumput["count"], rumput["raised_at"], rumput["last_raised_at"],
            rumput["details"]["message"]) == (2, iso(T0), iso(T0 + timedelta(minutes=5)), "b")
    assert len(alarms.list_alarms(store)) == 2
    assert [(c, n) for c, _, _, n, *_ in recorded] == [("raised", 1), ("raised", 2),
                                                       ("raised", 1)]
    # A repeat is not audited (the event log has it): two raises, two audit rows.
    assert [a["action"] for a in store.list_audit(opd="dlh")].count("alarm.raise") == 2


def test_alarms_cleared_by_the_unit_and_by_a_code_that_ends_another(store, park, recorded):
    park.event(T0, "alarm", code="leak")
    park.event(T0, "alarm", code="sensor_stale", zone="rumput")
    park.event(T0 + timedelta(minutes=1), "alarm_cleared", code="leak")
    leak = [a for a in alarms.list_alarms(store, state="all") if a["code"] == "leak"][0]
    assert (leak["state"], leak["cleared_by"], leak["cleared_at"]) == (
        "cleared", "unit", iso(T0 + timedelta(minutes=1)))
    # sensor_recovered (an older unit's way) ends sensor_stale of the same subject only
    park.event(T0 + timedelta(minutes=2), "alarm", code="sensor_recovered", zone="bunga")
    assert [a["code"] for a in alarms.list_alarms(store)] == ["sensor_stale"]
    park.event(T0 + timedelta(minutes=2), "alarm", code="sensor_recovered", zone="rumput")
    assert alarms.list_alarms(store) == []
    assert not any(a["code"] == "sensor_recovered"
                   for a in alarms.list_alarms(store, state="all"))
    # raised again after it was cleared: a new record
    park.event(T0 + timedelta(minutes=3), "alarm", code="leak")
    assert len(alarms.list_alarms(store, state="all")) == 3
    assert [c for c, *_ in recorded] == ["raised", "raised", "cleared", "cleared", "raised"]


def test_alarms_clear_by_command_names_the_person_who_sent_it(store, ponds):
    from protocol.models import Command

    ponds.event(T0, "alarm", code="feeder_jam", feeder="pakan-nila", pond="kolam-nila")
    alarm = _only(store)
    assert (alarm["subject"], alarm["severity"]) == ("pakan-nila", "critical")
    assert alarms.clear_command(alarm) == ("clear_fault", {"feeder": "pakan-nila"})
    command = Command(id="c-1", issued_at=T0, expires_at=T0 + timedelta(minutes=5),
                      action="clear_fault", params={"feeder": "pakan-nila"})
    store.create_command("tambak-01", command, actor="op-dp3 (operator dp3, token 3)")
    alarms.mark_clear_requested(store, alarm["id"], "c-1", actor="op", note="unjammed",
                                now=T0)
    ponds.commit(Channel.CMD_REPLY, CommandReply(id="c-1", status="done", ts=T0,
                                                 detail="feeder pakan-nila unlocked"), T0)
    ponds.event(T0, "alarm_cleared", code="feeder_jam", feeder="pakan-nila",
                cleared_by="command", cmd_id="c-1")
    alarm = _only(store)
    assert (alarm["state"], alarm["cleared_by"], alarm["clear_note"],
            alarm["clear_command"]) == ("cleared", "person:op-dp3", "command c-1", "c-1")


def test_alarms_ack_then_clear_by_a_person(store, park, recorded):
    park.event(T0, "alarm", code="no_flow", zones=["rumput"])
    alarm_id = _only(store)["id"]
    later = T0 + timedelta(minutes=10)
    acked = alarms.acknowledge(store, alarm_id, user="op-dlh", actor="op-dlh (operator)",
                               note="going there", now=later)
    assert (acked["state"], acked["acked_by"], acked["acked_at"], acked["ack_note"]) == (
        "acknowledged", "op-dlh", iso(later), "going there")
    again = alarms.acknowledge(store, alarm_id, user="admin", actor="admin", now=later)
    assert again["acked_by"] == "op-dlh"  # acknowledged once
    # a repeat raise of an acknowledged alarm keeps it acknowledged
    park.event(T0 + timedelta(minutes=11), "alarm", code="no_flow", zones=["rumput"])
    assert (_only(store)["state"], _only(store)["count"]) == ("acknowledged", 2)
    cleared = alarms.clear(store, alarm_id, user="op-dlh", actor="op-dlh (operator)",
                           note="valve replaced", now=later)
    assert (cleared["state"], cleared["cleared_by"], cleared["clear_note"]) == (
        "cleared", "person:op-dlh", "valve replaced")
    with pytest.raises(Conflict):
        alarms.acknowledge(store, alarm_id, user="x", actor="x", now=later)
    with pytest.raises(Conflict):
        alarms.clear(store, alarm_id, user="x", actor="x", now=later)
    with pytest.raises(NotFound):
        alarms.acknowledge(store, 999, user="x", actor="x", now=later)
    assert [c for c, *_ in recorded] == ["raised", "acknowledged", "raised", "cleared"]
    actions = [a["action"] for a in store.list_audit(opd="dlh")][:3]
    assert actions == ["alarm.clear", "alarm.ack", "alarm.raise"]


def test_alarms_hook_runs_in_the_transaction_and_its_failure_rolls_the_event_back(
        store, park):
    def boom(db, alarm, change, now):
        # the event and the alarm are written, not yet committed
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1
        assert db.conn.in_transaction
        raise RuntimeError("notification outbox full")

    alarms.add_change_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="outbox full"):
            park.event(T0, "alarm", code="leak")
    finally:
        alarms.remove_change_hook(boom)
    assert store.events("taman-01") == []
    assert alarms.list_alarms(store, state="all") == []
    assert store.acked_seq("taman-01") == 0  # not acknowledged: the unit sends it again
    park.event(T0, "alarm", seq=1, code="leak")
    assert _only(store)["code"] == "leak"


def test_alarms_unit_cannot_send_the_controllers_codes(store, park):
    park.event(T0, "alarm", code="unit_offline")
    assert alarms.list_alarms(store, state="all") == []


def test_alarms_sweep_raises_offline_and_stale_and_clears_them(store, park, ponds, recorded):
    park.status(T0)
    park.telemetry(T0)
    ponds.status(T0)
    ponds.telemetry(T0)
    cfg = {"offline_after_s": 900, "stale_after_s": 1800}
    assert alarms.sweep(store, now=T0 + timedelta(seconds=899), **cfg) == (0, 0)
    # the park keeps talking (status) but sends no telemetry; the ponds fall silent
    park.status(T0 + timedelta(seconds=1000))
    assert alarms.sweep(store, now=T0 + timedelta(seconds=1001), **cfg) == (1, 0)
    offline = _only(store, device_id="tambak-01")
    assert (offline["code"], offline["severity"], offline["subject"], offline["state"]) == (
        "unit_offline", "critical", "", "open")
    assert offline["details"]["last_seen"] == iso(T0)
    assert alarms.sweep(store, now=T0 + timedelta(seconds=1002), **cfg) == (0, 0)  # once
    park.status(T0 + timedelta(seconds=1800))
    assert alarms.sweep(store, now=T0 + timedelta(seconds=1801), **cfg) == (1, 0)
    stale = _only(store, device_id="taman-01")
    assert (stale["code"], stale["severity"]) == ("data_stale", "warning")
    assert alarms.counts(store) == {"open": 2, "acknowledged": 0,
                                    "by_severity": {"critical": 1, "warning": 1, "info": 0}}
    assert alarms.counts(store, "dp3")["open"] == 1
    # heard again: cleared at once, in the batch that hears it
    ponds.event(T0 + timedelta(seconds=1900), "started")
    assert _only(store, device_id="tambak-01")["cleared_by"] == "controller"
    park.telemetry(T0 + timedelta(seconds=1900))
    assert _only(store, device_id="taman-01")["state"] == "cleared"
    assert alarms.list_alarms(store) == []
    assert [c for c, *_ in recorded] == ["raised", "raised", "cleared", "cleared"]


def test_alarms_sweep_clears_when_the_condition_ended_and_a_last_will_is_no_sign_of_life(
        store, ponds):
    ponds.status(T0)
    cfg = {"offline_after_s": 900, "stale_after_s": 1800}
    alarms.sweep(store, now=T0 + timedelta(seconds=1000), **cfg)
    ponds.status(T0 + timedelta(seconds=1100), online=False)  # the Last Will
    assert _only(store)["state"] == "open"
    # last_seen moved on (a write the batch made): the sweep sees it and clears it
    store.db.execute("UPDATE device_state SET last_seen = ? WHERE device_id = 'tambak-01'",
                     [iso(T0 + timedelta(seconds=1100))])
    assert alarms.sweep(store, now=T0 + timedelta(seconds=1200), **cfg) == (0, 1)
    assert _only(store)["cleared_by"] == "controller"


def test_alarms_migration_backfills_the_last_day_of_events(tmp_path):
    """A database from before the alarms table gets the alarms its events left open."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    old = Store(conn, str(path))
    old.db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                   "applied_at TEXT NOT NULL)")
    for version, migration in enumerate(MIGRATIONS[:5], 1):
        migration(old.db)
        old.db.execute("INSERT INTO schema_version VALUES (?, 'x')", [version])
    old.db.execute("INSERT INTO opds VALUES ('dlh', '', 'x')")
    old.db.execute("INSERT INTO devices VALUES ('taman-01', 'dlh', 'irrigation', 'Taman', "
                   "'taman-01', 'h', 'x', 'test')")
    from controller.store import utcnow
    now = utcnow()

    def event(seq, hours_ago, type_, details):
        old.db.execute("INSERT INTO events VALUES ('taman-01', ?, ?, ?, ?, ?)",
                       [seq, iso(now - timedelta(hours=hours_ago)), iso(now), type_, details])

    event(1, 30, "alarm", '{"code": "no_flow"}')  # older than a day: not brought back
    event(2, 5, "alarm", '{"code": "leak"}')
    event(3, 4, "alarm", '{"code": "leak"}')
    event(4, 3, "alarm", '{"code": "sensor_stale", "zone": "rumput"}')
    event(5, 2, "alarm", '{"code": "sensor_recovered", "zone": "rumput"}')
    event(6, 1, "alarm", '{"code": "feeder_jam", "feeder": "f1"}')
    event(7, 1, "alarm_cleared", '{"code": "feeder_jam", "feeder": "f1"}')
    event(8, 1, "alarm", '{"code": "nonsense"}')
    conn.commit()
    conn.close()
    with Store.open(path) as store:
        assert store.schema_version == len(MIGRATIONS)
        rows = alarms.list_alarms(store)
        assert [(a["code"], a["count"], a["state"], a["device_name"]) for a in rows] == [
            ("leak", 2, "open", "Taman")]
        assert rows[0]["raised_at"] == iso(now - timedelta(hours=5))
