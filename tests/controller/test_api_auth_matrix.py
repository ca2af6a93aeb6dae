"""Every route of the app against every kind of caller.

The routes come from ``app.routes`` itself, so a route added later is in the matrix
without anyone remembering to add it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from controller_support import T0, Tokens, auth, seed
from fastapi.testclient import TestClient

from controller.api.main import create_app
from controller.publisher import MemoryTransport
from controller.settings import Settings, parse_settings
from controller.store import Inbound, Store
from protocol.models import Command, Event
from protocol.topics import Channel

PUBLIC = {"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
          "/api/v1/enrol",  # the one-time enrolment token is the proof there
          "/api/v1/releases/{version}/bundle",  # signed; the update command holds its hash
          "/", "/static/{name}"}  # the dashboard's page and files hold no data
DEVICE_PARAMS = ("{device_id}", "{command_id}", "{alarm_id}")
BODIES = {
    ("POST", "/api/v1/devices/{device_id}/commands"): {"action": "stop_all"},
    ("PUT", "/api/v1/devices/{device_id}/schedule"): {"body": {"ponds": {}}},
    ("POST", "/api/v1/devices"): {"device_id": "new-01", "opd": "dp3", "kind": "irrigation"},
    ("POST", "/api/v1/tokens"): {"name": "someone", "role": "viewer"},
    ("POST", "/api/v1/dashboard/units/{device_id}/schedule/check"): {"body": {"ponds": {}}},
}
BODIES[("POST", "/api/v1/rollouts")] = {"version": "0.2.0", "target": {"opd": "dp3"}}
BODIES[("POST", "/api/v1/rollouts/{rollout_id}/stop")] = {"reason": "test"}
QUERIES = {("GET", "/api/v1/reports/monthly"): {"opd": "dp3", "month": "2026-11"}}
ADMIN_READS = {("GET", "/api/v1/notify/channels")}  # the controller's own set-up
# Releases and rollouts: admins and operators (an operator: rollouts of its OPD's units).
STAFF_READS = {("GET", "/api/v1/releases"), ("GET", "/api/v1/rollouts"),
               ("GET", "/api/v1/rollouts/{rollout_id}"), ("GET", "/api/v1/unit-versions")}
# A ticket to open the live stream with changes nothing stored: every role may have one.
NOT_CHANGES = {("POST", "/api/v1/stream/tickets")}
# Endless answers: the stream's roles and filters are in tests/controller/test_live.py.
STREAMS = {("GET", "/api/v1/stream")}


def _flat_routes(app):
    """Every route with its full path (FastAPI >= 0.160 keeps included routers nested)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        return app.routes
    return iter_route_contexts(app.routes)


def _routes() -> list[tuple[str, str]]:
    app = create_app(Settings())
    found = []
    for route in _flat_routes(app):
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, route.path))
    assert len(found) > 20
    return found


ROUTES = _routes()
API_ROUTES = [r for r in ROUTES if r[1] not in PUBLIC]
DEVICE_ROUTES = [r for r in API_ROUTES if any(p in r[1] for p in DEVICE_PARAMS)]
CHANGES = [r for r in API_ROUTES if r[0] in ("POST", "PUT", "PATCH", "DELETE")
           and r not in NOT_CHANGES]


# One app for the whole module: the calls below change nothing the others look at
# (refused calls change nothing; the dp3 operator's own calls only add rows).

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("matrix") / "controller.db"
    with Store.open(path) as s:
        yield s


@pytest.fixture(scope="module")
def seeded(store) -> Tokens:
    return seed(store)


@pytest.fixture(scope="module")
def client(store, seeded):
    # The matrix fails hundreds of logins from one address within a minute: lift the
    # limit that would answer them 429 (tests/controller/test_api_tokens.py tests it).
    settings = parse_settings({"database": {"path": store.path}, "mqtt": {"enabled": False},
                               "api": {"login_failures_max": 100_000}}, environ={})
    with TestClient(create_app(settings, store=store, mqtt=MemoryTransport())) as c:
        yield c


@pytest.fixture(scope="module")
def foreign(store, seeded) -> dict[str, str]:
    """Path values of things that belong to OPD dp3 (tambak-01)."""
    cmd = Command(id="c-dp3", issued_at=T0, expires_at=T0 + timedelta(days=1),
                  action="stop_all")
    store.create_command("tambak-01", cmd, actor="test")
    token_id = store.list_tokens()[-1]["id"]
    store.commit_batch([Inbound("dp3", "tambak-01", Channel.EVENT, Event(
        seq=1, ts=T0, type="alarm", details={"code": "feeder_jam", "feeder": "pakan-nila"}),
        T0)])
    alarm_id = store.db.execute("SELECT max(id) FROM alarms").fetchone()[0]
    store.add_release(version="0.1.0", sha256="a" * 64, size=1, platforms=["aarch64"],
                      manifest_created_at="2026-01-01T00:00:00Z", key_id="0" * 16,
                      actor="test")
    rollout = store.create_rollout(version="0.1.0", target={"opd": "dp3"}, canary=1,
                                   stage_percents=[100], max_failure_share=0.2,
                                   stage_timeout_s=60, stages=[["tambak-01"]], actor="test")
    return {"device_id": "tambak-01", "command_id": "c-dp3", "token_id": str(token_id),
            "alarm_id": str(alarm_id), "rollout_id": str(rollout["id"])}


