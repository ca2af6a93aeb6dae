"""What ``smartcity-edge provision`` acts on: the identity, the options (the CLI flags),
where things go on the unit, and the files shipped with the code."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from protocol.kinds import KINDS

from ..errors import EdgeError

SERVICE_USER = "smartcity"
CONFIG_DIR = Path("/etc/smartcity")
UNIT_DIR = Path("/etc/systemd/system")
SYSTEMD_UNITS = {kind: f"{spec.service}.service" for kind, spec in KINDS.items()}
DEFAULT_PASSWORD_FILE = "/etc/smartcity/mqtt.password"
STEPS = 7
UPDATE_PATH_UNIT = "smartcity-update@.path"
UPDATE_UNITS = (UPDATE_PATH_UNIT, "smartcity-update@.service")
"""Run a release the controller offered (edge.offer): ``smartcity-update@<kind>.path``."""

# Where the shipped example configs and systemd units are found: the source tree this
# package runs from (an editable install, as docs/provisioning.md sets it up), a data
# directory of a regular install, or the documented checkout location.
_SOURCE_ROOTS = (Path(__file__).resolve().parents[2],
                 Path(sys.prefix) / "share" / "smartcity",
                 Path("/opt/smartcity/src"))


class ProvisionError(EdgeError, RuntimeError):
    """Provisioning cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Identity:
    """Who the unit is and where its broker is (None: keep what the config says)."""

    device_id: str
    opd: str
    kind: str
    name: str | None = None
    broker_host: str | None = None
    broker_port: int | None = None
    broker_tls: bool | None = None


@dataclass
class Options:
    """Everything ``provision`` acts on (the CLI flags)."""

    root: Path = Path("/")
    dry_run: bool = False
    controller: str | None = None
    token: str | None = None
    device_id: str | None = None
    opd: str | None = None
    kind: str | None = None
    name: str | None = None
    broker_host: str | None = None
    broker_port: int | None = None
    tls: bool | None = None
    mqtt_password_file: Path | None = None
    ca_file: Path | None = None
    template: Path | None = None
    start: bool = True
    timeout_s: float = 15.0


# --------------------------------------------------------------------------------------
# Shipped files
# --------------------------------------------------------------------------------------
def shipped_file(subdir: str, name: str) -> Path:
    """A file shipped in the source tree (``config/...``, ``systemd/...``)."""
    for base in _SOURCE_ROOTS:
        path = base / subdir / name
        if path.is_file():
            return path
    tried = ", ".join(str(b / subdir) for b in _SOURCE_ROOTS)
    raise ProvisionError(f"cannot find {subdir}/{name} (looked in {tried})")


def template_for(kind: str) -> Path:
    """The example config of ``kind``: the template of a new unit's config."""
    return shipped_file("config", f"{kind}.example.toml")
