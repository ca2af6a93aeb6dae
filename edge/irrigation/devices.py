"""The irrigation unit's hardware, built from its config.

- zone valves and the master valve or pump: ``Output``s of the app's ``OutputBank``
  (each with its own ``max_on_s``: the forced-off safety lives in the output layer);
- the rain sensor: a digital input (``RainSensor``; debounced by the rules);
- the flow meter: a pulse counter with its K-factor (``FlowMeter``);
- one soil probe per zone that has one (``build_soil_reader``): an MCP3008 channel, a
  serial line probe or a Modbus RTU probe, from ``edge.sensors``.

The simulator and the tests inject their own soil readers (anything with
``read() -> moisture_pct``); everything else is driven through gpiozero's mock pins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from gpiozero import DigitalInputDevice

from ..hardware import Output, PulseCounter
from ..sensors.base import ErrorCounters, SensorError
from ..sensors.modbus import ModbusSensor, open_port
from ..sensors.soil import (
    AdcSoilSensor,
    Calibration,
    LineSensor,
    ModbusSoilSensor,
    SerialSoilSensor,
)
from .config import AdcSoilSpec, IrrigationConfig, ModbusSoilSpec, SerialSoilSpec

logger = logging.getLogger(__name__)


class SoilReader(Protocol):
    def read(self) -> float: ...


def wet_level(spec) -> bool:
    """The electrical level (True = high) at which a digital input counts as active."""
    if spec.active_high is not None:
        return spec.active_high
    return not spec.pull_up


class RainSensor:
    """A rain switch on a digital input; ``wet`` is the raw (undebounced) state."""

    def __init__(self, spec, *, pin_factory):
        self.spec = spec
        self._level = wet_level(spec)
        self._device = DigitalInputDevice(spec.pin, pull_up=spec.pull_up,
                                          bounce_time=spec.bounce_s, pin_factory=pin_factory)

    @property
    def wet(self) -> bool:
        # gpiozero inverts for pull-ups; undo that to get the pin level.
        pin_high = bool(self._device.value) != bool(self.spec.pull_up)
        return pin_high == self._level

    def close(self) -> None:
        self._device.close()


class FlowMeter:
    """A pulse-output water meter: pulses -> litres by its K-factor (pulses per litre)."""

    def __init__(self, counter: PulseCounter, pulses_per_l: float):
        self.counter = counter
        self.pulses_per_l = pulses_per_l

    @property
    def count(self) -> int:
        return self.counter.count

    def litres(self, pulses: int) -> float:
        return pulses / self.pulses_per_l


class _Unavailable:
    """A soil reader whose driver could not be set up: every read fails (and counts)."""

    def __init__(self, reason: str):
        self.reason = reason
        self.counters = ErrorCounters()

    def read(self) -> float:
        self.counters.failed(self.reason)
        raise SensorError(self.reason)


def build_soil_reader(spec, *, pin_factory, ports: dict):
    """A soil reader for one ``[[soil.sensors]]`` entry.

    Serial ports are opened once per URL and shared (several Modbus probes on one bus).
    A probe whose driver cannot be built yields a reader that always fails, so the zone
    goes stale and falls back, instead of the daemon refusing to start.
    """
    try:
        if isinstance(spec, AdcSoilSpec):
            return AdcSoilSensor(spec.channel, device=spec.device, pin_factory=pin_factory,
                                 calibration=Calibration(spec.dry_raw, spec.wet_raw,
                                                         spec.dry_pct, spec.wet_pct))
        if isinstance(spec, SerialSoilSpec):
            line = LineSensor(spec.port, baudrate=spec.baudrate, timeout_s=spec.timeout_s,
                              query=spec.query, require_checksum=spec.checksum,
                              bare_key=spec.key)
            return SerialSoilSensor(line, key=spec.key)
        if isinstance(spec, ModbusSoilSpec):
            if spec.port not in ports:
                try:
                    ports[spec.port] = open_port(spec.port, baudrate=spec.baudrate,
                                                 timeout_s=spec.timeout_s)
                except SensorError as exc:
                    # Not there yet (adapter unplugged): each probe retries on its own.
                    logger.error("%s", exc)
            modbus = ModbusSensor(ports.get(spec.port, spec.port), spec.slave,
                                  {"moisture_pct": (spec.moisture_register, spec.decimals,
                                                    False)},
                                  baudrate=spec.baudrate, timeout_s=spec.timeout_s,
                                  function_code=spec.function_code)
            return ModbusSoilSensor(modbus)
    except (SensorError, ValueError) as exc:
        logger.error("soil sensor %s unavailable: %s", spec.name, exc)
        return _Unavailable(f"soil sensor {spec.name} unavailable: {exc}")
    raise TypeError(f"unknown soil sensor kind {spec!r}")


@dataclass
class IrrigationDevices:
    valves: dict[str, Output]
    master: Output | None = None
    rain: RainSensor | None = None
    flow: FlowMeter | None = None
    soil: dict[str, SoilReader] = field(default_factory=dict)
    ports: dict = field(default_factory=dict)

    def close(self) -> None:
        for closable in [self.rain, *self.soil.values(), *self.ports.values()]:
            close = getattr(closable, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception:  # noqa: BLE001 - close the rest whatever happens
                logger.exception("closing %r", closable)


def build_devices(config: IrrigationConfig, app, *, soil_readers=None) -> IrrigationDevices:
    """Wire the config's devices onto the app's outputs and pin factory."""
    valves = {z.name: app.outputs[z.valve] for z in config.zones}
    devices = IrrigationDevices(valves=valves)
    if config.master is not None:
        devices.master = app.outputs[config.master.output]
    if config.rain is not None:
        devices.rain = RainSensor(config.input(config.rain.input), pin_factory=app.pin_factory)
    if config.flow is not None:
        devices.flow = FlowMeter(app.pulse_counter(config.flow.input), config.flow.pulses_per_l)
    injected = dict(soil_readers or {})
    for zone in config.zones:
        if zone.name in injected:
            devices.soil[zone.name] = injected[zone.name]
        elif zone.soil_sensor is not None:
            devices.soil[zone.name] = build_soil_reader(
                config.soil_sensor(zone.soil_sensor), pin_factory=app.pin_factory,
                ports=devices.ports)
    return devices
