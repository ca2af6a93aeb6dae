"""The dashboard's API views and static files, without a browser.

Messages are stored the way the ingest stores them (``Store.commit_batch`` of decoded
protocol messages); times are fixed, so every answer is known in advance.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from controller_support import auth

from controller.dashboard.views import (
    active_alarms,
    activity,
    charts,
    check_schedule,
    unit_view,
)
from controller.store import Inbound
from protocol.models import Event, FeederLimits, Status, Telemetry, UnitLimits, ZoneLimits
from protocol.outlook import NextStart, NextStartReason, Outlook
from protocol.topics import Channel

WITA = ZoneInfo("Asia/Makassar")
NOON = datetime(2026, 11, 22, 12, 0, tzinfo=WITA)
PROGRAM = {"watering_pct": 100, "rain_delay_h": 12, "programs": [
    {"name": "pagi", "start_times": ["05:30"], "zones": [{"zone": "rumput", "duration_min": 10}]},
    {"name": "sore", "start_times": ["sunset+00:30"], "weekdays": ["mon"],
     "zones": [{"zone": "bunga", "duration_min": 5}]}]}
PLAN = {"ponds": {"kolam-nila": {"plan": {"times": ["07:00", "11:00", "16:00"],
                                          "doses_g": [900, 800, 1000]}}}}


class Unit:
    """Feeds one device's messages into the store through ``commit_batch``."""

    def __init__(self, store, device_id, opd, app):
        self.store, self.device_id, self.opd, self.app = store, device_id, opd, app
        self.seq = 0

    def _commit(self, channel, message, at):
        result = self.store.commit_batch([Inbound(self.opd, self.device_id, channel, message,
                                                  at.astimezone(UTC))])
        assert not result.rejected, result.rejected

    def event(self, at, type, **details):
        self.seq += 1
        self._commit(Channel.EVENT, Event(seq=self.seq, ts=at, type=type, details=details), at)

    def telemetry(self, at, readings, outputs=None):
        self.seq += 1
        self._commit(Channel.TELEMETRY, Telemetry(seq=self.seq, ts=at, readings=readings,
                                                  outputs=outputs or {}), at)

    def status(self, at, online=True, config_version=None, outputs=None, limits=None,
               outlook=None):
        self._commit(Channel.STATUS, Status(online=online, fw="1", ts=at, clock_synced=True,
                                            app=self.app, config_version=config_version,
                                            outputs=outputs or {}, limits=limits,
                                            outlook=outlook), at)


@pytest.fixture
def park(store, seeded):
    unit = Unit(store, "taman-01", "dlh", "irrigation")
    unit.status(NOON - timedelta(days=2), limits=UnitLimits(zones={
        "rumput": ZoneLimits(max_on_s=1800, soil_probe=True),
        "bunga": ZoneLimits(max_on_s=1800)}))
    unit.telemetry(NOON - timedelta(minutes=5), {
        "moisture_pct.rumput": 31.5, "moisture_stale.rumput": False,
        "water_l_today.rumput": 120.0, "water_l_today.bunga": 0.0, "water_l_today": 120.0,
        "paused": False, "rain_delay_h": 0.0})
    return unit


@pytest.fixture
def ponds(store, seeded):
    unit = Unit(store, "tambak-01", "dp3", "fish_feeder")
    unit.status(NOON - timedelta(days=2), limits=UnitLimits(
        feeders={"pakan-nila": FeederLimits(pond="kolam-nila", max_dose_g=2000,
                                            max_daily_g=6000)}, ponds=["kolam-nila"]))
    unit.telemetry(NOON - timedelta(minutes=5), {
        "do_mg_l.kolam-nila": 5.2, "temp_c.kolam-nila": 29.1, "feed_g_today.kolam-nila": 900.0,
        "feed_g_today.pakan-nila": 900.0, "feeder_locked.pakan-nila": False})
    return unit


def device(store, device_id):
    return store.get_device(device_id)


