"""Controller test fixtures: a store, an app without a broker, tokens for every role, and a
real fish-feeder unit process whose auger jams."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controller_support import Tokens, seed
from fastapi.testclient import TestClient

from controller.api.main import create_app
from controller.publisher import MemoryTransport
from controller.settings import Settings, parse_settings
from controller.store import Store

# Modules whose tests run on both backends: each test that uses ``backend`` (through
# ``database``, ``settings`` or ``store``) runs as ``[sqlite]`` and ``[postgres]``.
BOTH_BACKENDS = frozenset({
    "test_store_ingest", "test_store_backends", "test_seqs_ack_watermark", "test_alarms",
    "test_api_alarms", "test_notify_outbox", "test_reports_month", "test_reports_uptime",
    "test_api_flows", "test_api_tokens", "test_api_devices_json", "test_controller_cli",
    "test_ingest_broker", "test_ingest_writer_process", "test_e2e_unit", "test_notify_e2e",
    "test_live", "test_api_update_window",
})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if ("backend" in metafunc.fixturenames
            and metafunc.module.__name__.rpartition(".")[2] in BOTH_BACKENDS):
        metafunc.parametrize("backend", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgres`` (only ``sqlite`` outside `BOTH_BACKENDS`)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pg_template(postgres_server: Any) -> tuple[str, str]:
    """(admin URL, name) of a database migrated once, copied for each test (faster than
    migrating each test's database)."""
    from tests.support.postgres import create_database, external_url

    admin = external_url() or postgres_server.url()
    name = f"tmpl_{uuid.uuid4().hex[:12]}"
    with Store.open(create_database(admin, name)):
        pass
    return admin, name


@pytest.fixture
def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """The ``[database]`` settings of this test's backend: a SQLite file, or a new
    PostgreSQL database already migrated (the file path is set too, unused)."""
    section = {"path": str(tmp_path / "controller.db")}
    if backend == "postgres":
        from tests.support.postgres import create_database

        admin, template = request.getfixturevalue("pg_template")
        section["url"] = create_database(admin, template=template)
    return section


@pytest.fixture
def settings(database) -> Settings:
    return parse_settings({"database": database, "mqtt": {"enabled": False}}, environ={})


@pytest.fixture
def store(settings) -> Iterator[Store]:
    with Store.open(settings.database.target) as s:
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


FEEDER_UNIT = """\
kind = "fish_feeder"
state_dir = "{state}"

[unit]
device_id = "tambak-e2e"
opd = "dp3"

[broker]
host = "{host}"
port = {port}
keepalive_s = 5

[hardware]
pin_factory = "mock"

[clock]
sync_check = "assume_synced"

[telemetry]
interval_s = 1

[[outputs]]
name = "auger-nila"
pin = 17
max_on_s = 60

[[inputs]]
name = "rot-nila"
pin = 5
kind = "pulse"

[[feeders]]
name = "pakan-nila"
pond = "kolam-nila"
motor = "auger-nila"
rate_g_per_s = 18.0
max_dose_g = 1000
max_daily_g = 5000
confirm_by = "pulses"
rotation_input = "rot-nila"
g_per_pulse = 3.0
confirm_timeout_s = 1

[[ponds]]
name = "kolam-nila"
species = "nila"

[ponds.plan]
times = ["07:00"]
doses_g = [500]
"""


@pytest.fixture
def feeder_unit(tmp_path, mosquitto):
    """A real fish-feeder unit on mock pins: its auger never gives a rotation pulse."""
    config = tmp_path / "feeder.toml"
    config.write_text(FEEDER_UNIT.format(state=tmp_path / "unit", host=mosquitto.host,
                                         port=mosquitto.port))
    log = (tmp_path / "unit.log").open("w")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "unit_process.py"), str(config),
                             str(tmp_path / "pins.log")], stdout=log, stderr=log,
                            start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    log.close()
