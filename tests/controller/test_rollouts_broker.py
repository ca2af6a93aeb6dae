"""Rollouts through HTTP and a real Mosquitto, with three fake units answering the
``update`` command and reporting its outcome as units do: canary first, then the rest;
a failure past the threshold stops a rollout by itself and nobody else is offered; an
admin stops one; an operator sees only its OPD's units."""

from __future__ import annotations

import hashlib

import pytest
from controller_support import add_device, auth, broker_settings, make_token, wait_until
from fake_units import FakeUnit
from fastapi.testclient import TestClient
from release_support import make_bundle, new_key

from controller.api.main import create_app
from controller.store import Store

UNITS = ["taman-a", "taman-b", "taman-c"]


@pytest.fixture
def city(tmp_path, mosquitto):
    key, public = new_key()
    settings = broker_settings(tmp_path, mosquitto,
                               releases={"dir": str(tmp_path / "releases"),
                                         "trusted_keys": [public]},
                               api={"public_url": "https://kota.example"})
    with Store.open(settings.database.path) as store:
        for device in UNITS:
            add_device(store, device, "dlh")
        add_device(store, "tambak-x", "dp3", kind="fish_feeder")
        tokens = {"admin": make_token(store, "admin", "admin"),
                  "dlh": make_token(store, "op-dlh", "operator", "dlh"),
                  "dp3": make_token(store, "op-dp3", "operator", "dp3")}
        app = create_app(settings, store=store)
        with TestClient(app) as client:
            assert app.state.controller.ingest.wait_connected(10)
            units = {}
            try:
                for version in ("0.2.0", "0.3.0"):
                    bundle = make_bundle(tmp_path / "in", key, version)
                    r = client.post("/api/v1/releases", content=bundle.read_bytes(),
                                    headers=auth(tokens["admin"]))
                    assert r.status_code == 201, r.text

                def unit(device, outcome="applied"):
                    units[device] = FakeUnit(mosquitto.host, mosquitto.port, "dlh", device,
                                             outcome=outcome)
                    wait_until(lambda: (store.get_device(device) or {}).get("fw"),
                               what=f"{device}'s status")
                    return units[device]

                yield client, store, tokens, unit
            finally:
                for u in units.values():
                    u.close()


def _rollout(client, token, rid):
    r = client.get(f"/api/v1/rollouts/{rid}", headers=auth(token))
    assert r.status_code == 200, r.text
    return r.json()