# --------------------------------------------------------------------------- next start

def test_dashboard_next_start_comes_from_the_version_the_unit_applied(store, park):
    assert unit_view(store, device(store, "taman-01"), NOON)["next"] == {
        "known": False, "reason": "local_schedule", "version": None}
    store.create_desired_config("taman-01", PROGRAM, actor="test")
    pending = unit_view(store, device(store, "taman-01"), NOON)
    assert pending["next"]["known"] is False and pending["config"]["state"] == "pending"
    park.status(NOON, config_version=1)
    view = unit_view(store, device(store, "taman-01"), NOON)
    assert view["config"] == {"desired": 1, "reported": 1, "state": "in_sync"}
    nxt = view["next"]
    assert nxt["known"] and nxt["version"] == 1 and nxt["program"] == "pagi"
    assert nxt["at"] == datetime(2026, 11, 23, 5, 30, tzinfo=WITA)
    assert nxt["zones"] == [{"zone": "rumput", "duration_min": 10}]
    # A newer version not applied yet does not move the next start.
    later = {**PROGRAM, "programs": [{**PROGRAM["programs"][0], "start_times": ["04:00"]}]}
    store.create_desired_config("taman-01", later, actor="test")
    assert unit_view(store, device(store, "taman-01"), NOON)["next"]["at"] == nxt["at"]


def test_dashboard_next_start_sunset_on_a_weekday_uses_the_units_planner(store, park):
    store.create_desired_config("taman-01", {**PROGRAM, "programs": [PROGRAM["programs"][1]]},
                                actor="test")
    park.status(NOON, config_version=1)
    nxt = unit_view(store, device(store, "taman-01"), NOON)["next"]  # a Sunday noon
    local = nxt["at"].astimezone(WITA)
    assert local.date().isoformat() == "2026-11-23" and local.weekday() == 0
    assert 18 <= local.hour <= 19  # Balikpapan's sunset (~18:10) plus 30 minutes


def test_dashboard_next_feeding_from_the_plan_times(store, ponds):
    store.create_desired_config("tambak-01", PLAN, actor="test")
    ponds.status(NOON, config_version=1)
    at_ten = NOON.replace(hour=10)
    nxt = unit_view(store, device(store, "tambak-01"), at_ten)["next"]
    assert (nxt["at"], nxt["pond"], nxt["dose_g"]) == (NOON.replace(hour=11), "kolam-nila", 800)
    evening = unit_view(store, device(store, "tambak-01"), NOON.replace(hour=17))["next"]
    assert evening["at"] == datetime(2026, 11, 23, 7, 0, tzinfo=WITA)


def test_dashboard_next_start_and_holds_are_the_units_outlook(store, park):
    store.create_desired_config("taman-01", PROGRAM, actor="test")
    until = NOON + timedelta(hours=24)
    # Paused: no next start, though the applied schedule has one; the telemetry (paused
    # False, 5 minutes old) does not count against the unit's newer word.
    park.status(NOON, config_version=1, outlook=Outlook(
        paused_until=until, next_start_reason=NextStartReason.PAUSED))
    view = unit_view(store, device(store, "taman-01"), NOON)
    assert view["next"] == {"known": False, "source": "unit", "reason": "paused",
                            "version": 1}
    assert view["paused"] and view["paused_until"] == until
    assert view["rain_delay_until"] is None and view["rain_delay_h"] == 0.0
    # A rain delay and a skip: the next start the unit gives, with the program's zones.
    at = NOON + timedelta(days=1, hours=-6, minutes=-30)
    park.status(NOON, config_version=1, outlook=Outlook(
        rain_delay_until=NOON + timedelta(hours=12), skip_next=["bunga"],
        next_start=NextStart(at=at, program="pagi", start="05:30")))
    view = unit_view(store, device(store, "taman-01"), NOON)
    assert view["next"] == {"known": True, "source": "unit", "version": 1, "at": at,
                            "program": "pagi", "pond": None, "start": "05:30",
                            "zones": [{"zone": "rumput", "duration_min": 10}]}
    assert not view["paused"] and view["rain_delay_h"] == 12.0
    assert view["skip_next"] == ["bunga"]
    # Once the reported start has passed (the unit went quiet), it is computed again.
    later = unit_view(store, device(store, "taman-01"), at + timedelta(minutes=1))
    assert later["next"]["known"] and "source" not in later["next"]
    assert later["next"]["program"] == "sore"  # Monday's sunset start, by the planner


