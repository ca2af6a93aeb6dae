"""MQTT over TLS to a real Mosquitto: the unit's config names the broker's CA in [broker].

The unit reaches the broker's TLS listener through a small TCP relay that keeps every
byte the unit sent, so the tests can show what went over the wire: a TLS handshake and
then nothing readable (no MQTT CONNECT, no client id, no password, no telemetry).
"""

from __future__ import annotations

import logging
import socket
import threading
from types import SimpleNamespace

import pytest
from gpiozero.pins.mock import MockFactory
from link_helpers import FAST, LimitApp, ThreadedUnit, unit_toml, unit_topic, wait_until

from edge import cli, hardware
from edge.config import load_config
from edge.daemon import build_unit
from edge.link import LinkError
from protocol import Channel, decode

PASSWORD = "kata-sandi-rahasia-7f3a"
USERNAME = "taman-uji-01"
TLS_RECORD_HANDSHAKE = 0x16  # first byte of a TLS ClientHello record


class RecordingRelay:
    """Listens on ``host`` (a free port) and relays each connection to ``target``,
    keeping what the client sent, one bytearray per connection."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1"):
        self.target = target
        self._server = socket.create_server((host, 0))
        self.host, self.port = self._server.getsockname()[:2]
        self._lock = threading.Lock()
        self._sent: list[bytearray] = []
        self._sockets: list[socket.socket] = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            record = bytearray()
            with self._lock:
                self._sent.append(record)
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, record),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record) -> None:
        try:
            while data := src.recv(65536):
                if record is not None:
                    with self._lock:
                        record += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def sent(self) -> list[bytes]:
        """What the client sent, per connection, in order."""
        with self._lock:
            return [bytes(r) for r in self._sent]

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                sock.close()


@pytest.fixture
def tls_broker(mosquitto_factory, test_pki):
    return mosquitto_factory(tls=test_pki.listener())


@pytest.fixture
def relay_to():
    relays = []

    def make(target, host="127.0.0.1"):
        relays.append(RecordingRelay(target, host))
        return relays[-1]

    yield make
    for relay in relays:
        relay.close()


@pytest.fixture
def tls_unit(tmp_path):
    """Start a unit from a TOML file as a technician writes it: ``tls = true`` and
    ``ca_file`` in [broker], with a username and a password file."""
    units = []
    secret = tmp_path / "mqtt.password"
    secret.write_text(PASSWORD + "\n")

    def make(host, port, ca_file, *, wait=True):
        path = tmp_path / "irrigation.toml"
        path.write_text(unit_toml(
            SimpleNamespace(host=host, port=port), tmp_path / "state",
            tls=True, ca_file=ca_file, username=USERNAME, password_file=secret))
        config = load_config(path)
        unit = ThreadedUnit(build_unit(config, pin_factory=MockFactory(), app_class=LimitApp,
                                       link_options=FAST, sync_check=lambda: True))
        units.append(unit)
        unit.start()
        if wait and not unit.link.subscribed.wait(10):
            raise TimeoutError(f"unit did not subscribe within 10 s: {unit.link.connect_error}")
        return unit

    yield make
    for unit in units:
        unit.close()


def tls_watcher(mqtt_client_factory, broker, ca_file):
    """A subscriber on the broker's TLS listener that sees everything the unit sends."""
    watcher = mqtt_client_factory(broker.tls_address, client_id="test-watcher", tls_ca=ca_file)
    watcher.subscribe("smartcity/v1/#")
    return watcher


def assert_nothing_in_clear(connections: list[bytes], *secrets: bytes) -> None:
    assert connections, "the unit never opened a connection"
    for data in connections:
        assert data, "a connection on which the unit sent nothing at all"
        assert data[0] == TLS_RECORD_HANDSHAKE and data[1] == 0x03, data[:16]
        assert b"MQTT" not in data  # the protocol name in a plain CONNECT
        for secret in secrets:
            assert secret not in data, secret


def test_unit_publishes_status_and_telemetry_over_tls(tls_broker, test_pki, tls_unit,
                                                      relay_to, mqtt_client_factory):
    watcher = tls_watcher(mqtt_client_factory, tls_broker, test_pki.ca_cert)
    relay = relay_to(tls_broker.tls_address)
    unit = tls_unit(relay.host, relay.port, test_pki.ca_cert)
    assert unit.link.connected and unit.link.connect_error is None

    seq = unit.link.telemetry({"moisture_pct.lawn": 27.25}, {"valve1": False})
    [sample] = watcher.wait_for(
        lambda: [m for m in watcher.messages if m.topic == unit_topic(Channel.TELEMETRY)],
        what="telemetry over TLS")
    telemetry = decode(Channel.TELEMETRY, sample.payload)
    assert (telemetry.seq, telemetry.readings) == (seq, {"moisture_pct.lawn": 27.25})
    [status] = watcher.wait_for(
        lambda: [m for m in watcher.messages if m.topic == unit_topic(Channel.STATUS)],
        what="status over TLS")
    assert decode(Channel.STATUS, status.payload).online

    # All of it went through the relay, and none of it readable.
    assert_nothing_in_clear(relay.sent(), PASSWORD.encode(), b"unit-dlh-" + USERNAME.encode(),
                            b"moisture_pct.lawn", unit_topic(Channel.TELEMETRY).encode())


