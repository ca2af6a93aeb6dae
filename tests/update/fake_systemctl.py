"""A stand-in for ``systemctl`` in the update tests: it runs the unit's real daemon.

    python fake_systemctl.py --root DIR daemon-reload|restart|start|stop|is-active NAME

``restart``/``start`` read ``ExecStart`` from ``DIR/etc/systemd/system/NAME`` as systemd
would, with the tree's paths under ``DIR`` (``/opt/smartcity/...`` and the config file,
whose ``state_dir`` is rewritten the same way), and start it on mock pins in a new
session, its pid in ``DIR/run/fake-systemd/NAME.pid`` and its output in ``NAME.log``.
Every call is appended to ``calls.log``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path


def under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def pid_of(run: Path, name: str) -> int | None:
    try:
        pid = int((run / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    # a zombie is not running
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return None
    return None if state == "Z" else pid


def stop(run: Path, name: str) -> None:
    pid = pid_of(run, name)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and pid_of(run, name) == pid:
        time.sleep(0.05)
    if pid_of(run, name) == pid:
        os.kill(pid, signal.SIGKILL)


def start(root: Path, run: Path, name: str) -> None:
    unit = (root / "etc/systemd/system" / name).read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.M).group(1)
    argv = shlex.split(exec_start)
    argv[0] = str(under(root, argv[0]))
    config = argv[argv.index("--config") + 1]
    text = under(root, config).read_text()
    state_dir = tomllib.loads(text)["state_dir"]
    text = text.replace(f'state_dir = "{state_dir}"',
                        f'state_dir = "{under(root, state_dir)}"')
    copy = run / Path(config).name
    copy.write_text(text)
    argv[argv.index("--config") + 1] = str(copy)
    state = under(root, state_dir)
    state.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["SMARTCITY_PIN_FACTORY"] = "mock"
    env.pop("SMARTCITY_UPDATE_KILL_AT", None)
    with open(run / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                cwd=state, env=env, start_new_session=True)
    (run / f"{name}.pid").write_text(str(proc.pid))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("action")
    p.add_argument("name", nargs="?")
    args = p.parse_args(argv)
    run = args.root / "run" / "fake-systemd"
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "calls.log", "a") as calls:
        calls.write(f"{time.time():.3f} {args.action} {args.name or ''}\n")
    if args.action == "daemon-reload":
        return 0
    if args.action == "is-active":
        alive = pid_of(run, args.name) is not None
        print("active" if alive else "inactive")
        return 0 if alive else 3
    if args.action in ("stop", "restart"):
        stop(run, args.name)
    if args.action in ("start", "restart"):
        start(args.root, run, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