def _start(client, tokens, version, **body):
    r = client.post("/api/v1/rollouts", headers=auth(tokens["admin"]),
                    json={"version": version, "target": {"opd": "dlh"}} | body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_rollout_canary_then_rest_over_broker(city):
    client, store, tokens, unit = city
    units = [unit(d) for d in UNITS]
    rid = _start(client, tokens, "0.2.0", canary=1)
    first = wait_until(lambda: [u for u in units if u.commands], what="the canary's offer")
    assert len(first) == 1
    canary = first[0]
    offer = canary.commands[0]
    assert offer.params.url == "https://kota.example/api/v1/releases/0.2.0/bundle"
    bundle = client.get("/api/v1/releases/0.2.0/bundle").content
    assert hashlib.sha256(bundle).hexdigest() == offer.params.sha256
    assert len(bundle) == offer.params.size
    done = wait_until(lambda: _rollout(client, tokens["admin"], rid)["state"] == "completed",
                      what="the rollout completed", timeout=20)
    assert done
    rollout = _rollout(client, tokens["admin"], rid)
    assert all(len(u.commands) == 1 for u in units)
    by = {u["device_id"]: u for u in rollout["units"]}
    assert by[canary.device_id]["stage"] == 0
    assert all(by[d]["stage"] == 1 for d in UNITS if d != canary.device_id)
    assert {(u["state"], u["running"], u["offered"]) for u in rollout["units"]} == {
        ("applied", "0.2.0", "0.2.0")}
    # the canary's outcome came before the others were offered
    assert by[canary.device_id]["updated_at"] <= min(
        by[d]["offered_at"] for d in UNITS if d != canary.device_id)
    assert store.get_command(offer.id)["status"] == "done"


def test_rollout_stops_itself_past_threshold_over_broker(city):
    client, store, tokens, unit = city
    units = [unit(d, outcome="failed") for d in UNITS]
    rid = _start(client, tokens, "0.3.0", canary=1, max_failure_share=0.2)
    wait_until(lambda: _rollout(client, tokens["admin"], rid)["state"] == "stopped",
               what="the rollout stopped", timeout=20)
    rollout = _rollout(client, tokens["admin"], rid)
    assert rollout["reason"] == "failure_threshold"
    assert sum(len(u.commands) for u in units) == 1  # nobody else was offered
    failed = [u for u in rollout["units"] if u["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["reason"] == "the MQTT link is not up"
    assert failed[0]["step"] == "health" and failed[0]["running"] == "0.1.0"
    assert rollout["counts"]["waiting"] == 2
    audit = client.get("/api/v1/audit", headers=auth(tokens["admin"])).json()
    assert any(a["action"] == "rollout.stop" and a["actor"] == "controller" for a in audit)


def test_rollout_stopped_by_admin_and_operator_scope(city):
    client, store, tokens, unit = city
    units = [unit(d, outcome="silent") for d in UNITS]
    rid = _start(client, tokens, "0.2.0", canary=1)
    wait_until(lambda: any(u.commands for u in units), what="the canary's offer")
    refused = client.post(f"/api/v1/rollouts/{rid}/stop", json={"reason": "x"},
                          headers=auth(tokens["dlh"]))
    assert refused.status_code == 403
    r = client.post(f"/api/v1/rollouts/{rid}/stop", json={"reason": "salah build"},
                    headers=auth(tokens["admin"]))
    assert r.status_code == 200 and r.json()["state"] == "stopped"
    assert r.json()["reason"] == "stopped_by_admin" and r.json()["note"] == "salah build"
    again = client.post(f"/api/v1/rollouts/{rid}/stop", json={}, headers=auth(tokens["admin"]))
    assert again.status_code == 409
    # operators: dlh sees its units; dp3 sees nothing
    assert [x["id"] for x in client.get("/api/v1/rollouts",
                                        headers=auth(tokens["dlh"])).json()] == [rid]
    assert len(_rollout(client, tokens["dlh"], rid)["units"]) == 3
    assert client.get("/api/v1/rollouts", headers=auth(tokens["dp3"])).json() == []
    assert client.get(f"/api/v1/rollouts/{rid}",
                      headers=auth(tokens["dp3"])).status_code == 404
    versions = client.get("/api/v1/unit-versions", headers=auth(tokens["dp3"])).json()
    assert [v["device_id"] for v in versions] == ["tambak-x"]
    dlh = {v["device_id"]: v for v in client.get(
        "/api/v1/unit-versions", headers=auth(tokens["dlh"])).json()}
    offered = [d for d, v in dlh.items() if v["offered"] == "0.2.0"]
    assert len(offered) == 1 and dlh[offered[0]]["running"] == "0.1.0"
    assert dlh[offered[0]]["offer_state"] == "offered"


def test_rollout_start_refusals(city):
    client, store, tokens, unit = city
    h = auth(tokens["admin"])
    bad = [({"version": "9.9.9", "target": {"opd": "dlh"}}, ["body", "version"]),
           ({"version": "0.2.0", "target": {"devices": ["nope"]}},
            ["body", "target", "devices"]),
           ({"version": "0.2.0", "target": {"opd": "xyz"}}, ["body", "target", "opd"]),
           ({"version": "0.2.0", "target": {"opd": "dlh"}, "stage_percents": [50, 20]},
            ["body", "stage_percents"]),
           ({"version": "0.2.0", "target": {}}, ["body", "target"])]
    for body, loc in bad:
        r = client.post("/api/v1/rollouts", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["detail"][0]["loc"][:len(loc)] == loc, r.text
    r = client.post("/api/v1/rollouts", json=bad[0][0], headers=h | {"Accept-Language": "en"})
    assert r.json()["detail"][0]["msg"] == "release 9.9.9 has not been added (release add)"
    assert client.post("/api/v1/rollouts", json={"version": "0.2.0", "target": {"opd": "dlh"}},
                       headers=auth(tokens["dlh"])).status_code == 403
    assert client.get("/api/v1/rollouts", headers=h).json() == []