def test_dashboard_activity_says_what_decided_a_skip(store, park):
    body = {**PROGRAM, "zones": [{"zone": "rumput", "moisture": {"skip_above_pct": 30}}]}
    store.create_desired_config("taman-01", body, actor="test")
    park.status(NOON, config_version=1)
    park.event(NOON - timedelta(hours=2), "run_skipped", run_id="r9", zone="rumput",
               reason="soil_wet", moisture_pct=34.2)
    park.event(NOON - timedelta(hours=1), "limit_clamped", field="duration_s", asked=3600,
               allowed=2700, limit="max_on_s", zone="bunga")
    park.telemetry(NOON, {"x": 1.0})  # telemetry is not activity
    items = activity(store, device(store, "taman-01"), now=NOON)
    assert [i["type"] for i in items] == ["limit_clamped", "run_skipped"]  # newest first
    assert items[1]["details"] == {"run_id": "r9", "zone": "rumput", "reason": "soil_wet",
                                   "moisture_pct": 34.2, "skip_above_pct": 30}


# --------------------------------------------------------------------------- running, alarms

def test_dashboard_running_runs_follow_the_events(store, park):
    t0 = NOON - timedelta(minutes=30)
    park.event(t0, "run_started", run_id="r1", zone="rumput", trigger="manual",
               cmd_id="c-1", planned_s=600)
    park.event(t0, "run_started", run_id="r2", zone="bunga", trigger="schedule")
    view = unit_view(store, device(store, "taman-01"), NOON)
    assert [r["zone"] for r in view["running"]] == ["rumput", "bunga"]
    assert view["running"][0]["planned_s"] == 600  # the page shows the time left
    assert view["state"] == "running"
    park.event(t0 + timedelta(minutes=5), "run_finished", run_id="r1", zone="rumput",
               ended="stop_all", litres=100.0, duration_s=300, cmd_id="c-1")
    park.event(t0 + timedelta(minutes=6), "run_interrupted", run_id="r2", zone="bunga",
               action="resumed")
    view = unit_view(store, device(store, "taman-01"), NOON)
    assert [r["zone"] for r in view["running"]] == ["bunga"]
    assert view["runs_ended"] == {"c-1": "stop_all"}  # the page: "Dihentikan", not failed
    park.event(t0 + timedelta(minutes=9), "run_finished", run_id="r2", zone="bunga",
               ended="soil_wet", litres=10.0, duration_s=60)
    view = unit_view(store, device(store, "taman-01"), NOON)
    assert view["running"] == [] and view["state"] == "online"
    park.event(NOON, "run_started", run_id="r3", zone="rumput")
    park.status(NOON, online=False)
    view = unit_view(store, device(store, "taman-01"), NOON)
    assert view["state"] == "offline" and view["running"] == []  # unknown, not claimed


