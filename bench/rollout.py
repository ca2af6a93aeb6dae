"""How long does the controller take to add a release, serve it, and roll it out?

The controller (``smartcity-controller serve``) and a private Mosquitto in subprocesses;
units are fake ones on the broker (``tests/controller/fake_units.py``: one MQTT
connection each, answering the ``update`` command at once with ``update_accepted`` and
``update_applied``), so what is measured is the controller's part, not a unit's install
(``bench/update.py`` measures that). Measured: ``POST /api/v1/releases`` of a signed
bundle (upload, signature, every hash, kept on disk); the bundle's download, whole and
resumed from its middle (HTTP Range); a rollout over every unit (canary 1, stages
``[10, 100]``) from ``POST /api/v1/rollouts`` to the canary's offer and to ``completed``.
Stages move on in the controller's periodic work (``[ingest] sweep_interval_s``, 2 s
by default), so a stage takes about one to two sweeps once its units have answered.

    .venv/bin/python bench/rollout.py [--units 100] [--bundle-mb 30] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "controller"))
from fake_units import FakeUnit  # noqa: E402
from release_support import make_bundle, new_key  # noqa: E402

from bench.common import (  # noqa: E402
    HOST,
    Controller,
    Figure,
    machine,
    print_figures,
    register_devices,
    start_broker,
    wait_until,
    write_json,
)


def _http(port: int, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=100, help="fake units (default 100)")
    parser.add_argument("--bundle-mb", type=float, default=30.0,
                        help="bundle size in MB (a real Pi bundle is about 30)")
    parser.add_argument("--quick", action="store_true", help="10 units, a 2 MB bundle")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.units, args.bundle_mb = 10, 2.0
    print(machine())
    units: list[FakeUnit] = []
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        base = Path(tmp)
        broker = start_broker(workdir=base / "broker")
        key, public = new_key()
        devices = [("dlh", f"taman-{i:04d}") for i in range(args.units)]
        controller = None
        try:
            token = register_devices(base / "ctl" / "controller.db", devices)
            controller = Controller(base / "ctl", broker, sections={
                "releases": {"dir": str(base / "releases"), "trusted_keys": [public],
                             "max_bundle_mb": int(args.bundle_mb) + 10},
                "api": {"public_url": "https://kota.example"}}).start()
            auth = {"Authorization": f"Bearer {token}"}
            bundle = make_bundle(base / "in", key, "90.1.0",
                                 filler=int(args.bundle_mb * 1_000_000))
            data = bundle.read_bytes()
            t0 = time.monotonic()
            status, _, body = _http(controller.port, "POST", "/api/v1/releases", data,
                                    auth | {"Content-Type": "application/octet-stream"})
            add_s = time.monotonic() - t0
            assert status == 201, body
            t0 = time.monotonic()
            status, headers, whole = _http(controller.port, "GET",
                                           "/api/v1/releases/90.1.0/bundle")
            download_s = time.monotonic() - t0
            half = len(data) // 2
            status_r, _, rest = _http(controller.port, "GET", "/api/v1/releases/90.1.0/bundle",
                                      headers={"Range": f"bytes={half}-"})
            resumed_ok = (status == 200 and whole == data and status_r == 206
                          and data[:half] + rest == data
                          and headers.get("etag") == f'"{hashlib.sha256(data).hexdigest()}"')

            for opd, device in devices:
                units.append(FakeUnit(broker.host, broker.port, opd, device))
            wait_until(lambda: _all_reported(controller, auth, len(devices)), 60,
                       "every unit's status")
            t0 = time.monotonic()
            status, created = controller.request("POST", "/api/v1/rollouts", {
                "version": "90.1.0", "target": {"opd": "dlh"}, "canary": 1,
                "stage_percents": [10, 100]}, auth)
            assert status == 201, created
            wait_until(lambda: any(u.commands for u in units), 30, "the canary's offer")
            offer_s = time.monotonic() - t0
            rollout = wait_until(lambda: _finished(controller, auth, created["id"]),
                                 60 + args.units, "the rollout finished")
            rollout_s = time.monotonic() - t0
            offered_once = all(len(u.commands) == 1 for u in units)
        finally:
            for unit in units:
                unit.close()
            if controller is not None:
                controller.stop()
            broker.close()
    mb = len(data) / 1e6
    figures = [
        Figure(f"release add, {mb:.0f} MB (upload, verify, keep)", "< 10 s",
               f"{add_s:.2f} s", add_s < 10),
        Figure("bundle download", "-", f"{mb / download_s:.0f} MB/s", None),
        Figure("resumed download (Range) = the file", "yes", "yes" if resumed_ok else "no",
               resumed_ok),
        Figure("rollout start -> canary offered", "< 2 sweeps (4 s)", f"{offer_s:.1f} s",
               offer_s < 4),
        Figure(f"rollout of {args.units} units, {rollout['stages']} stages", "< 20 s",
               f"{rollout_s:.1f} s",
               rollout_s < 20),
    ]
    print_figures("Figures", figures)
    write_json(args.json, {"figures": figures, "units": args.units,
                           "state": rollout["state"], "counts": rollout["counts"],
                           "stages": rollout["stages"], "offered_once": offered_once,
                           "resumed_ok": resumed_ok, "add_s": add_s, "rollout_s": rollout_s})
    return 0


def _all_reported(controller: Controller, auth: dict, count: int) -> bool:
    status, body = controller.get("/api/v1/unit-versions", auth)
    return status == 200 and sum(1 for v in json.loads(body) if v["running"]) == count


def _finished(controller: Controller, auth: dict, rollout_id: int) -> dict | None:
    status, body = controller.get(f"/api/v1/rollouts/{rollout_id}", auth)
    rollout = json.loads(body) if status == 200 else {}
    return rollout if rollout.get("state") in ("completed", "stopped") else None


if __name__ == "__main__":
    sys.exit(main())
