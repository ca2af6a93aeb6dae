"""The fleet bench's API side: a plain FastAPI app serving the same device rows, for
comparison, and the clients that measure latency and throughput."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import ROOT, free_port, wait_until
from bench.fleet_units import FLEET_SCRIPT, LIST_OPD


def plain_api_process(db_path: str, port: str) -> int:
    """A minimal FastAPI app returning the same rows through FastAPI's default encoder
    (no response model: ``jsonable_encoder``): ``/devices`` as the store's dicts,
    ``/devices-models`` as the API's ``DeviceOut`` pydantic models."""
    import uvicorn
    from fastapi import FastAPI

    from controller.api.views import device_out
    from controller.store import Store

    store = Store.open(db_path, migrate=False)
    app = FastAPI()

    @app.get("/devices")
    def devices(opd: str | None = None):
        return store.list_devices(opd=opd)

    @app.get("/devices-models")
    def device_models(opd: str | None = None):
        return [device_out(store, row) for row in store.list_devices(opd=opd)]

    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning",
                access_log=False)
    return 0


def start_plain_api(workdir: Path, db_path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(FLEET_SCRIPT), "--plain-api",
                             str(db_path), str(port)], cwd=ROOT, env=env,
                            stdout=(workdir / "plain-api.log").open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: get(port, f"/devices?opd={LIST_OPD}")[0] == 200, 30, "plain API up",
               interval=0.2)
    return proc, port


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def latency(port: int, path: str, headers: dict, count: int) -> list[float]:
    """Milliseconds of ``count`` sequential requests on one kept-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        out.append((time.perf_counter() - t0) * 1000)
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
    conn.close()
    return out


def throughput(port: int, path: str, headers: dict, connections: int, seconds: float
               ) -> float:
    """Requests per second with ``connections`` clients, each one request at a time."""
    done = [0] * connections
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            done[n] += response.status == 200
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - t0)