def test_dashboard_alarms_stay_until_cleared(store, park, ponds):
    park.event(NOON - timedelta(hours=30), "alarm", code="no_flow", message="old")
    park.event(NOON - timedelta(hours=3), "alarm", code="leak", message="leak")
    park.event(NOON - timedelta(hours=2), "alarm", code="sensor_stale", zone="rumput",
               message="probe")
    view = unit_view(store, device(store, "taman-01"), NOON)
    assert [(a["code"], a["severity"], a["message"]) for a in view["alarms"]] == [
        ("sensor_stale", "warning", "probe"), ("leak", "critical", "leak"),
        ("no_flow", "critical", "old")]  # latched: a day later it is still there
    assert view["state"] == "alarm"
    park.event(NOON - timedelta(hours=1), "alarm_cleared", code="leak", message="leak cleared")
    park.event(NOON - timedelta(hours=1), "alarm", code="sensor_recovered", zone="rumput",
               message="reads again")
    assert [a["code"] for a in active_alarms(store, "taman-01", NOON)] == ["no_flow"]
    ponds.event(NOON - timedelta(hours=1), "alarm", code="feeder_jam", feeder="pakan-nila",
                message="jam")
    ponds.event(NOON, "alarm_cleared", code="feeder_jam", feeder="pakan-lele")
    assert [(a["code"], a["subject"]) for a in active_alarms(store, "tambak-01", NOON)] == [
        ("feeder_jam", "pakan-nila")]


def test_dashboard_unit_lists_zones_feeders_ponds_and_today(store, park, ponds):
    p = unit_view(store, device(store, "taman-01"), NOON)
    assert (p["zones"], p["probed_zones"], p["today"]) == (["bunga", "rumput"], ["rumput"],
                                                          {"water_l": 120.0})
    f = unit_view(store, device(store, "tambak-01"), NOON)
    assert (f["feeders"], f["ponds"], f["today"]) == (["pakan-nila"], ["kolam-nila"],
                                                     {"feed_g": 900.0})


# --------------------------------------------------------------------------- charts

def test_dashboard_charts_average_lines_and_sum_bars_per_wita_day(store, park):
    day0 = NOON.replace(hour=0) - timedelta(days=2)
    for hour, value in ((1, 20.0), (1.5, 24.0), (30, 30.0)):
        park.telemetry(day0 + timedelta(hours=hour), {"moisture_pct.rumput": value})
    # Litres of runs that ended: 23:30 and 00:30 WITA fall on two different days.
    park.event(day0 + timedelta(hours=23, minutes=30), "run_finished", run_id="a",
               zone="rumput", ended="completed", litres=100.0, duration_s=600)
    park.event(day0 + timedelta(hours=24, minutes=30), "run_finished", run_id="b",
               zone="rumput", ended="rain", litres=40.0, duration_s=200)
    park.event(day0 + timedelta(hours=25), "run_finished", run_id="c", zone="bunga",
               ended="completed", litres=2.5, duration_s=60)
    out = charts(store, device(store, "taman-01"), "week", NOON)
    assert out["bucket_s"] == 7200 and out["bars_per"] == "day"
    moisture = next(c for c in out["charts"] if c["key"] == "moisture_pct")
    rumput = next(s for s in moisture["series"] if s["name"] == "rumput")["points"]
    two_hours = [(at.astimezone(WITA), v) for at, v in rumput]
    assert two_hours[0] == (day0.replace(hour=0), 22.0)  # 20 and 24 in one 2-hour bucket
    assert (day0 + timedelta(hours=30), 30.0) in two_hours
    assert two_hours[-1][1] == 31.5  # the park fixture's latest sample
    water = next(c for c in out["charts"] if c["key"] == "water_l")
    per_day = {at.astimezone(WITA).date().isoformat(): v for at, v in water["points"]}
    assert len(per_day) == 8  # seven days back to today, every day shown
    assert per_day["2026-11-20"] == 100.0 and per_day["2026-11-21"] == 42.5
    assert sum(per_day.values()) == 142.5


def test_dashboard_charts_feed_bars_in_kg(store, ponds):
    at = NOON - timedelta(hours=2)
    ponds.event(at, "feed_dispensed", pond="kolam-nila", feeder="pakan-nila",
                measured_g=850.0, commanded_g=900.0)
    ponds.event(at, "feed_dispensed", pond="kolam-nila", feeder="pakan-nila",
                measured_g=None, commanded_g=500.0)
    out = charts(store, device(store, "tambak-01"), "day", NOON)
    assert [c["key"] for c in out["charts"]] == ["do_mg_l", "temp_c", "feed_kg"]
    feed = out["charts"][-1]
    assert out["bars_per"] == "hour" and len(feed["points"]) in (24, 25)
    assert sum(v for _, v in feed["points"]) == pytest.approx(1.35)


