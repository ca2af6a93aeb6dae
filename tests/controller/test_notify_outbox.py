"""The notification outbox's rules: filters, quiet hours, escalation, flapping, repeats.

Each test drives `enqueue` (as controller.alarms calls it, inside a transaction) and the
delivery worker one row at a time on a fake clock, against a local webhook receiver.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from notify_fakes import PUBLIC_URL, HttpReceiver, alarm, notify_settings

from controller.notify import outbox, words
from controller.notify.rules import quiet_end
from controller.notify.worker import DeliveryWorker, start
from controller.store import Store
from protocol.events import AlarmCode

T0 = datetime(2025, 3, 14, 2, 0, tzinfo=UTC)  # 10:00 WITA


class Rig:
    """A store, the policy of ``settings`` and a worker whose clock the test sets."""

    def __init__(self, tmp_path, **notify):
        self.settings = notify_settings(tmp_path, **notify)
        self.store = Store.open(self.settings.database.path)
        self.now = T0
        self.worker = start(self.store, self.settings, clock=lambda: self.now)
        self.worker.stop()  # the test delivers, one row at a time, on its clock

    def change(self, record: dict, change: str, at: datetime) -> int:
        self.now = max(self.now, at)
        with outbox.transaction(self.store) as db:
            return outbox.enqueue(db, record, change, at)

    def deliver(self, at: datetime) -> int:
        self.now = at
        sent = 0
        while self.worker.deliver_one():
            sent += 1
        return sent

    def rows(self, **where) -> list[dict]:
        rows = list(self.store.db.query("SELECT * FROM notify_outbox ORDER BY id"))
        return [r for r in rows if all(r[k] == v for k, v in where.items())]


@pytest.fixture
def hook():
    with HttpReceiver() as receiver:
        yield receiver


def test_notify_filters_by_opd_and_min_severity(tmp_path, hook):
    rig = Rig(tmp_path, webhooks=[
        {"name": "dlh", "url": hook.url + "/dlh", "opd": "dlh"},
        {"name": "critical", "url": hook.url + "/critical", "min_severity": "critical"},
        {"name": "dp3-warn", "url": hook.url + "/dp3", "opd": ["dp3"],
         "min_severity": "warning"},
        {"name": "all", "url": hook.url + "/all"}])
    rig.change(alarm(1, severity="warning", opd="dlh"), "raised", T0)
    rig.change(alarm(2, severity="critical", opd="dp3", code="feeder_jam",
                     device_id="tambak-01"), "raised", T0)
    rig.change(alarm(3, severity="info", opd="dp3", device_id="tambak-01"), "raised", T0)
    assert {(r["alarm_id"], r["channel"]) for r in rig.rows()} == {
        (1, "dlh"), (1, "all"), (2, "critical"), (2, "dp3-warn"), (2, "all"), (3, "all")}
    assert rig.deliver(T0) == 6
    assert sorted((r.path, r.body["alarm_id"]) for r in hook.answered) == [
        ("/all", 1), ("/all", 2), ("/all", 3), ("/critical", 2), ("/dlh", 1), ("/dp3", 2)]


def test_notify_quiet_hours_hold_a_warning_and_pass_a_critical(tmp_path, hook):
    rig = Rig(tmp_path, quiet_hours="22:00-06:00", webhooks=[{"url": hook.url}])
    night = datetime(2025, 3, 14, 15, 0, tzinfo=UTC)  # 23:00 WITA
    morning = datetime(2025, 3, 14, 22, 0, tzinfo=UTC)  # 06:00 WITA next day
    rig.change(alarm(1, severity="warning", code="hopper_low"), "raised", night)
    rig.change(alarm(2, severity="critical"), "raised", night)
    held = rig.rows(alarm_id=1)[0]
    assert (held["state"], held["held_for"]) == ("held", "quiet_hours")
    assert held["next_attempt_at"] == "2025-03-14T22:00:00.000000Z"
    assert rig.deliver(night + timedelta(hours=6, minutes=59)) == 1
    assert [r.body["alarm_id"] for r in hook.answered] == [2]
    assert rig.deliver(morning) == 1
    assert [r.body["alarm_id"] for r in hook.answered] == [2, 1]
    # The clearing of a warning during the day is not held.
    rig.change(alarm(1, change="cleared", severity="warning", code="hopper_low",
                     cleared_at="2025-03-15T02:00:00Z", cleared_by="unit"), "cleared",
               morning + timedelta(hours=4))
    assert rig.deliver(morning + timedelta(hours=4)) == 1
    assert hook.answered[-1].body["change"] == "cleared"


def test_notify_quiet_end_spans_midnight_and_plain_ranges():
    wita = "Asia/Makassar"
    assert quiet_end(datetime(2025, 3, 14, 13, 59, tzinfo=UTC), "22:00-06:00", wita) is None
    assert quiet_end(datetime(2025, 3, 14, 14, 0, tzinfo=UTC), "22:00-06:00", wita) == \
        datetime(2025, 3, 14, 22, 0, tzinfo=UTC)
    assert quiet_end(datetime(2025, 3, 14, 21, 59, tzinfo=UTC), "22:00-06:00", wita) == \
        datetime(2025, 3, 14, 22, 0, tzinfo=UTC)
    assert quiet_end(datetime(2025, 3, 14, 22, 0, tzinfo=UTC), "22:00-06:00", wita) is None
    assert quiet_end(datetime(2025, 3, 14, 5, 0, tzinfo=UTC), "12:00-14:00", wita) == \
        datetime(2025, 3, 14, 6, 0, tzinfo=UTC)
    assert quiet_end(datetime(2025, 3, 14, 5, 0, tzinfo=UTC), "", wita) is None


def test_notify_escalation_goes_to_level_1_only_when_nobody_acknowledges(tmp_path, hook):
    rig = Rig(tmp_path, escalate_after_s=900, webhooks=[
        {"name": "operators", "url": hook.url + "/ops"},
        {"name": "head", "url": hook.url + "/head", "escalation": 1}])
    # Alarm 1 is acknowledged after 10 minutes: the head of the OPD never hears of it.
    rig.change(alarm(1), "raised", T0)
    assert rig.deliver(T0) == 1
    acked = alarm(1, change="acknowledged", acked_by="budi", acked_at="2025-03-14T02:10:00Z",
                  ack_note="tim berangkat")
    rig.change(acked, "acknowledged", T0 + timedelta(minutes=10))
    assert rig.deliver(T0 + timedelta(hours=2)) == 1
    assert [r.path for r in hook.answered] == ["/ops", "/ops"]
    assert rig.rows(alarm_id=1, channel="head")[0]["state"] == "cancelled"
    # Alarm 2 is not acknowledged: after 15 minutes the head hears of it, then of its ack.
    rig.change(alarm(2, at="2025-03-14T04:00:00Z"), "raised", T0 + timedelta(hours=2))
    assert rig.deliver(T0 + timedelta(hours=2, minutes=14)) == 1
    assert rig.deliver(T0 + timedelta(hours=2, minutes=15)) == 1
    escalated = hook.answered[-1]
    assert escalated.path == "/head" and escalated.body["escalated"] is True
    assert escalated.body["text"].startswith("[KRITIS] Eskalasi: belum diakui dalam 15 menit.")
    rig.change(alarm(2, change="acknowledged", acked_by="sari",
                     acked_at="2025-03-14T04:20:00Z"), "acknowledged",
               T0 + timedelta(hours=2, minutes=20))
    assert rig.deliver(T0 + timedelta(hours=2, minutes=20)) == 2
    assert sorted(r.path for r in hook.answered[-2:]) == ["/head", "/ops"]
    assert all("Diakui oleh sari" in r.body["text"] for r in hook.answered[-2:])


def test_notify_flapping_is_held_back_as_one_summary(tmp_path, hook):
    rig = Rig(tmp_path, flap_hold_s=60, webhooks=[{"url": hook.url}])
    # Raised and cleared three times within the minute the first raise waits.
    for n in range(3):
        at = T0 + timedelta(seconds=20 * n)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        rig.change(alarm(n + 1, severity="warning", code="no_flow", at=stamp), "raised", at)
        rig.change(alarm(n + 1, change="cleared", severity="warning", code="no_flow", at=stamp,
                         cleared_at=stamp, cleared_by="unit"),
                   "cleared", at + timedelta(seconds=5))
        assert rig.deliver(at + timedelta(seconds=10)) == 0
    assert rig.deliver(T0 + timedelta(seconds=60)) == 1
    (summary,) = hook.answered
    assert summary.body["change"] == "flapping" and summary.body["times"] == 3
    assert summary.body["alarm_ids"] == [1, 2, 3]
    assert summary.body["text"].startswith(
        "[PERINGATAN] Alarm berulang: katup terbuka tetapi air tidak mengalir di Taman "
        "Bekapai (zona z2) muncul dan selesai lagi 3 kali")
    assert summary.body["body"] == f"{summary.body['text']}\n{summary.body['url']}"
    assert {r["state"] for r in rig.rows(change="raised")} == {"cancelled"}
    # An alarm that stays raised past the hold goes out as itself.
    rig.change(alarm(4, severity="warning", code="no_flow"), "raised", T0 + timedelta(minutes=5))
    assert rig.deliver(T0 + timedelta(minutes=5, seconds=59)) == 0
    assert rig.deliver(T0 + timedelta(minutes=6)) == 1
    assert hook.answered[-1].body["change"] == "raised"


def test_notify_changes_reach_a_receiver_in_order(tmp_path, hook):
    rig = Rig(tmp_path, flap_hold_s=60, webhooks=[{"url": hook.url}])
    rig.change(alarm(1), "raised", T0)
    rig.change(alarm(1, change="acknowledged", acked_by="budi"), "acknowledged",
               T0 + timedelta(seconds=10))
    assert rig.deliver(T0 + timedelta(seconds=30)) == 0  # the ack waits for the raise
    assert rig.deliver(T0 + timedelta(seconds=60)) == 2
    assert [r.body["change"] for r in hook.answered] == ["raised", "acknowledged"]


def test_notify_one_message_per_state_change(tmp_path, hook):
    rig = Rig(tmp_path, webhooks=[{"url": hook.url}])
    assert rig.change(alarm(1), "raised", T0) == 1
    assert rig.change(alarm(1, count=2), "raised", T0) == 0  # a repeat: still open
    assert rig.deliver(T0) == 1
    assert rig.change(alarm(1, change="acknowledged", acked_by="a"), "acknowledged", T0) == 1
    assert rig.change(alarm(1, change="acknowledged", acked_by="b"), "acknowledged", T0) == 0
    assert rig.change(alarm(1, change="cleared"), "cleared", T0) == 1
    assert rig.change(alarm(1, change="cleared"), "bogus", T0) == 0
    assert [r["notification_id"] for r in rig.rows()] == [
        "1-raised-webhook-1", "1-acknowledged-webhook-1", "1-cleared-webhook-1"]
    assert rig.deliver(T0) == 2
    assert [r.body["notification_id"] for r in hook.answered] == [
        "1-raised-webhook-1", "1-acknowledged-webhook-1", "1-cleared-webhook-1"]


def test_notify_enqueue_is_part_of_the_alarms_transaction(tmp_path, hook):
    rig = Rig(tmp_path, webhooks=[{"url": hook.url}])
    with pytest.raises(RuntimeError), outbox.transaction(rig.store) as db:
        outbox.enqueue(db, alarm(1), "raised", T0)
        raise RuntimeError("the alarm's own write failed")
    assert rig.rows() == []


def test_notify_without_channels_writes_nothing(tmp_path):
    rig = Rig(tmp_path)
    assert not rig.worker.running
    assert rig.change(alarm(1), "raised", T0) == 0


def test_notify_texts_in_indonesian_for_every_code():
    assert {code.value for code in AlarmCode} <= set(words.CODE_WORDS)
    record = alarm(7, acked_by="budi", ack_note="sudah dicek", cleared_by="person:sari")
    at = datetime(2025, 3, 14, 2, 0, tzinfo=UTC)
    assert words.text(record, "raised", "Asia/Makassar", at=at) == (
        "[KRITIS] Alarm: kebocoran air di Taman Bekapai (zona z2) "
        "sejak 14 Maret 2025 pukul 10.00 WITA")
    assert words.text(record, "acknowledged", "Asia/Makassar", at=at) == (
        "[KRITIS] Diakui oleh budi pada 14 Maret 2025 pukul 10.00 WITA: kebocoran air di "
        "Taman Bekapai (zona z2). Catatan: sudah dicek")
    assert words.text(record, "cleared", "Asia/Makassar", at=at) == (
        "[KRITIS] Selesai: kebocoran air di Taman Bekapai (zona z2), "
        "pada 14 Maret 2025 pukul 10.00 WITA (oleh sari)")
    unknown = alarm(8, code="pump_on_fire", severity="mystery", subject="")
    assert words.text(unknown, "raised", "Asia/Makassar", at=at) == (
        "[ALARM] Alarm: alarm dengan kode 'pump_on_fire' di Taman Bekapai "
        "sejak 14 Maret 2025 pukul 10.00 WITA")


def test_notify_unknown_code_still_reaches_the_receiver(tmp_path, hook):
    rig = Rig(tmp_path, webhooks=[{"url": hook.url, "min_severity": "warning"}])
    rig.change(alarm(1, code="unit_offline", severity="warning", subject=""), "raised", T0)
    rig.change(alarm(2, code="something_new", severity=None, subject=""), "raised", T0)
    assert rig.deliver(T0) == 2
    texts = [r.body["text"] for r in hook.answered]
    assert texts[0].startswith("[PERINGATAN] Alarm: unit tidak terhubung di Taman Bekapai")
    assert "alarm dengan kode 'something_new'" in texts[1]
    assert hook.answered[1].body["severity"] == "warning"


def test_notify_worker_thread_delivers_what_is_enqueued(tmp_path, hook):
    settings = notify_settings(tmp_path, poll_interval_s=0.05, webhooks=[{"url": hook.url}])
    with Store.open(settings.database.target) as store:
        worker = start(store, settings)
        try:
            assert worker.running
            with outbox.transaction(store) as db:
                outbox.enqueue(db, alarm(1), "raised", datetime.now(UTC))
            assert hook.received.wait(5)
        finally:
            worker.stop()
        assert not worker.running
    assert hook.answered[0].body["url"] == f"{PUBLIC_URL}/#/unit/taman-bekapai-01"
    assert isinstance(worker, DeliveryWorker)


def test_notify_outbox_keeps_done_rows_for_keep_days(tmp_path, hook):
    rig = Rig(tmp_path, keep_days=30, quiet_hours="22:00-06:00", webhooks=[{"url": hook.url}])
    rig.change(alarm(1), "raised", T0)
    assert rig.deliver(T0) == 1
    night = datetime(2025, 3, 14, 15, 0, tzinfo=UTC)  # 23:00 WITA: a warning waits
    rig.change(alarm(2, severity="warning"), "raised", night)
    rig.now = T0 + timedelta(days=30)
    assert rig.worker.prune() == 0  # not older than 30 days yet
    rig.now = night + timedelta(days=31)
    assert rig.worker.prune() == 1
    assert [(r["alarm_id"], r["state"]) for r in rig.rows()] == [(2, "held")]  # never a waiting one
