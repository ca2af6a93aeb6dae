"""The link's options, its error, and what it keeps in the state store."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

from ..errors import EdgeError

# Keys in the StateStore.
KEY_CONFIG_VERSION = "link.config_version"
KEY_CONFIG_REJECTED = "link.config_rejected"
KEY_RECENT_COMMANDS = "link.recent_commands"


class LinkError(EdgeError, RuntimeError):
    """The link cannot be set up (e.g. a broker password file that cannot be read)."""


def firmware_version() -> str:
    """The installed package version, reported as ``fw`` in the status."""
    try:
        return importlib.metadata.version("smartcity-balikpapan")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


@dataclass(frozen=True)
class LinkOptions:
    """Tuning; the defaults suit a unit on a mobile network."""

    window: int = 100  # outbox rows handed to paho and not yet PUBACKed, at most
    drain_rate_per_s: float = 200.0  # outbox rows published per second, at most
    resend_after_s: float = 60.0  # ack stalled this long with all rows sent: resend
    resend_max_s: float = 3600.0  # ... doubling up to this
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    session_expiry_s: int = 86_400  # broker keeps our session (queued commands) this long
    status_min_interval_s: float = 10.0  # backlog/dropped changes: status at most this often
    status_interval_s: float = 300.0  # status at least this often
    recent_commands: int = 1000  # command ids remembered for duplicate detection ...
    recent_commands_days: float = 7.0  # ... and for at most this long
    poll_max: int = 50  # inbound messages handled per poll() call
    outbox_max_rows: int = 100_000  # size bound of the outbox (about 2 months at 1 sample/min)
