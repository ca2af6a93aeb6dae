"""``provision`` against a running controller: real HTTP (uvicorn on a free port), a real
Mosquitto started from the password and ACL files the controller writes, one-time tokens.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from support.broker import free_port
from test_provision_offline import snapshot

from controller.api.main import create_app
from controller.cli import main as controller_main
from controller.enrolment import EnrolmentRefused, create_enrolment, enrol
from controller.settings import load_settings, parse_settings
from controller.store import Store, utcnow
from edge.cli import main
from edge.config import load_config
from protocol.topics import topic

# The controller tests' helpers (tests/controller is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))
from controller_support import wait_until  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEVICE, OPD = "dlh-taman-uji-01", "dlh"
UNIT = "smartcity-irrigation.service"


@contextlib.contextmanager
def serve(app):
    """The controller's app on a free port, in a thread, until the block ends."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=15, what="controller start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class Controller:
    def __init__(self, conf: Path, url: str, broker, settings):
        self.conf, self.url, self.broker, self.settings = conf, url, broker, settings

    def enrol_token(self, capsys, device=DEVICE, *extra: str) -> str:
        capsys.readouterr()
        assert controller_main(["enrol", "create", "--config", str(self.conf), "--opd", OPD,
                                "--device-id", device, "--kind", "irrigation",
                                "--name", "Taman Uji", *extra]) == 0
        return capsys.readouterr().out.splitlines()[1]

    def reload_broker(self) -> None:
        """What `systemctl reload mosquitto` does: SIGHUP re-reads password and ACL."""
        os.kill(self.broker.pid, signal.SIGHUP)


@pytest.fixture
def controller(tmp_path, mosquitto_factory):
    secret = tmp_path / "controller-mqtt.secret"
    secret.write_text("ctl-secret\n")
    files = tmp_path / "broker"
    conf = tmp_path / "controller.toml"

    def write_conf(port: int) -> None:
        conf.write_text(f"""
[database]
path = "{tmp_path / 'controller.db'}"
[mqtt]
host = "127.0.0.1"
port = {port}
username = "smartcity-controller"
password_file = "{secret}"
client_id = "ctl-provision-test"
reconnect_max_s = 2
[broker_files]
acl_file = "{files / 'smartcity.acl'}"
password_file = "{files / 'smartcity.passwd'}"
""")

    write_conf(1883)  # the broker's port is known once it runs; it needs the files first
    assert controller_main(["mqtt-acl", "--config", str(conf)]) == 0
    broker = mosquitto_factory(password_file=str(files / "smartcity.passwd"),
                               acl_file=str(files / "smartcity.acl"), allow_anonymous=False)
    write_conf(broker.port)
    settings = load_settings(conf, environ={})
    with serve(create_app(settings)) as url:
        yield Controller(conf, url, broker, settings)


def provision(url: str, token: str, root: Path, *extra: str) -> int:
    return main(["provision", "--controller", url, "--token", token, "--root", str(root),
                 *extra])


def login(factory, broker, username: str, password: str):
    """Wait until the broker (reloading) accepts the login; the connected client."""
    def attempt():
        client = factory(broker, client_id=f"t-{username}", username=username,
                         password=password, check=False)
        if client.connack is not None and not client.connack.is_failure:
            return client
        client.close()
        return None

    return wait_until(attempt, timeout=10, what="login accepted", interval=0.2)


