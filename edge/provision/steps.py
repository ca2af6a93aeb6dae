"""The steps of ``smartcity-edge provision`` (the package docstring lists them), and the
controller's enrolment call."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import shutil
import subprocess
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import parse_config
from ..errors import ConfigError
from .files import Owner, _loads, _under, put_file, set_toml_values
from .options import (
    CONFIG_DIR,
    DEFAULT_PASSWORD_FILE,
    SERVICE_USER,
    STEPS,
    SYSTEMD_UNITS,
    UNIT_DIR,
    UPDATE_PATH_UNIT,
    UPDATE_UNITS,
    Identity,
    Options,
    ProvisionError,
    shipped_file,
    template_for,
)

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# The controller
# --------------------------------------------------------------------------------------
def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def enrol(controller: str, token: str, *, check_only: bool = False,
          timeout_s: float = 15.0) -> tuple[Identity, str | None]:
    """Ask the controller for the unit's identity and MQTT password (``POST
    /api/v1/enrol``); ``check_only`` leaves the token unused (and gives no password)."""
    # The standard library only: a unit installs the [edge] extra, which has no HTTP client.
    url = controller.rstrip("/") + "/api/v1/enrol"
    request = urllib.request.Request(
        url, method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"token": token, "check_only": check_only}).encode())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as r:
            text = r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")
        try:
            detail = json.loads(text).get("detail", text)
        except (ValueError, AttributeError):
            detail = text
        raise ProvisionError(f"the controller refused the enrolment token "
                             f"(HTTP {exc.code}): {detail}") from None
    except (OSError, ValueError) as exc:  # URLError, timeouts, a malformed URL
        raise ProvisionError(f"cannot reach the controller at {url}: {exc}. Check the URL "
                             "and the network (ping, DNS), then try again.") from None
    body = json.loads(text)
    mqtt = body["mqtt"]
    identity = Identity(device_id=body["device_id"], opd=body["opd"], kind=body["kind"],
                        name=body.get("name") or "", broker_host=mqtt["host"],
                        broker_port=int(mqtt["port"]), broker_tls=bool(mqtt["tls"]))
    return identity, mqtt.get("password")


# --------------------------------------------------------------------------------------
# Provisioning
# --------------------------------------------------------------------------------------
def _service_owner(root: Path) -> Owner | None:
    """The service user's ids, on a real system run as root; None otherwise."""
    if root != Path("/") or os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None
    return Owner(entry.pw_uid, entry.pw_gid)


def _record_path(root: Path, kind: str) -> Path:
    return _under(root, CONFIG_DIR / f"provision-{kind}.json")


