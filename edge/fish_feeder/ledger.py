"""The fish feeder's daily feed accounting: today's grams per feeder and pond, the daily cap
they are held to, and the feed log per pond and day.

State keys: ``ff.daily`` (today's totals; the daily cap survives a restart) and
``ff.feed_log`` (``{pond: {day: {measured_g, commanded_g, feedings}}}``, the last
``feed_log_days`` days). A new day starts at local midnight, and only on a trusted clock:
an untrusted clock never resets the daily cap.
"""

from __future__ import annotations

from collections.abc import Callable

from .config import FishFeederConfig
from .devices import Feeder, FeedResult
from .rules import DoseClamp, clamp_dose, local_day


class FeedLedger:
    """Grams counted per day, in the unit's ``StateStore``."""

    def __init__(self, config: FishFeederConfig, state, clock,
                 clock_synced: Callable[[], bool]):
        self.config = config
        self.state = state
        self.clock = clock
        self.clock_synced = clock_synced
        self.daily = state.get("ff.daily") or {"day": None, "feeders": {}, "ponds": {}}

    def roll_day(self) -> None:
        """Start a new day's totals at local midnight (only on a trusted clock)."""
        day = local_day(self.clock.now(), self.config.site.timezone)
        if self.daily.get("day") == day:
            return
        if self.daily.get("day") is not None and not self.clock_synced():
            return  # an untrusted clock never resets the daily cap
        self.daily = {"day": day, "feeders": {}, "ponds": {}}
        self.state.set("ff.daily", self.daily)
        self.trim_log()

    def commanded_today(self, feeder: str) -> float:
        """Grams a feeder was told to give today (what the daily cap counts)."""
        return float(self.daily["feeders"].get(feeder, {}).get("commanded_g", 0.0))

    def clamp(self, feeder: Feeder, asked_g: float) -> DoseClamp:
        """``asked_g`` cut to the feeder's grams per feeding (and what its motor may run)
        and to what is left of its daily cap."""
        spec = feeder.spec
        return clamp_dose(asked_g, max_dose_g=min(spec.max_dose_g, feeder.max_dose_for_motor_g()),
                          max_daily_g=spec.max_daily_g,
                          fed_today_g=self.commanded_today(feeder.name))

    def add(self, feeder: str, pond: str, *, commanded_g: float = 0.0,
            measured_g: float = 0.0, also: dict | None = None) -> None:
        """Count grams in today's totals; saved with the documents ``also`` (key: value)
        in one transaction."""
        for section, name in (("feeders", feeder), ("ponds", pond)):
            t = self.daily[section].setdefault(name, {"commanded_g": 0.0, "measured_g": 0.0})
            t["commanded_g"] = round(max(0.0, t["commanded_g"] + commanded_g), 1)
            t["measured_g"] = round(max(0.0, t["measured_g"] + measured_g), 1)
        self.state.set_many({"ff.daily": self.daily, **(also or {})})

    def fed_today_g(self, name: str) -> float:
        """Grams that went out today (measured), for a pond or a feeder name."""
        for section in ("ponds", "feeders"):
            if name in self.daily[section]:
                return float(self.daily[section][name]["measured_g"])
        return 0.0

    def logged(self, pond: str, result: FeedResult, measured: float) -> dict:
        """The feed log with this feeding added (for the caller to save)."""
        log = self.state.get("ff.feed_log") or {}
        day = self.daily["day"]
        entry = log.setdefault(pond, {}).setdefault(
            day, {"measured_g": 0.0, "commanded_g": 0.0, "feedings": 0})
        entry["measured_g"] = round(entry["measured_g"] + measured, 1)
        entry["commanded_g"] = round(entry["commanded_g"] + result.commanded_g, 1)
        entry["feedings"] += 1
        return log

    def trim_log(self) -> None:
        log = self.state.get("ff.feed_log") or {}
        keep = self.config.feed_log_days
        for pond, days in log.items():
            if len(days) > keep:
                log[pond] = dict(sorted(days.items())[-keep:])
        self.state.set("ff.feed_log", log)

    def feed_log(self) -> dict:
        """``{pond: {day: {measured_g, commanded_g, feedings}}}`` for feed-conversion reports."""
        return self.state.get("ff.feed_log") or {}
