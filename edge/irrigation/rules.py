"""The irrigation rules, as pure functions and small classes (no I/O, time passed in).

"Given these readings, limits, state and this time, what should run?" Each question the
app asks has one answer here:

- **When** does a program start? ``protocol.planner`` answers for both unit kinds and
  the controller (``Plan.of(program)``, ``StartPlanner.between``).
- **How long**? ``adjusted_s`` applies the watering percentages; ``split_cycles`` splits a
  long run into equal cycles for cycle-and-soak; ``clamp`` cuts a duration to a hard limit
  and says so.
- **Is the soil dry enough**? ``moisture_need`` is the hysteresis latch (start below
  ``start_below_pct``, stop wanting water at ``skip_above_pct``); ``moisture_gate`` says
  whether a run may go ahead on the probe's word.
- **What may start now**? ``pick_startable`` walks the queue in order and starts what the
  sequential groups and the cap on concurrent zones allow; nothing is dropped, the rest
  waits.
- Inputs over time: ``Debouncer`` (the rain switch), ``FlowRate`` (litres per minute from
  pulse counts).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from protocol.models import MIN_RUN_S  # noqa: F401 - the app and its tests take it here

from ..limits import Clamp

if TYPE_CHECKING:  # pragma: no cover
    from .config import MoistureRule

logger = logging.getLogger(__name__)

# Runs or cycles shorter than MIN_RUN_S are not worth opening a valve for (a run_zone asking
# less is refused by the protocol's model).


# -- durations ---------------------------------------------------------------------------
def adjusted_s(duration_min: float, *pcts: float) -> float:
    """Base minutes scaled by every watering percentage, in seconds (whole seconds)."""
    seconds = duration_min * 60.0
    for pct in pcts:
        seconds *= pct / 100.0
    return float(round(seconds))


def split_cycles(total_s: float, cycle_s: float | None) -> list[float]:
    """Cycle-and-soak: ``total_s`` in the fewest equal cycles of at most ``cycle_s``.

    Equal cycles (not "full, full, remainder") so no cycle is too short to wet the soil.
    """
    if total_s <= 0:
        return []
    if not cycle_s or total_s <= cycle_s:
        return [float(total_s)]
    n = math.ceil(total_s / cycle_s - 1e-9)
    return [float(total_s) / n] * n


def clamp(asked: float, allowed_max: float, field: str, limit: str) -> tuple[float, Clamp | None]:
    """``asked`` cut to ``allowed_max``; the ``Clamp`` says so (None when not cut)."""
    if asked <= allowed_max:
        return asked, None
    allowed = max(0.0, float(allowed_max))
    return allowed, Clamp(field, round(float(asked), 1), round(allowed, 1), limit)


# -- soil moisture -----------------------------------------------------------------------
def moisture_need(latched: bool, moisture_pct: float, rule: MoistureRule) -> bool:
    """The hysteresis latch: dry below ``start_below_pct``, satisfied at ``skip_above_pct``.

    Between the two the zone keeps its previous state, so a probe hovering at one
    threshold does not start and stop runs over and over.
    """
    if rule.start_below_pct is not None and moisture_pct < rule.start_below_pct:
        return True
    if moisture_pct >= rule.skip_above_pct:
        return False
    return latched


def moisture_gate(moisture_pct: float | None, stale: bool, rule: MoistureRule | None) -> str | None:
    """Why a run (or its next cycle) must not go ahead on the probe's word, or None.

    - ``"soil_wet"``: the soil is at or above ``skip_above_pct``;
    - ``"sensor_stale"``: the probe is stale and the rule says to skip then (with
      ``on_stale = "schedule"`` a stale probe is ignored and the schedule decides).
    """
    if rule is None:
        return None
    if stale or moisture_pct is None:
        return "sensor_stale" if rule.on_stale == "skip" else None
    if moisture_pct >= rule.skip_above_pct:
        return "soil_wet"
    return None


# -- what may start now ------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A queued run (or its next cycle) that is ready to start."""

    key: str
    zone: str
    group: str


def pick_startable(candidates: Sequence[Candidate], running: Iterable[tuple[str, str]],
                   max_concurrent: int) -> list[str]:
    """Keys of the candidates that may start now, in queue order.

    ``running`` holds ``(zone, group)`` of what is on. A candidate starts when fewer than
    ``max_concurrent`` zones are on, no zone of its sequential group is on, and its own
    zone is not on. Candidates that cannot start stay queued; a later one whose group is
    free may go first (no head-of-line blocking).
    """
    zones = {z for z, _ in running}
    groups = {g for _, g in running}
    picked = []
    for c in candidates:
        if len(zones) >= max_concurrent:
            break
        if c.zone in zones or c.group in groups:
            continue
        picked.append(c.key)
        zones.add(c.zone)
        groups.add(c.group)
    return picked


# -- inputs over time --------------------------------------------------------------------
class Debouncer:
    """A switch's state, changed only after the raw input held the new value ``stable_s``."""

    def __init__(self, stable_s: float, initial: bool = False):
        self.stable_s = stable_s
        self.value = initial
        self._candidate = initial
        self._since: float | None = None

    def update(self, raw: bool, t: float) -> bool:
        raw = bool(raw)
        if raw == self.value:
            self._candidate, self._since = raw, None
        elif raw != self._candidate or self._since is None:
            self._candidate, self._since = raw, t
        if self._since is not None and t - self._since >= self.stable_s:
            self.value, self._since = raw, None
        return self.value

    def pending_until(self) -> float | None:
        """When the pending change will be accepted if the input holds (None: none)."""
        return None if self._since is None else self._since + self.stable_s


class FlowRate:
    """Litres per minute from a pulse counter sampled now and then.

    ``add(t, count)`` records a sample; ``lpm`` is the rate between the newest sample and
    the newest one at least ``window_s`` older (or the oldest kept).
    """

    def __init__(self, pulses_per_l: float, window_s: float):
        self.pulses_per_l = pulses_per_l
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, count: int) -> None:
        if self._samples and t <= self._samples[-1][0]:
            self._samples[-1] = (self._samples[-1][0], count)
            return
        self._samples.append((t, count))
        while len(self._samples) > 2 and self._samples[1][0] <= t - self.window_s:
            self._samples.popleft()

    def reset(self) -> None:
        self._samples.clear()

    @property
    def lpm(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        if t1 <= t0 or c1 < c0:
            return 0.0
        return (c1 - c0) / self.pulses_per_l / ((t1 - t0) / 60.0)

    def covered_s(self) -> float:
        """How many seconds the current rate is measured over."""
        if len(self._samples) < 2:
            return 0.0
        return self._samples[-1][0] - self._samples[0][0]


def local_day(now: datetime, tz: ZoneInfo) -> date:
    return now.astimezone(tz).date()


def to_utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)


EPS_S = 1e-6
"""Two instants (monotonic seconds) this close are one: sums of float durations."""


def iso(dt: datetime | None) -> str | None:
    """A saved or reported time (None stays None)."""
    return None if dt is None else dt.isoformat()


def from_iso(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text)
