"""HTTP API without a broker: devices, history paging, schedules, commands, tokens, metrics."""

from __future__ import annotations

import json

from controller_support import T0, auth, telemetry

from controller.store import MIGRATIONS, Inbound
from protocol.codec import decode
from protocol.models import Command, CommandReply, DesiredConfig, Event, Status
from protocol.topics import Channel


def test_api_devices_list_state_and_scope(client, seeded, store):
    store.commit_batch([Inbound("dlh", "taman-01", Channel.STATUS,
                                Status(online=True, fw="1.2.0", clock_synced=True, ts=T0,
                                       outputs={"zone1": False}), T0)])
    admin = client.get("/api/v1/devices", headers=auth(seeded.admin)).json()
    assert [d["device_id"] for d in admin] == ["taman-01", "tambak-01"]
    assert admin[0]["online"] is True and admin[0]["fw"] == "1.2.0"
    assert admin[1]["online"] is False and admin[1]["config_state"] == "none"
    op = client.get("/api/v1/devices", headers=auth(seeded.op_dp3)).json()
    assert [d["device_id"] for d in op] == ["tambak-01"]
    assert client.get("/api/v1/devices?opd=dlh", headers=auth(seeded.op_dp3)).json() == []
    online = client.get("/api/v1/devices?online=true", headers=auth(seeded.viewer)).json()
    assert [d["device_id"] for d in online] == ["taman-01"]


def test_api_history_pages_by_seq(client, seeded, store):
    store.commit_batch([telemetry("taman-01", s) for s in range(1, 6)])
    store.commit_batch([Inbound("dlh", "taman-01", Channel.EVENT,
                                Event(seq=6, ts=T0, type="alarm", details={"code": "no_flow"}),
                                T0)])
    h = auth(seeded.op_dlh)
    page = client.get("/api/v1/devices/taman-01/telemetry?limit=2", headers=h).json()
    assert [i["seq"] for i in page["items"]] == [1, 2] and page["next_after_seq"] == 2
    seqs = []
    after = 0
    while after is not None:
        page = client.get(f"/api/v1/devices/taman-01/telemetry?limit=2&after_seq={after}",
                          headers=h).json()
        seqs += [i["seq"] for i in page["items"]]
        after = page["next_after_seq"]
    assert seqs == [1, 2, 3, 4, 5]
    assert page["items"][-1]["readings"] == {"moisture_pct.zone1": 35.0}
    assert client.get("/api/v1/devices/taman-01/telemetry?since=2025-03-15T00:00:00Z",
                      headers=h).json()["items"] == []
    events = client.get("/api/v1/devices/taman-01/events?type=alarm", headers=h).json()
    assert events["items"][0]["details"] == {"code": "no_flow"}
    assert client.get("/api/v1/devices/taman-01/telemetry?since=yesterday",
                      headers=h).status_code == 422
    assert client.get("/api/v1/devices/taman-01/telemetry?since=0001-01-01T00:00:00%2B05:00",
                      headers=h).status_code == 422


def test_api_command_validated_stored_published_then_replied(client, seeded, store, transport):
    h = auth(seeded.op_dlh)
    bad = client.post("/api/v1/devices/taman-01/commands", headers=h,
                      json={"action": "run_zone", "params": {"zone": "zone1"}})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][-2:] == ["params", "duration_s"]
    past = client.post("/api/v1/devices/taman-01/commands", headers=h, json={
        "action": "pause", "params": {"until": "2020-01-01T00:00:00Z"}})
    assert past.status_code == 422 and "later than issued_at" in past.text
    assert client.post("/api/v1/devices/taman-01/commands", headers=h,
                       json={"action": "explode"}).status_code == 422
    assert transport.published == []

    r = client.post("/api/v1/devices/taman-01/commands", headers=h,
                    json={"action": "run_zone", "params": {"zone": "zone1", "duration_s": 120},
                          "ttl_s": 60})
    assert r.status_code == 202, r.text
    cmd = r.json()
    assert cmd["status"] == "sent"  # the memory transport 'took' it at once
    sent = transport.published[-1]
    assert sent.topic == "smartcity/v1/dlh/taman-01/cmd" and sent.qos == 1 and not sent.retain
    wire = decode(Command, sent.payload)
    assert wire.id == cmd["id"] and wire.params.duration_s == 120
    store.commit_batch([Inbound("dlh", "taman-01", Channel.CMD_REPLY,
                                CommandReply(id=cmd["id"], status="accepted", ts=T0), T0)])
    got = client.get(f"/api/v1/commands/{cmd['id']}", headers=auth(seeded.viewer)).json()
    assert got["status"] == "accepted" and got["replies"][0]["status"] == "accepted"
    listed = client.get("/api/v1/devices/taman-01/commands", headers=h).json()
    assert [c["id"] for c in listed] == [cmd["id"]]
    audit = client.get("/api/v1/audit", headers=auth(seeded.admin)).json()
    assert audit[0]["action"] == "command.create" and audit[0]["actor"].startswith("op-dlh")
    assert audit[0]["after"]["params"] == {"zone": "zone1", "duration_s": 120}


