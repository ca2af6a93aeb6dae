"""The generated password and ACL files on a real Mosquitto: a device sees only its own topics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.cli import main
from protocol.topics import topic


@pytest.fixture
def broker_files(tmp_path, monkeypatch, capsys):
    """Register two devices with the CLI and write the broker files with it."""
    config = tmp_path / "controller.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "c.db"}"\n'
                      f'[broker_files]\nacl_file = "{tmp_path / "acl"}"\n'
                      f'password_file = "{tmp_path / "passwd"}"\n')
    monkeypatch.setenv("SMARTCITY_MQTT__PASSWORD", "controller-secret")
    passwords = {}
    for opd, device in (("dlh", "taman-a"), ("dp3", "tambak-b")):
        assert main(["device", "add", "--config", str(config), "--opd", opd,
                     "--device-id", device]) == 0
        passwords[device] = re.search(r"MQTT password: (\S+)", capsys.readouterr().out)[1]
    # Devices were hashed by mosquitto_passwd (it is installed here); hash the
    # controller's own password in Python, to prove Mosquitto reads that format too.
    import controller.broker_files as bf

    monkeypatch.setattr(bf.shutil, "which", lambda name, *a, **k: None)
    assert main(["mqtt-acl", "--config", str(config)]) == 0
    monkeypatch.undo()
    return tmp_path / "passwd", tmp_path / "acl", passwords


@pytest.fixture
def secured(mosquitto_factory, broker_files):
    passwd, acl, passwords = broker_files
    broker = mosquitto_factory(password_file=str(passwd), acl_file=str(acl),
                               allow_anonymous=False)
    return broker, passwords


def test_acl_wrong_password_and_anonymous_are_refused(secured, mqtt_client_factory):
    broker, passwords = secured
    bad = mqtt_client_factory(broker, username="taman-a", password="nope", check=False)
    assert bad.connack.is_failure
    anon = mqtt_client_factory(broker, check=False)
    assert anon.connack.is_failure
    # The controller's hash was computed in Python (no mosquitto_passwd): accepted too.
    mqtt_client_factory(broker, username="smartcity-controller", password="controller-secret")


def test_acl_device_reads_and_writes_only_its_own_topics(secured, mqtt_client_factory):
    broker, passwords = secured
    ctl = mqtt_client_factory(broker, username="smartcity-controller",
                              password="controller-secret")
    ctl.subscribe("smartcity/v1/#")
    a = mqtt_client_factory(broker, client_id="unit-a", username="taman-a",
                            password=passwords["taman-a"])
    b = mqtt_client_factory(broker, client_id="unit-b", username="tambak-b",
                            password=passwords["tambak-b"])
    for t in (topic("dlh", "taman-a", "cmd"), topic("dp3", "tambak-b", "cmd"),
              topic("dp3", "tambak-b", "ack"), "smartcity/v1/#"):
        a.subscribe(t)
    b.subscribe(topic("dp3", "tambak-b", "cmd"))

    # A writes B's topics (and a controller-only one): the broker refuses every one.
    for t in (topic("dp3", "tambak-b", "telemetry"), topic("dp3", "tambak-b", "status"),
              topic("dp3", "tambak-b", "cmd/reply"), topic("dlh", "taman-a", "ack"),
              topic("dlh", "taman-a", "cmd")):
        info = a.publish(t, b"forged")
        assert a.puback(info) == "Not authorized", t
    a.publish(topic("dlh", "taman-a", "telemetry"), b"own")

    # The controller commands both units; each receives only its own command.
    ctl.publish(topic("dp3", "tambak-b", "cmd"), b"for-b")
    ctl.publish(topic("dp3", "tambak-b", "ack"), b"ack-b")
    ctl.publish(topic("dlh", "taman-a", "cmd"), b"for-a")
    b.wait_for_messages(1)
    got_a = a.settle(quiet=0.5)
    # (twice: once per matching subscription, its own and the wildcard)
    assert {(m.topic, m.payload) for m in got_a} == {(topic("dlh", "taman-a", "cmd"), b"for-a")}
    assert [m.payload for m in b.received()] == [b"for-b"]
    seen = ctl.settle(quiet=0.3)
    assert b"forged" not in [m.payload for m in seen]
    assert (topic("dlh", "taman-a", "telemetry"), b"own") in [(m.topic, m.payload) for m in seen]


def test_shipped_mosquitto_conf_runs_with_generated_files(mosquitto_factory, broker_files,
                                                         mqtt_client_factory):
    """config/mosquitto.conf: Mosquitto accepts every option (paths and port swapped)."""
    passwd, acl, passwords = broker_files
    shipped = (Path(__file__).parents[2] / "config" / "mosquitto.conf").read_text()
    options = {}
    for line in shipped.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            options[key] = value
    assert options["allow_anonymous"] == "false"
    assert int(options["max_queued_messages"]) > 1000 and "max_queued_bytes" in options
    for key in ("listener", "password_file", "acl_file"):
        options.pop(key)
    broker = mosquitto_factory(password_file=str(passwd), acl_file=str(acl), **options)
    unit = mqtt_client_factory(broker, username="taman-a", password=passwords["taman-a"])
    assert unit.publish(topic("dlh", "taman-a", "event"), b"x").is_published()
