"""Uptime in the reports: the status history the store keeps, and the hours it gives."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
import sqlite_utils
from controller_support import add_device

from controller.reports import month_bounds, monthly_report, report_title, unit_uptime
from controller.store import MIGRATIONS, Inbound, Store
from protocol.models import Status
from protocol.topics import Channel

NOV = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)  # 1 November 2026, 00:00 WITA


def status(device_id: str, at: datetime, online: bool, opd: str = "dlh") -> Inbound:
    return Inbound(opd, device_id, Channel.STATUS,
                   Status(online=online, fw="1", ts=at, clock_synced=True), at)


@pytest.fixture
def unit(store):
    return add_device(store, "taman-01", "dlh")


def history(store):
    return [(r["at"][:16], r["online"]) for r in store.db.query(
        "SELECT at, online FROM status_history ORDER BY id")]


def test_reports_status_history_keeps_changes_only(store, unit):
    t = NOV + timedelta(days=2)
    store.commit_batch([status("taman-01", t, True),
                        status("taman-01", t + timedelta(minutes=1), True),  # periodic: same
                        status("taman-01", t + timedelta(hours=5), False),  # Last Will
                        status("taman-01", t + timedelta(hours=5, minutes=1), False)])
    store.commit_batch([status("taman-01", t + timedelta(hours=7), True)])
    assert history(store) == [("2026-11-02T16:00", 1), ("2026-11-02T21:00", 0),
                              ("2026-11-02T23:00", 1)]


def test_reports_uptime_counts_hours_online_and_outages(store, unit):
    start, end = month_bounds("2026-11")
    store.commit_batch([status("taman-01", start - timedelta(days=3), True)])
    store.commit_batch([status("taman-01", start + timedelta(days=4), False)])
    store.commit_batch([status("taman-01", start + timedelta(days=4, hours=12), True)])
    store.commit_batch([status("taman-01", end - timedelta(hours=6), False)])
    up = unit_uptime(store, store.get_device("taman-01"), start, end)
    assert up.covered_h == 720.0
    assert up.online_h == 720.0 - 12 - 6
    assert up.uptime_pct == pytest.approx(100 * 702 / 720, abs=0.005)
    assert up.outages == 2


def test_reports_uptime_unknown_before_the_first_status(store, unit):
    start, end = month_bounds("2026-11")
    assert unit_uptime(store, store.get_device("taman-01"), start, end).uptime_pct is None
    store.commit_batch([status("taman-01", start + timedelta(days=10), True)])
    up = unit_uptime(store, store.get_device("taman-01"), start, end)
    assert (up.covered_h, up.online_h, up.uptime_pct) == (480.0, 480.0, 100.0)


def test_reports_running_month_covers_up_to_now(store, unit):
    start, _ = month_bounds("2026-11")
    store.commit_batch([status("taman-01", start - timedelta(days=1), True)])
    now = start + timedelta(days=10, hours=6)
    report = monthly_report(store, "dlh", "2026-11", now=now)
    assert report.period.partial is True and report.period.until == now
    assert report.uptime.units[0].covered_h == 246.0
    future = monthly_report(store, "dlh", "2027-01", now=now)
    assert future.uptime.units[0].covered_h == 0 and future.uptime.average_pct is None


def test_reports_migration_seeds_history_from_the_last_status(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a database as a controller of schema 1 left it
        MIGRATIONS[0](sqlite_utils.Database(conn))
        conn.executescript("""
            CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
            INSERT INTO schema_version VALUES (1, '2026-10-01T00:00:00.000000Z');
            INSERT INTO opds VALUES ('dlh', '', '2026-10-01T00:00:00.000000Z');
            INSERT INTO devices VALUES ('taman-01', 'dlh', 'irrigation', '', 'taman-01', 'x',
                                        '2026-10-01T00:00:00.000000Z', 'test');
            INSERT INTO device_state (device_id, online, status_at)
                VALUES ('taman-01', 1, '2026-10-31T16:00:00.000000Z');
        """)
    with Store.open(path) as store:
        assert store.schema_version == len(MIGRATIONS) >= 2
        assert history(store) == [("2026-10-31T16:00", 1)]


def test_reports_title_names_the_opd_and_the_month():
    assert report_title("dlh", "2026-11") == "Laporan Pelaksanaan Smart City — DLH — November 2026"
    assert report_title("dp3", "2027-01", "en") == (
        "Smart City Implementation Report — DP3 — January 2027")
    start, end = month_bounds("2026-12")
    assert (start.isoformat(), end.isoformat()) == ("2026-11-30T16:00:00+00:00",
                                                    "2026-12-31T16:00:00+00:00")
