"""scripts/build-wheelhouse for the Pis: a wheelhouse whose lock file installs, with
hashes and no index, for CPython 3.11 on aarch64, with only the `[edge]` extra's packages;
32-bit armv7l refused with the reason (PyPI has no armv7l wheel of cffi).

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
PI_TAGS = {"aarch64": "manylinux2014_aarch64"}


@pytest.fixture(scope="module")
def pi_wheelhouse(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    result = subprocess.run([sys.executable, str(SCRIPT), "--platform", "aarch64",
                             "--out", str(out)],
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
         "--abi", "cp311", "--abi", "abi3", "--platform", PI_TAGS[platform],
         "--target", str(tmp_path),
         "-r", str(lock)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "smartcity-balikpapan" in result.stdout.lower().replace("_", "-")


def test_build_wheelhouse_lock_is_edge_only_with_a_hash_per_platform(pi_wheelhouse):
    pins = _pins(pi_wheelhouse / "requirements.lock")
    assert {"smartcity-balikpapan", "gpiozero", "paho-mqtt", "sdnotify"} <= set(pins)
    assert not {"fastapi", "uvicorn", "sqlite-utils", "httpx"} & set(pins)
    assert all(pins.values())
    # compiled packages carry their Pi wheel (cryptography an abi3 one), pure ones one
    assert len(pins["pydantic-core"]) == len(PI_TAGS) == len(pins["cryptography"])
    assert len(pins["gpiozero"]) == 1
    assert not (pi_wheelhouse / "requirements-controller.lock").exists()
    sums = (pi_wheelhouse / "SHA256SUMS").read_text()
    assert all(h in sums for hashes in pins.values() for h in hashes)


def test_build_wheelhouse_refuses_armv7l_with_the_reason_and_writes_nothing(tmp_path):
    out = tmp_path / "wheelhouse"
    result = subprocess.run([sys.executable, str(SCRIPT), "--platform", "armv7l",
                             "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "no offline wheelhouse for armv7l" in result.stderr and "cffi" in result.stderr
    assert not out.exists() or not any(out.iterdir())