# --------------------------------------------------------------------------- schedules

def test_dashboard_schedule_check_names_field_and_reason(store, park):
    dev = device(store, "taman-01")
    bad = {**PROGRAM, "programs": [{**PROGRAM["programs"][0], "start_times": ["25:00"]}]}
    result = check_schedule(store, dev, bad, NOON)
    assert not result["ok"]
    assert result["problems"][0]["field"].startswith("programs.0.start_times")
    unknown = {**PROGRAM, "programs": [{**PROGRAM["programs"][0],
                                        "zones": [{"zone": "kolam", "duration_min": 5}]}]}
    assert check_schedule(store, dev, unknown, NOON)["problems"] == [
        {"field": "programs.0.zones.0.zone", "reason": "no zone named 'kolam'"}]
    no_probe = {**PROGRAM, "zones": [{"zone": "bunga", "moisture": {"skip_above_pct": 30}}]}
    assert "soil_sensor" in check_schedule(store, dev, no_probe, NOON)["problems"][0]["reason"]
    good = check_schedule(store, dev, PROGRAM, NOON)
    assert good["ok"] and good["next"]["at"] == datetime(2026, 11, 23, 5, 30, tzinfo=WITA)


def test_dashboard_schedule_check_api_for_feeders(client, seeded, ponds):
    url = "/api/v1/dashboard/units/tambak-01/schedule/check"
    unknown = {"body": {"ponds": {"kolam-lele": {"plan": {"times": ["07:00"],
                                                          "doses_g": [100]}}}}}
    r = client.post(url, headers={**auth(seeded.op_dp3), "Accept-Language": "en"}, json=unknown)
    assert r.status_code == 200 and r.json()["problems"] == [
        {"field": "ponds.kolam-lele", "reason": "no pond named 'kolam-lele' on this unit"}]
    r = client.post(url, headers=auth(seeded.op_dp3), json=unknown)  # Indonesian by default
    assert r.json()["problems"][0]["reason"] == "nama ini tidak ada di unit ini"
    r = client.post(url, headers=auth(seeded.op_dp3), json={"body": {"ponds": {
        "kolam-nila": {"plan": {"times": ["11:00", "07:00"], "doses_g": [100, 100]}}}}})
    assert not r.json()["ok"] and "order" in r.json()["problems"][0]["reason"]
    r = client.post(url, headers=auth(seeded.op_dp3), json={"body": PLAN})
    assert r.json()["ok"] and r.json()["next"]["pond"] == "kolam-nila"
    assert store_versions(client, seeded, "tambak-01") == []  # checking stores nothing
    assert client.post(url, headers=auth(seeded.op_dlh), json={"body": PLAN}).status_code == 404
    assert client.post(url, headers=auth(seeded.viewer), json={"body": PLAN}).status_code == 403


def store_versions(client, seeded, device_id):
    return client.get(f"/api/v1/devices/{device_id}/schedule/versions",
                      headers=auth(seeded.admin)).json()


# --------------------------------------------------------------------------- API, files

def test_dashboard_units_api_scoped_by_role(client, seeded, park, ponds):
    def ids(token):
        r = client.get("/api/v1/dashboard/units", headers=auth(token))
        assert r.status_code == 200
        return [u["device_id"] for u in r.json()["units"]]

    assert ids(seeded.op_dlh) == ["taman-01"]
    assert ids(seeded.op_dp3) == ["tambak-01"]
    assert ids(seeded.viewer) == ids(seeded.admin) == ["taman-01", "tambak-01"]
    assert client.get("/api/v1/dashboard/units").status_code == 401
    assert client.get("/api/v1/dashboard/units/tambak-01",
                      headers=auth(seeded.op_dlh)).status_code == 404
    assert client.get("/api/v1/dashboard/units/taman-01/charts?period=year",
                      headers=auth(seeded.op_dlh)).status_code == 422


