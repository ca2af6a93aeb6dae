"""``smartcity-edge update``: install a signed release bundle, switch to it, keep it only
if it is healthy. docs/updates.md tells the whole story; in short::

    verify      signature (a key in [update] trusted_keys), every file's hash and size,
                paths, the platform and Python; nothing is written before this passes
    install     a virtual environment in /opt/smartcity/staging/<version>, pip from the
                bundle's wheelhouse only (--no-index --require-hashes)
    config      the new version's `smartcity-edge check` on the unit's config
    installed   staging/<version> renamed to releases/<version> (complete, or absent)
    idle        wait until the daemon's health file says no run or feeding is active
    switch      the unit file of the new version installed, then the symlink
                /opt/smartcity/current -> releases/<version> replaced in one rename
    restart     systemctl restart <the daemon>
    health      the daemon's health file, from this start and this version: ready, link
                up, config valid, no alarm raised; within [update] health_timeout_s
    done        update_applied; the releases beyond the last two are removed
                or, when the gate fails: the previous unit file and symlink put back, the
                daemon restarted on it, update_failed with the reason

Each step is written to ``<state_dir>/update.json`` (atomically, fsynced) before the next
begins, so ``update --resume`` (run by ``smartcity-update-resume.service`` at boot)
knows where a power cut left it: before the switch it abandons the update (the unit
never left its version), after it it restarts the new version and runs the health gate
again (switching back if that fails), and a roll-back under way is finished. The
daemon reads the journal and reports the outcome (``update_applied`` or
``update_failed``) through its outbox, once per update (``UpdateReporter``).

``apply_bundle(bundle, ...)`` is the seam for "the controller offers a bundle": the same
update, given a file already downloaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EdgeError
from .health import HEALTH_FILE, read_health, write_json_atomic

logger = logging.getLogger(__name__)

JOURNAL = "update.json"
LOCK = "update.lock"
UNIT_BACKUP = "update-unit.backup"
BASE = Path("/opt/smartcity")
RELEASES = BASE / "releases"
STAGING = BASE / "staging"
CURRENT = BASE / "current"
LEGACY = BASE / "venv"
MARKER = ".release.json"
CONFIG_DIR = Path("/etc/smartcity")
UNIT_DIR = Path("/etc/systemd/system")
KEEP = 2
KILL_AT_ENV = "SMARTCITY_UPDATE_KILL_AT"
"""Fault injection for tests: the update SIGKILLs itself right after journaling this
step (docs/updates.md, "Power cuts")."""

PRE_SWITCH = ("verified", "staged", "config_checked", "installed", "idle")
POST_SWITCH = ("switched", "restarted")


class UpdateError(EdgeError, RuntimeError):
    """An update refused or failed; ``step`` says where."""

    def __init__(self, step: str, reason: str):
        super().__init__(reason)
        self.step = step
        self.reason = reason


# --------------------------------------------------------------------------------------
# The bundle
# --------------------------------------------------------------------------------------
def verify_bundle(path: Path, trusted_keys: list[str], *, machine: str | None = None,
                  python: str | None = None):
    """Read the bundle at ``path`` without writing anything: every member a plain file
    at a safe path, the signature by a trusted key, every file listed with its size and
    hash and nothing else, this machine's platform and Python. Returns ``(manifest,
    signer key id, sha256 of the manifest)``; raises ``UpdateError("verify", why)``."""
    from protocol.bundle import read_bundle
    from protocol.release import BundleError

    def refuse(reason: str) -> UpdateError:
        return UpdateError("verify", reason)

    try:
        manifest, signer, manifest_sha256 = read_bundle(path, trusted_keys)
    except BundleError as exc:
        raise refuse(str(exc)) from None
    machine = machine or platform.machine()
    if machine not in manifest.platforms:
        raise refuse(f"other platform: the bundle is for {', '.join(manifest.platforms)}, "
                     f"this unit is {machine}")
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest.python != python:
        raise refuse(f"other platform: the bundle is for Python {manifest.python}, this "
                     f"unit runs {python}")
    return manifest, signer, manifest_sha256


def extract_bundle(path: Path, manifest, dest: Path) -> None:
    """Write the manifest's files into ``dest``, each checked again against its hash
    (the file may have changed since ``verify_bundle``)."""
    from protocol.release import MANIFEST

    listed = {f.path: f for f in manifest.files}
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.name == MANIFEST:
                (dest / MANIFEST).write_bytes(tar.extractfile(member).read())
                continue
            want = listed.get(member.name)
            if want is None or not member.isreg():
                continue
            target = dest / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with tar.extractfile(member) as src, open(target, "wb") as out:
                for block in iter(lambda s=src: s.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != want.sha256:
                raise UpdateError("install", f"wrong hash: {member.name} changed while "
                                  "it was installed")


# --------------------------------------------------------------------------------------
# The journal, and the daemon's report of it
# --------------------------------------------------------------------------------------
def read_journal(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def outcome_event(journal: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(event type, details)`` of a finished update's journal; None while under way."""
    outcome = journal.get("outcome")
    if journal.get("step") != "done" or outcome not in ("applied", "failed", "refused"):
        return None
    if outcome == "applied":
        return "update_applied", {"version": journal.get("version"),
                                  "previous": journal.get("previous_version"),
                                  "update_id": journal.get("id"),
                                  "duration_s": journal.get("duration_s")}
    return "update_failed", {"version": journal.get("version"),
                             "running": journal.get("running"),
                             "update_id": journal.get("id"),
                             "step": journal.get("failed_step"),
                             "reason": str(journal.get("reason") or "")[:500],
                             "rolled_back": bool(journal.get("rolled_back"))}


