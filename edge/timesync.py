"""Can the unit trust its clock?

A Raspberry Pi has no battery-backed clock: after a power cut it boots with the time it
last saved (fake-hwclock) until NTP corrects it. Until then a unit must not run
time-of-day schedules or act on time-bounded commands. This module answers one question,
"is the clock synchronised?", as set by the ``[clock] sync_check`` option:

- ``"timesyncd"`` (the default on Raspberry Pi OS): first the flag file
  ``/run/systemd/timesync/synchronized`` that systemd-timesyncd creates once it has
  synchronised; if it is absent, ``timedatectl show -p NTPSynchronized --value`` (the
  kernel's view, which also covers chrony or ntpd). The answer is cached for
  ``ttl_s`` seconds, so calling it every loop tick is cheap.
- ``"assume_synced"``: always true (a machine whose clock is kept by other means).
- ``"never_synced"``: always false (tests, and to check a unit's behaviour without time).

``make_sync_check(mode)`` returns a no-argument callable; pass it to the app as
``clock_synced`` and to the link, which reports it in the unit's status.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
TIMEDATECTL = ("timedatectl", "show", "-p", "NTPSynchronized", "--value")


class TimesyncdCheck:
    """Synchronised according to systemd-timesyncd's flag file, else ``timedatectl``."""

    def __init__(self, *, flag_path: Path = TIMESYNCD_FLAG, command=TIMEDATECTL,
                 ttl_s: float = 30.0, timeout_s: float = 2.0,
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                 monotonic: Callable[[], float] = time.monotonic):
        self.flag_path = Path(flag_path)
        self.command = tuple(command)
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.run = run
        self.monotonic = monotonic
        self._value: bool | None = None
        self._checked_at = 0.0
        self._warned = False

    def __call__(self) -> bool:
        now = self.monotonic()
        if self._value is None or now - self._checked_at >= self.ttl_s:
            value = self.check()
            if value != self._value:
                logger.info("clock %s", "synchronised" if value else "NOT synchronised")
            self._value, self._checked_at = value, now
        return self._value

    def check(self) -> bool:
        """Ask now, without the cache."""
        if self.flag_path.exists():
            return True
        try:
            result = self.run(list(self.command), capture_output=True, text=True,
                              timeout=self.timeout_s, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            if not self._warned:
                logger.warning("cannot ask %s (%s): treating the clock as not synchronised",
                               self.command[0], exc)
                self._warned = True
            return False
        return result.returncode == 0 and result.stdout.strip().lower() == "yes"


def make_sync_check(mode: str) -> Callable[[], bool]:
    """The clock-trust callable for a ``[clock] sync_check`` value."""
    if mode == "timesyncd":
        return TimesyncdCheck()
    if mode == "assume_synced":
        return lambda: True
    if mode == "never_synced":
        return lambda: False
    raise ValueError(f"unknown sync_check {mode!r} (timesyncd, assume_synced, never_synced)")