def test_api_schedule_versions_pending_then_in_sync(client, seeded, store, transport):
    h = auth(seeded.op_dlh)
    assert client.get("/api/v1/devices/taman-01/schedule", headers=h).json()["state"] == "none"
    body = {"programs": [{"name": "pagi", "start_times": ["06:00"],
                          "zones": [{"zone": "zone1", "duration_min": 10}]}]}
    r = client.put("/api/v1/devices/taman-01/schedule", headers=h, json={"body": body})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "pending" and r.json()["desired"]["version"] == 1
    pushed = transport.published[-1]
    assert pushed.topic == "smartcity/v1/dlh/taman-01/config" and pushed.retain
    assert decode(DesiredConfig, pushed.payload).body == body
    r = client.put("/api/v1/devices/taman-01/schedule", headers=h,
                   json={"body": {"watering_pct": 80}})
    assert r.json()["desired"]["version"] == 2
    audit = client.get("/api/v1/audit", headers=auth(seeded.admin)).json()[0]
    assert (audit["action"], audit["before"]["version"], audit["after"]["version"]) == (
        "schedule.update", 1, 2)
    assert audit["after"]["unchecked"] is True  # sent without If-Match
    store.commit_batch([Inbound("dlh", "taman-01", Channel.EVENT,
                                Event(seq=1, ts=T0, type="config_rejected",
                                      details={"version": 2, "reason": "bad"}), T0)])
    assert client.get("/api/v1/devices/taman-01/schedule", headers=h).json()["state"] == \
        "rejected"
    store.commit_batch([Inbound("dlh", "taman-01", Channel.STATUS,
                                Status(online=True, fw="1", clock_synced=True, ts=T0,
                                       config_version=2), T0)])
    got = client.get("/api/v1/devices/taman-01/schedule", headers=h).json()
    assert (got["state"], got["reported_version"]) == ("in_sync", 2)
    versions = client.get("/api/v1/devices/taman-01/schedule/versions", headers=h).json()
    assert [v["version"] for v in versions] == [2, 1]
    deep = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": {"l": {"m": {
        "n": {"o": {"p": {"q": 1}}}}}}}}}}}}}}}}}
    assert client.put("/api/v1/devices/taman-01/schedule", headers=h,
                      json={"body": deep}).status_code == 422


def test_api_admin_adds_device_and_tokens(client, seeded):
    h = auth(seeded.admin)
    r = client.post("/api/v1/devices", headers=h,
                    json={"device_id": "taman-02", "opd": "dlh", "kind": "irrigation"})
    assert r.status_code == 201, r.text
    assert r.json()["mqtt_username"] == "taman-02" and len(r.json()["mqtt_password"]) >= 24
    assert client.post("/api/v1/devices", headers=h, json={
        "device_id": "taman-02", "opd": "dlh", "kind": "irrigation"}).status_code == 409
    assert client.post("/api/v1/devices", headers=auth(seeded.op_dlh), json={
        "device_id": "taman-03", "opd": "dlh", "kind": "irrigation"}).status_code == 403

    r = client.post("/api/v1/tokens", headers=h, json={"name": "budi", "role": "operator",
                                                       "opd": "dp3"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    me = client.get("/api/v1/users/me", headers=auth(token)).json()
    assert (me["user"], me["role"], me["opd"]) == ("budi", "operator", "dp3")
    assert client.post("/api/v1/tokens", headers=h, json={"name": "x", "role": "operator"}
                       ).status_code == 422
    assert client.post("/api/v1/tokens", headers=h, json={"name": "budi", "role": "admin"}
                       ).status_code == 409
    listed = client.get("/api/v1/tokens", headers=h).json()
    assert listed and all("token" not in row and "token_hash" not in row for row in listed)
    assert token not in json.dumps(listed)
    assert client.delete(f"/api/v1/tokens/{r.json()['id']}", headers=h).status_code == 200
    assert client.get("/api/v1/users/me", headers=auth(token)).status_code == 401


def test_api_health_and_metrics(client, seeded):
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "database": True, "schema_version": len(MIGRATIONS),
                      "mqtt_connected": None, "leader": None, "problems": []}
    text = client.get("/metrics").text
    assert "smartcity_devices_online 0.0" in text
    assert "smartcity_ingest_batch_size_bucket" in text


def test_republish_open_only_older_commands_not_in_flight_here(store, seeded):
    """The leader's pass over pending commands: only those issued more than
    ``older_than_s`` ago, and never one this publisher has handed to its broker
    connection already (queued there, not yet taken)."""
    from datetime import UTC, datetime, timedelta

    from controller.publisher import MemoryTransport, Publisher

    transport = MemoryTransport(auto_sent=False)
    publisher = Publisher(store, transport)
    now = datetime.now(UTC)
    for command_id, age_s in (("cmd-old", 30), ("cmd-new", 1)):
        store.create_command("taman-01", Command(
            id=command_id, issued_at=now - timedelta(seconds=age_s),
            expires_at=now + timedelta(minutes=5), action="stop_all", params={}),
            actor="test")
    assert publisher.republish_open(5.0, now=now) == 1
    assert [p.topic.rsplit("/", 1)[1] for p in transport.published] == ["cmd"]
    assert b"cmd-old" in transport.published[0].payload
    assert publisher.republish_open(5.0, now=now) == 0  # queued here already
    assert publisher.republish_open(0.0, now=now) == 1  # cmd-new, once old enough
    assert store.get_command("cmd-old")["status"] == "pending"
