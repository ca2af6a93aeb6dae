"""The alarms API: listing per OPD, acknowledging, clearing (directly or by clear_fault).

The first tests run the app without a broker (commands land in a `MemoryTransport`); the
last ones run it against a real Mosquitto: a unit that falls silent gets a unit_offline
alarm that clears when it talks again, and a real fish-feeder unit (``edge.fish_feeder``
on mock pins, in its own process) jams, and its alarm is cleared from the API by the
``clear_fault`` command the unit answers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from controller_support import add_device, auth, broker_settings, make_token, wait_until
from fastapi.testclient import TestClient

from controller import alarms
from controller.api.main import create_app
from controller.store import Inbound, Store
from protocol.codec import encode
from protocol.models import Event, Status, Telemetry
from protocol.topics import Channel, topic

HERE = Path(__file__).parent
NOW = datetime.now(UTC)
EN = {"Accept-Language": "en"}


def unit_event(store, device_id, opd, seq, type_, **details):
    at = datetime.now(UTC)
    result = store.commit_batch([Inbound(opd, device_id, Channel.EVENT,
                                         Event(seq=seq, ts=at, type=type_, details=details),
                                         at)])
    assert not result.rejected


@pytest.fixture
def raised(store, seeded):
    """taman-01 (dlh): no_flow (latched) and sensor_stale; tambak-01 (dp3): feeder_jam."""
    unit_event(store, "taman-01", "dlh", 1, "alarm", code="no_flow", zones=["rumput"])
    unit_event(store, "taman-01", "dlh", 2, "alarm", code="sensor_stale", zone="rumput")
    unit_event(store, "tambak-01", "dp3", 1, "alarm", code="feeder_jam", feeder="pakan-nila",
               pond="kolam-nila", message="no rotation")
    by = {(a["device_id"], a["code"]): a["id"] for a in alarms.list_alarms(store)}
    return by


def test_api_alarms_operators_see_their_opd_only(client, seeded, raised):
    dlh = client.get("/api/v1/alarms", headers=auth(seeded.op_dlh)).json()
    assert {(a["device_id"], a["code"]) for a in dlh} == {("taman-01", "no_flow"),
                                                         ("taman-01", "sensor_stale")}
    assert client.get("/api/v1/alarms?opd=dp3", headers=auth(seeded.op_dlh)).json() == []
    assert client.get("/api/v1/alarms?device_id=tambak-01",
                      headers=auth(seeded.op_dlh)).json() == []
    everyone = client.get("/api/v1/alarms", headers=auth(seeded.viewer)).json()
    assert len(everyone) == 3
    jam = raised[("tambak-01", "feeder_jam")]
    r = client.get(f"/api/v1/alarms/{jam}", headers=auth(seeded.op_dlh) | EN)
    assert (r.status_code, r.json()["detail"]) == (404, f"alarm {jam} not found")
    r = client.get(f"/api/v1/alarms/{jam}", headers=auth(seeded.op_dlh))
    assert (r.status_code, r.json()["detail"]) == (404, f"alarm {jam} tidak ditemukan")
    for verb in ("ack", "clear"):
        r = client.post(f"/api/v1/alarms/{jam}/{verb}", json={}, headers=auth(seeded.op_dlh))
        assert r.status_code == 404
    r = client.get(f"/api/v1/alarms/{jam}", headers=auth(seeded.op_dp3)).json()
    assert (r["severity"], r["subject"], r["device_name"], r["details"]["message"]) == (
        "critical", "pakan-nila", "tambak-01", "no rotation")
    r = client.post(f"/api/v1/alarms/{jam}/ack", json={}, headers=auth(seeded.viewer))
    assert r.status_code == 403
    assert client.get("/api/v1/alarms").status_code == 401


def test_api_alarms_ack_and_clear_latched_in_the_audit_log(client, store, seeded, raised):
    no_flow = raised[("taman-01", "no_flow")]
    headers = auth(seeded.op_dlh)
    r = client.post(f"/api/v1/alarms/{no_flow}/ack", json={"note": "on my way"},
                    headers=headers)
    assert r.status_code == 200
    body = r.json()
    assert (body["state"], body["acked_by"], body["ack_note"]) == (
        "acknowledged", "op-dlh", "on my way")
    listed = client.get("/api/v1/alarms?state=acknowledged", headers=headers).json()
    assert [a["id"] for a in listed] == [no_flow]
    assert [a["code"] for a in client.get("/api/v1/alarms?state=open",
                                          headers=headers).json()] == ["sensor_stale"]
    r = client.post(f"/api/v1/alarms/{no_flow}/clear", json={"note": "valve freed"},
                    headers=headers)
    assert r.status_code == 200
    body = r.json()
    assert body["command"] is None
    assert (body["alarm"]["state"], body["alarm"]["cleared_by"],
            body["alarm"]["clear_note"]) == ("cleared", "person:op-dlh", "valve freed")
    r = client.post(f"/api/v1/alarms/{no_flow}/ack", json={}, headers=headers | EN)
    assert r.status_code == 409 and r.json()["detail"].startswith(
        f"alarm {no_flow} was cleared at ")
    r = client.post(f"/api/v1/alarms/{no_flow}/clear", json={}, headers=headers)
    assert r.status_code == 409 and "sudah ditutup" in r.json()["detail"]
    assert [a["id"] for a in client.get("/api/v1/alarms?state=cleared",
                                        headers=headers).json()] == [no_flow]
    assert len(client.get("/api/v1/alarms?state=all", headers=headers).json()) == 2
    audit = [(a["action"], a["target"], a["actor"].split(" ")[0])
             for a in store.list_audit(opd="dlh")[:2]]
    assert audit == [("alarm.clear", f"alarm:{no_flow}", "op-dlh"),
                     ("alarm.ack", f"alarm:{no_flow}", "op-dlh")]
    r = client.post(f"/api/v1/alarms/{no_flow}/ack", json={"note": "x" * 501}, headers=headers)
    assert r.status_code == 422


def test_api_alarms_clear_a_jam_sends_clear_fault_and_waits_for_the_unit(
        client, store, seeded, transport, raised):
    jam = raised[("tambak-01", "feeder_jam")]
    r = client.post(f"/api/v1/alarms/{jam}/clear", json={"note": "auger freed"},
                    headers=auth(seeded.op_dp3))
    assert r.status_code == 202
    body = r.json()
    command = body["command"]
    assert (command["action"], command["params"], command["status"]) == (
        "clear_fault", {"feeder": "pakan-nila"}, "sent")
    assert (body["alarm"]["state"], body["alarm"]["clear_command"]) == ("open", command["id"])
    sent = json.loads(transport.published[-1].payload)
    assert transport.published[-1].topic == topic("dp3", "tambak-01", "cmd")
    assert (sent["id"], sent["action"], sent["params"]) == (
        command["id"], "clear_fault", {"feeder": "pakan-nila"})
    assert [a["action"] for a in store.list_audit(opd="dp3")[:2]] == [
        "alarm.clear_request", "command.create"]
    # the unit unlocks the feeder and says so
    unit_event(store, "tambak-01", "dp3", 2, "alarm_cleared", code="feeder_jam",
               feeder="pakan-nila", cleared_by="command", cmd_id=command["id"])
    alarm = client.get(f"/api/v1/alarms/{jam}", headers=auth(seeded.op_dp3)).json()
    assert (alarm["state"], alarm["cleared_by"]) == ("cleared", "person:op-dp3")


def test_api_dashboard_cards_alarms_first_then_offline_and_the_counts(client, store, seeded):
    add_device(store, "taman-02", "dlh")
    add_device(store, "taman-03", "dlh")
    at = datetime.now(UTC)
    for device_id in ("taman-01", "taman-02", "taman-03"):
        store.commit_batch([Inbound("dlh", device_id, Channel.STATUS, Status(
            online=device_id != "taman-02", fw="1", ts=at, clock_synced=True), at)])
    unit_event(store, "taman-03", "dlh", 1, "alarm", code="sensor_stale", zone="z")
    unit_event(store, "tambak-01", "dp3", 1, "alarm", code="feeder_jam", feeder="f")
    body = client.get("/api/v1/dashboard/units", headers=auth(seeded.admin)).json()
    assert [u["device_id"] for u in body["units"]] == [
        "tambak-01", "taman-03", "taman-02", "taman-01"]  # critical, warning, offline, rest
    assert body["alarm_counts"] == {"open": 2, "acknowledged": 0,
                                    "by_severity": {"critical": 1, "warning": 1, "info": 0}}
    card = body["units"][0]["alarms"][0]
    assert (card["code"], card["severity"], card["state"]) == ("feeder_jam", "critical", "open")
    mine = client.get("/api/v1/dashboard/units", headers=auth(seeded.op_dlh)).json()
    assert mine["alarm_counts"]["open"] == 1
    assert [u["device_id"] for u in mine["units"]] == ["taman-03", "taman-02", "taman-01"]


# --------------------------------------------------------------------------- real broker

def test_api_alarms_offline_unit_raised_by_the_ingest_and_cleared_when_heard(
        tmp_path, mosquitto, mqtt_client_factory):
    settings = broker_settings(tmp_path, mosquitto,
                               alarms={"offline_after_s": 1, "stale_after_s": 3600})
    with Store.open(settings.database.target) as store:
        add_device(store, "taman-01", "dlh")
        token = make_token(store, "op-dlh", "operator", "dlh")
        app = create_app(settings, store=store)
        with TestClient(app) as client:
            assert app.state.controller.ingest.wait_connected(10)
            client.headers.update(auth(token))
            unit = mqtt_client_factory(mosquitto, client_id="unit-taman-01")
            unit.publish(topic("dlh", "taman-01", "status"),
                         encode(Status(online=True, fw="1", clock_synced=True, ts=NOW)),
                         retain=True)

            def open_codes():
                return [a["code"] for a in client.get("/api/v1/alarms").json()]

            found = wait_until(lambda: "unit_offline" in open_codes() and open_codes(),
                               what="unit_offline alarm")
            assert found == ["unit_offline"]
            alarm = client.get("/api/v1/alarms").json()[0]
            assert (alarm["severity"], alarm["state"]) == ("critical", "open")
            counts = client.get("/api/v1/dashboard/units").json()["alarm_counts"]
            assert counts["by_severity"]["critical"] == 1
            unit.publish(topic("dlh", "taman-01", "telemetry"),
                         encode(Telemetry(seq=1, ts=datetime.now(UTC), readings={"x": 1.0},
                                          outputs={})))
            cleared = wait_until(lambda: [a for a in client.get(
                "/api/v1/alarms?state=cleared").json() if a["id"] == alarm["id"]],
                what="unit_offline cleared")
            assert cleared[0]["cleared_by"] == "controller"


def test_api_alarms_jam_on_a_real_feeder_cleared_by_clear_fault(tmp_path, mosquitto,
                                                               feeder_unit):
    settings = broker_settings(tmp_path, mosquitto)
    with Store.open(settings.database.target) as store:
        add_device(store, "tambak-e2e", "dp3", kind="fish_feeder")
        token = make_token(store, "op-dp3", "operator", "dp3")
        app = create_app(settings, store=store)
        with TestClient(app) as client:
            assert app.state.controller.ingest.wait_connected(10)
            client.headers.update(auth(token))
            wait_until(lambda: client.get("/api/v1/devices/tambak-e2e").json()["online"],
                       timeout=20, what="the unit online")
            r = client.post("/api/v1/devices/tambak-e2e/commands",
                            json={"action": "feed_now",
                                  "params": {"feeder": "pakan-nila", "dose_g": 100}})
            assert r.status_code == 202, r.text
            jams = wait_until(lambda: [a for a in client.get("/api/v1/alarms").json()
                                       if a["code"] == "feeder_jam"],
                              timeout=20, what="feeder_jam alarm")
            jam = jams[0]
            assert (jam["subject"], jam["severity"]) == ("pakan-nila", "critical")
            r = client.post(f"/api/v1/alarms/{jam['id']}/ack", json={"note": "checking"})
            assert r.status_code == 200
            r = client.post(f"/api/v1/alarms/{jam['id']}/clear", json={"note": "freed"})
            assert r.status_code == 202, r.text
            cmd_id = r.json()["command"]["id"]

            def cleared():
                alarm = client.get(f"/api/v1/alarms/{jam['id']}").json()
                return alarm if alarm["state"] == "cleared" else None

            alarm = wait_until(cleared, timeout=20, what="the jam cleared")
            assert (alarm["cleared_by"], alarm["clear_note"]) == ("person:op-dp3",
                                                                  f"command {cmd_id}")
            command = client.get(f"/api/v1/commands/{cmd_id}").json()
            assert command["status"] == "done" and "unlocked" in command["detail"]
            assert client.get("/api/v1/alarms").json() == []
            assert [a["action"] for a in store.list_audit(opd="dp3")][:4] == [
                "alarm.clear", "alarm.clear_request", "command.create", "alarm.ack"]


def test_api_alarms_hooks_see_every_change_of_a_real_ingest(tmp_path, mosquitto,
                                                          mqtt_client_factory):
    """The ingest commits in a writer thread here (``writer = "thread"``): hooks run in
    the process that registered them."""
    seen = []

    def hook(db, alarm, change, now):
        seen.append((change, alarm["code"], alarm["state"], db.conn.in_transaction))

    alarms.add_change_hook(hook)
    try:
        settings = broker_settings(tmp_path, mosquitto, ingest={"writer": "thread"})
        with Store.open(settings.database.target) as store:
            add_device(store, "taman-01", "dlh")
            app = create_app(settings, store=store)
            with TestClient(app):
                assert app.state.controller.ingest.wait_connected(10)
                unit = mqtt_client_factory(mosquitto)
                for seq, type_ in ((1, "alarm"), (2, "alarm_cleared")):
                    unit.publish(topic("dlh", "taman-01", "event"), encode(Event(
                        seq=seq, ts=datetime.now(UTC) + timedelta(seconds=seq), type=type_,
                        details={"code": "leak"})))
                wait_until(lambda: len(seen) == 2, what="two changes")
    finally:
        alarms.remove_change_hook(hook)
    assert seen == [("raised", "leak", "open", True), ("cleared", "leak", "cleared", True)]
