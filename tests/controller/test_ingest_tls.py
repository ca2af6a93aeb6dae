"""The controller's ingest over TLS to a real Mosquitto (``[mqtt] tls = true``, ``ca_file``)."""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import socket
import threading
from datetime import UTC, datetime

import pytest
from controller_support import add_device, wait_until
from fastapi.testclient import TestClient

from controller import cli
from controller.api.main import create_app
from controller.errors import SettingsError
from controller.settings import load_settings
from controller.store import Store
from protocol.codec import decode, encode
from protocol.models import Ack, Telemetry
from protocol.topics import topic

CONTROLLER_TOML = """
[database]
path = "{db}"

[mqtt]
host = "{host}"
port = {port}
tls = {tls}
ca_file = "{ca_file}"
client_id = "ctl-tls"
reconnect_max_s = 2

[ingest]
ack_interval_s = 0.2
"""


def write_settings(tmp_path, host, port, ca_file, *, tls=True):
    path = tmp_path / "controller.toml"
    path.write_text(CONTROLLER_TOML.format(db=tmp_path / "controller.db", host=host,
                                           port=port, tls=str(tls).lower(), ca_file=ca_file))
    return path


def test_ingest_over_tls_stores_a_units_message_and_acks_it(tmp_path, mosquitto_factory,
                                                            test_pki, mqtt_client_factory):
    broker = mosquitto_factory(tls=test_pki.listener())
    shutil.copy(test_pki.ca_cert, tmp_path / "broker-ca.pem")
    # A relative ca_file is read next to the config file.
    settings = load_settings(write_settings(tmp_path, *broker.tls_address, "broker-ca.pem"),
                             environ={})
    assert settings.mqtt.ca_file == tmp_path / "broker-ca.pem"
    with Store.open(settings.database.target) as store:
        add_device(store, "taman-01", "dlh")
        with TestClient(create_app(settings, store=store)) as client:
            assert client.app.state.controller.ingest.wait_connected(10)
            unit = mqtt_client_factory(broker.tls_address, client_id="unit-dlh-taman-01",
                                       tls_ca=test_pki.ca_cert)
            unit.subscribe(topic("dlh", "taman-01", "ack"))
            sample = Telemetry(seq=1, ts=datetime.now(UTC),
                               readings={"moisture_pct.zone1": 41.5}, outputs={"zone1": False})
            unit.publish(topic("dlh", "taman-01", "telemetry"), encode(sample))
            [row] = wait_until(lambda: store.telemetry("taman-01"), what="the stored sample")
            assert row["seq"] == 1
            [ack] = unit.wait_for(lambda: unit.messages, what="the ack over TLS")
            assert decode(Ack, ack.payload).seq == 1
    # The broker saw the controller come in on its TLS listener.
    log = broker.log_text()
    [address] = re.findall(r"New client connected from (\S+) as ctl-tls ", log)
    assert f"New connection from {address} on port {broker.tls_port}." in log


def test_settings_refuse_a_ca_file_that_does_not_exist(tmp_path, capsys):
    path = write_settings(tmp_path, "127.0.0.1", 8883, "/etc/smartcity/absent-ca.pem")
    with pytest.raises(SettingsError) as err:
        load_settings(path, environ={})
    assert err.value.problems == [("mqtt.ca_file",
                                   "file not found: /etc/smartcity/absent-ca.pem")]
    assert cli.main(["serve", "--config", str(path)]) == 2
    out = capsys.readouterr().err
    assert f"{path}: invalid controller config" in out
    assert "mqtt.ca_file: file not found: /etc/smartcity/absent-ca.pem" in out


def test_settings_refuse_a_ca_file_that_is_not_a_certificate(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    path = write_settings(tmp_path, "127.0.0.1", 8883, "ca.pem")
    with pytest.raises(SettingsError, match=r"mqtt.ca_file: not a PEM CA certificate .*ca\.pem"):
        load_settings(path, environ={})


def test_settings_ignore_the_ca_file_without_tls(tmp_path, test_pki):
    path = write_settings(tmp_path, "127.0.0.1", 1883, "absent.pem", tls=False)
    assert load_settings(path, environ={}).mqtt.tls is False
    # ... and TLS switched on from the environment is checked like the file.
    with pytest.raises(SettingsError, match="mqtt.ca_file: file not found"):
        load_settings(path, environ={"SMARTCITY_MQTT__TLS": "true"})
    ok = load_settings(path, environ={"SMARTCITY_MQTT__TLS": "true",
                                      "SMARTCITY_MQTT__CA_FILE": str(test_pki.ca_cert)})
    assert ok.mqtt.ca_file == test_pki.ca_cert



class CountingRelay:
    """Relays each TCP connection to ``target`` and counts them: one per attempt to
    connect, whether or not its TLS handshake then succeeds."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._server.getsockname()[:2]
        self.connections = 0
        self._sockets = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return  # closed
            upstream.settimeout(None)
            self.connections += 1
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


def test_ingest_with_the_wrong_ca_says_why_once_and_stores_nothing(
        tmp_path, mosquitto_factory, test_pki, mqtt_client_factory, caplog):
    caplog.set_level(logging.INFO, logger="controller.ingest")
    broker = mosquitto_factory(tls=test_pki.listener())
    relay = CountingRelay(broker.tls_address)
    # A CA that did not sign the broker's certificate.
    settings = load_settings(write_settings(tmp_path, relay.host, relay.port,
                                            test_pki.other_ca_cert), environ={})
    try:
        with Store.open(settings.database.target) as store:
            add_device(store, "taman-01", "dlh")
            with TestClient(create_app(settings, store=store)) as client:
                ingest = client.app.state.controller.ingest
                unit = mqtt_client_factory(broker.tls_address, client_id="unit-dlh-taman-01",
                                           tls_ca=test_pki.ca_cert)
                sample = Telemetry(seq=1, ts=datetime.now(UTC),
                                   readings={"moisture_pct.zone1": 41.5},
                                   outputs={"zone1": False})
                unit.publish(topic("dlh", "taman-01", "telemetry"), encode(sample))
                # The controller keeps trying (reconnect delay 1 s, then 2 s).
                wait_until(lambda: relay.connections >= 3, timeout=20,
                           what="a third attempt to connect")
                assert not ingest.connected
                assert store.telemetry("taman-01") == []
    finally:
        relay.close()
    errors = [r.getMessage() for r in caplog.records
              if r.name == "controller.ingest" and r.levelno == logging.ERROR]
    expected = (f"ingest cannot connect to the broker at {relay.host}:{relay.port}: TLS: the "
                f"broker's certificate was refused (self-signed certificate in certificate "
                f"chain): mqtt.ca_file ({test_pki.other_ca_cert}) is not the CA that signed "
                f"the broker's certificate (retrying)")
    assert errors == [expected]  # once, not once per attempt
    # Nothing reached the broker as the controller: no login over a connection it could
    # not trust.
    assert "as ctl-tls " not in broker.log_text()