class UpdateReporter:
    """The daemon's side: when ``<state_dir>/update.json`` holds a finished update, report
    it once (``event_once`` keyed by the update's id), whichever version runs."""

    def __init__(self, state_dir: Path, link, every_s: float = 1.0):
        self.path = Path(state_dir) / JOURNAL
        self.link = link
        self.every_s = every_s
        self._seen: int | None = None
        self._at = float("-inf")

    def check(self) -> None:
        now = time.monotonic()
        if now - self._at < self.every_s:
            return
        self._at = now
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return
        if mtime == self._seen:
            return
        self._seen = mtime
        journal = read_journal(self.path)
        found = outcome_event(journal) if journal else None
        if found is None:
            return
        type_, details = found
        details = {k: v for k, v in details.items() if v is not None}
        self.link.event_once(f"update:{journal.get('id')}", type_, **details)


# --------------------------------------------------------------------------------------
# The update
# --------------------------------------------------------------------------------------
@dataclass
class Options:
    """What ``smartcity-edge update`` acts on (its flags)."""

    bundle: Path | None = None
    resume: bool = False
    config: Path | None = None
    root: Path = Path("/")
    systemctl: str = "systemctl"
    python: str | None = None
    health_timeout_s: float | None = None
    wait_idle_s: float | None = None
    update_id: str | None = None
    """The update's id in the journal and its events (the controller's command id when
    it offered the release); default a new random one."""


def _under(root: Path, path: Path | str) -> Path:
    path = Path(path)
    return root / path.relative_to("/") if path.is_absolute() else root / path


def _find_config(root: Path) -> Path:
    from protocol.kinds import KINDS

    found = [CONFIG_DIR / f"{kind}.toml" for kind in KINDS
             if _under(root, CONFIG_DIR / f"{kind}.toml").is_file()]
    if len(found) != 1:
        raise UpdateError("config", f"give --config: found {len(found)} unit configs in "
                          f"{_under(root, CONFIG_DIR)}")
    return found[0]


