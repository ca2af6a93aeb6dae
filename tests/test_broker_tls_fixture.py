"""The test broker's TLS listener: certificates made at test time, plain port unchanged."""

from __future__ import annotations

import ssl
import subprocess

import pytest


def test_tls_listener_next_to_the_plain_one(mosquitto_factory, test_pki, mqtt_client_factory):
    broker = mosquitto_factory(tls=test_pki.listener())
    assert broker.tls_port not in (None, broker.port)
    secure = mqtt_client_factory(broker.tls_address, tls_ca=test_pki.ca_cert)
    plain = mqtt_client_factory(broker)  # the plain listener still works
    secure.subscribe("t/#")
    plain.publish("t/x", b"over plain TCP")
    assert [m.payload for m in secure.wait_for_messages(1)] == [b"over plain TCP"]

    broker.restart()  # the TLS listener comes back on the same port
    again = mqtt_client_factory(broker.tls_address, tls_ca=test_pki.ca_cert)
    assert again.connack is not None and not again.connack.is_failure


def test_tls_listener_is_refused_by_a_client_that_does_not_trust_its_ca(
        mosquitto_factory, test_pki, mqtt_client_factory):
    broker = mosquitto_factory(tls=test_pki.listener())
    with pytest.raises(ssl.SSLCertVerificationError):
        mqtt_client_factory(broker.tls_address, tls_ca=test_pki.other_ca_cert)


def test_server_certificate_names_and_issuer(test_pki):
    result = subprocess.run(["openssl", "verify", "-CAfile", str(test_pki.ca_cert),
                             "-verify_ip", "127.0.0.1", str(test_pki.server_cert)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    other = subprocess.run(["openssl", "verify", "-CAfile", str(test_pki.other_ca_cert),
                            str(test_pki.server_cert)], capture_output=True, text=True)
    assert other.returncode != 0


def test_broker_without_tls_has_no_tls_listener(mosquitto):
    assert mosquitto.tls_port is None
    assert "cafile" not in mosquitto.conf_text()
    with pytest.raises(RuntimeError, match="no TLS listener"):
        mosquitto.tls_address  # noqa: B018
