"""Checks before storing or sending, over HTTP (the broker's side: test_api_checks_broker).

Problems are in the caller's language (``Accept-Language``: id or en; id when absent);
before a unit has reported only the model checks apply; the schedule's ETag guards
against editing over someone else's change.
"""

from __future__ import annotations

from datetime import UTC, datetime

from controller_support import auth

from controller.store import Inbound
from protocol.models import Status, UnitLimits, ZoneLimits
from protocol.topics import Channel

SCHEDULE = "/api/v1/devices/taman-01/schedule"
COMMANDS = "/api/v1/devices/taman-01/commands"
GOOD = {"programs": [{"name": "pagi", "start_times": ["05:30"],
                      "zones": [{"zone": "zone1", "duration_min": 10}]}]}
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def report(store, **zones: ZoneLimits) -> None:
    store.commit_batch([Inbound("dlh", "taman-01", Channel.STATUS,
                                Status(online=True, fw="1", clock_synced=True, ts=T0,
                                       limits=UnitLimits(zones=zones)), T0)])


def test_api_checks_problems_in_the_callers_language(client, seeded):
    h = auth(seeded.op_dlh)
    bad = {"body": {"watering_pct": 300}}
    indonesian = client.put(SCHEDULE, headers=h, json=bad).json()["detail"]
    english = client.put(SCHEDULE, headers={**h, "Accept-Language": "en-GB,en;q=0.9"},
                         json=bad).json()["detail"]
    weighted = client.put(SCHEDULE, headers={**h, "Accept-Language": "en;q=0.3, id;q=0.8"},
                          json=bad).json()["detail"]
    assert indonesian == weighted == [{"loc": ["body", "body", "watering_pct"],
                                       "msg": "harus paling banyak 250",
                                       "type": "less_than_equal"}]
    assert english[0]["msg"] == "Input should be less than or equal to 250"


def test_api_checks_before_a_report_only_the_models_apply(client, seeded, store, transport):
    h = auth(seeded.op_dlh)
    r = client.post(COMMANDS, headers=h, json={"action": "run_zone",
                                               "params": {"zone": "zona-9", "duration_s": 60}})
    assert r.status_code == 202, r.text  # no report yet: the unit will answer
    report(store, zone1=ZoneLimits(max_on_s=600))
    r = client.post(COMMANDS, headers=h, json={"action": "run_zone",
                                               "params": {"zone": "zona-9", "duration_s": 60}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"] == "nama ini tidak ada di unit ini"
    assert len(transport.published) == 1


def test_api_checks_offline_status_keeps_the_last_report(client, seeded, store):
    report(store, zone1=ZoneLimits(max_on_s=600))
    store.commit_batch([Inbound("dlh", "taman-01", Channel.STATUS,
                                Status(online=False, fw="1", clock_synced=False, ts=T0), T0)])
    r = client.put(SCHEDULE, headers=auth(seeded.op_dlh), json={"body": {
        "programs": [{"name": "p", "start_times": ["05:30"],
                      "zones": [{"zone": "zona-9", "duration_min": 5}]}]}})
    assert r.status_code == 422


def test_api_checks_pause_longer_than_the_unit_takes_is_422(client, seeded, store):
    report(store, zone1=ZoneLimits(max_on_s=600))
    r = client.post(COMMANDS, headers={**auth(seeded.op_dlh), "Accept-Language": "en"},
                    json={"action": "pause", "params": {"until": "2099-01-01T00:00:00Z"}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "params"]


def test_api_checks_etag_and_if_match(client, seeded, store, transport):
    h = auth(seeded.op_dlh)
    etag0 = client.get(SCHEDULE, headers=h).headers["ETag"]
    assert etag0 == '"taman-01-v0"'
    r = client.put(SCHEDULE, headers={**h, "If-Match": etag0}, json={"body": GOOD})
    assert r.status_code == 200 and r.headers["ETag"] == '"taman-01-v1"'
    for stale in (etag0, '"taman-02-v1"', "rubbish"):
        r = client.put(SCHEDULE, headers={**h, "If-Match": stale},
                       json={"body": {"watering_pct": 50}})
        assert r.status_code == 412, (stale, r.text)
    assert [v["version"] for v in store.desired_config_versions("taman-01")] == [1]
    assert len(transport.published) == 1
    r = client.put(SCHEDULE, headers={**h, "If-Match": '"taman-01-v1"'},
                   json={"body": {"watering_pct": 50}})
    assert r.status_code == 200
    audit = client.get("/api/v1/audit", headers=auth(seeded.admin)).json()[0]
    assert audit["action"] == "schedule.update" and "unchecked" not in audit["after"]


def test_api_checks_dashboard_check_uses_the_same_rules(client, seeded, store):
    report(store, zone1=ZoneLimits(max_on_s=600))
    r = client.post("/api/v1/dashboard/units/taman-01/schedule/check",
                    headers={**auth(seeded.op_dlh), "Accept-Language": "en"},
                    json={"body": {"programs": [{"name": "p", "start_times": ["05:30"],
                                                 "zones": [{"zone": "zona-9",
                                                            "duration_min": 5}]}]}})
    assert r.status_code == 200
    assert r.json()["problems"] == [{"field": "programs.0.zones.0.zone",
                                     "reason": "no zone named 'zona-9'"}]