def _version_of(target: str | None) -> str | None:
    """The version a ``current`` symlink target names (``releases/0.2.0`` -> ``0.2.0``)."""
    if target is None:
        return None
    if target.startswith("releases/"):
        return target.removeprefix("releases/")
    return target  # "venv": a unit installed the old way


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Updater:
    """One ``update`` (or ``update --resume``) run on one unit."""

    def __init__(self, opts: Options, out: Callable[[str], None] = print):
        from protocol.kinds import KINDS

        from .config import load_config

        self.opts = opts
        self.out = out
        self.root = Path(opts.root)
        config_path = Path(opts.config) if opts.config else _find_config(self.root)
        self.config_file = _under(self.root, config_path)
        try:
            self.config = load_config(self.config_file)
        except EdgeError as exc:
            raise UpdateError("config", f"the unit's config does not load: {exc}") from None
        self.service = f"{KINDS[self.config.kind].service}.service"
        self.state_dir = _under(self.root, self.config.state_dir)
        self.journal_path = self.state_dir / JOURNAL
        self.health_path = self.state_dir / HEALTH_FILE
        self.releases = _under(self.root, RELEASES)
        self.staging = _under(self.root, STAGING)
        self.current = _under(self.root, CURRENT)
        self.unit_file = _under(self.root, UNIT_DIR / self.service)
        self.health_timeout_s = opts.health_timeout_s or self.config.update.health_timeout_s
        self.wait_idle_s = (opts.wait_idle_s if opts.wait_idle_s is not None
                            else self.config.update.wait_idle_s)
        self.j: dict[str, Any] = {}
        self._lock_fd: int | None = None

    # -- small helpers -----------------------------------------------------------------
    def current_target(self) -> str | None:
        """Where ``current`` points (relative to /opt/smartcity), or ``venv`` for a unit
        installed the old way, or None."""
        if self.current.is_symlink():
            return os.readlink(self.current)
        if _under(self.root, LEGACY).is_dir():
            return "venv"
        return None

    def _journal(self, step: str, **fields: Any) -> None:
        self.j.update(fields, step=step)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.journal_path, self.j, fsync=True)
        logger.info("update %s: %s", self.j.get("id"), step)
        if os.environ.get(KILL_AT_ENV) == step:
            os.kill(os.getpid(), signal.SIGKILL)

    def _lock(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UpdateError("verify", "another update is running on this unit") from None
        self._lock_fd = fd

    def _systemctl(self, *args: str, check: bool = True) -> str:
        cmd = [self.opts.systemctl, *args]
        logger.info("running %s", " ".join(cmd))
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                                    check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise UpdateError("restart", f"{' '.join(cmd)}: {exc}") from None
        if check and result.returncode != 0:
            raise UpdateError("restart", f"{' '.join(cmd)} failed ({result.returncode}): "
                              f"{(result.stderr or result.stdout).strip()[:300]}")
        return result.stdout.strip()

    def _finish(self, outcome: str, **fields: Any) -> None:
        running = _version_of(self.current_target())
        started = self.j.get("started_at")
        self._journal("done", outcome=outcome, running=running, finished_at=time.time(),
                      duration_s=round(time.time() - started, 1) if started else None,
                      **fields)

    # -- entry points ------------------------------------------------------------------
    def run(self) -> int:
        """An update from ``opts.bundle``; returns the exit status (0: applied or already
        running; 1: refused or failed, with the reason printed)."""
        self._lock()
        previous = read_journal(self.journal_path)
        if previous and previous.get("step") != "done":
            self.out("An earlier update was cut short: finishing it first.")
            self.resume()
        self.j = {}
        try:
            return self._update(Path(self.opts.bundle))
        except UpdateError as exc:
            return self._failed(exc)
        except OSError as exc:
            return self._failed(UpdateError(self.j.get("step", "verify"), str(exc)))

    def _failed(self, exc: UpdateError) -> int:
        if self.j.get("step") in (*POST_SWITCH, "switching"):
            return self.rollback(exc.step, exc.reason)
        self._remove_staging()
        outcome = "refused" if exc.step in ("verify", "config") else "failed"
        if self.j:
            self._finish(outcome, failed_step=exc.step, reason=exc.reason, rolled_back=False)
        self.out(f"Update {outcome}: {exc.reason}")
        return 1

    def _update(self, bundle: Path) -> int:
        keys = self.config.update.trusted_keys
        t0 = time.time()
        self.j = {"id": self.opts.update_id or uuid.uuid4().hex[:12], "bundle": str(bundle),
                  "started_at": t0,
                  "previous_target": self.current_target()}
        self.j["previous_version"] = _version_of(self.j["previous_target"])
        try:
            manifest, signer, digest = verify_bundle(bundle, keys)
        except UpdateError as exc:
            self._journal("verifying")
            raise exc from None
        version = manifest.version
        self.j.update(version=version, manifest_sha256=digest, signer=signer)
        if self.j["previous_target"] == f"releases/{version}":
            self.out(f"This unit already runs {version}: nothing to do.")
            return 0
        self._journal("verified")
        self.out(f"[1/7] Verified: {bundle.name}, version {version}, signed by key {signer}")

        final = self.releases / version
        if self._installed(final, digest):
            self.out(f"[2/7] Installed: {final} (kept from an earlier attempt)")
            self._check_config(final, version)
        else:
            stage = self._stage(bundle, manifest, digest, final)
            self._journal("staged")
            self.out(f"[2/7] Installed: {stage}")
            self._check_config(stage, version)
            self.releases.mkdir(parents=True, exist_ok=True)
            if final.exists():
                if self.j["previous_target"] == f"releases/{version}":
                    raise UpdateError("install", f"{final} is running and differs")
                shutil.rmtree(final)
            os.rename(stage, final)
            _fsync_dir(self.releases)
        self._journal("installed")

        self._wait_idle()
        self._journal("idle")
        self.out("[4/7] Idle: no run or feeding under way")
        self._switch(f"releases/{version}", version)
        return self._restart_and_gate()

    def _restart_and_gate(self) -> int:
        version = self.j["version"]
        self._journal("restarted", restarted_at=time.time())
        if self.j.get("unit_file_changed"):
            self._systemctl("daemon-reload")
        self._systemctl("restart", self.service)
        self.out(f"[6/7] Restarted {self.service}")
        problem = self.gate(version, self.j["restarted_at"])
        if problem is not None:
            raise UpdateError("health", problem)
        self._journal("healthy")
        self._prune()
        self._finish("applied")
        self.out(f"[7/7] Healthy: {self.service} runs {version} "
                 f"({self.j['duration_s']} s); update_applied")
        return 0

    def resume(self) -> int:
        """Finish or undo the update the journal says was under way; 0 when the unit ends
        on the new version, 1 otherwise (and 0 when there was nothing to do)."""
        if self._lock_fd is None:
            self._lock()
        j = read_journal(self.journal_path)
        if not j or j.get("step") == "done":
            self.out("No update to resume.")
            return 0
        self.j = j
        step = j.get("step")
        new_target = f"releases/{j.get('version')}"
        if step == "switching":
            step = "switched" if self.current_target() == new_target else "idle"
        try:
            if step in ("verifying", *PRE_SWITCH):
                self._restore_unit_file()
                self._remove_staging()
                reason = f"cut short after step {step} (power cut or kill); nothing switched"
                self._finish("failed", failed_step=step, reason=reason, rolled_back=False)
                self.out(f"Update failed: {reason}; the unit runs "
                         f"{_version_of(self.current_target())}")
                return 1
            if step in POST_SWITCH:
                self.out(f"Resuming after step {step}: restarting {j.get('version')} and "
                         "running the health gate")
                self._journal("switched")
                return self._restart_and_gate()
            if step == "healthy":
                self._prune()
                self._finish("applied")
                self.out(f"Update applied: the unit runs {j.get('version')}")
                return 0
            if step == "rolling_back":
                return self.rollback(j.get("failed_step") or "health",
                                     j.get("reason") or "rolled back")
        except UpdateError as exc:
            return self._failed(exc)
        self.out(f"Unknown step {step!r} in {self.journal_path}; nothing done")
        return 1

    # -- the steps ---------------------------------------------------------------------
    def _installed(self, final: Path, digest: str) -> bool:
        marker = read_journal(final / MARKER)
        return bool(marker) and marker.get("manifest_sha256") == digest

    def _stage(self, bundle: Path, manifest, digest: str, final: Path) -> Path:
        stage = self.staging / manifest.version
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        python = self.opts.python or getattr(sys, "_base_executable", sys.executable)
        # system site packages: python3-lgpio comes from Raspberry Pi OS, as in the old way
        self._run([python, "-m", "venv", "--system-site-packages", str(stage)], "install")
        extract_bundle(bundle, manifest, stage / "bundle")
        env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
        env.pop("PYTHONPATH", None)
        self._run([str(stage / "bin" / "python"), "-m", "pip", "--disable-pip-version-check",
                   "--no-input", "install", "--ignore-installed", "--no-index", "--find-links",
                   str(stage / "bundle" / "wheels"), "--require-hashes",
                   "--only-binary=:all:", "-r", str(stage / "bundle" / manifest.lock)],
                  "install", env=env)
        shutil.rmtree(stage / "bundle" / "wheels")
        self._relocate(stage, final)
        write_json_atomic(stage / MARKER, {"version": manifest.version,
                                           "manifest_sha256": digest,
                                           "installed_at": time.time()}, fsync=True)
        return stage

    @staticmethod
    def _relocate(stage: Path, final: Path) -> None:
        """The scripts pip wrote name ``stage`` in their ``#!`` line: make it ``final``."""
        old, new = str(stage).encode(), str(final).encode()
        for path in (stage / "bin").iterdir():
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if old in data:
                path.write_bytes(data.replace(old, new))

    def _run(self, cmd: list[str], step: str, env: dict | None = None) -> str:
        logger.info("running %s", " ".join(cmd))
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                                    check=False, env=env)
        except (OSError, subprocess.SubprocessError) as exc:
            raise UpdateError(step, f"{cmd[0]}: {exc}") from None
        if result.returncode != 0:
            raise UpdateError(step, f"{' '.join(cmd[:4])} ... failed ({result.returncode}): "
                              f"{(result.stderr or result.stdout).strip()[-400:]}")
        return result.stdout

    def _check_config(self, env_dir: Path, version: str) -> None:
        cmd = [str(env_dir / "bin" / "python"), "-m", "edge.cli", "check", "--lang", "en",
               "--config", str(self.config_file)]
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                                check=False, env=env, cwd=self.state_dir)
        if result.returncode != 0:
            detail = " ".join((result.stderr or result.stdout).split())[:400]
            raise UpdateError("config", f"config not valid for {version}: {detail}")
        self._journal("config_checked")
        self.out(f"[3/7] Config checked: {self.config_file} is valid for {version}")

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + self.wait_idle_s
        while True:
            doc = read_health(self.health_path)
            busy = bool(doc and doc.get("ready") and doc.get("busy")
                        and _alive(doc.get("pid")))
            if not busy:
                return
            if time.monotonic() >= deadline:
                raise UpdateError("idle", f"a run or feeding stayed active for "
                                  f"{self.wait_idle_s:.0f} s (--wait-idle-s)")
            time.sleep(1.0)

    def _switch(self, target: str, version: str | None) -> None:
        """Install ``target``'s unit file, then point ``current`` at it in one rename."""
        self._journal("switching", switching_to=target)
        changed = self._install_unit_file(self.root / BASE.relative_to("/") / target)
        tmp = self.current.with_name(".current.new")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, self.current)
        _fsync_dir(self.current.parent)
        self._journal("switched", unit_file_changed=changed or self.j.get("unit_file_changed",
                                                                         False))
        self.out(f"[5/7] Switched: {CURRENT} -> {target}")

    def _install_unit_file(self, release: Path) -> bool:
        """The release's own copy of the daemon's unit file, installed if it differs; the
        one replaced is kept (``update-unit.backup``) for a roll-back."""
        source = release / "bundle" / "systemd" / self.service
        if not source.is_file() or not self.unit_file.parent.is_dir():
            return False
        new = source.read_bytes()
        old = self.unit_file.read_bytes() if self.unit_file.is_file() else None
        if old == new:
            return False
        backup = self.state_dir / UNIT_BACKUP
        if old is not None and not backup.exists():
            backup.write_bytes(old)
        tmp = self.unit_file.with_name(f".{self.service}.new")
        tmp.write_bytes(new)
        os.replace(tmp, self.unit_file)
        return True

    def _restore_unit_file(self) -> bool:
        backup = self.state_dir / UNIT_BACKUP
        if not backup.is_file():
            return False
        tmp = self.unit_file.with_name(f".{self.service}.old")
        tmp.write_bytes(backup.read_bytes())
        os.replace(tmp, self.unit_file)
        backup.unlink()
        return True

    def gate(self, version: str, since: float) -> str | None:
        """Wait for the health gate of ``version`` started at ``since``; None when it
        passes, else why not."""
        deadline = time.monotonic() + self.health_timeout_s
        last = "no health report from the daemon"
        checked_active = time.monotonic()
        while time.monotonic() < deadline:
            doc = read_health(self.health_path)
            fresh = (doc is not None and doc.get("version") == version
                     and float(doc.get("started_at", 0)) >= since - 1.0)
            if fresh:
                if doc.get("alarms"):
                    return f"alarm raised by the start: {', '.join(doc['alarms'])}"
                if not doc.get("ready"):
                    return f"{version} stopped after its start"
                if not doc.get("config_valid"):
                    last = "config not valid"
                elif not doc.get("link_connected"):
                    last = "the MQTT link is not up"
                else:
                    return None
            elif time.monotonic() - checked_active > 3.0:
                checked_active = time.monotonic()
                state = self._systemctl("is-active", self.service, check=False)
                if state in ("failed", "inactive"):
                    return f"{self.service} is {state}: {version} did not start"
            time.sleep(0.25)
        return f"health gate not passed within {self.health_timeout_s:.0f} s: {last}"

    def rollback(self, step: str, reason: str) -> int:
        previous = self.j.get("previous_target")
        self._journal("rolling_back", failed_step=step, reason=reason)
        if previous is None:
            self._finish("failed", rolled_back=False)
            self.out(f"Update failed: {reason}; no earlier version to go back to")
            return 1
        self._restore_unit_file()
        tmp = self.current.with_name(".current.new")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        if previous == "venv" and not self.current.is_symlink():
            pass  # never switched: the old way's unit file names the venv itself
        else:
            os.symlink(previous, tmp)
            os.replace(tmp, self.current)
            _fsync_dir(self.current.parent)
        since = time.time()
        self._systemctl("daemon-reload", check=False)
        self._systemctl("restart", self.service, check=False)
        back = _version_of(previous)
        problem = self.gate(back, since) if back != "venv" else None
        if problem:
            logger.warning("the previous version %s after the roll-back: %s", back, problem)
        self._finish("failed", rolled_back=True)
        self.out(f"Update failed at step {step}: {reason}; switched back to {back}; "
                 "update_failed")
        return 1

    def _remove_staging(self) -> None:
        version = self.j.get("version")
        if version and (self.staging / version).exists():
            shutil.rmtree(self.staging / version, ignore_errors=True)

    def _prune(self) -> None:
        """Keep the running release and the one before it; remove older ones."""
        keep = {_version_of(self.j.get("previous_target")), self.j.get("version")}
        if not self.releases.is_dir():
            return
        for path in sorted(self.releases.iterdir()):
            if path.name not in keep and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                self.out(f"      removed the old release {path.name}")
        backup = self.state_dir / UNIT_BACKUP
        backup.unlink(missing_ok=True)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def take_request(path: Path) -> tuple[Path, str]:
    """``(bundle, update id)`` from the request a daemon wrote for an offered release
    (``edge.offer``), and the request removed (``smartcity-update@.path`` starts the
    update while it exists). Raises ``UpdateError("verify", why)``."""
    from protocol.fields import COMMAND_ID_PATTERN

    doc = read_journal(path)
    path.unlink(missing_ok=True)
    if doc is None:
        raise UpdateError("verify", f"{path}: no readable update request")
    update_id, bundle = doc.get("id"), doc.get("bundle")
    if not isinstance(update_id, str) or not re.fullmatch(COMMAND_ID_PATTERN, update_id):
        raise UpdateError("verify", f"{path}: id: not a command id")
    if not isinstance(bundle, str) or not bundle:
        raise UpdateError("verify", f"{path}: bundle: missing")
    return Path(bundle), update_id


def apply_bundle(bundle: Path, *, root: Path = Path("/"), config: Path | None = None,
                 systemctl: str = "systemctl", out: Callable[[str], None] = print) -> int:
    """Install ``bundle`` on this unit (the controller's offer lands here once the file is
    downloaded); returns 0 when applied or already running, 1 when refused or failed."""
    return Updater(Options(bundle=bundle, root=root, config=config, systemctl=systemctl),
                   out).run()
