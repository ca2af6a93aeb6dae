"""What the fish feeder reads: water-quality sensors (EZO or Modbus), hopper gauges (load
cell or ultrasonic), their alarms, and the water-quality interlock a feeding waits on.

Sensors and idle hoppers are polled every ``water.poll_s``; a reading older than the
sensor's ``stale_after_s`` is stale (``sensor_stale`` is raised once, and cleared when it
reads again) and the interlock's stale policy applies to it. A hopper at or below
``empty_pct`` raises ``hopper_empty`` (and a feeding on it is skipped), below ``low_pct``
``hopper_low`` with the days of feed left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..sensors.base import SensorError, SensorValue
from ..sensors.ezo import EzoSensor
from ..sensors.hopper import LoadCell, UltrasonicLevel
from ..sensors.modbus import open_port
from ..sensors.modbus_wq import ModbusWaterQuality
from .config import FishFeederConfig, LoadCellHopperSpec, sensor_quantities
from .devices import HopperGauge
from .rules import Reading, WaterQuality, hopper_days_left, interlock

logger = logging.getLogger(__name__)

RaiseFn = Callable[..., None]  # (key, code, message, **details): once until cleared
ClearFn = Callable[..., None]  # (key, **details)


class Inputs:
    """The unit's sensors and hopper gauges, with their last values and alarms.

    ``ports`` maps a configured ``port_url`` to an open serial-like object and
    ``distance_sources`` a feeder name to an object with ``distance`` (metres): both let
    the simulator stand in for hardware. Anything not given is opened for real.
    ``raise_alarm`` and ``clear_alarm`` are the app's latched alarms; ``alarm`` raises one
    at once (a hopper sensor that cannot be set up)."""

    def __init__(self, config: FishFeederConfig, *, clock, pin_factory, ports: dict,
                 distance_sources: dict, alarm: Callable[..., None], raise_alarm: RaiseFn,
                 clear_alarm: ClearFn):
        self.config = config
        self.clock = clock
        self.pin_factory = pin_factory
        self._ports = ports
        self._distance_sources = distance_sources
        self._alarm = alarm
        self._raise = raise_alarm
        self._clear = clear_alarm
        self.sensors: dict[str, Any] = {}
        self.values: dict[tuple[str, str], SensorValue] = {}
        self.hoppers: dict[str, HopperGauge] = {}
        self._build_sensors()

    # -- construction ----------------------------------------------------------------------
    def _build_sensors(self):
        shared: dict[str, Any] = {}
        modbus_urls = [s.port_url for s in self.config.sensors if s.driver == "modbus"]
        for spec in self.config.sensors:
            port = self._ports.get(spec.port_url, spec.port_url)
            if spec.driver == "ezo":
                drv = EzoSensor(port, spec.quantity, baudrate=spec.baudrate,
                                timeout_s=spec.timeout_s)
            else:
                if isinstance(port, str) and modbus_urls.count(port) > 1:
                    if port not in shared:
                        try:
                            shared[port] = open_port(port, baudrate=spec.baudrate,
                                                     timeout_s=spec.timeout_s)
                        except SensorError as exc:
                            logger.error("shared Modbus port: %s", exc)
                            shared[port] = port
                    port = shared[port]
                registers = {q: (r.address, r.decimals, r.signed)
                             for q, r in spec.registers.items()}
                drv = ModbusWaterQuality(port, spec.slave, registers, baudrate=spec.baudrate,
                                         timeout_s=spec.timeout_s,
                                         function_code=spec.function_code)
            self.sensors[spec.name] = drv
            for q in sensor_quantities(spec):
                self.values[(spec.name, q)] = SensorValue()

    def build_hopper(self, spec) -> HopperGauge | None:
        """The hopper gauge of feeder ``spec`` (None: it has none, or it cannot be set up)."""
        h = spec.hopper
        if h is None:
            return None
        if isinstance(h, LoadCellHopperSpec):
            device = LoadCell(self._ports.get(h.port_url, h.port_url), baudrate=h.baudrate,
                              timeout_s=h.timeout_s)
        elif spec.name in self._distance_sources:
            device = UltrasonicLevel(self._distance_sources[spec.name],
                                     full_distance_m=h.full_distance_m,
                                     empty_distance_m=h.empty_distance_m)
        else:
            try:
                device = UltrasonicLevel.from_pins(
                    trigger_pin=h.trigger_pin, echo_pin=h.echo_pin,
                    pin_factory=self.pin_factory, full_distance_m=h.full_distance_m,
                    empty_distance_m=h.empty_distance_m)
            except SensorError as exc:
                logger.error("feeder %s: %s", spec.name, exc)
                self._alarm("hopper_sensor_failed", f"feeder {spec.name}: {exc}",
                            feeder=spec.name)
                return None
        gauge = HopperGauge(h, device, self.clock)
        self.hoppers[spec.name] = gauge
        return gauge

    def close(self) -> None:
        for drv in [*self.sensors.values(), *self.hoppers.values()]:
            try:
                drv.close()
            except Exception:  # noqa: BLE001 - closing must not stop the others
                logger.exception("closing a sensor")

    # -- reading -----------------------------------------------------------------------------
    def read(self, busy: Callable[[str], bool]) -> None:
        """Read every water-quality sensor, and every hopper whose feeder is not ``busy``
        (a running feeder reads its own hopper)."""
        now = self.clock.now()
        for name, drv in self.sensors.items():
            try:
                values = drv.read()
            except SensorError as exc:
                logger.info("sensor %s: %s", name, exc)
                continue
            if not isinstance(values, dict):
                values = {drv.quantity: values}
            for q, v in values.items():
                self.values[(name, q)].update(v, now)
        for fname, gauge in self.hoppers.items():
            if busy(fname):
                continue  # the feeder reads its own hopper while it runs
            try:
                gauge.read()
            except SensorError as exc:
                logger.info("hopper %s: %s", fname, exc)

    def water_quality(self, sensors: list[str]) -> WaterQuality:
        """The readings of the named sensors (a pond's), stale ones as missing."""
        now = self.clock.now()
        found: dict[str, Reading] = {}
        by_name = {s.name: s for s in self.config.sensors}
        for name in sensors:
            spec = by_name[name]
            for q in sensor_quantities(spec):
                v = self.values[(name, q)]
                found[q] = (Reading.missing() if v.is_stale(now, spec.stale_after_s)
                            else Reading.fresh(v.value))
        return WaterQuality(**found)

    def interlock(self, thresholds, sensors: list[str]):
        """Feed, reduce, postpone or skip, for a pond's ``thresholds`` and its sensors
        (``rules.interlock`` with the config's stale policy)."""
        il = self.config.interlocks
        return interlock(thresholds, self.water_quality(sensors),
                         stale_policy=il.stale_policy, stale_factor=il.stale_reduce_factor)

    def empty_hopper(self, feeder: str) -> float | None:
        """The hopper's level (%) if it is empty (``hopper_empty`` raised); else None."""
        hopper = self.hoppers.get(feeder)
        if hopper is None:
            return None
        pct = hopper.pct()
        if pct is not None and pct <= hopper.spec.empty_pct:
            self._raise(f"hopper_empty:{feeder}", "hopper_empty",
                        f"feeder {feeder}: hopper empty ({pct:.0f} %)",
                        feeder=feeder, hopper_pct=pct)
            return pct
        return None

    # -- alarms ------------------------------------------------------------------------------
    def check_alarms(self, started_at: datetime | None,
                     daily_plan_g: Callable[[str], float]) -> None:
        """Raise and clear the sensors' and hoppers' alarms. ``started_at``: when the
        daemon started (a sensor never read is stale counted from it); ``daily_plan_g``:
        a feeder's grams a day in the plan now in force (for the days of feed left)."""
        for spec in self.config.sensors:
            for q in sensor_quantities(spec):
                self._stale_alarm(f"sensor_stale:{spec.name}:{q}", self.values[(spec.name, q)],
                                  spec.stale_after_s, started_at, sensor=spec.name, quantity=q,
                                  policy=self.config.interlocks.stale_policy)
        for fname, gauge in self.hoppers.items():
            self._stale_alarm(f"sensor_stale:{fname}:hopper", gauge.value,
                              gauge.spec.stale_after_s, started_at, sensor=f"{fname}.hopper")
            pct = gauge.pct()
            if pct is None:
                continue
            days = hopper_days_left(gauge.grams(), daily_plan_g(fname))
            if pct <= gauge.spec.empty_pct:
                self._raise(f"hopper_empty:{fname}", "hopper_empty",
                            f"feeder {fname}: hopper empty ({pct:.0f} %)", feeder=fname,
                            hopper_pct=pct)
            elif pct > gauge.spec.empty_pct + 2:
                self._clear(f"hopper_empty:{fname}", feeder=fname, hopper_pct=pct)
            if pct < gauge.spec.low_pct:
                self._raise(f"hopper_low:{fname}", "hopper_low",
                            f"feeder {fname}: feed low ({pct:.0f} %, about {days} days left)",
                            feeder=fname, hopper_pct=pct, days_left=days)
            elif pct >= gauge.spec.low_pct + 5:
                self._clear(f"hopper_low:{fname}", feeder=fname, hopper_pct=pct)

    def _stale_alarm(self, key: str, value: SensorValue, stale_after_s: float,
                     started_at: datetime | None, **details) -> None:
        """Raise ``sensor_stale`` once a sensor has been silent ``stale_after_s`` (counted
        from the daemon's start for one never read); clear it when it reads again."""
        now = self.clock.now()
        if not value.is_stale(now, stale_after_s):
            self._clear(key, **details)
            return
        since = value.reading.ts if value.reading is not None else started_at
        if since is not None and (now - since).total_seconds() >= stale_after_s:
            what = f"{details.get('sensor')}" + (f" {details['quantity']}"
                                                 if "quantity" in details else "")
            self._raise(key, "sensor_stale", f"sensor {what}: no good reading for "
                        f"{stale_after_s:g} s or more", **details)
