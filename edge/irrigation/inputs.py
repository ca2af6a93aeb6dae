"""The unit's inputs: the rain switch, the soil probes and the flow meter, and their faults.

``Inputs`` reads them and keeps what they say: whether it rains (debounced), each zone's
moisture with its staleness, error count and hysteresis latch, the flow rate, and whether
water leaks with every valve closed. It raises and clears the inputs' own alarms
(``sensor_stale``, ``leak``); what the rest of the unit does about them (stopping runs,
a rain delay, a zone fault) is the app's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..sensors.base import SensorError, SensorValue
from .config import IrrigationConfig, IrrigationProgramConfig
from .queue import Run
from .rules import EPS_S, Debouncer, FlowRate, iso, moisture_gate, moisture_need

logger = logging.getLogger(__name__)



@dataclass
class ZoneState:
    """A soil-ruled zone: the hysteresis latch and the last sensor run (both saved)."""

    latched: bool = False
    last_sensor_start: datetime | None = None
    blocked: str | None = None


class Inputs:
    """What the rain switch, the soil probes and the flow meter say.

    ``app`` gives the devices, the clock, ``outputs``, ``alarm`` and ``publisher``;
    ``lock`` is the app's; ``changed()`` says that something to save has changed.
    """

    def __init__(self, config: IrrigationConfig, *, app, lock,
                 zone_state: dict[str, ZoneState], changed: Callable[[], None]):
        self._app = app
        self._lock = lock
        self._changed = changed
        self.devices = app.devices
        self.flow_spec = config.flow
        self.debounce = Debouncer(config.rain.debounce_s) if config.rain else None
        self.flow_rate = (FlowRate(config.flow.pulses_per_l, config.flow.window_s)
                          if config.flow else None)
        self.soil = {zone: SensorValue() for zone in self.devices.soil}
        self.soil_stale = dict.fromkeys(self.devices.soil, False)
        self.soil_errors = dict.fromkeys(self.devices.soil, 0)
        self.zone_state = zone_state
        self.raining = False
        self.leak_active = False
        self.quiet_since: float | None = app.clock.monotonic()
        self._leak_since: float | None = None
        self._dry_since: float | None = None
        self.started_at: datetime | None = None

    # -- rain -------------------------------------------------------------------------
    def read_rain(self, mono: float) -> str | None:
        """``wet`` or ``dry`` when the debounced rain switch changed, else None."""
        if self.devices.rain is None:
            return None
        wet = self.debounce.update(self.devices.rain.wet, mono)
        if wet and not self.raining:
            self.raining = True
            return "wet"
        if not wet and self.raining:
            self.raining = False
            return "dry"
        return None

    # -- soil -------------------------------------------------------------------------
    def poll_soil(self) -> None:
        """Read every soil probe (outside the lock: a serial read may take a while)."""
        for zone, reader in self.devices.soil.items():
            try:
                value = float(reader.read())
            except SensorError as exc:
                logger.debug("soil probe of %s: %s", zone, exc)
                self.soil_errors[zone] += 1
                continue
            except Exception:  # noqa: BLE001 - a driver bug must not stop the others
                logger.exception("soil probe of %s failed", zone)
                self.soil_errors[zone] += 1
                continue
            with self._lock:
                self.soil[zone].update(value, self._app.clock.now())

    def is_stale(self, zone: str, now: datetime, program: IrrigationProgramConfig) -> bool:
        rule = program.rules_for(zone).moisture
        max_age = (rule.stale_after_min if rule else 30.0) * 60.0
        value = self.soil[zone]
        if value.reading is None:
            since = self.started_at or now
            return (now - since).total_seconds() > max_age
        return value.is_stale(now, max_age)

    def check_soil(self, now: datetime, program: IrrigationProgramConfig) -> None:
        """Staleness alarms, and each zone's hysteresis latch."""
        for zone, value in self.soil.items():
            stale = self.is_stale(zone, now, program)
            if stale != self.soil_stale[zone]:
                self.soil_stale[zone] = stale
                rule = program.rules_for(zone).moisture
                fallback = rule.on_stale if rule else "schedule"
                if stale:
                    self._app.alarm(
                        "sensor_stale", f"soil probe of {zone} gave no good reading; zone "
                        f"falls back to: {fallback}", zone=zone, fallback=fallback,
                        last_reading=iso(value.reading.ts if value.reading else None))
                else:
                    logger.info("soil probe of %s reads again", zone)
                    self._app.publisher.event("alarm_cleared", code="sensor_stale",
                                              message=f"soil probe of {zone} reads again",
                                              zone=zone, moisture_pct=round(value.value, 1))
            rule = program.rules_for(zone).moisture
            if not stale and rule is not None and value.value is not None:
                zs = self.zone_state[zone]
                latched = moisture_need(zs.latched, value.value, rule)
                if latched != zs.latched:
                    zs.latched = latched
                    self._changed()

    def moisture_gate(self, zone: str, program: IrrigationProgramConfig) -> str | None:
        """Why the soil says a zone must not water now (None: it may)."""
        if zone not in self.soil:
            return None
        rule = program.rules_for(zone).moisture
        return moisture_gate(self.soil[zone].value, self.soil_stale[zone], rule)

    def moisture_detail(self, zone: str) -> dict:
        if zone in self.soil and self.soil[zone].value is not None:
            return {"moisture_pct": round(self.soil[zone].value, 1)}
        return {}

    # -- flow -------------------------------------------------------------------------
    def add_flow(self, mono: float) -> int | None:
        """Feed the meter's count to the flow rate; the count (None: no meter)."""
        if self.devices.flow is None:
            return None
        count = self.devices.flow.count
        self.flow_rate.add(mono, count)
        return count

    def check_leak(self, mono: float) -> None:
        """Water through the meter with every output off for ``leak_s``: a leak (every
        output off, an alarm); none for as long again: the leak is cleared."""
        spec = self.flow_spec
        outputs = self._app.outputs
        lpm = self.flow_rate.lpm
        quiet = (self.quiet_since is not None and mono - self.quiet_since >= spec.settle_s
                 and (lpm >= spec.leak_lpm or self.leak_active) and not outputs.any_on())
        if quiet and lpm >= spec.leak_lpm:
            self._dry_since = None
            if self._leak_since is None:
                self._leak_since = mono
            if not self.leak_active and mono - self._leak_since >= spec.leak_s:
                self.leak_active = True
                outputs.all_off()
                self._app.alarm("leak", f"{lpm:.1f} L/min flowing with every valve closed",
                                flow_lpm=round(lpm, 2), outputs=outputs.states())
        else:
            self._leak_since = None
            if self.leak_active and quiet:
                if self._dry_since is None:
                    self._dry_since = mono
                if mono - self._dry_since >= spec.leak_s:
                    self.leak_active = False
                    self._dry_since = None
                    logger.info("leak cleared")
                    self._app.publisher.event("alarm_cleared", code="leak",
                                              message="no more flow with every valve closed",
                                              flow_lpm=round(lpm, 2))

    def no_flow(self, runs: list[Run], mono: float) -> list[Run]:
        """The runs whose zone has had water for ``no_flow_s`` while the meter shows
        (almost) none."""
        spec = self.flow_spec
        dead = [r for r in runs if r.state == "active" and r.water_since is not None
                and mono - r.water_since >= spec.no_flow_s
                and self.flow_rate.covered_s() >= min(spec.window_s, spec.no_flow_s) - EPS_S]
        return dead if dead and self.flow_rate.lpm < spec.no_flow_below_lpm else []

    def note_outputs(self, busy: bool, mono: float) -> None:
        """Track since when every output is off (a leak is only looked for then)."""
        if busy or self.quiet_since is None:
            if self._app.outputs.any_on():
                self.quiet_since = None
            elif self.quiet_since is None:
                self.quiet_since = mono

    def all_off(self, mono: float) -> None:
        """Every output was switched off at once."""
        if self.quiet_since is None:
            self.quiet_since = mono

    def wake_at(self) -> float | None:
        """When the rain switch's debounce ends (a step is due then)."""
        return None if self.debounce is None else self.debounce.pending_until()

    def readings(self) -> dict[str, Any]:
        r: dict[str, Any] = {}
        for zone, value in self.soil.items():
            if value.value is not None:
                r[f"moisture_pct.{zone}"] = round(value.value, 1)
            r[f"moisture_stale.{zone}"] = self.soil_stale[zone]
            r[f"sensor_errors.{zone}"] = self.soil_errors[zone]
        if self.devices.rain is not None:
            r["rain"] = self.raining
        return r
