"""The edge benches' unit under test: an example config (irrigation, or the fish
feeder's for bench/writes.py) adapted to this machine, a copy of the project's packages
it runs from (compiled or not), and starting and stopping its process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

from bench.common import ROOT

EXAMPLE = ROOT / "config" / "irrigation.example.toml"
FISH_FEEDER_EXAMPLE = ROOT / "config" / "fish_feeder.example.toml"
PACKAGES = ("edge", "protocol")  # the project's packages a unit runs


def unit_config(workdir: Path, broker, name: str, *, master: bool = True,
                example: Path = EXAMPLE, telemetry_s: float | None = None) -> Path:
    """The example config (irrigation unless ``example``) with this machine's state dir,
    the bench broker and a trusted clock (a Pi with NTP; a command needs one).
    ``master=False`` drops the pump; ``telemetry_s`` replaces the telemetry interval."""
    text = example.read_text()
    text = re.sub(r'(?m)^state_dir = .*$', f'state_dir = "{workdir / name}"', text)
    text = re.sub(r'(?m)^device_id = "(.*)"$', rf'device_id = "\1-{name}"', text)
    text = re.sub(r"(?ms)^\[broker\]\n.*?\n\n",
                  f'[broker]\nhost = "{broker.host}"\nport = {broker.port}\n\n', text)
    text = re.sub(r'(?m)^sync_check = .*$', 'sync_check = "assume_synced"', text)
    if telemetry_s is not None:
        text = re.sub(r"(?ms)^(\[telemetry\]\ninterval_s = ).*?$", rf"\g<1>{telemetry_s:g}",
                      text)
    if not master:
        text = re.sub(r"(?ms)^\[master\]\n.*?\n\n", "", text)
    path = workdir / f"{name}.toml"
    path.write_text(text)
    tomllib.loads(text)
    return path


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path = ROOT) -> subprocess.Popen:
    env = env or dict(os.environ, PYTHONPATH=str(ROOT))
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def edge_command() -> list[str]:
    """The installed ``smartcity-edge`` next to this Python, else ``python -m edge.cli``."""
    script = Path(sys.executable).with_name("smartcity-edge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edge.cli"]


def unit_tree(workdir: Path, bytecode: bool) -> Path:
    """A copy of the project's packages (no bytecode), compiled as ``pip install`` does
    if ``bytecode``. The daemon runs from it and never writes to it
    (``PYTHONDONTWRITEBYTECODE``), as under ``ProtectSystem=strict``."""
    src = workdir / "src"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if bytecode:
        subprocess.run([sys.executable, "-I", "-m", "compileall", "-q",
                        *(str(src / package) for package in PACKAGES)], check=True)
    return src


def unit_env(src: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