def test_unit_with_the_wrong_ca_does_not_connect_and_says_why(
        tls_broker, test_pki, tls_unit, relay_to, mqtt_client_factory, caplog):
    caplog.set_level(logging.WARNING, logger="edge.link")
    watcher = tls_watcher(mqtt_client_factory, tls_broker, test_pki.ca_cert)
    relay = relay_to(tls_broker.tls_address)
    unit = tls_unit(relay.host, relay.port, test_pki.other_ca_cert, wait=False)

    wait_until(lambda: len(relay.sent()) >= 2, 10, "a second attempt (the unit keeps trying)")
    reason = unit.link.connect_error
    assert reason is not None and not unit.link.connected
    assert "broker's certificate was refused" in reason
    assert f"broker.ca_file ({test_pki.other_ca_cert}) is not the CA that signed" in reason
    # Mosquitto sends its CA along with its certificate (OpenSSL builds the chain from
    # the listener's cafile), so OpenSSL meets a root the unit does not trust.
    assert "(self-signed certificate in certificate chain)" in reason
    logged = [r for r in caplog.records if r.name == "edge.link" and reason in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR  # once, not per retry

    # What it has to say waits in the outbox; nothing went out, in clear or otherwise.
    unit.link.telemetry({"moisture_pct.lawn": 27.25}, {"valve1": False})
    assert unit.link.outbox.backlog >= 2  # "started" and the sample
    assert_nothing_in_clear(relay.sent(), PASSWORD.encode(), b"unit-dlh-" + USERNAME.encode(),
                            b"moisture_pct.lawn")
    assert not [m for m in watcher.settle() if m.topic.startswith("smartcity/v1/dlh/")]
    assert "as unit-dlh-" not in tls_broker.log_text()


def test_unit_reaching_the_broker_by_a_name_not_in_its_certificate_says_so(
        tls_broker, test_pki, tls_unit, relay_to):
    # The certificate is for 127.0.0.1 and localhost; 127.0.0.2 is the same machine.
    relay = relay_to(tls_broker.tls_address, host="127.0.0.2")
    unit = tls_unit(relay.host, relay.port, test_pki.ca_cert, wait=False)
    reason = wait_until(lambda: unit.link.connect_error, 10, "a failed attempt")
    assert "broker.host (127.0.0.2) is not a name the broker's certificate was made for" \
        in reason
    assert not unit.link.connected
    assert_nothing_in_clear(relay.sent(), PASSWORD.encode())


def test_unit_with_tls_on_a_plain_port_says_so(mosquitto, test_pki, tls_unit):
    unit = tls_unit(mosquitto.host, mosquitto.port, test_pki.ca_cert, wait=False)
    reason = wait_until(lambda: unit.link.connect_error, 10, "a failed attempt")
    assert f"is port {mosquitto.port} a TLS listener?" in reason
    assert not unit.link.connected


# -- the CA file is checked before the unit runs ----------------------------------------

def write_config(tmp_path, ca_file, *, tls=True):
    path = tmp_path / "unit.toml"
    path.write_text(unit_toml(SimpleNamespace(host="127.0.0.1", port=8883), tmp_path / "st",
                              tls=tls, ca_file=ca_file))
    return path


def test_check_refuses_a_ca_file_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "etc" / "ca.pem"
    path = write_config(tmp_path, missing)
    assert cli.main(["check", "--config", str(path), "--lang", "en"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: invalid config" in err
    assert f"broker.ca_file: file not found: {missing}" in err


def test_check_refuses_a_ca_file_that_is_not_a_certificate(tmp_path, capsys):
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is the password, not a certificate\n")
    path = write_config(tmp_path, not_pem)
    assert cli.main(["check", "--config", str(path), "--lang", "en"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: invalid config" in err
    assert "broker.ca_file: not a PEM CA certificate" in err and str(not_pem) in err


def test_check_accepts_a_real_ca_file_and_ignores_ca_file_without_tls(tmp_path, test_pki,
                                                                      capsys):
    assert cli.main(["check", "--config", str(write_config(tmp_path, test_pki.ca_cert))]) == 0
    assert "OK (irrigation" in capsys.readouterr().out
    plain = write_config(tmp_path, tmp_path / "absent.pem", tls=False)
    assert cli.main(["check", "--config", str(plain)]) == 0


@pytest.mark.parametrize("problem", ["missing", "not_pem"])
def test_run_refuses_a_bad_ca_file_before_any_pin(tmp_path, mocker, capsys, problem):
    ca_file = tmp_path / "etc" / "ca.pem"
    if problem == "not_pem":
        ca_file.parent.mkdir()
        ca_file.write_text("this is the password, not a certificate\n")
    path = write_config(tmp_path, ca_file)
    factories = []

    def spy_factory(kind="auto"):
        factories.append(MockFactory())
        return factories[-1]

    mocker.patch.object(hardware, "make_pin_factory", spy_factory)
    assert cli.main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: invalid config" in err
    reason = "file not found" if problem == "missing" else "not a PEM CA certificate"
    assert f"broker.ca_file: {reason}" in err and str(ca_file) in err
    assert factories == [], "no pin factory may be built for a broken config"
    assert not (tmp_path / "st").exists()  # nor any state written


def test_link_start_with_a_missing_ca_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "ca.pem"
    config = load_config(write_config(tmp_path, missing))
    unit = build_unit(config, pin_factory=MockFactory(), app_class=LimitApp,
                      link_options=FAST, sync_check=lambda: True)
    try:
        with pytest.raises(LinkError, match=f"broker.ca_file {missing}: file not found"):
            unit.link.start()
    finally:
        unit.close()