def call(client: TestClient, method: str, path: str, values: dict, headers: dict):
    url = path.format(**values) if "{" in path else path
    return client.request(method, url, headers=headers, json=BODIES.get((method, path)),
                          params=QUERIES.get((method, path)))


def test_matrix_covers_every_kind_of_route():
    paths = {p for _, p in API_ROUTES}
    assert "/api/v1/devices/{device_id}/commands" in paths
    assert len(DEVICE_ROUTES) >= 9 and len(CHANGES) >= 5


@pytest.mark.parametrize(("method", "path"), API_ROUTES, ids=[f"{m} {p}" for m, p in API_ROUTES])
@pytest.mark.parametrize("who", ["none", "wrong", "revoked", "not-bearer"])
def test_matrix_no_valid_token_is_401(client, seeded: Tokens, foreign, method, path, who):
    headers = {"none": {}, "wrong": auth("x" * 43), "revoked": auth(seeded.revoked),
               "not-bearer": {"Authorization": f"Basic {seeded.admin}"}}[who]
    r = call(client, method, path, foreign, headers)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), DEVICE_ROUTES,
                         ids=[f"{m} {p}" for m, p in DEVICE_ROUTES])
def test_matrix_operator_gets_404_for_another_opds_device(client, seeded: Tokens, foreign,
                                                          method, path):
    r = call(client, method, path, foreign, auth(seeded.op_dlh))
    assert r.status_code == 404, r.text
    # ... exactly as for a device that does not exist at all.
    missing = {"device_id": "nothing-here", "command_id": "nothing-here", "alarm_id": "9999"}
    assert call(client, method, path, missing, auth(seeded.op_dlh)).json() == {
        "detail": r.json()["detail"].replace("tambak-01", "nothing-here").replace(
            "c-dp3", "nothing-here").replace(f"alarm {foreign['alarm_id']} ", "alarm 9999 ")}
    # The OPD's own operator does get through.
    assert call(client, method, path, foreign, auth(seeded.op_dp3)).status_code < 400


@pytest.mark.parametrize(("method", "path"), CHANGES, ids=[f"{m} {p}" for m, p in CHANGES])
def test_matrix_viewer_gets_403_for_every_change(client, seeded: Tokens, foreign, store,
                                                 method, path):
    before = len(store.list_audit())
    r = call(client, method, path, foreign, auth(seeded.viewer))
    assert r.status_code == 403, r.text
    assert len(store.list_audit()) == before


READS = [r for r in API_ROUTES if r[0] == "GET"
         and r not in ADMIN_READS | STAFF_READS | STREAMS]
assert STREAMS | NOT_CHANGES <= set(API_ROUTES)


def test_matrix_every_role_may_open_the_live_stream(client, seeded: Tokens):
    for token in (seeded.viewer, seeded.op_dlh, seeded.op_dp3, seeded.admin):
        r = client.post("/api/v1/stream/tickets", headers=auth(token))
        assert r.status_code == 201 and r.json()["ticket"], r.text


@pytest.mark.parametrize(("method", "path"), READS, ids=[f"{m} {p}" for m, p in READS])
def test_matrix_viewer_reads_everything(client, seeded: Tokens, foreign, method, path):
    assert call(client, method, path, foreign, auth(seeded.viewer)).status_code == 200


@pytest.mark.parametrize(("method", "path"), sorted(ADMIN_READS),
                         ids=[f"{m} {p}" for m, p in sorted(ADMIN_READS)])
def test_matrix_admin_reads_are_refused_to_others(client, seeded: Tokens, foreign, method,
                                                  path):
    assert (method, path) in API_ROUTES
    for token in (seeded.viewer, seeded.op_dlh, seeded.op_dp3):
        assert call(client, method, path, foreign, auth(token)).status_code == 403
    assert call(client, method, path, foreign, auth(seeded.admin)).status_code == 200


@pytest.mark.parametrize(("method", "path"), sorted(STAFF_READS),
                         ids=[f"{m} {p}" for m, p in sorted(STAFF_READS)])
def test_matrix_release_reads_are_staffs(client, seeded: Tokens, foreign, method, path):
    assert (method, path) in API_ROUTES
    assert call(client, method, path, foreign, auth(seeded.viewer)).status_code == 403
    for token in (seeded.op_dp3, seeded.admin):
        assert call(client, method, path, foreign, auth(token)).status_code == 200
    # another OPD's operator: the rollout (of dp3's unit) is not there for it
    other = call(client, method, path, foreign, auth(seeded.op_dlh))
    assert other.status_code == (404 if "{rollout_id}" in path else 200)
    if path == "/api/v1/rollouts":
        assert other.json() == []
