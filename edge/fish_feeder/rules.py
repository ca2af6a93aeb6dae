"""The fish feeder's rules: pure functions, no I/O, no clock of their own.

Given the pond's plan, its species thresholds, the latest water-quality readings, the
grams already fed today and the local hard limits, these decide how much to feed and
whether to feed now. ``edge.fish_feeder.app`` calls them; the tests exercise them
directly.

- ``feeding_rate_pct`` / ``daily_ration_g`` / ``split_ration`` / ``plan_doses``: the
  feeding plan (fixed doses, or a daily ration from biomass split over the times);
- ``interlock``: feed, postpone or skip, and by what factor, from DO, temperature, pH and
  sensor staleness;
- ``clamp_dose``: the local hard limits (grams per feeding, grams per day);
- ``local_day``, ``hopper_days_left``: small helpers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from .species import Thresholds

Action = Literal["feed", "postpone", "skip"]
StalePolicy = Literal["feed", "skip", "reduce"]


# -- the plan ---------------------------------------------------------------------------
def feeding_rate_pct(table, avg_weight_g: float) -> float:
    """Percent of body weight per day for fish of ``avg_weight_g`` from a rate table."""
    for up_to, rate in table:
        if up_to is None or avg_weight_g <= up_to:
            return float(rate)
    return float(table[-1][1])


def daily_ration_g(fish_count: int, avg_weight_g: float, rate_pct: float) -> float:
    """Grams per day: biomass (count x average weight) x feeding rate (% body weight)."""
    if fish_count < 0 or avg_weight_g < 0 or rate_pct < 0:
        raise ValueError("fish count, weight and rate must not be negative")
    return fish_count * avg_weight_g * rate_pct / 100.0


def split_ration(total_g: float, n: int, resolution_g: float = 0.1) -> list[float]:
    """Split ``total_g`` into ``n`` doses that add up to it exactly (to ``resolution_g``).

    The remainder of the rounding goes to the first doses, so ``split_ration(10, 3)`` is
    ``[3.4, 3.3, 3.3]``.
    """
    if n < 1:
        raise ValueError("need at least one feeding time")
    units = round(total_g / resolution_g)
    base, extra = divmod(units, n)
    return [round((base + (1 if i < extra else 0)) * resolution_g, 6) for i in range(n)]


def plan_doses(plan, thresholds: Thresholds) -> list[tuple[str, float]]:
    """``[(HH:MM, dose_g), ...]`` of a pond's plan: fixed doses or a split daily ration."""
    if plan.doses_g is not None:
        return list(zip(plan.times, (float(d) for d in plan.doses_g), strict=True))
    rate = plan.feeding_rate_pct
    if rate is None:
        rate = feeding_rate_pct(thresholds.feeding_rate_table, plan.avg_weight_g)
    total = daily_ration_g(plan.fish_count, plan.avg_weight_g, rate)
    return list(zip(plan.times, split_ration(total, len(plan.times)), strict=True))


# -- interlocks ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """One quantity as the rules see it: its value, or None when it is stale or missing."""

    value: float | None
    stale: bool = False

    @classmethod
    def fresh(cls, value: float) -> Reading:
        return cls(value, False)

    @classmethod
    def missing(cls) -> Reading:
        return cls(None, True)


@dataclass(frozen=True)
class WaterQuality:
    """A pond's readings; a quantity is ``None`` when the pond has no sensor for it."""

    do_mg_l: Reading | None = None
    temp_c: Reading | None = None
    ph: Reading | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    factor: float = 1.0
    reason: str = ""
    details: dict = field(default_factory=dict)


