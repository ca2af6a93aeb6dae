"""Schemathesis against the app's own OpenAPI schema: no 5xx, every answer fits the schema.

Bounded: at most 25 generated requests per operation, with an admin token so requests
get past authentication. Schemathesis's checks also send requests without the token
(must be 401) and with broken data (must be 4xx). Schemathesis's own pytest plugin does not run under pytest 9
yet, so each operation is a plain parametrized test driving its Hypothesis strategy.
"""

from __future__ import annotations

import pytest
import schemathesis
from controller_support import auth, seed
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from controller.api.main import create_app
from controller.auth import hash_token
from controller.publisher import MemoryTransport
from controller.settings import parse_settings
from controller.store import Store

# Every operation of the schema (the schema does not depend on settings or data; an
# in-memory database, so that reading it never opens the default file of a machine).
_SCHEMA_ONLY = parse_settings({"database": {"path": ":memory:"}, "mqtt": {"enabled": False}},
                              environ={})
# The live stream never ends by itself: tests/controller/test_live.py covers it.
ENDLESS = {"GET /api/v1/stream"}
OPERATIONS = [label for op in
              schemathesis.openapi.from_asgi("/openapi.json", create_app(_SCHEMA_ONLY))
              .get_all_operations() if (label := op.ok().label) not in ENDLESS]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "controller.db"
    with Store.open(path) as store:
        tokens = seed(store)
        # Move the admin's token away from the small ids DELETE /tokens/{id} will try.
        admin_id = store.principal_for(hash_token(tokens.admin))["id"]
        store.db.execute("UPDATE tokens SET id = 987654 WHERE id = ?", [admin_id])
        # Schemathesis probes every operation with a wrong token: lift the failed-login
        # limit, or the admin's own calls would be answered 429 after ten probes.
        app_settings = parse_settings({"database": {"path": str(path)},
                                       "mqtt": {"enabled": False},
                                       "api": {"login_failures_max": 100_000}}, environ={})
        app = create_app(app_settings, store=store, mqtt=MemoryTransport())
        with TestClient(app):  # runs the lifespan; schemathesis calls the same app
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            yield schema, auth(tokens.admin)
        # No call was answered 429, so every one above really reached its route.
        assert b"smartcity_api_logins_throttled_total 0.0" in app.state.metrics.render()


def test_schemathesis_sees_every_operation():
    assert len(OPERATIONS) >= 20
    assert "POST /api/v1/devices/{device_id}/commands" in OPERATIONS


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_schema_no_5xx_and_conformant(fuzzed, label):
    schema, headers = fuzzed
    method, path = label.split(" ", 1)
    operation = schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        # Every default check but "schema-valid data must be accepted": some rules are
        # not expressible in the schema (a pause must end after the command is issued).
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    check()
