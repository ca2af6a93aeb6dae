"""Release bundles built offline, and a unit's tree that updates for real: for the update
tests (tests/update/) and the update benchmark (bench/update.py).

The bundles are built by the real ``smartcity-controller release build`` for this
machine's own platform (``--platform host``), with no index: the dependency wheels are
rebuilt from this interpreter's installed distributions and the project's wheel is
written from a copy of the checkout with the version asked for (``support.wheels``).

``make_tree`` makes a unit under ``--root``: its config (irrigation, mock pins, the
broker given), its systemd unit, and ``tests/update/fake_systemctl.py`` standing in for
systemctl, which runs the daemon of ``/opt/smartcity/current`` for real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .wheels import project_requirements, project_wheel, repack_installed

REPO = Path(__file__).resolve().parents[2]
FAKE_SYSTEMCTL = REPO / "tests" / "update" / "fake_systemctl.py"

SOURCES = ("protocol", "edge", "controller", "config", "systemd", "setup.cfg",
           "pyproject.toml", "README.md")
SERVICE = "smartcity-irrigation.service"
STATE_DIR = "/var/lib/smartcity/irrigation"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of the processes the tests start: no pip config of this machine,
    nothing of this checkout on the path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SMARTCITY_UPDATE_KILL_AT")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env.update(extra)
    return env


def cli(module: str, *args: str, timeout: float = 600, **env: str
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env=clean_env(**env), check=False)


@dataclass
class Kit:
    base: Path
    deps: Path
    key: Path
    public: str
    bundles: dict[str, Path] = field(default_factory=dict)

    def bundle(self, version: str, patch: Callable[[Path], None] | None = None) -> Path:
        """The bundle of ``version`` (built once); ``patch(source)`` edits the copy of the
        checkout it is built from."""
        if version in self.bundles:
            return self.bundles[version]
        src = self.base / f"src-{version}"
        src.mkdir()
        for name in SOURCES:
            path = REPO / name
            if path.is_dir():
                shutil.copytree(path, src / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(path, src / name)
        if patch is not None:
            patch(src)
        wheel = project_wheel(src, version, self.base / f"wheel-{version}")
        result = cli("controller.cli", "release", "build", "--key", str(self.key),
                     "--out", str(self.base / "bundles"), "--platform", "host",
                     "--source", str(src), "--wheel", str(wheel),
                     "--find-links", str(self.deps), "--no-index")
        assert result.returncode == 0, result.stdout + result.stderr
        path = self.base / "bundles" / f"smartcity-{version}.bundle"
        assert path.is_file(), result.stdout
        self.bundles[version] = path
        return path


def make_kit(base: Path) -> Kit:
    """Dependency wheels and a release key in ``base``."""
    deps = base / "deps"
    repack_installed(project_requirements(REPO, "edge"), deps)
    result = cli("controller.cli", "release", "keygen", "--out", str(base / "key"))
    assert result.returncode == 0, result.stderr
    public = (base / "key" / "release.pub").read_text().strip()
    return Kit(base=base, deps=deps, key=base / "key" / "release.key", public=public)


UNIT_CONFIG = textwrap.dedent("""\
    kind = "irrigation"
    state_dir = "{state_dir}"

    [unit]
    device_id = "{device_id}"
    opd = "dlh"

    [broker]
    host = "{host}"
    port = {port}

    [hardware]
    pin_factory = "mock"

    [clock]
    sync_check = "assume_synced"

    [update]
    trusted_keys = ["{key}"]
    health_timeout_s = {health_timeout_s}
    wait_idle_s = 20

    [[outputs]]
    name = "valve1"
    pin = 17
    max_on_s = 600

    [[zones]]
    name = "lawn"
    valve = "valve1"
    """)


@dataclass
class UnitTree:
    root: Path
    systemctl: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR.lstrip("/")

    @property
    def current(self) -> Path:
        return self.root / "opt/smartcity/current"

    @property
    def releases(self) -> Path:
        return self.root / "opt/smartcity/releases"

    def update(self, *args: str, timeout: float = 600, **env: str
               ) -> subprocess.CompletedProcess:
        return cli("edge.cli", "update", "--root", str(self.root), "--systemctl",
                   str(self.systemctl), *args, timeout=timeout, **env)

    def journal(self) -> dict:
        return json.loads((self.state / "update.json").read_text())

    def health(self) -> dict | None:
        try:
            return json.loads((self.state / "health.json").read_text())
        except (OSError, ValueError):
            return None

    def target(self) -> str | None:
        return os.readlink(self.current) if self.current.is_symlink() else None

    def daemon_pid(self) -> int | None:
        try:
            pid = int((self.root / "run/fake-systemd" / f"{SERVICE}.pid").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        stat = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return None if stat == "Z" else pid

    def running_version(self, timeout: float = 30.0) -> str | None:
        """The version the live daemon reports in its health file (ready, this pid)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc, pid = self.health(), self.daemon_pid()
            if doc and pid and doc.get("pid") == pid and doc.get("ready"):
                return doc["version"]
            time.sleep(0.2)
        return None

    def snapshot(self) -> dict:
        """/opt/smartcity (releases, staging, the symlink) byte for byte: names, links,
        contents; bytecode caches aside (the running daemon may write them)."""
        found = {"(current)": self.target()}
        base = self.root / "opt/smartcity"
        for path in sorted(base.rglob("*")) if base.exists() else []:
            rel = str(path.relative_to(base))
            if "__pycache__" in path.parts:
                continue
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                found[rel] = path.read_bytes()
        return found

    def stop(self) -> None:
        pid = self.daemon_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.daemon_pid() == pid:
                time.sleep(0.05)
            if self.daemon_pid() == pid:
                os.kill(pid, signal.SIGKILL)


def make_tree(base: Path, kit: Kit, broker, health_timeout_s: float = 30,
              device_id: str = "dlh-upd-01") -> UnitTree:
    root = base / "root"
    (root / "etc/smartcity").mkdir(parents=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / STATE_DIR.lstrip("/")).mkdir(parents=True)
    (root / "etc/smartcity/irrigation.toml").write_text(UNIT_CONFIG.format(
        state_dir=STATE_DIR, host=broker.host, port=broker.port, key=kit.public,
        health_timeout_s=health_timeout_s, device_id=device_id))
    shutil.copy2(REPO / "systemd" / SERVICE, root / "etc/systemd/system" / SERVICE)
    wrapper = base / "systemctl"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_SYSTEMCTL} "
                       f"--root {root} \"$@\"\n")
    wrapper.chmod(0o755)
    return UnitTree(root=root, systemctl=wrapper)
