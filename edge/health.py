"""The daemon's health file: what an update's health gate reads (docs/updates.md).

The daemon writes ``<state_dir>/health.json`` (atomically: a file beside it, then
``os.replace``) when it is up, whenever something in it changes, at least every
``every_s`` seconds while it runs, and once more when it stops::

    {"pid": 1234, "version": "0.2.0", "kind": "irrigation", "started_at": 1765100000.1,
     "ts": 1765100003.2, "ready": true, "link_connected": true, "config_valid": true,
     "alarms": [], "busy": false}

``ready``: the app has started (every output was driven off first); ``config_valid``:
the daemon runs only on a config that validated, so it is true while it runs;
``alarms``: the codes of alarms raised since this start; ``busy``: a run or a feeding is
under way (an update waits until it is false). Times are UNIX seconds (wall clock), so
the updater can tell a file from this start from one of the start before.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HEALTH_FILE = "health.json"


def read_health(path: Path) -> dict[str, Any] | None:
    """The health document at ``path`` (None when missing or unreadable)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_json_atomic(path: Path, doc: dict[str, Any], *, fsync: bool = False) -> None:
    """Write ``doc`` to ``path`` through a file beside it and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")
    with open(tmp, "wb") as handle:
        handle.write(data)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)
    if fsync:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class HealthFile:
    """Keeps ``<state_dir>/health.json`` up to date for one daemon run."""

    def __init__(self, state_dir: Path, *, version: str, kind: str, every_s: float = 300.0):
        self.path = Path(state_dir) / HEALTH_FILE
        self.every_s = every_s
        self._base = {"pid": os.getpid(), "version": version, "kind": kind,
                      "started_at": time.time(), "config_valid": True}
        self._last: dict[str, Any] | None = None
        self._at = float("-inf")

    def update(self, *, ready: bool, link_connected: bool, alarms: list[str],
               busy: bool) -> None:
        """Write the file if anything changed or ``every_s`` passed; never raises."""
        state = {"ready": ready, "link_connected": link_connected, "alarms": list(alarms),
                 "busy": busy}
        now = time.monotonic()
        if state == self._last and now - self._at < self.every_s:
            return
        try:
            write_json_atomic(self.path, {**self._base, **state, "ts": time.time()})
        except OSError as exc:
            logger.warning("could not write %s: %s", self.path, exc)
            return
        self._last, self._at = state, now
