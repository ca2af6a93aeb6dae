"""Test support: a real Mosquitto broker and paho-mqtt test clients, as pytest fixtures.

Registered by ``tests/conftest.py`` (``pytest_plugins = ["support"]``).

Fixtures
--------
``mosquitto``
    A started `MosquittoBroker` with the default config (anonymous access,
    persistence with a 1 s autosave, raised queue limits); stopped afterwards.
``mosquitto_factory(password_file_users=None, acl=None, tls=None, **conf_overrides)``
    Make and start more brokers; keyword arguments are mosquitto.conf options
    (``autosave_on_changes=True``, ``allow_anonymous=False``, ...).
``mqtt_client_factory(broker, *, client_id="", protocol="5", clean_start=True,
session_expiry=None, username=None, password=None, tls_ca=None, check=True, connect=True)``
    Connected `MqttTestClient` objects; all disconnected afterwards.
``test_pki`` (session)
    A throwaway CA, a server certificate it signed for 127.0.0.1 and localhost, and an
    unrelated CA (`TestPki`); ``mosquitto_factory(tls=test_pki.listener())`` starts a
    broker with a TLS listener on ``broker.tls_port`` next to the plain one.
``postgres_server`` (session)
    One `tests.support.postgres.PostgresServer` for the whole run (or None when
    ``SMARTCITY_TEST_POSTGRES_URL`` names a server to use instead).
``pg_url``
    The URL of a new, empty PostgreSQL database for this test (on ``postgres_server`` or
    on the server the environment names).

Broker work directories live under pytest's ``tmp_path`` so the config,
mosquitto.log and mosquitto.db of the last runs stay around for post-mortems.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .broker import MosquittoBroker, TlsListener, find_mosquitto
from .mqtt import MqttClientFactory, MqttTestClient, make_client_factory
from .tls import TestPki, find_openssl, make_test_pki

__all__ = [
    "MosquittoBroker",
    "MqttTestClient",
    "TestPki",
    "TlsListener",
    "mosquitto",
    "mosquitto_factory",
    "mqtt_client_factory",
    "test_pki",
]

MosquittoFactory = Callable[..., MosquittoBroker]


@pytest.fixture
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoFactory]:
    """Start brokers on demand; every one is stopped (SIGTERM, then SIGKILL) at teardown."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    brokers: list[MosquittoBroker] = []

    def factory(password_file_users: dict[str, str] | None = None, acl: str | None = None,
                tls: TlsListener | None = None, **conf_overrides: Any) -> MosquittoBroker:
        broker = MosquittoBroker(
            password_users=password_file_users,
            acl=acl,
            conf_overrides=conf_overrides,
            workdir=tmp_path_factory.mktemp("mosquitto"),
            tls=tls,
        )
        brokers.append(broker)
        return broker.start()

    yield factory
    for broker in reversed(brokers):
        broker.close()


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> MosquittoBroker:
    """A running broker with the default test config."""
    return mosquitto_factory()


@pytest.fixture
def mqtt_client_factory() -> Iterator[MqttClientFactory]:
    """Make connected paho test clients; all are disconnected at teardown."""
    factory, close_all = make_client_factory()
    yield factory
    close_all()


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A CA, a server certificate for 127.0.0.1/localhost it signed, and an unrelated CA."""
    if find_openssl() is None:
        pytest.skip("openssl is not installed")
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    from tests.support.postgres import PostgresServer, external_url

    if external_url():
        yield None
        return
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(postgres_server: Any) -> str:
    from tests.support.postgres import create_database, external_url

    if postgres_server is None:
        return create_database(external_url())
    return postgres_server.create_database()
