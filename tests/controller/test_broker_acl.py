"""The generated password and ACL files on a real Mosquitto: a device sees only its own
topics, and with the shipped config (config/mosquitto.conf) no login can take another
client's id: not another unit's, not the controller's (nor its persistent session)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.cli import main
from protocol.codec import MAX_PAYLOAD_BYTES
from protocol.topics import topic

SHIPPED_CONF = Path(__file__).parents[2] / "config" / "mosquitto.conf"
CONTROLLER = "smartcity-controller"  # the controller's username, and so its client id
WORKER = "smartcity-ingest-2"  # a second ingest worker's login (docs/scaling.md)


@pytest.fixture
def broker_files(tmp_path, monkeypatch, capsys):
    """Register two devices with the CLI and write the broker files with it."""
    config = tmp_path / "controller.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "c.db"}"\n'
                      f'[broker_files]\nacl_file = "{tmp_path / "acl"}"\n'
                      f'password_file = "{tmp_path / "passwd"}"\n'
                      f'worker_usernames = ["{WORKER}"]\n')
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


def shipped_options() -> dict[str, str]:
    """config/mosquitto.conf's options, without the listener and the files' paths (the
    test broker listens on a free port of its own and reads the generated files)."""
    options = {}
    for line in SHIPPED_CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            options[key] = value
    for key in ("listener", "password_file", "acl_file"):
        options.pop(key)
    return options


@pytest.fixture
def shipped(mosquitto_factory, broker_files):
    """A Mosquitto running the shipped config with the generated files."""
    passwd, acl, passwords = broker_files
    options = shipped_options()
    assert options["allow_anonymous"] == "false"
    broker = mosquitto_factory(password_file=str(passwd), acl_file=str(acl), **options)
    return broker, passwords


def test_shipped_mosquitto_conf_runs_with_generated_files(shipped, mqtt_client_factory):
    """config/mosquitto.conf: Mosquitto accepts every option (paths and port swapped)."""
    broker, passwords = shipped
    options = shipped_options()
    assert int(options["max_queued_messages"]) > 1000 and "max_queued_bytes" in options
    unit = mqtt_client_factory(broker, username="taman-a", password=passwords["taman-a"])
    assert unit.publish(topic("dlh", "taman-a", "event"), b"x").is_published()


def controller_session(factory, broker, **options):
    """The controller as the ingest connects: fixed client id, persistent session."""
    ctl = factory(broker, client_id=CONTROLLER, username=CONTROLLER,
                  password="controller-secret", clean_start=False, session_expiry=3600,
                  **options)
    ctl.subscribe("smartcity/v1/+/+/telemetry")
    return ctl


def test_acl_unit_cannot_take_another_units_or_the_controllers_client_id(
        shipped, mqtt_client_factory):
    broker, passwords = shipped
    ctl = controller_session(mqtt_client_factory, broker)
    b = mqtt_client_factory(broker, client_id="unit-dp3-tambak-b", username="tambak-b",
                            password=passwords["tambak-b"], clean_start=False,
                            session_expiry=3600)
    b.subscribe(topic("dp3", "tambak-b", "cmd"))

    # Unit A's login, with B's client id, then with the controller's (clean start, which
    # would also wipe the victim's session): each is let in, as A, and nobody is dropped.
    for victim_id in ("unit-dp3-tambak-b", CONTROLLER, "tambak-b"):
        thief = mqtt_client_factory(broker, client_id=victim_id, username="taman-a",
                                    password=passwords["taman-a"])
        thief.subscribe(topic("dlh", "taman-a", "cmd"))
        thief.close()
    assert not b.disconnects and b.client.is_connected()
    assert not ctl.disconnects and ctl.client.is_connected()

    # Both victims still receive, on the sessions they had.
    b.publish(topic("dp3", "tambak-b", "telemetry"), b"b-1")
    assert [m.payload for m in ctl.wait_for_messages(1)] == [b"b-1"]
    ctl.publish(topic("dp3", "tambak-b", "cmd"), b"cmd-1")
    assert [m.payload for m in b.wait_for_messages(1)] == [b"cmd-1"]


def test_acl_unit_cannot_take_the_controllers_persistent_session(shipped,
                                                                 mqtt_client_factory):
    broker, passwords = shipped
    controller_session(mqtt_client_factory, broker).close()  # away; its session stays
    b = mqtt_client_factory(broker, username="tambak-b", password=passwords["tambak-b"])
    b.publish(topic("dp3", "tambak-b", "telemetry"), b"while-away")

    # A's login asks for the controller's session (to read what is queued for it), then
    # for a clean one in its name (to drop it): neither reaches the controller's session.
    thief = mqtt_client_factory(broker, client_id=CONTROLLER, username="taman-a",
                                password=passwords["taman-a"], clean_start=False,
                                session_expiry=3600)
    assert thief.session_present is False
    assert thief.settle(quiet=0.5) == []
    thief.close()
    mqtt_client_factory(broker, client_id=CONTROLLER, username="taman-a",
                        password=passwords["taman-a"]).close()

    ctl = controller_session(mqtt_client_factory, broker)
    assert ctl.session_present is True
    assert [m.payload for m in ctl.wait_for_messages(1)] == [b"while-away"]


def test_acl_ingest_workers_each_keep_their_own_session(shipped, mqtt_client_factory):
    """Two ingest workers on one shared subscription, each with its own login (and so
    its own client id and session): neither replaces the other; together they get all."""
    broker, passwords = shipped
    workers = [mqtt_client_factory(broker, client_id=user, username=user,
                                   password="controller-secret", clean_start=False,
                                   session_expiry=3600) for user in (CONTROLLER, WORKER)]
    for worker in workers:
        worker.subscribe("$share/ingest/smartcity/v1/+/+/telemetry")
    unit = mqtt_client_factory(broker, username="taman-a", password=passwords["taman-a"])
    sent = [f"t-{i}".encode() for i in range(20)]
    for payload in sent:
        unit.publish(topic("dlh", "taman-a", "telemetry"), payload)
    got = [worker.settle(quiet=0.3) for worker in workers]
    assert sorted(m.payload for m in got[0] + got[1]) == sorted(sent)
    assert all(got) and not any(w.disconnects for w in workers)


def test_acl_without_username_as_clientid_a_unit_drops_the_controller(
        secured, mqtt_client_factory):
    """Why the shipped config sets it: the same attempt on a broker without it."""
    broker, passwords = secured
    ctl = controller_session(mqtt_client_factory, broker)
    mqtt_client_factory(broker, client_id=CONTROLLER, username="taman-a",
                        password=passwords["taman-a"])
    ctl.wait_for(lambda: ctl.disconnects, what="the controller's disconnection")
    assert f"Client {CONTROLLER} already connected, closing old connection" in \
        broker.log_text()


def test_acl_packets_up_to_the_largest_payload_pass_bigger_ones_are_refused(
        shipped, mqtt_client_factory):
    broker, passwords = shipped
    limit = int(shipped_options()["max_packet_size"])
    assert limit >= MAX_PAYLOAD_BYTES + 1024  # room for topic, properties and header
    ctl = controller_session(mqtt_client_factory, broker)
    unit = mqtt_client_factory(broker, username="taman-a", password=passwords["taman-a"])
    largest = b"x" * MAX_PAYLOAD_BYTES
    unit.publish(topic("dlh", "taman-a", "telemetry"), largest)
    assert ctl.wait_for_messages(1)[0].payload == largest

    unit.client.publish(topic("dlh", "taman-a", "telemetry"), b"x" * limit, qos=1)
    unit.wait_for(lambda: unit.disconnects, what="disconnection for an oversized packet")
    assert len(ctl.settle(quiet=0.5)) == 1


def test_broker_files_written_concurrently_hold_every_device_and_flag_the_change(tmp_path):
    """Enrolments run in parallel (API threads, several instances): each one rewrites the
    files from the devices it reads, one writer at a time. The files last written hold
    every device, and the flag the path unit watches (PathExists=) is made once both files
    are complete."""
    import threading

    from controller.broker_files import pbkdf2_hash
    from controller.enrolment import CHANGED_FLAG, write_broker_files
    from controller.settings import parse_settings
    from controller.store import Store

    settings = parse_settings({
        "database": {"path": str(tmp_path / "c.db")},
        "mqtt": {"password": "controller-secret"},
        "broker_files": {"acl_file": str(tmp_path / "b" / "acl"),
                         "password_file": str(tmp_path / "b" / "passwd")}}, environ={})
    devices = [f"taman-{i:02d}" for i in range(12)]
    errors: list[BaseException] = []

    def enrol_one(device: str) -> None:
        try:
            with Store.open(settings.database.path) as store:
                store.add_device(device, "dlh", kind="irrigation", name=device,
                                 mqtt_password_hash=pbkdf2_hash("pw-" + device),
                                 actor="test")
                write_broker_files(store, settings)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    Store.open(settings.database.path).close()
    threads = [threading.Thread(target=enrol_one, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    passwd = (tmp_path / "b" / "passwd").read_text()
    acl = (tmp_path / "b" / "acl").read_text()
    for device in devices:
        assert f"{device}:" in passwd, device
        assert f"/{device}/" in acl, device
    assert (tmp_path / "b" / CHANGED_FLAG).exists()
