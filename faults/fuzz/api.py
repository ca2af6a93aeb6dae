"""The controller's HTTP API under schemathesis, every operation with an admin token."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

from faults.common import ROOT


@dataclass
class ApiTally:
    operations: int = 0
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: int = 0
    crashes: int = 0
    check_failures: int = 0
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)

    def text(self) -> str:
        classes = Counter(f"{s // 100}xx" for s in self.statuses.elements())
        return (f"api: {self.operations} operations, {self.requests} requests "
                f"({dict(sorted(classes.items()))}), {self.server_errors} server errors (5xx), "
                f"{self.crashes} crashes, {self.check_failures} check failures "
                f"({self.seconds:.0f} s)")


def fuzz_api(per_operation: int, seed_value: int, workdir: Path) -> ApiTally:
    """Schemathesis over every operation, as tests/controller/test_api_schemathesis.py
    does it (its pytest plugin does not run under pytest 9: the strategies are driven
    directly), with ``per_operation`` examples each."""
    import schemathesis
    from fastapi.testclient import TestClient
    from schemathesis.checks import positive_data_acceptance

    from controller.api.main import create_app
    from controller.auth import hash_token
    from controller.publisher import MemoryTransport
    from controller.settings import parse_settings
    from controller.store import Store

    sys.path.insert(0, str(ROOT / "tests" / "controller"))
    from controller_support import auth
    from controller_support import seed as seed_db

    tally = ApiTally()
    path = workdir / "api-fuzz.db"
    t0 = time.perf_counter()
    with Store.open(path) as store:
        tokens = seed_db(store)
        # Move the admin's token away from the small ids DELETE /tokens/{id} will try.
        admin_id = store.principal_for(hash_token(tokens.admin))["id"]
        store.db.execute("UPDATE tokens SET id = 987654 WHERE id = ?", [admin_id])
        # Schemathesis probes every operation with a wrong token: lift the failed-login
        # limit, or the admin's own calls would be answered 429 after ten probes.
        app = create_app(parse_settings({"database": {"path": str(path)},
                                         "mqtt": {"enabled": False},
                                         "api": {"login_failures_max": 100_000}}, environ={}),
                         store=store, mqtt=MemoryTransport())
        headers = auth(tokens.admin)
        with TestClient(app):
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            operations = [op.ok() for op in schema.get_all_operations()]
            tally.operations = len(operations)
            for operation in operations:

                @seed(seed_value)
                @settings(max_examples=per_operation, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate],
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy())
                def call(case):
                    tally.requests += 1
                    try:
                        response = case.call(headers=headers)
                    except Exception as exc:  # noqa: BLE001 - what this counts
                        tally.crashes += 1
                        tally.samples.append(f"crash {case.method} {case.formatted_path}: "
                                             f"{type(exc).__name__}: {exc}"[:400])
                        return
                    tally.statuses[response.status_code] += 1
                    if response.status_code >= 500:
                        tally.server_errors += 1
                        tally.samples.append(f"{response.status_code} {case.method} "
                                             f"{case.formatted_path}: {response.text[:200]}")
                    try:
                        case.validate_response(response, headers=headers,
                                               excluded_checks=[positive_data_acceptance],
                                               transport_kwargs={"headers": headers})
                    except Exception as exc:  # noqa: BLE001 - a failed check, counted
                        tally.check_failures += 1
                        if len(tally.samples) < 20:
                            tally.samples.append(f"check {case.method} {case.formatted_path}: "
                                                 f"{str(exc)[:300]}")

                call()
    tally.seconds = time.perf_counter() - t0
    return tally
