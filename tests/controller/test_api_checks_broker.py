"""The controller checks before it stores or sends: against a real Mosquitto.

A unit reports its zones and limits in its retained status; a schedule or command it
would refuse answers 422 naming the field, and nothing is stored or published (a client
subscribed to every topic of the unit sees nothing arrive). One it takes is stored and
published, which shows the subscription would have seen the refused ones.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from controller_support import add_device, auth, broker_settings, make_token, wait_until
from fastapi.testclient import TestClient

from controller.api.main import create_app
from controller.store import Store
from protocol.codec import encode
from protocol.models import Status, UnitLimits, ZoneLimits
from protocol.topics import topic

UNIT_TOPICS = "smartcity/v1/dlh/taman-01/#"
LIMITS = UnitLimits(zones={"zona-1": ZoneLimits(max_on_s=1800, soil_probe=True),
                           "zona-2": ZoneLimits(max_on_s=1800)},
                    max_daily_water_min=240)
GOOD = {"programs": [{"name": "pagi", "start_times": ["05:30"],
                      "zones": [{"zone": "zona-1", "duration_min": 10}]}]}
SCHEDULE = "/api/v1/devices/taman-01/schedule"
COMMANDS = "/api/v1/devices/taman-01/commands"


@pytest.fixture
def reported(tmp_path, mosquitto, mqtt_client_factory):
    """A controller, a unit that reported its zones, and a listener on the unit's topics."""
    settings = broker_settings(tmp_path, mosquitto)
    with Store.open(settings.database.target) as store:
        add_device(store, "taman-01", "dlh")
        token = make_token(store, "admin", "admin")
        app = create_app(settings, store=store)
        with TestClient(app) as client:
            assert app.state.controller.ingest.wait_connected(10)
            client.headers.update(auth(token))
            unit = mqtt_client_factory(mosquitto, client_id="unit-dlh-taman-01")
            unit.publish(topic("dlh", "taman-01", "status"),
                         encode(Status(online=True, fw="1.0", clock_synced=True,
                                       ts=datetime.now(UTC), limits=LIMITS)), retain=True)
            wait_until(lambda: (store.get_device("taman-01") or {}).get("limits"),
                       what="the unit's limits stored")
            listener = mqtt_client_factory(mosquitto, client_id="listener")
            listener.subscribe(UNIT_TOPICS)
            listener.settle()  # the retained status
            listener.messages.clear()
            yield client, store, listener


def _fields(response) -> list[str]:
    return [".".join(str(p) for p in item["loc"]) for item in response.json()["detail"]]


@pytest.mark.parametrize(("body", "field"), [
    ({"zones": "x"}, "body.body.zones"),
    ({"programs": [{"name": "Pagi Hari", "start_times": ["05:30"],
                    "zones": [{"zone": "zona-1", "duration_min": 10}]}]},
     "body.body.programs.0.name"),
    ({"programs": [{"name": "pagi", "start_times": ["05:30"],
                    "zones": [{"zone": "zona-9", "duration_min": 10}]}]},
     "body.body.programs.0.zones.0.zone"),
    ({"zones": [{"zone": "zona-2", "moisture": {"skip_above_pct": 40}}]},
     "body.body.zones.0.moisture"),
])
def test_api_checks_bad_schedule_is_422_and_nothing_stored_or_published(reported, body,
                                                                        field):
    client, store, listener = reported
    r = client.put(SCHEDULE, json={"body": body})
    assert r.status_code == 422, r.text
    assert field in _fields(r)
    assert store.desired_config_versions("taman-01") == []
    assert client.get(SCHEDULE).json()["desired"] is None
    assert listener.settle(quiet=0.5) == []


def test_api_checks_run_zone_unknown_zone_is_422_and_nothing_sent(reported):
    client, store, listener = reported
    r = client.post(COMMANDS, json={"action": "run_zone",
                                    "params": {"zone": "zona-9", "duration_s": 60}},
                    headers={"Accept-Language": "en"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{"loc": ["body", "params", "zone"], "type": "unknown_name",
                                   "msg": "no zone named 'zona-9' on this unit"}]
    r = client.post(COMMANDS, json={"action": "feed_now",
                                    "params": {"feeder": "f1", "dose_g": 5}})
    assert r.status_code == 422 and _fields(r) == ["body.action"]
    assert client.get(COMMANDS).json() == []
    assert listener.settle(quiet=0.5) == []


def test_api_checks_stop_zone_unknown_zone_is_422_in_either_language(reported):
    client, store, listener = reported
    body = {"action": "stop_zone", "params": {"zone": "zona-9"}}
    r = client.post(COMMANDS, json=body, headers={"Accept-Language": "en"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{"loc": ["body", "params", "zone"], "type": "unknown_name",
                                   "msg": "no zone named 'zona-9' on this unit"}]
    r = client.post(COMMANDS, json=body)  # Indonesian unless asked otherwise
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["msg"] == "nama ini tidak ada di unit ini"
    assert client.get(COMMANDS).json() == []
    assert listener.settle(quiet=0.5) == []
    r = client.post(COMMANDS, json={"action": "stop_zone", "params": {"zone": "zona-2"}})
    assert r.status_code == 202, r.text
    (sent,) = listener.wait_for(lambda: listener.messages, what="the command")
    assert json.loads(sent.payload)["params"] == {"zone": "zona-2"}


def test_api_checks_good_schedule_and_command_are_stored_and_published(reported):
    client, store, listener = reported
    r = client.put(SCHEDULE, json={"body": GOOD})
    assert r.status_code == 200, r.text
    r = client.post(COMMANDS, json={"action": "run_zone",
                                    "params": {"zone": "zona-2", "duration_s": 60}})
    assert r.status_code == 202, r.text
    got = listener.wait_for(lambda: len(listener.messages) >= 2 and listener.messages,
                            what="the config and the command")
    assert {m.topic.rsplit("/", 1)[1] for m in got} == {"config", "cmd"}
    config = next(m for m in got if m.topic.endswith("/config"))
    assert json.loads(config.payload)["body"] == GOOD


def test_api_checks_stale_if_match_is_412_and_changes_nothing(reported):
    client, store, listener = reported
    first = client.get(SCHEDULE)
    etag = first.headers["ETag"]
    r = client.put(SCHEDULE, json={"body": GOOD}, headers={"If-Match": etag})
    assert r.status_code == 200 and r.headers["ETag"] != etag
    listener.wait_for(lambda: listener.messages, what="the first version")
    listener.messages.clear()
    changed = dict(GOOD, watering_pct=50)
    r = client.put(SCHEDULE, json={"body": changed}, headers={"If-Match": etag})  # stale
    assert r.status_code == 412, r.text
    assert [v["version"] for v in store.desired_config_versions("taman-01")] == [1]
    assert listener.settle(quiet=0.5) == []