def _find_record(root: Path, token: str) -> dict | None:
    digest = token_digest(token)
    folder = _under(root, CONFIG_DIR)
    for path in sorted(folder.glob("provision-*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            logger.warning("ignoring unreadable %s", path)
            continue
        if isinstance(record, dict) and record.get("token_sha256") == digest:
            return record
    return None


def _wanted_by(unit_text: str) -> list[str]:
    targets = []
    for line in unit_text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "WantedBy":
            targets += value.split()
    return targets or ["multi-user.target"]


class Provisioner:
    """One provisioning run; ``run()`` returns the number of things it changed."""

    def __init__(self, opts: Options, out: Callable[[str], None] = print,
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run):
        self.opts = opts
        self.root = Path(opts.root)
        self.out = out
        self.run_cmd = run
        self.changed = 0
        self._step = 0
        self.real = self.root == Path("/")
        self.reused = False  # the identity came from this unit's own enrolment record

    # -- reporting ---------------------------------------------------------------------
    def step(self, title: str, outcome: str, detail: str = "") -> None:
        self._step += 1
        if outcome not in ("unchanged", "skipped", "offline") and not outcome.startswith("would"):
            self.changed += 1
        self.out(f"[{self._step}/{STEPS}] {title}: {outcome}" + (f" {detail}" if detail else ""))

    def note(self, text: str) -> None:
        self.out(f"      {text}")

    # -- the steps ---------------------------------------------------------------------
    def identity(self) -> tuple[Identity, str | None, str, str]:
        """``(identity, password or None, outcome, how)``."""
        o = self.opts
        offline = [o.device_id, o.opd, o.mqtt_password_file]
        if o.token:
            if any(v is not None for v in offline):
                raise ProvisionError("give --token (the controller says who the unit is) or "
                                     "--device-id/--opd/--kind/--mqtt-password-file "
                                     "(offline), not both")
            if not o.controller:
                raise ProvisionError("--token needs --controller URL")
            record = _find_record(self.root, o.token)
            if record is not None:
                ident = Identity(**record["identity"])
                self.reused = True
                return (self._override(ident), None, "unchanged",
                        "(this token was used for this unit before)")
            ident, password = enrol(o.controller, o.token, check_only=o.dry_run,
                                    timeout_s=o.timeout_s)
            if o.kind and o.kind != ident.kind:
                raise ProvisionError(f"the token is for a {ident.kind} unit, not {o.kind}")
            return (self._override(ident), password,
                    "would enrol" if o.dry_run else "enrolled", f"at {o.controller}")
        missing = [flag for flag, v in (("--device-id", o.device_id), ("--opd", o.opd),
                                        ("--kind", o.kind),
                                        ("--mqtt-password-file", o.mqtt_password_file))
                   if v is None]
        if missing:
            raise ProvisionError("say who the unit is: --controller URL --token TOKEN, or "
                                 f"offline flags (missing: {', '.join(missing)})")
        if o.kind not in SYSTEMD_UNITS:
            raise ProvisionError(f"--kind must be one of {', '.join(SYSTEMD_UNITS)}")
        try:
            password = Path(o.mqtt_password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ProvisionError(f"--mqtt-password-file {o.mqtt_password_file}: "
                                 f"{exc.strerror or exc}") from None
        if not password:
            raise ProvisionError(f"--mqtt-password-file {o.mqtt_password_file} is empty")
        ident = Identity(device_id=o.device_id, opd=o.opd, kind=o.kind, name=o.name)
        return self._override(ident), password, "offline", "(from the flags)"

    def _override(self, ident: Identity) -> Identity:
        o = self.opts
        return Identity(
            device_id=ident.device_id, opd=ident.opd, kind=ident.kind,
            name=o.name if o.name is not None else ident.name,
            broker_host=o.broker_host or ident.broker_host,
            broker_port=o.broker_port or ident.broker_port,
            broker_tls=o.tls if o.tls is not None else ident.broker_tls)

    def service_user(self) -> None:
        if not self.real:
            self.step("Service user", "skipped", "(users are not made in a --root tree)")
            return
        try:
            pwd.getpwnam(SERVICE_USER)
            self.step("Service user", "unchanged", SERVICE_USER)
            return
        except KeyError:
            pass
        if self.opts.dry_run:
            self.step("Service user", "would create", SERVICE_USER)
            return
        self._sh(["useradd", "--system", "--user-group", "--no-create-home",
                  "--home-dir", "/var/lib/smartcity", "--shell", "/usr/sbin/nologin",
                  SERVICE_USER])
        self.step("Service user", "created", SERVICE_USER)

    def config(self, ident: Identity) -> tuple[Path, Any]:
        path = _under(self.root, CONFIG_DIR / f"{ident.kind}.toml")
        fresh = not path.exists()
        source = path
        if fresh:  # a new config starts from the template; an existing one is edited
            source = Path(self.opts.template) if self.opts.template else template_for(ident.kind)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProvisionError(f"{source}: {exc.strerror or exc}") from None
        data = _loads(text, source)
        if data.get("kind") != ident.kind:
            raise ProvisionError(f"{source} is a {data.get('kind')!r} config, not "
                                 f"{ident.kind!r}")
        values: dict[tuple[str, str], Any] = {("unit", "device_id"): ident.device_id,
                                              ("unit", "opd"): ident.opd}
        if fresh or ident.name:
            values[("unit", "name")] = ident.name or ""
        for key, value in (("host", ident.broker_host), ("port", ident.broker_port),
                           ("tls", ident.broker_tls)):
            if value is not None:
                values[("broker", key)] = value
        values[("broker", "username")] = ident.device_id
        if not data.get("broker", {}).get("password_file"):
            values[("broker", "password_file")] = DEFAULT_PASSWORD_FILE
        try:
            text = set_toml_values(text, values)
        except ValueError as exc:
            raise ProvisionError(f"cannot edit {source}: {exc}") from None
        try:
            config = parse_config(tomllib.loads(text), path)
        except ConfigError as exc:
            raise ProvisionError(f"the resulting config is not valid:\n{exc}") from None
        outcome = put_file(path, text.encode("utf-8"), mode=0o644, dry_run=self.opts.dry_run)
        self.step("Config", outcome, str(path))
        if fresh:
            self.note(f"made from {source}")
        return path, config

    def credentials(self, ident: Identity, config, password: str | None) -> None:
        o = self.opts
        pw_path = _under(self.root, config.broker.password_file)
        owner = _service_owner(self.root)
        if self.reused:
            if not pw_path.is_file():
                raise ProvisionError(
                    f"this enrolment token was already used for {ident.device_id}, but its "
                    f"password file {pw_path} is gone: ask for a new enrolment token")
            password = pw_path.read_text(encoding="utf-8").strip()
        if password is None:
            outcome = "would write" if not pw_path.exists() else "would update"
            self.step("MQTT password", outcome, f"{pw_path} (0600, from the controller)")
        else:
            outcome = put_file(pw_path, (password + "\n").encode("utf-8"), mode=0o600,
                               owner=owner, dry_run=o.dry_run)
            self.step("MQTT password", outcome, f"{pw_path} (0600)")
        if o.token and not o.dry_run:
            record = {"identity": {"device_id": ident.device_id, "opd": ident.opd,
                                   "kind": ident.kind, "name": ident.name,
                                   "broker_host": ident.broker_host,
                                   "broker_port": ident.broker_port,
                                   "broker_tls": ident.broker_tls},
                      "controller": o.controller, "token_sha256": token_digest(o.token)}
            put_file(_record_path(self.root, ident.kind),
                     (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(),
                     mode=0o600)
        if config.broker.tls and config.broker.ca_file:
            ca_path = _under(self.root, config.broker.ca_file)
            if o.ca_file:
                try:
                    data = Path(o.ca_file).read_bytes()
                except OSError as exc:
                    raise ProvisionError(f"--ca-file {o.ca_file}: {exc.strerror or exc}"
                                         ) from None
                self.note(f"CA certificate {ca_path}: "
                          f"{put_file(ca_path, data, mode=0o644, dry_run=o.dry_run)}")
            elif not ca_path.is_file():
                self.note(f"WARNING: TLS is on but {ca_path} is missing: copy the broker's "
                          "CA certificate there (or pass --ca-file)")

    def state_dir(self, config) -> None:
        path = _under(self.root, config.state_dir)
        if path.is_dir():
            self.step("State dir", "unchanged", str(path))
            return
        if self.opts.dry_run:
            self.step("State dir", "would create", str(path))
            return
        path.mkdir(mode=0o750, parents=True)
        owner = _service_owner(self.root)
        if owner is not None:
            os.chown(path, owner.uid, owner.gid)
        self.step("State dir", "created", str(path))

    def unit_file(self, kind: str) -> tuple[str, bool]:
        name = SYSTEMD_UNITS[kind]
        source = shipped_file("systemd", name)
        data = source.read_bytes()
        path = _under(self.root, UNIT_DIR / name)
        outcome = put_file(path, data, mode=0o644, dry_run=self.opts.dry_run)
        self.step("Systemd unit", outcome, str(path))
        if self.real and which_edge() is None:
            self.note("WARNING: /opt/smartcity/venv/bin/smartcity-edge is missing; the unit "
                      "runs that program (see docs/provisioning.md, Install)")
        return name, outcome not in ("unchanged",) and not outcome.startswith("would")

    def enable(self, name: str, unit_changed: bool, restart_wanted: bool) -> None:
        installed = _under(self.root, UNIT_DIR / name)
        targets = _wanted_by(installed.read_text() if installed.exists()
                             else shipped_file("systemd", name).read_text())
        if not self.real:
            outcomes = []
            for target in targets:
                link = _under(self.root, UNIT_DIR / f"{target}.wants" / name)
                want = f"../{name}"
                if link.is_symlink() and os.readlink(link) == want:
                    outcomes.append("unchanged")
                    continue
                if self.opts.dry_run:
                    outcomes.append("would link")
                    continue
                link.parent.mkdir(parents=True, exist_ok=True)
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(want)
                outcomes.append("linked")
            outcome = next((x for x in outcomes if x != "unchanged"), "unchanged")
            self.step("Enabled", outcome, ", ".join(f"{t}.wants/{name}" for t in targets))
            return
        if self.opts.dry_run:
            self.step("Enabled", "would run", f"systemctl enable {'--now ' if self.opts.start else ''}"
                      f"{name}")
            return
        if unit_changed:
            self._sh(["systemctl", "daemon-reload"])
        enabled = self._query(["systemctl", "is-enabled", name]) == "enabled"
        active = self._query(["systemctl", "is-active", name]) == "active"
        if not enabled or (self.opts.start and not active):
            self._sh(["systemctl", "enable", *(["--now"] if self.opts.start else []), name])
            self.step("Enabled", "enabled" + (" and started" if self.opts.start else ""), name)
        elif self.opts.start and (restart_wanted or unit_changed):
            self._sh(["systemctl", "restart", name])
            self.step("Enabled", "restarted", f"{name} (new config or credentials)")
        else:
            self.step("Enabled", "unchanged", name)

    def update_units(self, kind: str, config) -> None:
        """``smartcity-update@.path`` and ``.service`` installed and the kind's path unit
        enabled: it runs a release the controller offered once the daemon has downloaded
        it (docs/updates.md, "When the controller offers a release"). Notes, not a step."""
        instance = UPDATE_PATH_UNIT.replace("@.", f"@{kind}.")
        changed = False
        for name in UPDATE_UNITS:
            path = _under(self.root, UNIT_DIR / name)
            outcome = put_file(path, shipped_file("systemd", name).read_bytes(), mode=0o644,
                               dry_run=self.opts.dry_run)
            changed = changed or outcome in ("written", "updated")
            if outcome != "unchanged":
                self.note(f"update unit {path}: {outcome}")
        if Path(config.state_dir) != Path("/var/lib/smartcity") / kind:
            self.note(f"WARNING: {instance} watches /var/lib/smartcity/{kind}, but state_dir "
                      f"is {config.state_dir}: offered releases will not install")
        if not self.real:
            link = _under(self.root, UNIT_DIR / "multi-user.target.wants" / instance)
            want = f"../{UPDATE_PATH_UNIT}"
            if link.is_symlink() and os.readlink(link) == want:
                return
            if self.opts.dry_run:
                self.note(f"update unit: would link multi-user.target.wants/{instance}")
                return
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(want)
            self.note(f"update unit: linked multi-user.target.wants/{instance}")
            return
        if self.opts.dry_run:
            self.note(f"update unit: would run systemctl enable --now {instance}")
            return
        if changed:
            self._sh(["systemctl", "daemon-reload"])
        if self._query(["systemctl", "is-enabled", instance]) != "enabled":
            self._sh(["systemctl", "enable", "--now", instance])
            self.note(f"update unit: enabled {instance}")

    def _sh(self, cmd: list[str]) -> None:
        logger.info("running %s", " ".join(cmd))
        try:
            result = self.run_cmd(cmd, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ProvisionError(f"{' '.join(cmd)}: {exc}") from None
        if result.returncode != 0:
            raise ProvisionError(f"{' '.join(cmd)} failed ({result.returncode}): "
                                 f"{(result.stderr or result.stdout).strip()}")

    def _query(self, cmd: list[str]) -> str:
        try:
            result = self.run_cmd(cmd, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return ""
        return result.stdout.strip()

    # -- the whole run -----------------------------------------------------------------
    def run(self) -> int:
        o = self.opts
        if self.real and not o.dry_run and os.geteuid() != 0:
            raise ProvisionError("provisioning writes /etc and enables a service: run it as "
                                 "root (sudo smartcity-edge provision ...), or try --dry-run")
        where = "" if self.real else f" into {self.root}"
        self.out(f"Provisioning{where}{' (dry run: nothing is written)' if o.dry_run else ''}")
        ident, password, outcome, how = self.identity()
        self.step("Identity", outcome, f"{ident.device_id} ({ident.kind}, OPD {ident.opd}) {how}")
        if ident.broker_host:
            self.note(f"broker {ident.broker_host}:{ident.broker_port}"
                      f"{' TLS' if ident.broker_tls else ''}")
        self.service_user()
        before = self.changed
        config_path, config = self.config(ident)
        self.credentials(ident, config, password)
        restart_wanted = self.changed > before
        self.state_dir(config)
        name, unit_changed = self.unit_file(ident.kind)
        self.enable(name, unit_changed, restart_wanted)
        self.update_units(ident.kind, config)
        shown = CONFIG_DIR / f"{ident.kind}.toml"
        if o.dry_run:
            self.out("Dry run: nothing was written.")
        elif self.changed:
            self.out(f"Done: {self.changed} step(s) changed something.")
        else:
            self.out(f"Nothing changed: {ident.device_id} is already provisioned.")
        if not o.dry_run:
            self.out(f"Next: check the pins and probes in {shown}, then run "
                     f"`sudo smartcity-edge selftest --config {shown}`.")
        logger.debug("provisioned %s (%s)", ident.device_id, config_path)
        return self.changed


def which_edge() -> str | None:
    """The ``smartcity-edge`` the shipped units run, if present on this system."""
    return shutil.which("smartcity-edge", path="/opt/smartcity/venv/bin")
