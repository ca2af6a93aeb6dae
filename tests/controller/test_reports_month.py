"""A simulated month through the ingest path, and the monthly report checked against SQL.

The month is the last complete WITA month before today. A park (DLH) and two ponds (DP3)
are simulated for the whole month plus a few hours either side (so the month's edges
matter); their messages are stored with ``Store.commit_batch`` as the ingest stores
them. Every total of the report is then recomputed here straight from the SQLite file
with SQL, independently of ``controller.reports``.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from browser.history import (
    ConfigChange,
    Outage,
    example_program,
    fish_plan,
    simulate_fish,
    simulate_irrigation,
    store_history,
)
from controller_support import add_device, auth, make_token
from fastapi.testclient import TestClient

from controller.api.main import create_app
from controller.settings import parse_settings
from controller.store import Store

WITA = ZoneInfo("Asia/Makassar")
PARK, PONDS = "dlh-taman-bekapai-01", "dp3-tambak-manggar-01"
IDLE = "dlh-median-sudirman-01"  # registered, never heard from


def last_complete_month() -> tuple[str, datetime, datetime]:
    first = datetime.now(WITA).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (first - timedelta(days=1)).replace(day=1)
    return start.strftime("%Y-%m"), start, first


MONTH, START, END = last_complete_month()
# The month in the database's own UTC text: 00:00 WITA is 16:00 UTC the day before.
LO = START.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
HI = END.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
PARK_OUTAGE = Outage(START + timedelta(days=9, hours=10), START + timedelta(days=10, hours=16))
POND_OUTAGE = Outage(START + timedelta(days=19), START + timedelta(days=19, hours=6))


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """The database after the simulated month, and an API client with a token per role."""
    path = tmp_path_factory.mktemp("month") / "controller.db"
    sim_start = START - timedelta(hours=18)  # 06:00 WITA the day before the month
    days = (END - START).days + 18 / 24 + 9 / 24  # ... to 09:00 WITA the day after
    with Store.open(path) as store:
        before = sim_start - timedelta(days=2)
        store.add_device(PARK, "dlh", kind="irrigation", name="Taman Bekapai",
                         mqtt_password_hash="x", actor="test", now=before)
        store.add_device(PONDS, "dp3", kind="fish_feeder", name="Tambak Manggar",
                         mqtt_password_hash="x", actor="test", now=before)
        add_device(store, IDLE, "dlh")
        program = example_program()
        first, sampled = fish_plan(80), fish_plan(140)
        store.create_desired_config(PARK, program, actor="test", now=before)
        store.create_desired_config(PONDS, first, actor="test", now=before)
        sampling_day = END - timedelta(hours=30)  # weighed two days before the month ends
        store.create_desired_config(PONDS, sampled, actor="test", now=sampling_day)
        park = simulate_irrigation(
            PARK, "dlh", sim_start, days, name="Taman Bekapai", outages=[PARK_OUTAGE],
            changes=[ConfigChange(sim_start, 1, program)],
            leaks=[(START + timedelta(days=20, hours=1), START + timedelta(days=20, hours=4),
                    4.0)])
        ponds = simulate_fish(
            PONDS, "dp3", sim_start, days, name="Tambak Manggar", outages=[POND_OUTAGE],
            changes=[ConfigChange(sim_start, 1, first),
                     ConfigChange(sampling_day + timedelta(minutes=5), 2, sampled)],
            cloudy_days=[5, 6, 17])
        assert store_history(store, park) > 2800
        assert store_history(store, ponds) > 2800
        tokens = {"viewer": make_token(store, "bappeda", "viewer"),
                  "admin": make_token(store, "diskominfo", "admin"),
                  "dlh": make_token(store, "op-dlh", "operator", "dlh"),
                  "dp3": make_token(store, "op-dp3", "operator", "dp3")}
        settings = parse_settings({"database": {"path": str(path)}, "mqtt": {"enabled": False}},
                                  environ={})
        with TestClient(create_app(settings, store=store)) as client:
            yield client, tokens, path


def report(month, opd, token="viewer", **params):
    client, tokens, _ = month
    r = client.get("/api/v1/reports/monthly", headers=auth(tokens[token]),
                   params={"opd": opd, "month": MONTH, **params})
    assert r.status_code == 200, r.text
    return r


def sql(month, query, *params):
    with sqlite3.connect(month[2]) as db:
        return db.execute(query, params).fetchall()


IN_MONTH = "device_id = ? AND type = ? AND ts >= ? AND ts < ?"
ON_PURPOSE = ("soil_wet", "rain", "rain_delay", "paused", "stopped", "stop_all",
              "daily_limit", "skip_next")  # ways a run ends early with nothing wrong


def test_reports_month_has_events_on_both_sides_of_its_edges(month):
    outside = sql(month, "SELECT count(*) FROM events WHERE type IN ('run_finished', "
                  "'feed_dispensed') AND (ts < ? OR ts >= ?)", LO, HI)[0][0]
    inside = sql(month, "SELECT count(*) FROM events WHERE type IN ('run_finished', "
                 "'feed_dispensed') AND ts >= ? AND ts < ?", LO, HI)[0][0]
    assert outside > 0 and inside > 100


def test_reports_month_water_per_zone_equals_sql_sums(month):
    w = report(month, "dlh").json()["watering"]
    rows = sql(month, f"""
        SELECT json_extract(details, '$.zone'), sum(json_extract(details, '$.litres')),
               sum(json_extract(details, '$.duration_s')) / 60.0,
               sum(json_extract(details, '$.ended') = 'completed'),
               sum(json_extract(details, '$.ended') IN {ON_PURPOSE})
        FROM events WHERE {IN_MONTH} GROUP BY 1""", PARK, "run_finished", LO, HI)
    assert len(rows) == 4
    site = next(s for s in w["sites"] if s["device_id"] == PARK)
    zones = {z["zone"]: z for z in site["zones"]}
    for zone, litres, minutes, done, stopped in rows:
        assert zones[zone]["water_l"] == pytest.approx(litres, abs=0.05)
        assert zones[zone]["water_min"] == pytest.approx(minutes, abs=0.05)
        assert (zones[zone]["done"], zones[zone]["stopped"]) == (done, stopped)
    total_l = sum(r[1] for r in rows)
    assert total_l > 1000
    assert site["water_l"] == w["totals"]["water_l"] == pytest.approx(total_l, abs=0.05)
    assert w["totals"]["done"] == sum(r[3] for r in rows)
    assert w["totals"]["units"] == 2
    idle = next(s for s in w["sites"] if s["device_id"] == IDLE)
    assert (idle["water_l"], idle["done"], idle["zones"]) == (0, 0, [])


def test_reports_month_runs_skipped_and_failed_with_reasons_equal_sql(month):
    w = report(month, "dlh").json()["watering"]
    skipped = dict(sql(month, f"""
        SELECT json_extract(details, '$.reason'),
               sum(CASE WHEN json_extract(details, '$.zone') IS NOT NULL THEN 1
                        ELSE json_array_length(details, '$.zones') END)
        FROM events WHERE {IN_MONTH} GROUP BY 1""", PARK, "run_skipped", LO, HI))
    ended = dict(sql(month, f"""
        SELECT json_extract(details, '$.ended'), count(*) FROM events
        WHERE {IN_MONTH} AND json_extract(details, '$.ended') != 'completed' GROUP BY 1""",
                     PARK, "run_finished", LO, HI))
    stopped = {k: n for k, n in ended.items() if k in ON_PURPOSE}
    failed = {k: n for k, n in ended.items() if k not in ON_PURPOSE}
    dropped = sql(month, f"SELECT count(*) FROM events WHERE {IN_MONTH} AND "
                  "json_extract(details, '$.action') = 'dropped'",
                  PARK, "run_interrupted", LO, HI)[0][0]
    if dropped:
        failed["interrupted"] = dropped
    assert skipped, "a month of the example park skips some runs (wet soil, rain)"
    assert stopped, "cycle-and-soak runs end early when the soil is wet already"
    assert w["skipped_reasons"] == skipped
    assert w["stopped_reasons"] == stopped
    assert w["failed_reasons"] == failed
    assert w["totals"]["stopped"] == sum(stopped.values())
    assert w["totals"]["skipped"] == sum(skipped.values())
    assert w["totals"]["failed"] == sum(failed.values())


def test_reports_month_feed_per_pond_and_postponements_equal_sql(month):
    f = report(month, "dp3").json()["fisheries"]
    feed = {pond: (grams, n) for pond, grams, n in sql(month, f"""
        SELECT json_extract(details, '$.pond'),
               sum(coalesce(json_extract(details, '$.measured_g'),
                            json_extract(details, '$.commanded_g'))), count(*)
        FROM events WHERE {IN_MONTH} GROUP BY 1""", PONDS, "feed_dispensed", LO, HI)}
    postponed = {(p, r): n for p, r, n in sql(month, f"""
        SELECT json_extract(details, '$.pond'), json_extract(details, '$.reason'), count(*)
        FROM events WHERE {IN_MONTH} GROUP BY 1, 2""", PONDS, "feeding_postponed", LO, HI)}
    skipped = {(p, r): n for p, r, n in sql(month, f"""
        SELECT json_extract(details, '$.pond'), json_extract(details, '$.reason'), count(*)
        FROM events WHERE {IN_MONTH} GROUP BY 1, 2""", PONDS, "feeding_skipped", LO, HI)}
    assert set(feed) == {"kolam-nila", "kolam-lele"}
    assert postponed, "cloudy days keep oxygen low: feedings wait for it"
    ponds = {p["pond"]: p for p in f["sites"][0]["ponds"]}
    for pond, (grams, n) in feed.items():
        assert ponds[pond]["feed_g"] == pytest.approx(grams, abs=0.05)
        assert ponds[pond]["feedings"] == n
        assert ponds[pond]["postponed_reasons"] == {
            r: c for (p, r), c in postponed.items() if p == pond}
        assert ponds[pond]["skipped_reasons"] == {
            r: c for (p, r), c in skipped.items() if p == pond}
    total_g = sum(g for g, _ in feed.values())
    assert f["totals"]["feed_g"] == pytest.approx(total_g, abs=0.05)
    assert f["totals"]["feed_kg"] == pytest.approx(total_g / 1000, abs=0.001)
    assert f["totals"]["postponed"] == sum(postponed.values())
    assert f["totals"]["feedings"] == sum(n for _, n in feed.values())


def test_reports_month_feed_conversion_inputs_from_the_plans(month):
    f = report(month, "dp3").json()["fisheries"]
    ponds = {p["pond"]: p for p in f["sites"][0]["ponds"]}
    nila = ponds["kolam-nila"]
    c = nila["conversion"]
    assert (c["fish_count_start"], c["avg_weight_g_start"]) == (3000, 80)
    assert (c["fish_count_end"], c["avg_weight_g_end"]) == (3000, 140)
    assert c["biomass_kg_start"] == 240.0 and c["biomass_kg_end"] == 420.0
    assert c["biomass_gain_kg"] == 180.0
    assert c["fcr"] == pytest.approx(nila["feed_g"] / 1000 / 180.0, abs=0.006)
    assert 0.8 < c["fcr"] < 2.5  # a plausible tilapia FCR
    assert nila["species"] == "nila"
    lele = ponds["kolam-lele"]["conversion"]  # fed fixed doses: no biomass known
    assert lele["fcr"] is None and lele["biomass_kg_start"] is None
    assert lele["feed_kg"] == pytest.approx(ponds["kolam-lele"]["feed_g"] / 1000, abs=0.001)


def test_reports_month_uptime_from_status_history(month):
    up = {u["device_id"]: u for u in report(month, "dlh").json()["uptime"]["units"]}
    hours = (END - START).total_seconds() / 3600
    outage_h = (PARK_OUTAGE.end - PARK_OUTAGE.start).total_seconds() / 3600
    park = up[PARK]
    assert park["covered_h"] == pytest.approx(hours, abs=0.01)
    assert park["online_h"] == pytest.approx(hours - outage_h, abs=0.01)
    assert park["uptime_pct"] == pytest.approx(100 * (hours - outage_h) / hours, abs=0.01)
    assert park["outages"] == 1
    # Independently from the stored changes: one offline and one online inside the month.
    changes = sql(month, "SELECT online FROM status_history WHERE device_id = ? AND at >= ? "
                  "AND at < ? ORDER BY at", PARK, LO, HI)
    assert [c[0] for c in changes] == [0, 1]
    assert up[IDLE]["uptime_pct"] is None and up[IDLE]["covered_h"] == 0
    ponds = report(month, "dp3").json()["uptime"]["units"][0]
    assert ponds["uptime_pct"] == pytest.approx(100 * (hours - 6) / hours, abs=0.01)


def test_reports_month_alarms_equal_sql(month):
    alarms = report(month, "dlh").json()["alarms"]
    rows = dict(sql(month, f"SELECT json_extract(details, '$.code'), count(*) FROM events "
                           f"WHERE {IN_MONTH} GROUP BY 1", PARK, "alarm", LO, HI))
    assert rows.get("leak") == 1  # the 3-hour leak on day 21
    assert alarms["by_code"] == rows
    assert alarms["total"] == sum(rows.values()) == len(alarms["items"])


def test_reports_month_title_pillars_and_period(month):
    r = report(month, "dlh").json()
    names = ["Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus",
             "September", "Oktober", "November", "Desember"]
    assert r["title"] == (f"Laporan Pelaksanaan Smart City — DLH — "
                          f"{names[START.month - 1]} {START.year}")
    assert r["pillars"] == ["Smart Environment"] and r["fisheries"] is None
    assert r["watering"]["pillar"] == "Smart Environment"
    assert r["addressed_to"] == ["Bappeda Kota Balikpapan", "Diskominfo Kota Balikpapan"]
    assert r["period"]["partial"] is False
    assert r["period"]["start"].startswith(LO) and r["period"]["until"].startswith(HI)
    dp3 = report(month, "dp3", lang="en").json()
    assert dp3["title"].startswith("Smart City Implementation Report — DP3 — ")
    assert dp3["pillars"] == ["Smart Economy"] and dp3["watering"] is None


def test_reports_month_csv_carries_the_same_figures(month):
    r = report(month, "dlh", format="csv")
    assert r.headers["content-type"].startswith("text/csv")
    assert f"laporan-smartcity-dlh-{MONTH}.csv" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    j = report(month, "dlh").json()
    total = next(x for x in rows if x["section"] == "watering" and x["metric"] == "water"
                 and not x["device_id"])
    assert float(total["value"]) == j["watering"]["totals"]["water_l"]
    assert total["pillar"] == "Smart Environment" and total["unit"] == "L"
    per_zone = [x for x in rows if x["section"] == "watering" and x["metric"] == "water"
                and x["subject"]]
    assert sum(float(x["value"]) for x in per_zone) == pytest.approx(
        j["watering"]["totals"]["water_l"], abs=0.3)
    title = next(x for x in rows if x["metric"] == "title")
    assert title["value"] == j["title"]
    uptime = next(x for x in rows if x["section"] == "uptime" and x["device_id"] == PARK
                  and x["metric"] == "uptime")
    park = next(u for u in j["uptime"]["units"] if u["device_id"] == PARK)
    assert float(uptime["value"]) == park["uptime_pct"]


def test_reports_operators_see_only_their_own_opd(month):
    client, tokens, _ = month
    url = "/api/v1/reports/monthly"
    assert report(month, "dlh", token="dlh").json()["opd"] == "dlh"
    assert client.get(url, params={"opd": "dp3", "month": MONTH},
                      headers=auth(tokens["dlh"])).status_code == 404
    assert report(month, "dp3", token="dp3").json()["opd"] == "dp3"
    assert report(month, "dlh", token="admin").status_code == 200
    assert client.get(url, params={"opd": "dlh", "month": MONTH}).status_code == 401
    assert client.get(url, params={"opd": "dishub", "month": MONTH},
                      headers=auth(tokens["admin"])).status_code == 404
    for bad in ("2026-13", "2026-1", "november", "0000-01", "9999-12"):
        assert client.get(url, params={"opd": "dlh", "month": bad},
                          headers=auth(tokens["admin"])).status_code == 422

