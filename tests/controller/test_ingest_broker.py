"""Ingest against a real Mosquitto: stored once, acked, bad input counted and never stored."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from controller_support import add_device, auth, broker_settings, make_token, wait_until
from fastapi.testclient import TestClient

from controller.api.main import create_app
from controller.store import Store
from protocol.codec import decode, encode
from protocol.models import Ack, Status, Telemetry
from protocol.topics import topic

NOW = datetime.now(UTC)


def tele(seq: int) -> bytes:
    return encode(Telemetry(seq=seq, ts=NOW, readings={"moisture_pct.zone1": 40.0},
                            outputs={"zone1": False}))


@pytest.fixture
def controller(tmp_path, mosquitto, database):
    settings = broker_settings(tmp_path, mosquitto, database=database)
    with Store.open(settings.database.target) as store:
        add_device(store, "taman-01", "dlh")
        add_device(store, "tambak-01", "dp3", kind="fish_feeder")
        token = make_token(store, "admin", "admin")
        app = create_app(settings, store=store)
        with TestClient(app) as client:
            assert app.state.controller.ingest.wait_connected(10)
            client.headers.update(auth(token))
            yield client, store, app.state.metrics


def metric(metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_ingest_stores_each_seq_once_and_acks(controller, mosquitto, mqtt_client_factory):
    client, store, metrics = controller
    unit = mqtt_client_factory(mosquitto, client_id="unit-taman-01")
    unit.subscribe(topic("dlh", "taman-01", "ack"))
    unit.publish(topic("dlh", "taman-01", "status"),
                 encode(Status(online=True, fw="1.0", clock_synced=True, ts=NOW)), retain=True)
    for seq in (1, 2, 3, 2, 1):  # redeliveries on the way
        unit.publish(topic("dlh", "taman-01", "telemetry"), tele(seq), wait=False)
    acks = unit.wait_for(lambda: [m for m in unit.messages
                                  if decode(Ack, m.payload).seq == 3], what="ack 3")
    assert acks[0].qos == 1 and not acks[0].retain
    rows = store.telemetry("taman-01")
    assert [r["seq"] for r in rows] == [1, 2, 3]
    device = client.get("/api/v1/devices/taman-01").json()
    assert device["online"] and device["seq"]["acked"] == 3
    assert device["seq"]["duplicates"] == 2
    assert metric(metrics, "smartcity_ingest_messages_total", channel="telemetry") == 3
    assert metric(metrics, "smartcity_ingest_duplicates_total") == 2
    text = client.get("/metrics").text
    assert "smartcity_devices_online 1.0" in text and "smartcity_mqtt_connected 1.0" in text


def test_ingest_keeps_the_maintenance_window_each_status_reports(controller, mosquitto,
                                                                  mqtt_client_factory):
    client, store, _ = controller
    unit = mqtt_client_factory(mosquitto, client_id="unit-taman-01")
    unit.publish(topic("dlh", "taman-01", "status"), encode(Status(
        online=True, fw="1.0", clock_synced=True, ts=NOW, update_window="01:00-05:00")),
        retain=True)
    unit.publish(topic("dp3", "tambak-01", "status"),  # an older unit: no window
                 encode(Status(online=True, fw="0.9", clock_synced=True, ts=NOW)), retain=True)
    wait_until(lambda: (store.get_device("tambak-01") or {}).get("fw")
               and (store.get_device("taman-01") or {}).get("fw"), what="both statuses")
    devices = {d["device_id"]: d["update_window"] for d in client.get("/api/v1/devices").json()}
    assert devices == {"taman-01": "01:00-05:00", "tambak-01": None}
    versions = client.get("/api/v1/unit-versions").json()
    assert [(v["device_id"], v["update_window"]) for v in versions] == [
        ("taman-01", "01:00-05:00"), ("tambak-01", None)]


def test_ingest_counts_bad_input_and_keeps_going(controller, mosquitto, mqtt_client_factory):
    client, store, metrics = controller
    unit = mqtt_client_factory(mosquitto)
    cases = [
        (topic("dlh", "taman-01", "telemetry"), b"{not json", "bad_payload"),
        (topic("dlh", "taman-01", "event"), json.dumps({"v": 1, "seq": 0}).encode(),
         "bad_payload"),
        (topic("dlh", "ghost-99", "telemetry"), tele(1), "unknown_device"),
        # taman-01 belongs to dlh: a message under dp3 is someone else's topic.
        (topic("dp3", "taman-01", "telemetry"), tele(1), "wrong_opd"),
        ("smartcity/v1/DLH/taman-01/telemetry", tele(1), "bad_topic"),
        (topic("dlh", "taman-01", "cmd/reply"),
         json.dumps({"v": 1, "id": "nope", "status": "done", "ts": "2025-01-01T00:00:00Z"}
                    ).encode(), "unknown_command"),
    ]
    for t, payload, _ in cases:
        unit.publish(t, payload)
    unit.publish(topic("dlh", "taman-01", "telemetry"), tele(1))
    wait_until(lambda: store.telemetry("taman-01"), what="the valid message")
    expected: dict[str, int] = {}
    for *_, reason in cases:
        expected[reason] = expected.get(reason, 0) + 1

    def got():
        return {reason: metric(metrics, "smartcity_ingest_rejected_total", reason=reason)
                for reason in expected}

    # the counters move in the writer thread, possibly just after the commit is visible
    wait_until(lambda: got() == expected, what=f"rejection counters {expected}")
    assert got() == expected
    assert [r["seq"] for r in store.telemetry("taman-01")] == [1]
    assert store.telemetry("ghost-99") == [] and store.get_device("ghost-99") is None
    assert store.acked_seq("tambak-01") == 0
    assert client.get("/healthz").json()["status"] == "ok"


def test_ingest_gets_what_was_published_while_it_was_stopped(tmp_path, mosquitto,
                                                            mqtt_client_factory, database):
    settings = broker_settings(tmp_path, mosquitto, database=database)
    with Store.open(settings.database.target) as store:
        add_device(store, "taman-01", "dlh")
        with TestClient(create_app(settings, store=store)) as client:
            assert client.app.state.controller.ingest.wait_connected(10)
        unit = mqtt_client_factory(mosquitto)
        for seq in range(1, 51):
            unit.publish(topic("dlh", "taman-01", "telemetry"), tele(seq), wait=False)
        unit.wait_for(lambda: len(unit.pubacks) == 50, what="50 PUBACKs")
        assert store.telemetry("taman-01") == []
        with TestClient(create_app(settings, store=store)):
            wait_until(lambda: store.acked_seq("taman-01") == 50, what="seq 50 committed")
        assert [r["seq"] for r in store.telemetry("taman-01", limit=100)] == list(range(1, 51))


def test_ingest_command_sent_on_puback_then_expired_unanswered(controller, mosquitto,
                                                              mqtt_client_factory):
    client, store, metrics = controller
    unit = mqtt_client_factory(mosquitto, client_id="unit-tambak-01")
    unit.subscribe(topic("dp3", "tambak-01", "cmd"))
    r = client.post("/api/v1/devices/tambak-01/commands",
                    json={"action": "feed_now", "params": {"feeder": "f1", "dose_g": 250},
                          "ttl_s": 1})
    assert r.status_code == 202
    url = f"/api/v1/commands/{r.json()['id']}"
    wait_until(lambda: client.get(url).json()["status"] == "sent", what="sent")
    received = unit.wait_for_messages(1)[0]
    assert (received.qos, received.retain) == (1, False)
    assert json.loads(received.payload)["params"] == {"feeder": "f1", "dose_g": 250.0}
    # Nobody answers: the sweeper expires it.
    wait_until(lambda: client.get(url).json()["status"] == "expired", timeout=5,
               what="expired")
    assert metric(metrics, "smartcity_commands_expired_total") == 1


def test_ingest_waits_for_a_restarted_postgres_and_refuses_nothing(tmp_path, mosquitto,
                                                                   mqtt_client_factory):
    """The database server is killed under a running ingest: what arrives meanwhile is
    neither acknowledged nor refused; once the server is back it is committed and acked
    (the units need not resend)."""
    from tests.support.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        settings = broker_settings(tmp_path, mosquitto,
                                   database={"url": server.create_database()})
        with Store.open(settings.database.target) as store:
            add_device(store, "taman-01", "dlh")
            app = create_app(settings, store=store)
            with TestClient(app):
                assert app.state.controller.ingest.wait_connected(10)
                unit = mqtt_client_factory(mosquitto, client_id="unit-taman-01")
                unit.subscribe(topic("dlh", "taman-01", "ack"))
                unit.publish(topic("dlh", "taman-01", "telemetry"), tele(1))
                wait_until(lambda: store.acked_seq("taman-01") == 1, what="seq 1 committed")

                server.kill()
                for seq in (2, 3):
                    unit.publish(topic("dlh", "taman-01", "telemetry"), tele(seq), wait=False)
                time.sleep(2.0)  # the ingest meets the dead server meanwhile
                server.start()
                wait_until(lambda: [m for m in unit.messages
                                    if decode(Ack, m.payload).seq == 3],
                           timeout=40, what="ack 3")
                assert [r["seq"] for r in store.telemetry("taman-01")] == [1, 2, 3]
                assert metric(app.state.metrics, "smartcity_ingest_rejected_total",
                              reason="store_error") == 0
    finally:
        server.close()
