"""A power cut at every step of an update: the update process is SIGKILLed right after
it journals each step in turn (``SMARTCITY_UPDATE_KILL_AT``), and once in the middle of
pip's install; ``update --resume`` then finishes or undoes it. After each, the unit runs
a complete version (its release folder whole, the live daemon reporting it) and the
journal says which."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from support.release import REPO, clean_env

from edge.update import MARKER

STEPS = ["verified", "staged", "config_checked", "installed", "idle", "switching",
         "switched", "restarted", "healthy"]
# Killed right after journaling "switching", the symlink was not replaced yet: --resume
# sees that and undoes the update as before the switch.
PRE_SWITCH = {"mid-install", "verified", "staged", "config_checked", "installed", "idle",
              "switching"}


def _complete(tree, version: str) -> bool:
    marker = tree.releases / version / MARKER
    return marker.is_file() and json.loads(marker.read_text())["version"] == version


def _kill_mid_install(tree, bundle, version) -> int:
    """Start an update and SIGKILL it while pip installs into the staging folder."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "update", "--root", str(tree.root),
         "--systemctl", str(tree.systemctl), "--bundle", str(bundle)],
        cwd=REPO, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = tree.root / "opt/smartcity/staging" / version / "bundle" / "requirements.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.5)  # pip is at work now
    proc.send_signal(signal.SIGKILL)
    return proc.wait(30)


def test_update_sigkill_at_every_step_then_resume(unit_tree, kit):
    tree = unit_tree
    bundles = {v: kit.bundle(v) for v in ("9.0.1", "9.0.2")}
    first = tree.update("--bundle", str(bundles["9.0.1"]))
    assert first.returncode == 0, first.stdout + first.stderr
    running = "9.0.1"
    lines = []
    for step in ["mid-install", *STEPS]:
        target = "9.0.2" if running == "9.0.1" else "9.0.1"
        if step == "mid-install":
            code = _kill_mid_install(tree, bundles[target], target)
        else:
            code = tree.update("--bundle", str(bundles[target]),
                               SMARTCITY_UPDATE_KILL_AT=step).returncode
        assert code == -signal.SIGKILL, step
        # killed: the symlink names a complete release, whichever it is
        at_kill = tree.target().removeprefix("releases/")
        assert _complete(tree, at_kill), step
        resumed = tree.update("--resume")
        journal = tree.journal()
        now = tree.running_version()
        assert journal["step"] == "done", step
        assert tree.target() == f"releases/{now}", step
        assert _complete(tree, now), step
        assert journal["running"] == now, step
        if step in PRE_SWITCH:
            # undone: never left the version it ran
            assert (resumed.returncode, journal["outcome"], now) == (1, "failed", running), step
        else:
            # finished: restarted on the new version, health gate passed
            assert (resumed.returncode, journal["outcome"], now) == (0, "applied", target), step
        assert not (tree.root / "opt/smartcity/staging" / target).exists(), step
        lines.append(f"killed after {step:<14} symlink at kill {at_kill}, after --resume "
                     f"{now} ({journal['outcome']})")
        running = now
    print("\n" + "\n".join(lines))
    assert len(lines) == len(STEPS) + 1


def test_update_sigkill_during_roll_back_then_resume(unit_tree, kit):
    from test_update_apply import _break_start

    tree = unit_tree
    assert tree.update("--bundle", str(kit.bundle("9.0.1"))).returncode == 0
    broken = kit.bundle("9.0.3", patch=_break_start)
    code = tree.update("--bundle", str(broken), "--health-timeout-s", "15",
                       SMARTCITY_UPDATE_KILL_AT="rolling_back").returncode
    assert code == -signal.SIGKILL
    resumed = tree.update("--resume")
    journal = tree.journal()
    assert resumed.returncode == 1
    assert (journal["outcome"], journal["rolled_back"]) == ("failed", True)
    assert tree.target() == "releases/9.0.1"
    assert tree.running_version() == "9.0.1"
