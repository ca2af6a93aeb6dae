"""The remote schedule of an irrigation unit: programs and sensor-rule thresholds.

``IrrigationProgramConfig`` is the ``body`` of an irrigation unit's desired config
(``config`` channel), and the ``[program]`` section of the unit's local file: the same
model checks the technician's default, the controller's API and the unit's link. Hard
limits are never part of it; a unit clamps a program to its local limits.

A program refers to zones by name; :meth:`IrrigationProgramConfig.problems` checks those
names against the zones a unit has (its config, or the zones it reports in its status).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from protocol.ids import Ident
from protocol.times import parse_month_day, parse_start
from protocol.validation import FieldProblem, StrictModel

__all__ = ["WEEKDAYS", "IrrigationProgramConfig", "MoistureRule", "ProgramSpec",
           "ProgramZone", "Weekday", "ZoneRules"]


def _nested(field: str, reason: str) -> ValueError:
    """A problem inside a nested model: pydantic adds the model's path, we add the field."""
    return ValueError(f"{field}: {reason}")


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")



class ProgramZone(StrictModel):
    zone: Ident
    duration_min: float = Field(gt=0, le=720, description="base run time before adjustments")


class ProgramSpec(StrictModel):
    """A schedule: which days, which start times, which zones for how long."""

    name: Ident
    enabled: bool = True
    zones: list[ProgramZone] = Field(min_length=1)
    start_times: list[str] = Field(
        min_length=1, max_length=12,
        description='"HH:MM" local time, or "sunrise"/"sunset" with an optional '
                    '"+HH:MM"/"-HH:MM" offset (at most 6 hours)',
    )
    weekdays: list[Weekday] | None = None
    interval_days: int | None = Field(None, ge=1, le=31, description="every N days")
    interval_start: date = Field(date(2026, 1, 1), description="a day the interval runs on")
    odd_even: Literal["odd", "even"] | None = Field(None, description="day of the month")
    active_from: str | None = Field(None, description='"MM-DD": first day of the season')
    active_to: str | None = Field(None, description='"MM-DD": last day of the season')
    watering_pct: float = Field(100, ge=0, le=250, description="this program's adjustment")

    @field_validator("start_times")
    @classmethod
    def _starts_parse(cls, v: list[str]) -> list[str]:
        for s in v:
            try:
                parse_start(s)
            except ValueError as exc:
                raise FieldProblem("", str(exc), code="start_time_bad", error=str(exc),
                                   value=s) from None
        if len(set(v)) != len(v):
            raise FieldProblem("", "start times repeat", code="start_times_repeat")
        return v

    @field_validator("active_from", "active_to")
    @classmethod
    def _month_day(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_month_day(v)
            except ValueError as exc:
                raise FieldProblem("", str(exc), code="month_day_bad", error=str(exc),
                                   value=v) from None
        return v

    @model_validator(mode="after")
    def _one_day_rule(self):
        given = [n for n in ("weekdays", "interval_days", "odd_even")
                 if getattr(self, n) is not None]
        if len(given) > 1:
            raise _nested(given[1], f"use only one of weekdays, interval_days, odd_even "
                                         f"(got {', '.join(given)})")
        if (self.active_from is None) != (self.active_to is None):
            raise _nested("active_to" if self.active_to is None else "active_from",
                               "a season needs both active_from and active_to")
        if self.weekdays is not None and not self.weekdays:
            raise _nested("weekdays", "name at least one day")
        return self


class MoistureRule(StrictModel):
    """Soil-moisture rule of one zone (needs a soil probe on that zone)."""

    start_below_pct: float | None = Field(
        None, ge=0, le=100,
        description="start a sensor run when the soil is drier than this; none = never",
    )
    skip_above_pct: float = Field(
        ge=0, le=100, description="skip a run (or its next cycle) when the soil is this wet")
    run_min: float = Field(10, gt=0, le=240, description="length of a sensor-started run")
    min_interval_min: float = Field(
        120, ge=0, le=10080, description="least time between two sensor-started runs")
    stale_after_min: float = Field(
        30, gt=0, le=10080, description="no good reading for this long = stale")
    on_stale: Literal["schedule", "skip"] = Field(
        "schedule", description="stale probe: water by the schedule alone, or skip")

    @model_validator(mode="after")
    def _band(self):
        if self.start_below_pct is not None and self.start_below_pct >= self.skip_above_pct:
            raise _nested("start_below_pct",
                               "must be below skip_above_pct (the hysteresis band)")
        return self


class ZoneRules(StrictModel):
    zone: Ident
    cycle_min: float | None = Field(
        None, gt=0, le=240, description="split runs longer than this into cycles")
    soak_min: float = Field(0, ge=0, le=1440, description="least pause between two cycles")
    moisture: MoistureRule | None = None


class IrrigationProgramConfig(StrictModel):
    """Schedules and sensor-rule thresholds: the part the controller may replace."""

    watering_pct: float = Field(100, ge=0, le=250, description="scales every scheduled run")
    rain_delay_h: float = Field(24, ge=0, le=168,
                                description="hold automatic runs this long after rain")
    programs: list[ProgramSpec] = Field(default_factory=list)
    zones: list[ZoneRules] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self):
        seen: set[str] = set()
        for i, p in enumerate(self.programs):
            if p.name in seen:
                raise _nested(f"programs.{i}.name", f"program {p.name!r} defined twice")
            seen.add(p.name)
        seen = set()
        for i, z in enumerate(self.zones):
            if z.zone in seen:
                raise _nested(f"zones.{i}.zone", f"rules for {z.zone!r} given twice")
            seen.add(z.zone)
        return self

    def rules_for(self, zone: str) -> ZoneRules:
        for z in self.zones:
            if z.zone == zone:
                return z
        return ZoneRules(zone=zone)

    def problems(self, zones: Mapping[str, bool], prefix: str = "") -> list[tuple[str, str]]:
        """Cross-checks against the unit's zones (name -> has a soil probe):
        ``[(field, reason)]``, empty when fine."""
        found = []
        for i, p in enumerate(self.programs):
            for j, pz in enumerate(p.zones):
                if pz.zone not in zones:
                    found.append((f"{prefix}programs.{i}.zones.{j}.zone",
                                  f"no zone named {pz.zone!r}"))
        for i, z in enumerate(self.zones):
            if z.zone not in zones:
                found.append((f"{prefix}zones.{i}.zone", f"no zone named {z.zone!r}"))
            elif z.moisture is not None and not zones[z.zone]:
                found.append((f"{prefix}zones.{i}.moisture",
                              f"zone {z.zone!r} has no soil_sensor in the local config"))
        return found
