"""Helpers shared by the controller tests (imported as ``controller_support``)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from controller.auth import hash_token, new_token
from controller.broker_files import pbkdf2_hash
from controller.store import Inbound, Store
from protocol.models import Telemetry
from protocol.topics import Channel

T0 = datetime(2025, 3, 14, 22, 0, tzinfo=UTC)


def add_device(store: Store, device_id: str, opd: str, kind: str = "irrigation",
               name: str | None = None) -> dict:
    return store.add_device(device_id, opd, kind=kind, name=name or device_id,
                            mqtt_password_hash=pbkdf2_hash("pw-" + device_id), actor="test")


def telemetry(device_id: str, seq: int, opd: str = "dlh", **readings) -> Inbound:
    msg = Telemetry(seq=seq, ts=T0, readings=readings or {"moisture_pct.zone1": 30.0 + seq},
                    outputs={"zone1": False})
    return Inbound(opd, device_id, Channel.TELEMETRY, msg, T0)


@dataclass
class Tokens:
    admin: str
    op_dlh: str
    op_dp3: str
    viewer: str
    revoked: str


def make_token(store: Store, name: str, role: str, opd: str | None = None) -> str:
    token = new_token()
    store.create_token(name=name, role=role, opd=opd, token_hash=hash_token(token), actor="test")
    return token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed(store: Store) -> Tokens:
    """Devices taman-01 (dlh) and tambak-01 (dp3) and a token for every role."""
    add_device(store, "taman-01", "dlh")
    add_device(store, "tambak-01", "dp3", kind="fish_feeder")
    revoked = make_token(store, "gone", "viewer")
    store.revoke_token(store.list_tokens()[-1]["id"], actor="test")
    return Tokens(admin=make_token(store, "admin", "admin"),
                  op_dlh=make_token(store, "op-dlh", "operator", "dlh"),
                  op_dp3=make_token(store, "op-dp3", "operator", "dp3"),
                  viewer=make_token(store, "bappeda", "viewer"),
                  revoked=revoked)


def broker_settings(tmp_path, broker, **sections):
    """Settings for a controller talking to a test broker (anonymous login)."""
    from controller.settings import parse_settings

    data = {"database": {"path": str(tmp_path / "controller.db")},
            "mqtt": {"host": broker.host, "port": broker.port,
                     "client_id": f"ctl-{secrets.token_hex(4)}", "reconnect_max_s": 2},
            "ingest": {"ack_interval_s": 0.2, "sweep_interval_s": 0.2}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_settings(data, environ={})


def wait_until(predicate, timeout: float = 10.0, what: str = "condition", interval=0.02):
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout}s")
        time.sleep(interval)
