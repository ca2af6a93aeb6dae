"""What every sensor driver shares: readings with a time, staleness, error counters.

A driver's ``read()`` either returns a value or raises ``SensorError`` (a garbled line,
a Modbus timeout, a bad CRC). The app keeps the last good value of each quantity in a
``SensorValue`` and asks it ``is_stale(now, max_age_s)`` before a rule trusts it, so a
sensor that goes quiet is noticed instead of being read forever at its last value.

Every driver counts what went wrong in an ``ErrorCounters`` (reads, errors, consecutive
errors, the last error's text): bad input is counted and never lands as data.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from ..errors import EdgeError

logger = logging.getLogger(__name__)


class SensorError(EdgeError, OSError):
    """A sensor could not be read, or answered something that is not a reading."""


@dataclass(frozen=True)
class Reading:
    """One good value and when it was taken (aware UTC)."""

    value: float
    ts: datetime

    def age_s(self, now: datetime) -> float:
        return (now - self.ts).total_seconds()


class SensorValue:
    """The last good reading of one quantity (e.g. a zone's ``moisture_pct``)."""

    def __init__(self, reading: Reading | None = None):
        self.reading = reading

    def update(self, value: float, ts: datetime) -> Reading:
        self.reading = Reading(float(value), ts)
        return self.reading

    @property
    def value(self) -> float | None:
        return None if self.reading is None else self.reading.value

    def age_s(self, now: datetime) -> float | None:
        return None if self.reading is None else self.reading.age_s(now)

    def is_stale(self, now: datetime, max_age_s: float) -> bool:
        """True when there is no reading, or the last one is older than ``max_age_s``.

        A reading from the future (the clock was stepped back) counts as fresh for at
        most ``max_age_s``, measured from now: it is re-dated to now.
        """
        if self.reading is None:
            return True
        age = self.reading.age_s(now)
        if age < 0:
            self.reading = Reading(self.reading.value, now)
            return False
        return age > max_age_s


class ErrorCounters:
    """Counts reads and failures of one driver; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reads = 0
        self.errors = 0
        self.consecutive_errors = 0
        self.last_error = ""

    def ok(self) -> None:
        with self._lock:
            self.reads += 1
            self.consecutive_errors = 0

    def failed(self, exc: BaseException | str) -> None:
        with self._lock:
            self.reads += 1
            self.errors += 1
            self.consecutive_errors += 1
            self.last_error = str(exc)

    def as_dict(self) -> dict:
        with self._lock:
            return {"reads": self.reads, "errors": self.errors,
                    "consecutive_errors": self.consecutive_errors,
                    "last_error": self.last_error}
