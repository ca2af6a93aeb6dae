"""API tokens through HTTP: expiry, rotation, last use, and failed logins limited per address."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from controller_support import Tokens, auth
from fastapi.testclient import TestClient

from controller.api.main import create_app
from controller.auth import FailedLogins, hash_token, new_token
from controller.publisher import MemoryTransport
from controller.settings import parse_settings
from controller.store import Store, utcnow

WRONG = auth("x" * 43)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def app_for(store: Store, logins: FailedLogins | None = None, **api):
    settings = parse_settings({"database": {"path": store.path}, "mqtt": {"enabled": False},
                               "api": api}, environ={})
    return create_app(settings, store=store, mqtt=MemoryTransport(), logins=logins)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(store, seeded, clock) -> Iterator[TestClient]:
    with TestClient(app_for(store, FailedLogins(10, 60, clock=clock))) as c:
        yield c


def expired_token(store: Store, name: str = "old-viewer") -> str:
    token = new_token()
    now = utcnow()
    store.create_token(name=name, role="viewer", opd=None, token_hash=hash_token(token),
                       actor="test", now=now - timedelta(days=100),
                       expires_at=now - timedelta(days=10))
    return token


def metric(client: TestClient, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{line_start} not in /metrics")


def days_from_now(text: str) -> float:
    return (datetime.fromisoformat(text) - utcnow()) / timedelta(days=1)


# --------------------------------------------------------------------------- expiry

def test_tokens_expired_token_is_401_saying_so_in_the_callers_language(client, store):
    token = expired_token(store)
    r = client.get("/api/v1/users/me", headers=auth(token))
    assert r.status_code == 401
    assert "kedaluwarsa" in r.json()["detail"]  # Indonesian when no language is asked for
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    for accept, word in [("en", "expired"), ("en-US,en;q=0.9,id;q=0.5", "expired"),
                         ("fr-FR, id;q=0.3, en;q=0.7", "expired"),
                         ("en;q=0.2, id", "kedaluwarsa"), ("fr", "kedaluwarsa")]:
        r = client.get("/api/v1/users/me", headers=auth(token) | {"Accept-Language": accept})
        assert r.status_code == 401 and word in r.json()["detail"], (accept, r.text)
    # An unknown token is told apart from an expired one.
    r = client.get("/api/v1/users/me", headers=WRONG | {"Accept-Language": "en"})
    assert r.json()["detail"] == "unknown or revoked token"
    assert r.headers["www-authenticate"] == "Bearer"
    assert metric(client, 'smartcity_api_login_failures_total{reason="expired"}') == 6
    assert metric(client, 'smartcity_api_login_failures_total{reason="unknown"}') == 1


def test_tokens_expire_by_default_after_the_configured_days(store, seeded: Tokens):
    with TestClient(app_for(store, token_ttl_days=7)) as c:
        r = c.post("/api/v1/tokens", headers=auth(seeded.admin),
                   json={"name": "ops", "role": "viewer"})
        assert r.status_code == 201
        assert 6.99 < days_from_now(r.json()["expires_at"]) <= 7
        r = c.post("/api/v1/tokens", headers=auth(seeded.admin),
                   json={"name": "ops", "role": "viewer", "expires_days": 30})
        assert 29.99 < days_from_now(r.json()["expires_at"]) <= 30
        for bad in (0, 366, "never"):
            r = c.post("/api/v1/tokens", headers=auth(seeded.admin),
                       json={"name": "ops", "role": "viewer", "expires_days": bad})
            assert r.status_code == 422, bad
            assert r.json()["detail"][0]["loc"] == ["body", "expires_days"]
    assert len(store.list_tokens()) == 5 + 2  # the seeded five and the two accepted


def test_tokens_without_setting_expire_after_90_days(client, seeded: Tokens):
    r = client.post("/api/v1/tokens", headers=auth(seeded.admin),
                    json={"name": "ops", "role": "viewer"})
    assert 89.99 < days_from_now(r.json()["expires_at"]) <= 90


def test_tokens_expired_do_not_count_as_live_for_their_user(client, store, seeded: Tokens):
    expired_token(store, "lapsed")
    users = {u["name"]: u for u in client.get("/api/v1/users", headers=auth(seeded.admin)).json()}
    assert users["lapsed"]["live_tokens"] == 0 and users["admin"]["live_tokens"] == 1


# --------------------------------------------------------------------------- rotate

def test_tokens_rotate_invalidates_the_old_secret_at_once(client, store, seeded: Tokens):
    old_id = client.get("/api/v1/users/me", headers=auth(seeded.op_dlh)).json()["token_id"]
    r = client.post(f"/api/v1/tokens/{old_id}/rotate", headers=auth(seeded.admin),
                    json={"expires_days": 14})
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["id"] != old_id and (new["user"], new["role"], new["opd"]) == (
        "op-dlh", "operator", "dlh")
    assert 13.99 < days_from_now(new["expires_at"]) <= 14
    assert client.get("/api/v1/users/me", headers=auth(seeded.op_dlh)).status_code == 401
    me = client.get("/api/v1/users/me", headers=auth(new["token"])).json()
    assert me == {"user": "op-dlh", "role": "operator", "opd": "dlh", "token_id": new["id"]}
    listed = {t["id"]: t for t in client.get("/api/v1/tokens", headers=auth(seeded.admin)).json()}
    assert listed[old_id]["revoked_at"] is not None and "token" not in listed[new["id"]]
    entry = client.get("/api/v1/audit", headers=auth(seeded.admin)).json()[0]
    assert entry["action"] == "token.rotate" and entry["target"] == f"token:{old_id}"
    assert entry["actor"].startswith("admin (admin")
    assert entry["after"]["token_id"] == new["id"] and entry["opd"] == "dlh"
    # Once revoked (rotated), it cannot be rotated again; the new one can, with no body.
    r = client.post(f"/api/v1/tokens/{old_id}/rotate", headers=auth(seeded.admin))
    assert r.status_code == 409 and "revoked" in r.json()["detail"]
    r = client.post(f"/api/v1/tokens/{new['id']}/rotate", headers=auth(seeded.admin))
    assert r.status_code == 201 and 89.99 < days_from_now(r.json()["expires_at"]) <= 90
    assert client.post("/api/v1/tokens/9999/rotate", headers=auth(seeded.admin)).status_code == 404


def test_tokens_rotate_renews_an_expired_token(client, store, seeded: Tokens):
    token = expired_token(store)
    token_id = store.list_tokens()[-1]["id"]
    r = client.post(f"/api/v1/tokens/{token_id}/rotate", headers=auth(seeded.admin))
    assert r.status_code == 201
    assert client.get("/api/v1/users/me", headers=auth(token)).status_code == 401
    assert client.get("/api/v1/users/me", headers=auth(r.json()["token"])).status_code == 200


def test_tokens_rotate_is_for_admins_only(client, store, seeded: Tokens):
    token_id = store.principal_for(hash_token(seeded.op_dlh))["id"]
    before = len(store.list_audit())
    for who in (seeded.op_dlh, seeded.viewer):
        r = client.post(f"/api/v1/tokens/{token_id}/rotate", headers=auth(who))
        assert r.status_code == 403
    assert len(store.list_audit()) == before
    assert client.get("/api/v1/users/me", headers=auth(seeded.op_dlh)).status_code == 200


# --------------------------------------------------------------------------- last used

def test_tokens_last_used_at_is_shown_and_written_at_most_once_a_minute(client, store,
                                                                       seeded: Tokens,
                                                                       monkeypatch):
    def listed() -> dict:
        rows = client.get("/api/v1/tokens", headers=auth(seeded.admin)).json()
        return {t["user"]: t for t in rows}

    token_id = listed()["bappeda"]["id"]
    assert listed()["bappeda"]["last_used_at"] is None
    writes = []
    touch = store.touch_token
    monkeypatch.setattr(store, "touch_token", lambda *a: writes.append(a[0]) or touch(*a))
    minute = utcnow().replace(second=0, microsecond=0)
    now = minute + timedelta(seconds=5)
    monkeypatch.setattr("controller.api.deps.utcnow", lambda: now)
    for _ in range(30):
        assert client.get("/api/v1/devices", headers=auth(seeded.viewer)).status_code == 200
        now += timedelta(seconds=1)
    assert listed()["bappeda"]["last_used_at"] == f"{minute:%Y-%m-%dT%H:%M}:05Z"
    assert writes.count(token_id) == 1  # 30 requests, one write
    now = minute + timedelta(seconds=60)  # the next minute: written again
    client.get("/api/v1/devices", headers=auth(seeded.viewer))
    assert listed()["bappeda"]["last_used_at"] == f"{now:%Y-%m-%dT%H:%M}:00Z"
    assert writes.count(token_id) == 2


# --------------------------------------------------------------------------- failed logins

def test_logins_eleventh_failure_in_a_minute_is_429_with_retry_after(client, seeded: Tokens,
                                                                      clock):
    for _ in range(10):  # one failure a second
        assert client.get("/api/v1/devices", headers=WRONG).status_code == 401
        clock.now += 1
    r = client.get("/api/v1/devices", headers=WRONG | {"Accept-Language": "en"})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "50"  # the first failure leaves the window in 50 s
    assert "too many failed logins" in r.json()["detail"]
    # While locked, a correct token from that address is refused too.
    r = client.get("/api/v1/devices", headers=auth(seeded.admin))
    assert r.status_code == 429 and "detail" in r.json()
    # Requests without a token are not logins: they still get 401.
    assert client.get("/api/v1/devices").status_code == 401
    # Another address is not limited.
    with TestClient(client.app, client=("192.0.2.7", 40000)) as other:
        assert other.get("/api/v1/devices", headers=auth(seeded.admin)).status_code == 200
        assert other.get("/api/v1/devices", headers=WRONG).status_code == 401
    assert metric(client, "smartcity_api_logins_throttled_total") == 2
    # Once the window has passed, the address may log in again.
    clock.now += 50
    assert client.get("/api/v1/devices", headers=auth(seeded.admin)).status_code == 200


def test_logins_forwarded_for_counts_only_behind_a_trusted_proxy(store, seeded: Tokens, clock):
    app = app_for(store, FailedLogins(10, 60, clock=clock), trusted_proxies=["10.9.0.0/16"])
    with (TestClient(app, client=("10.9.0.1", 40000)) as proxy,
          TestClient(app, client=("198.51.100.9", 40000)) as direct):
        for n in range(10):  # one client behind the proxy guesses ...
            assert proxy.get("/api/v1/devices", headers=WRONG | {
                "X-Forwarded-For": "203.0.113.5"}).status_code == 401
            # ... and a direct caller claims another address each time: it is not believed.
            assert direct.get("/api/v1/devices", headers=WRONG | {
                "X-Forwarded-For": f"203.0.113.{100 + n}"}).status_code == 401
        assert proxy.get("/api/v1/devices", headers=auth(seeded.admin) | {
            "X-Forwarded-For": "203.0.113.5"}).status_code == 429
        assert direct.get("/api/v1/devices", headers=auth(seeded.admin) | {
            "X-Forwarded-For": "203.0.113.200"}).status_code == 429
        # Another client behind the same proxy is not locked out.
        assert proxy.get("/api/v1/devices", headers=auth(seeded.admin) | {
            "X-Forwarded-For": "203.0.113.6"}).status_code == 200


def test_logins_limit_follows_the_settings(store, seeded: Tokens):
    with TestClient(app_for(store, login_failures_max=3)) as c:
        codes = [c.get("/api/v1/devices", headers=WRONG).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        assert 59 <= int(c.get("/api/v1/devices", headers=WRONG).headers["retry-after"]) <= 60

