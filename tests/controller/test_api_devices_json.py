"""``GET /api/v1/devices`` is built as JSON by SQLite (``Store.list_devices_json``); the
single-device route goes through the pydantic models (``device_out`` -> ``DeviceOut``).
For devices in every state the dashboard shows, both must say the same, so the fast path
cannot drift from the declared response model."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from controller_support import T0, auth, telemetry
from pydantic import TypeAdapter

from controller.api.schemas import DeviceOut
from controller.api.views import device_out
from controller.store import Inbound
from protocol.models import Event, Status, offline_status
from protocol.topics import Channel

# Stored as text with microseconds; pydantic writes whole seconds without them. The same
# instant is the same answer; everything else must match to the JSON type.
TIMESTAMPS = ("created_at", "last_seen", "status_ts")
PROGRAM = {"watering_pct": 100, "programs": []}
PLAN = {"ponds": []}


def status(opd, device, at, **fields) -> Inbound:
    fields = {"online": True, "fw": "1.4.2", "clock_synced": True, "ts": at, **fields}
    return Inbound(opd, device, Channel.STATUS, Status(**fields), at)


def event(opd, device, seq, type, at, **details) -> Inbound:
    return Inbound(opd, device, Channel.EVENT, Event(seq=seq, ts=at, type=type,
                                                     details=details), at)


@pytest.fixture
def fleet(store, seeded):
    """Beside the seeded taman-01 (dlh) and tambak-01 (dp3), both never seen: a unit in
    each state the dashboard distinguishes."""
    def add(device, opd="dlh", kind="irrigation", name=None):
        store.add_device(device, opd, kind=kind, name=name or device, actor="test",
                         mqtt_password_hash="x", now=T0 - timedelta(days=3))

    # Online, config applied, outputs on and off, a backlog; seqs with a gap and a
    # duplicate; a name JSON has to escape.
    add("taman-online", name='Taman "Bekapai" \u2013 Utara\\1')
    store.create_desired_config("taman-online", PROGRAM, actor="test", now=T0)
    store.create_desired_config("taman-online", PROGRAM | {"watering_pct": 80}, actor="test",
                                now=T0)
    store.commit_batch([telemetry("taman-online", s) for s in (1, 2, 4)])
    store.commit_batch([telemetry("taman-online", 2)])
    store.commit_batch([status("dlh", "taman-online", T0 + timedelta(microseconds=250),
                               app="irrigation", config_version=2, backlog=3,
                               outputs={"valve-1": True, "valve-2": False},
                               update_window="22:00-05:00")])
    # Went offline (its Last Will), with a config it has not applied yet: pending.
    add("taman-offline")
    store.commit_batch([status("dlh", "taman-offline", T0, app="irrigation",
                               outputs={"valve-1": False}, update_window="00:00-24:00")])
    store.commit_batch([Inbound("dlh", "taman-offline", Channel.STATUS,
                                offline_status("1.4.2", T0, app="irrigation"),
                                T0 + timedelta(hours=1))])
    store.create_desired_config("taman-offline", PROGRAM, actor="test", now=T0)
    # Online, its latest config rejected (an older version's rejection does not count),
    # an alarm going on, clock not synced.
    add("taman-rejected")
    for _ in range(3):
        store.create_desired_config("taman-rejected", PROGRAM, actor="test", now=T0)
    store.commit_batch([
        event("dlh", "taman-rejected", 1, "config_rejected", T0, version=2, errors=["x"]),
        event("dlh", "taman-rejected", 2, "config_rejected", T0, version=3, errors=["y"]),
        event("dlh", "taman-rejected", 3, "alarm", T0, kind="no_flow", output="valve-1"),
        status("dlh", "taman-rejected", T0 + timedelta(seconds=5), clock_synced=False,
               config_version=1, app="irrigation")])
    # Pending because a rejection names an older version only.
    add("taman-pending")
    store.create_desired_config("taman-pending", PROGRAM, actor="test", now=T0)
    store.create_desired_config("taman-pending", PROGRAM, actor="test", now=T0)
    store.commit_batch([
        event("dlh", "taman-pending", 1, "config_rejected", T0, version=1, errors=["z"]),
        status("dlh", "taman-pending", T0, config_version=None)])
    # Never seen but already given a config.
    add("taman-new")
    store.create_desired_config("taman-new", PROGRAM, actor="test", now=T0)
    # A fish feeder: its plan applied, an alarm, seqs its outbox dropped and announced.
    add("tambak-ponds", "dp3", "fish_feeder", "Tambak Manggar")
    store.create_desired_config("tambak-ponds", PLAN, actor="test", now=T0)
    store.commit_batch([
        telemetry("tambak-ponds", 1, opd="dp3"),
        event("dp3", "tambak-ponds", 9, "outbox_dropped", T0, seqs=[2],
              ranges=[{"from": 4, "to": 8}], reason="outbox full"),
        event("dp3", "tambak-ponds", 10, "alarm", T0, kind="low_do", pond="kolam-nila"),
        status("dp3", "tambak-ponds", T0, app="fish_feeder", config_version=1, dropped=6,
               outputs={"auger-nila": False})])
    # Registered, but the state tables hold no row for it (their LEFT JOINs come back
    # NULL).
    add("taman-bare")
    store.db.execute("DELETE FROM device_state WHERE device_id = 'taman-bare'")
    store.db.execute("DELETE FROM device_seq WHERE device_id = 'taman-bare'")
    store.db.conn.commit()
    return seeded


def canonical(doc: dict) -> str:
    doc = dict(doc)
    for key in TIMESTAMPS:
        if doc[key] is not None:
            at = datetime.fromisoformat(doc[key])
            assert at.utcoffset() == timedelta(0), f"{key} {doc[key]!r} is not UTC"
            doc[key] = at.astimezone(UTC).isoformat()
    return json.dumps(doc, sort_keys=True)  # keeps true apart from 1, 1 apart from 1.0


def by_models(store, **filters) -> list[dict]:
    return [device_out(store, row).model_dump(mode="json")
            for row in store.list_devices(**filters)]


@pytest.mark.parametrize("query, filters", [
    ("", {}),
    ("?online=true", {"online": True}),
    ("?online=false", {"online": False}),
    ("?opd=dp3", {"opd": "dp3"}),
])
def test_device_list_json_is_what_the_response_model_gives(client, store, fleet, query,
                                                           filters):
    response = client.get(f"/api/v1/devices{query}", headers=auth(fleet.admin))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    fast = response.json()
    slow = by_models(store, **filters)
    assert [d["device_id"] for d in fast] == [d["device_id"] for d in slow]
    assert [canonical(d) for d in fast] == [canonical(d) for d in slow]
    # The body is a valid list[DeviceOut] even read strictly (no coercion).
    TypeAdapter(list[DeviceOut]).validate_json(response.content, strict=True)


def test_the_fleet_covers_the_states_the_dashboard_shows(client, store, fleet):
    """The comparison above is only as good as the states it sees: every config state,
    on- and offline, both kinds, seq accounting, outputs on, a clock not synced, a
    maintenance window or none."""
    devices = {d["device_id"]: d for d in
               client.get("/api/v1/devices", headers=auth(fleet.admin)).json()}
    assert {d["config_state"] for d in devices.values()} == {"none", "in_sync", "pending",
                                                            "rejected"}
    assert {d["kind"] for d in devices.values()} == {"irrigation", "fish_feeder"}
    assert {d["online"] for d in devices.values()} == {True, False}
    assert {d["clock_synced"] for d in devices.values()} == {True, False, None}
    online = devices["taman-online"]
    assert online["outputs"] == {"valve-1": True, "valve-2": False}
    assert online["seq"] | {"acked": None} == {"acked": None, "max_seen": 4, "missing": 1,
                                               "gaps_opened": 1, "duplicates": 1,
                                               "dropped_announced": 0}
    assert online["name"] == 'Taman "Bekapai" \u2013 Utara\\1'
    assert devices["tambak-ponds"]["seq"]["dropped_announced"] == 6
    assert devices["taman-offline"]["outputs"] == {} and devices["taman-offline"]["last_seen"]
    assert devices["taman-new"]["config_state"] == "pending"
    assert devices["taman-pending"]["config_state"] == "pending"
    assert devices["taman-rejected"]["config_state"] == "rejected"
    assert devices["taman-bare"]["seq"]["max_seen"] == 0
    # a window reported, one kept through the Last Will, none reported
    assert [devices[d]["update_window"] for d in ("taman-online", "taman-offline",
                                                   "taman-rejected")] == [
        "22:00-05:00", "00:00-24:00", None]
