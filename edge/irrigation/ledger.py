"""The water ledger: today's water time and litres per zone, and the limits a run meets.

``WaterLedger`` counts the water seconds of every flowing cycle and shares the meter's
litres among the zones that flow (by their configured ``flow_lpm``; litres with no zone
open are ``other_l``), rolls the totals at local midnight, and says how much of the daily
budget is left. ``zone_max_cycle_s`` and ``master_covers`` are the per-cycle limits an
output's ``max_on_s`` puts on a run (the master's delays and margin included).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .config import MasterSpec
from .queue import Run
from .supply import Phase

logger = logging.getLogger(__name__)

MASTER_MARGIN_S = 1.0
"""A run may start only if the master's maximum on-time still covers it by this much."""


class WaterLedger:
    """Today's totals (``today``, saved as is) and the daily water budget."""

    def __init__(self, today: dict, *, tz: ZoneInfo, max_daily_water_min: float,
                 flow_lpm: dict[str, float | None]):
        self.today = today
        self.tz = tz
        self.max_daily_s = max_daily_water_min * 60.0
        self._flow_lpm = flow_lpm
        self._last_count: int | None = None

    def zone_today(self, zone: str) -> dict:
        return self.today.setdefault("zones", {}).setdefault(zone, {"water_s": 0.0,
                                                                     "litres": 0.0})

    def used_today_s(self) -> float:
        return sum(z["water_s"] for z in self.today.get("zones", {}).values())

    def account(self, runs: list[Run], mono: float, count: int | None = None,
                meter=None) -> None:
        """Add the water time of the flowing cycles up to ``mono`` and the litres of the
        ``meter`` (a ``FlowMeter``, or None) since the last call, its pulse ``count`` now."""
        flowing = [r for r in runs if r.state == "active" and r.water_since is not None]
        for r in flowing:
            upto = min(mono, r.water_since + r.cycle_s)
            dt = max(0.0, upto - r.acct_mark)
            r.acct_mark = max(r.acct_mark, upto)
            r.done_s += dt
            r.cycle_done_s += dt
            self.zone_today(r.zone)["water_s"] += dt
        if meter is None or count is None:
            return
        if self._last_count is None:
            self._last_count = count
            return
        litres = meter.litres(count - self._last_count)
        self._last_count = count
        if litres <= 0:
            return
        self.today["meter_l"] = self.today.get("meter_l", 0.0) + litres
        if not flowing:
            self.today["other_l"] = self.today.get("other_l", 0.0) + litres
            return
        weights = [self._flow_lpm[r.zone] or 1.0 for r in flowing]
        total = sum(weights)
        for r, w in zip(flowing, weights, strict=True):
            share = litres * w / total
            r.litres += share
            self.zone_today(r.zone)["litres"] += share

    def roll_day(self, now: datetime) -> bool:
        """Start new totals at local midnight; True when they changed."""
        day = now.astimezone(self.tz).date().isoformat()
        if self.today.get("date") == day:
            return False
        if self.today.get("date"):
            logger.info("day %s: %.1f water min, %.0f L", self.today["date"],
                        self.used_today_s() / 60, self.today.get("meter_l", 0.0))
        self.today = {"date": day, "zones": {}, "meter_l": 0.0, "other_l": 0.0}
        return True

    def budget_left_s(self, runs: list[Run], exclude: Run | None = None) -> float:
        """Water seconds left today: the daily limit less what ran and what the started
        runs (but ``exclude``) still have to do. A run holds its announced water from its
        first cycle to its end, so its later cycles are never cut by other zones."""
        committed = sum(max(0.0, sum(r.cycles) - r.cycle_done_s) for r in runs
                        if r is not exclude and r.started is not None and r.state != "queued")
        return self.max_daily_s - self.used_today_s() - committed

    def readings(self, zones, *, metered: bool) -> dict[str, Any]:
        r: dict[str, Any] = {}
        zones_today = self.today.get("zones", {})
        r["water_l_today"] = round(sum(z["litres"] for z in zones_today.values()), 1)
        r["water_min_today"] = round(self.used_today_s() / 60, 2)
        for zone in zones:
            zt = zones_today.get(zone, {"water_s": 0.0, "litres": 0.0})
            r[f"water_l_today.{zone}"] = round(zt["litres"], 1)
            r[f"water_min_today.{zone}"] = round(zt["water_s"] / 60, 2)
        if metered:
            r["meter_l_today"] = round(self.today.get("meter_l", 0.0), 1)
        return r


def zone_max_cycle_s(valve, master, spec: MasterSpec | None) -> tuple[float, str, float]:
    """The longest cycle a zone may run, the output that limits it and that output's
    configured ``max_on_s`` (the cycle is shorter by the master's delays and margin)."""
    if spec is None:
        return valve.max_on_s, valve.name, valve.max_on_s
    if spec.kind == "valve":
        candidates = [(valve.max_on_s, valve.name, valve.max_on_s),
                      (master.max_on_s - spec.pre_s - spec.post_s - MASTER_MARGIN_S,
                       master.name, master.max_on_s)]
    else:
        candidates = [(valve.max_on_s - spec.pre_s - spec.post_s, valve.name, valve.max_on_s),
                      (master.max_on_s - MASTER_MARGIN_S, master.name, master.max_on_s)]
    return min(candidates)


def master_covers(spec: MasterSpec | None, master, phase: Phase, cycle_s: float,
                  mono: float) -> bool:
    """Whether the master, already on, can stay on for one more cycle of ``cycle_s``
    within its ``max_on_s`` (else it rests first: off, then on again)."""
    if spec is None or phase.state == "off":
        return True
    pending_pre = max(0.0, phase.until - mono) if phase.state == "pre" else 0.0
    if spec.kind == "valve":
        need = master.on_for_s + pending_pre + cycle_s + spec.post_s + MASTER_MARGIN_S
    else:
        need = master.on_for_s + pending_pre + cycle_s + MASTER_MARGIN_S
    return need <= master.max_on_s