def interlock(
    th: Thresholds,
    wq: WaterQuality,
    *,
    stale_policy: StalePolicy = "reduce",
    stale_factor: float = 0.5,
) -> Decision:
    """Decide whether a feeding may go ahead now, and at what fraction of its dose.

    Order: a skip wins over a postponement, which wins over a reduction. Reductions do not
    multiply: the smallest factor applies. A stale (or never read) sensor follows
    ``stale_policy``: ``feed`` ignores it, ``skip`` skips the feeding, ``reduce`` feeds
    ``stale_factor`` of the dose.
    """
    factor = 1.0
    skip: tuple[str, dict] | None = None
    postpone: tuple[str, dict] | None = None
    notes: dict = {}

    def stale(quantity: str) -> None:
        nonlocal factor, skip
        notes.setdefault("stale", []).append(quantity)
        if stale_policy == "skip" and skip is None:
            skip = ("sensor_stale", {"sensor": quantity})
        elif stale_policy == "reduce":
            factor = min(factor, stale_factor)

    if wq.do_mg_l is not None:
        if wq.do_mg_l.value is None:
            stale("do_mg_l")
        elif wq.do_mg_l.value < th.do_min_mg_l:
            postpone = ("do_low", {"do_mg_l": wq.do_mg_l.value, "do_min_mg_l": th.do_min_mg_l})

    if wq.temp_c is not None:
        t = wq.temp_c.value
        if t is None:
            stale("temp_c")
        elif t < th.temp_stop_below_c or t > th.temp_stop_above_c:
            if skip is None:
                reason = "temp_low" if t < th.temp_stop_below_c else "temp_high"
                skip = (reason, {"temp_c": t, "limit_c": th.temp_stop_below_c
                                 if t < th.temp_stop_below_c else th.temp_stop_above_c})
        elif t < th.temp_min_c or t > th.temp_max_c:
            reason = "temp_low" if t < th.temp_min_c else "temp_high"
            info = {"temp_c": t, "range_c": [th.temp_min_c, th.temp_max_c]}
            if th.temp_rule == "skip":
                if skip is None:
                    skip = (reason, info)
            else:
                factor = min(factor, th.temp_reduce_factor)
                notes[reason] = info

    if wq.ph is not None:
        ph = wq.ph.value
        if ph is None:
            stale("ph")
        elif (ph < th.ph_min or ph > th.ph_max) and th.ph_rule != "ignore":
            info = {"ph": ph, "range": [th.ph_min, th.ph_max]}
            if th.ph_rule == "skip":
                if skip is None:
                    skip = ("ph_out_of_range", info)
            else:
                factor = min(factor, th.ph_reduce_factor)
                notes["ph_out_of_range"] = info

    if skip is not None:
        return Decision("skip", 0.0, skip[0], {**notes, **skip[1]})
    if postpone is not None:
        return Decision("postpone", factor, postpone[0], {**notes, **postpone[1]})
    reason = ",".join(k for k in ("stale", "temp_low", "temp_high", "ph_out_of_range")
                      if k in notes) if factor < 1.0 else ""
    return Decision("feed", factor, reason, notes)


# -- hard limits ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DoseClamp:
    asked_g: float
    allowed_g: float
    limit: str | None  # "max_dose_g", "max_daily_g" or None when not cut

    @property
    def clamped(self) -> bool:
        return self.limit is not None


def clamp_dose(asked_g: float, *, max_dose_g: float, max_daily_g: float,
               fed_today_g: float) -> DoseClamp:
    """Cut a dose to the grams per feeding and to what is left of the daily cap."""
    if not math.isfinite(asked_g) or asked_g < 0:
        raise ValueError(f"bad dose {asked_g!r}")
    remaining = max(0.0, max_daily_g - fed_today_g)
    allowed = asked_g
    limit = None
    if allowed > max_dose_g:
        allowed, limit = max_dose_g, "max_dose_g"
    if allowed > remaining:
        allowed, limit = remaining, "max_daily_g"
    # Rounded down to the milligram, so rounding can never lift a dose over a limit.
    return DoseClamp(asked_g, math.floor(allowed * 1000 + 1e-9) / 1000, limit)


# -- rate trim -----------------------------------------------------------------------------
def next_rate_trim(trim: float, *, measured_g: float, expected_g: float, alpha: float = 0.3,
                   max_pct: float = 15.0) -> tuple[float, bool]:
    """Learn how far the feeder's real rate is from its calibrated one.

    After a good run, ``measured_g`` (pulses or weight) against ``expected_g`` (on-time x
    calibrated rate x current trim) nudges the trim by ``alpha`` of the error. The trim
    stays within +-``max_pct`` % (0 turns learning off); the flag says it hit that bound,
    i.e. the feeder needs a new calibration.
    """
    if max_pct <= 0 or expected_g <= 0 or measured_g < 0:
        return trim, False
    target = trim * measured_g / expected_g
    new = trim + alpha * (target - trim)
    low, high = 1 - max_pct / 100, 1 + max_pct / 100
    bounded = min(high, max(low, new))
    return round(bounded, 5), bounded != new


# -- helpers -----------------------------------------------------------------------------
def local_day(now: datetime, tz: str | ZoneInfo) -> str:
    """The site's local date (ISO) of an aware ``now``; daily totals reset on it."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    return now.astimezone(zone).date().isoformat()


def hopper_days_left(hopper_g: float | None, daily_use_g: float) -> float | None:
    """Days until the hopper is empty at ``daily_use_g``; None when unknown."""
    if hopper_g is None or daily_use_g <= 0:
        return None
    return round(max(0.0, hopper_g) / daily_use_g, 2)
