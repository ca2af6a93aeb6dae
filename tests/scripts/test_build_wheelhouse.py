"""scripts/build-wheelhouse for the Pis: a wheelhouse whose lock file installs, with
hashes and no index, for CPython 3.11 on aarch64 and armv7l, with only the `[edge]`
extra's packages.

It downloads from PyPI (as scripts/bootstrap does); the host's own wheelhouse is built
and installed by the deployment test (tests/deploy/).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build-wheelhouse"
PI_TAGS = {"aarch64": "manylinux2014_aarch64", "armv7l": "manylinux2014_armv7l"}


@pytest.fixture(scope="module")
def pi_wheelhouse(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    result = subprocess.run([sys.executable, str(SCRIPT), "--platform", "aarch64",
                             "--platform", "armv7l", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _pins(lock: Path) -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    name = None
    for line in lock.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", line):
            name = m.group(1).lower().replace("_", "-")
            pins[name] = []
        elif m := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line):
            pins[name].append(m.group(1))
    return pins


@pytest.mark.parametrize("platform", sorted(PI_TAGS))
def test_build_wheelhouse_lock_installs_offline_for_the_pi(pi_wheelhouse, platform, tmp_path):
    lock = pi_wheelhouse / "requirements.lock"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
         "--require-hashes", "--no-index", "--find-links", str(pi_wheelhouse),
         "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
         "--abi", "cp311", "--platform", PI_TAGS[platform], "--target", str(tmp_path),
         "-r", str(lock)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "smartcity-balikpapan" in result.stdout.lower().replace("_", "-")


def test_build_wheelhouse_lock_is_edge_only_with_a_hash_per_platform(pi_wheelhouse):
    pins = _pins(pi_wheelhouse / "requirements.lock")
    assert {"smartcity-balikpapan", "gpiozero", "paho-mqtt", "sdnotify"} <= set(pins)
    assert not {"fastapi", "uvicorn", "sqlite-utils", "httpx"} & set(pins)
    assert all(pins.values())
    # compiled packages carry one wheel per platform, pure ones one for all
    assert len(pins["pydantic-core"]) == 2
    assert len(pins["gpiozero"]) == 1
    assert not (pi_wheelhouse / "requirements-controller.lock").exists()
    sums = (pi_wheelhouse / "SHA256SUMS").read_text()
    assert all(h in sums for hashes in pins.values() for h in hashes)