def test_provision_with_an_enrolment_token_makes_a_unit_that_logs_in(
        tmp_path, controller, capsys, mqtt_client_factory):
    token = controller.enrol_token(capsys)
    root = tmp_path / "root"

    assert provision(controller.url, token, root) == 0
    out = capsys.readouterr().out
    assert re.search(rf"\[1/7\] Identity: enrolled {DEVICE} \(irrigation, OPD dlh\)", out)
    for step in ("[3/7] Config: written", "[4/7] MQTT password: written",
                 "[5/7] State dir: created", "[6/7] Systemd unit: written",
                 "[7/7] Enabled: linked"):
        assert step in out, out

    # The config: the example, with this unit's identity and the controller's broker.
    config = load_config(root / "etc/smartcity/irrigation.toml")
    assert (config.kind, config.unit.device_id, config.unit.opd, config.unit.name) == (
        "irrigation", DEVICE, OPD, "Taman Uji")
    broker = controller.broker
    assert (config.broker.host, config.broker.port, config.broker.tls) == (
        broker.host, broker.port, False)
    assert config.broker.username == DEVICE
    # The password: a 0600 file where the config points.
    secret = root / str(config.broker.password_file).lstrip("/")
    assert secret.stat().st_mode & 0o777 == 0o600
    password = secret.read_text().strip()
    assert len(password) >= 24
    # The systemd unit, installed and enabled.
    installed = root / "etc/systemd/system" / UNIT
    assert installed.read_bytes() == (REPO / "systemd" / UNIT).read_bytes()
    link = root / "etc/systemd/system/multi-user.target.wants" / UNIT
    assert os.readlink(link) == f"../{UNIT}"

    # The controller registered the device, audited the enrolment and rewrote the broker
    # files: after a reload the unit's credentials log in and reach its own topics only.
    with Store.open(controller.settings.database.target) as store:
        assert store.get_device(DEVICE)["kind"] == "irrigation"
        actions = [a["action"] for a in store.list_audit()]
        assert actions[:3] == ["device.enrol", "device.add", "enrolment.create"]
        assert store.list_enrolments(DEVICE)[0]["used_from"] == "127.0.0.1"
    controller.reload_broker()
    unit = login(mqtt_client_factory, broker, DEVICE, password)
    assert unit.puback(unit.publish(topic(OPD, DEVICE, "telemetry"), b"{}")) == "Success"
    other = topic("dp3", "tambak-lain-01", "telemetry")
    assert unit.puback(unit.publish(other, b"{}")) == "Not authorized"
    bad = mqtt_client_factory(broker, username=DEVICE, password="wrong", check=False)
    assert bad.connack.is_failure

    # Again, same inputs: the token is spent, the unit knows it holds that identity.
    before = snapshot(root)
    assert provision(controller.url, token, root) == 0
    out = capsys.readouterr().out
    assert snapshot(root) == before
    assert "[1/7] Identity: unchanged" in out and out.count(": unchanged") == 6
    assert "Nothing changed" in out
    assert provision(controller.url, token, root, "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.count(": unchanged") == 6 and "would" not in out
    with Store.open(controller.settings.database.target) as store:
        assert [a["action"] for a in store.list_audit()].count("device.enrol") == 1


def test_provision_dry_run_writes_nothing_and_leaves_the_token_usable(
        tmp_path, controller, capsys):
    token = controller.enrol_token(capsys)
    root = tmp_path / "root"
    assert provision(controller.url, token, root, "--dry-run") == 0
    out = capsys.readouterr().out
    assert not root.exists()
    assert f"[1/7] Identity: would enrol {DEVICE}" in out
    assert "[4/7] MQTT password: would write" in out and "[7/7] Enabled: would link" in out
    with Store.open(controller.settings.database.target) as store:
        assert store.list_enrolments(DEVICE)[0]["used_at"] is None
        assert store.get_device(DEVICE) is None
    assert provision(controller.url, token, root) == 0  # the real run still works


def test_provision_refuses_a_used_or_expired_token(tmp_path, controller, capsys):
    token = controller.enrol_token(capsys)
    assert provision(controller.url, token, tmp_path / "first") == 0
    capsys.readouterr()

    # Used: another unit (a fresh root) presenting the same token.
    r = httpx.post(f"{controller.url}/api/v1/enrol", json={"token": token}, timeout=10)
    assert r.status_code == 409 and "already used" in r.json()["detail"]
    assert provision(controller.url, token, tmp_path / "second") == 1
    err = capsys.readouterr().err
    assert "refused the enrolment token (HTTP 409)" in err and "already used" in err
    assert not (tmp_path / "second").exists()

    # Expired: made three days ago for one hour.
    with Store.open(controller.settings.database.target) as store:
        old, _ = create_enrolment(store, controller.settings, device_id="dlh-taman-uji-02",
                                  opd=OPD, kind="irrigation", ttl_h=1, actor="test",
                                  now=utcnow() - timedelta(days=3))
    r = httpx.post(f"{controller.url}/api/v1/enrol", json={"token": old}, timeout=10)
    assert r.status_code == 410 and "expired" in r.json()["detail"]
    assert provision(controller.url, old, tmp_path / "third") == 1
    assert "(HTTP 410)" in capsys.readouterr().err
    assert not (tmp_path / "third").exists()

    # Unknown tokens get 401; none of these refusals registered anything.
    r = httpx.post(f"{controller.url}/api/v1/enrol", json={"token": "nope"}, timeout=10)
    assert r.status_code == 401
    with Store.open(controller.settings.database.target) as store:
        assert store.get_device("dlh-taman-uji-02") is None
        assert [a["action"] for a in store.list_audit()].count("device.enrol") == 1


def test_enrolment_stores_nothing_when_the_broker_files_cannot_be_written(tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the broker files' directory should be")
    settings = parse_settings({
        "database": {"path": str(tmp_path / "controller.db")},
        "mqtt": {"password": "ctl-secret"},
        "broker_files": {"acl_file": str(blocked / "acl"),
                         "password_file": str(blocked / "passwd")}}, environ={})
    with Store.open(settings.database.target) as store:
        token, _ = create_enrolment(store, settings, device_id=DEVICE, opd=OPD,
                                    kind="irrigation", actor="test")
        with pytest.raises(EnrolmentRefused) as refused:
            enrol(store, settings, token, used_from="10.0.0.9")
        assert refused.value.reason == "not_ready"
        assert "cannot write the broker files" in str(refused.value)
        # All or nothing: no device, the token unused, no audit entry but its creation.
        assert store.get_device(DEVICE) is None
        assert store.list_enrolments(DEVICE)[0]["used_at"] is None
        assert [a["action"] for a in store.list_audit()] == ["enrolment.create"]

        blocked.unlink()  # the administrator fixes the path; the same token now works
        result = enrol(store, settings, token, used_from="10.0.0.9")
        assert result.username == DEVICE and result.password
        assert store.get_device(DEVICE)["opd"] == OPD
        users = [line.split(":")[0] for line in (blocked / "passwd").read_text().splitlines()]
        assert users == ["smartcity-controller", DEVICE]
        assert f"user {DEVICE}" in (blocked / "acl").read_text()