def test_dashboard_static_files_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/app.js" type="module">' in page.text
    from controller.dashboard import STATIC_DIR

    modules = sorted(p.name for p in STATIC_DIR.glob("*.js"))
    assert {"app.js", "api.js", "format.js", "units.js", "unit.js", "schedule.js",
            "commands.js", "reports.js", "admin.js", "updates.js", "i18n.js",
            "chart.js"} <= set(modules)
    for name in [*modules, "style.css"]:
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), name
        assert r.headers["cache-control"] == "no-cache" and r.headers["etag"], name
        # asked again with its ETag: 304, no body
        again = client.get(f"/static/{name}", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b"", name
        assert again.headers["etag"] == r.headers["etag"]
        assert client.get(f"/static/{name}",
                          headers={"If-None-Match": '"0-0"'}).status_code == 200, name
    # every module the page imports is one the controller serves
    for name in modules:
        for imported in re.findall(r'from "\./([^"]+)"', (STATIC_DIR / name).read_text()):
            assert imported in modules, (name, imported)
    for bad in ("views.py", "__init__.py", "..%2Fstore.py", "missing.js", "APP.JS"):
        assert client.get(f"/static/{bad}").status_code == 404, bad


def test_dashboard_words_exist_in_both_languages():
    import json
    import re

    from controller.dashboard import STATIC_DIR

    text = (STATIC_DIR / "i18n.js").read_text()
    blocks = dict(re.findall(r"\n  (id|en): \{(.*?)\n  \},", text, re.S))
    keys = {lang: set(re.findall(r'"([a-z_]+\.[a-z0-9_.]+)":', body))
            for lang, body in blocks.items()}
    assert keys["id"] == keys["en"] and len(keys["id"]) > 150
    code = "".join(p.read_text() for p in STATIC_DIR.glob("*.js")
                   if p.name not in ("i18n.js", "chart.js"))
    used = set(re.findall(r'\bt\("([a-z_]+\.[a-z0-9_.]*)"', code))
    fixed = {k for k in used if not k.endswith(".")}
    assert fixed <= keys["id"], sorted(fixed - keys["id"])
    for prefix in used - fixed:  # t("state." + state): some words under that prefix
        assert any(k.startswith(prefix) for k in keys["id"]), prefix
    assert json.dumps(sorted(keys["id"]))  # plain keys only


def test_dashboard_has_words_for_every_code_the_protocol_sends():
    """Units and controller send codes, the page makes the sentences: every reply code,
    alarm code and next-start reason of the protocol has its words in both languages."""
    import re

    from controller.dashboard import STATIC_DIR
    from protocol.events import AlarmCode
    from protocol.outlook import NextStartReason
    from protocol.replies import ReplyCode

    text = (STATIC_DIR / "i18n.js").read_text()
    blocks = dict(re.findall(r"\n  (id|en): \{(.*?)\n  \},", text, re.S))
    from controller.store.releases import ROLLOUT_STATES, UNIT_STATES

    wanted = ({f"reply.{c.value}" for c in ReplyCode} | {f"alarm.{c.value}" for c in AlarmCode}
              | {f"unit.next.{r.value}" for r in NextStartReason}
              | {f"rollout.state.{s}" for s in ROLLOUT_STATES}
              | {f"rollout.unit.{s}" for s in UNIT_STATES}
              | {f"rollout.reason.{r}" for r in ("failure_threshold", "stopped_by_admin")}
              | {f"rollout.result.{r}" for r in ("applied", "current", "update_failed",
                                                  "update_not_trusted", "update_busy",
                                                  "expired", "timeout")})
    for lang, body in blocks.items():
        keys = set(re.findall(r'"([a-z_]+\.[a-z0-9_.]+)":', body))
        assert wanted <= keys, (lang, sorted(wanted - keys))
