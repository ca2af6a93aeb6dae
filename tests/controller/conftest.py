"""Controller test fixtures: a store, an app without a broker, tokens for every role."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from controller_support import Tokens, seed
from fastapi.testclient import TestClient

from controller.api.main import create_app
from controller.publisher import MemoryTransport
from controller.settings import Settings, parse_settings
from controller.store import Store


@pytest.fixture
def settings(tmp_path) -> Settings:
    return parse_settings({"database": {"path": str(tmp_path / "controller.db")},
                           "mqtt": {"enabled": False}}, environ={})


@pytest.fixture
def store(settings) -> Iterator[Store]:
    with Store.open(settings.database.path) as s:
        yield s


@pytest.fixture
def seeded(store) -> Tokens:
    """Devices taman-01 (dlh) and tambak-01 (dp3) and a token for every role."""
    return seed(store)


@pytest.fixture
def transport() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def client(settings, store, transport, seeded) -> Iterator[TestClient]:
    app = create_app(settings, store=store, mqtt=transport)
    with TestClient(app) as c:
        yield c
