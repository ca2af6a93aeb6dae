"""Config of a fish-feeder unit: ponds, feeders, water-quality sensors, hard limits.

Shape of the file (config/fish_feeder.example.toml is a complete example):

- ``[[outputs]]`` / ``[[inputs]]``: the relays (feeder motors) and pulse inputs (auger
  rotation), as for every unit.
- ``[[sensors]]``: water-quality probes on serial lines: ``driver = "ezo"`` (one quantity
  per EZO circuit) or ``driver = "modbus"`` (registers of a multi-parameter probe).
- ``[[feeders]]``: a motor output, its calibrated ``rate_g_per_s``, the hard limits
  ``max_dose_g`` (per feeding) and ``max_daily_g``, how feed movement is confirmed
  (``confirm_by`` rotation pulses or hopper weight) and an optional ``[feeders.hopper]``.
- ``[[ponds]]``: species, the sensors in the pond, the feeding ``plan`` and optional
  ``thresholds`` overrides of the species preset.
- ``[interlocks]``: how long a feeding waits for oxygen, and the stale-sensor policy.

Only the plan and the thresholds can be replaced by the controller (remote config); the
hard limits stay in this file.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from protocol.kinds.fish_feeder import PlanSpec
from protocol.models import FeederLimits, UnitLimits

from ..config import BcmPin, FieldProblem, Ident, StrictModel, UnitConfig, problems
from .species import PRESETS, SpeciesName, ThresholdOverrides, thresholds_for

Quantity = Literal["do_mg_l", "temp_c", "ph"]


class EzoSensorSpec(StrictModel):
    name: Ident
    driver: Literal["ezo"]
    port_url: str = Field(min_length=1, description="serial device or pyserial URL")
    quantity: Quantity
    baudrate: int = Field(9600, ge=300, le=115200)
    timeout_s: float = Field(1.5, gt=0, le=10)
    stale_after_s: float = Field(600, gt=0, le=86_400)


class RegisterSpec(StrictModel):
    address: int = Field(ge=0, le=65535, description="register number (0-based)")
    decimals: int = Field(0, ge=0, le=4)
    signed: bool = False


class ModbusSensorSpec(StrictModel):
    name: Ident
    driver: Literal["modbus"]
    port_url: str = Field(min_length=1)
    slave: int = Field(ge=1, le=247)
    baudrate: int = Field(9600, ge=300, le=115200)
    timeout_s: float = Field(0.5, gt=0, le=10)
    stale_after_s: float = Field(600, gt=0, le=86_400)
    function_code: Literal[3, 4] = Field(3, description="3 holding, 4 input registers")
    registers: dict[Quantity, RegisterSpec] = Field(min_length=1)


SensorSpec = Annotated[EzoSensorSpec | ModbusSensorSpec, Field(discriminator="driver")]


class UltrasonicHopperSpec(StrictModel):
    driver: Literal["ultrasonic"]
    trigger_pin: BcmPin
    echo_pin: BcmPin
    full_distance_m: float = Field(gt=0, le=4, description="sensor to feed surface, full")
    empty_distance_m: float = Field(gt=0, le=4, description="sensor to hopper bottom")
    capacity_g: float = Field(gt=0, le=1_000_000)
    low_pct: float = Field(20, ge=0, le=100)
    empty_pct: float = Field(3, ge=0, le=100)
    stale_after_s: float = Field(900, gt=0, le=86_400)

    @model_validator(mode="after")
    def _geometry(self):
        if self.full_distance_m >= self.empty_distance_m:
            raise FieldProblem("full_distance_m", "full_not_below_empty")
        if self.trigger_pin == self.echo_pin:
            raise FieldProblem("echo_pin", "echo_is_trigger")
        if self.empty_pct >= self.low_pct:
            raise FieldProblem("empty_pct", "empty_not_below_low")
        return self


class LoadCellHopperSpec(StrictModel):
    driver: Literal["loadcell"]
    port_url: str = Field(min_length=1)
    baudrate: int = Field(9600, ge=300, le=115200)
    timeout_s: float = Field(0.5, gt=0, le=10)
    tare_g: float = Field(0, ge=0, description="weight of the empty hopper")
    capacity_g: float = Field(gt=0, le=1_000_000)
    low_pct: float = Field(20, ge=0, le=100)
    empty_pct: float = Field(3, ge=0, le=100)
    stale_after_s: float = Field(900, gt=0, le=86_400)

    @model_validator(mode="after")
    def _levels(self):
        if self.empty_pct >= self.low_pct:
            raise FieldProblem("empty_pct", "empty_not_below_low")
        return self


HopperSpec = Annotated[UltrasonicHopperSpec | LoadCellHopperSpec, Field(discriminator="driver")]


class FeederSpec(StrictModel):
    name: Ident
    pond: Ident
    motor: Ident = Field(description="the output that runs the auger or spinner")
    kind: Literal["auger", "spinner"] = "auger"
    rate_g_per_s: float = Field(gt=0, le=1000, description="calibrated dosing rate")
    max_dose_g: float = Field(gt=0, le=100_000, description="hard limit per feeding")
    max_daily_g: float = Field(gt=0, le=1_000_000, description="hard limit per local day")
    confirm_by: Literal["pulses", "weight", "none"] = "pulses"
    rotation_input: Ident | None = Field(None, description="pulse input on the auger shaft")
    g_per_pulse: float | None = Field(None, gt=0, le=10_000,
                                      description="grams per rotation pulse (calibrated)")
    confirm_timeout_s: float = Field(5, gt=0, le=120,
                                     description="no movement within this is a jam")
    min_pulses: int = Field(2, ge=1, le=10_000, description="pulses per confirm window")
    min_weight_drop_g: float = Field(20, gt=0, description="weight drop per confirm window")
    settle_s: float = Field(1.0, ge=0, le=30, description="wait after the motor stops")
    rate_trim_max_pct: float = Field(
        15, ge=0, le=50, description="measured grams may trim the rate by this much; 0: off")
    hopper: HopperSpec | None = None

    @model_validator(mode="after")
    def _confirmation(self):
        if self.max_daily_g < self.max_dose_g:
            raise FieldProblem("max_daily_g", "daily_below_dose")
        if self.confirm_by == "pulses" and self.rotation_input is None:
            raise FieldProblem("rotation_input", "needs_rotation_input")
        if self.confirm_by == "weight" and not isinstance(self.hopper, LoadCellHopperSpec):
            raise FieldProblem("hopper", "needs_loadcell")
        return self


class PondSpec(StrictModel):
    name: Ident
    species: SpeciesName
    sensors: list[Ident] = Field(default_factory=list)
    plan: PlanSpec
    thresholds: ThresholdOverrides = ThresholdOverrides()

    @model_validator(mode="after")
    def _thresholds_consistent(self):
        try:
            thresholds_for(self.species, self.thresholds)
        except ValidationError as exc:
            field, reason = next(problems(exc))
            raise FieldProblem(f"thresholds.{field}", reason) from None
        return self


class InterlockSection(StrictModel):
    postpone_window_s: float = Field(
        7200, ge=0, le=86_400,
        description="a feeding held back by low oxygen is retried this long, then skipped")
    stale_policy: Literal["feed", "skip", "reduce"] = "reduce"
    stale_reduce_factor: float = Field(0.5, gt=0, le=1)


class WaterSection(StrictModel):
    poll_s: float = Field(60, ge=1, le=3600, description="how often sensors are read")


class FishFeederConfig(UnitConfig):
    kind: Literal["fish_feeder"]
    water: WaterSection = WaterSection()
    interlocks: InterlockSection = InterlockSection()
    sensors: list[SensorSpec] = Field(default_factory=list)
    feeders: list[FeederSpec] = Field(min_length=1)
    ponds: list[PondSpec] = Field(min_length=1)
    feed_log_days: int = Field(400, ge=1, le=3650,
                               description="days of per-pond totals kept for reports")

    def unit_limits(self) -> UnitLimits:
        return UnitLimits(
            feeders={f.name: FeederLimits(pond=f.pond, max_dose_g=f.max_dose_g,
                                          max_daily_g=f.max_daily_g) for f in self.feeders},
            ponds=[p.name for p in self.ponds])

    @model_validator(mode="after")
    def _references(self):
        for section in ("sensors", "feeders", "ponds"):
            seen: set[str] = set()
            for i, item in enumerate(getattr(self, section)):
                if item.name in seen:
                    raise FieldProblem(f"{section}.{i}.name", "name_twice", name=item.name)
                seen.add(item.name)
        self.check_refs([(f"feeders.{i}.motor", f.motor) for i, f in enumerate(self.feeders)],
                        "outputs", "feeder motor")
        self.check_refs([(f"feeders.{i}.rotation_input", f.rotation_input)
                         for i, f in enumerate(self.feeders)], "inputs", "pulse")
        motors: dict[str, str] = {}
        ponds = {p.name for p in self.ponds}
        for i, f in enumerate(self.feeders):
            if f.motor in motors:
                raise FieldProblem(f"feeders.{i}.motor", "motor_shared", motor=f.motor,
                                   feeder=motors[f.motor])
            motors[f.motor] = f.name
            if f.pond not in ponds:
                raise FieldProblem(f"feeders.{i}.pond", "no_pond", name=f.pond)
            max_on_s = self.output(f.motor).max_on_s
            need_s = f.max_dose_g / f.rate_g_per_s
            if need_s > max_on_s:
                raise FieldProblem(f"feeders.{i}.max_dose_g", "dose_over_max_on",
                                   dose=f.max_dose_g, rate=f.rate_g_per_s, need=need_s,
                                   motor=f.motor, max_on=max_on_s)
            if f.confirm_by != "none" and f.confirm_timeout_s >= max_on_s:
                raise FieldProblem(f"feeders.{i}.confirm_timeout_s", "confirm_over_max_on",
                                   max_on=max_on_s)
        self._check_pins()
        self._check_ports()
        sensors = {s.name: s for s in self.sensors}
        for i, pond in enumerate(self.ponds):
            if not any(f.pond == pond.name for f in self.feeders):
                raise FieldProblem(f"ponds.{i}.name", "pond_no_feeder", name=pond.name)
            seen_q: dict[str, str] = {}
            for j, name in enumerate(pond.sensors):
                if name not in sensors:
                    raise FieldProblem(f"ponds.{i}.sensors.{j}", "no_sensor", name=name)
                for q in sensor_quantities(sensors[name]):
                    if q in seen_q:
                        raise FieldProblem(f"ponds.{i}.sensors.{j}", "quantity_twice",
                                           quantity=q, other=seen_q[q])
                    seen_q[q] = name
        return self

    def _check_pins(self):
        used = {s.pin: (f"outputs/inputs {s.name!r}", s.name)
                for s in (*self.outputs, *self.inputs)}
        for i, f in enumerate(self.feeders):
            if isinstance(f.hopper, UltrasonicHopperSpec):
                for key in ("trigger_pin", "echo_pin"):
                    pin = getattr(f.hopper, key)
                    if pin in used:
                        other, name = used[pin]
                        raise FieldProblem(f"feeders.{i}.hopper.{key}", "hopper_pin_used",
                                           pin=pin, other=other, name=name)
                    used[pin] = (f"feeder {f.name!r} hopper", f.name)

    def _check_ports(self):
        """A serial port serves one EZO circuit or load cell, or one Modbus bus."""
        owners: dict[str, tuple[str, str]] = {}
        slaves: dict[tuple[str, int], str] = {}
        items = [(f"sensors.{i}", s.port_url, s.driver, s.name) for i, s in enumerate(self.sensors)]
        items += [(f"feeders.{i}.hopper", f.hopper.port_url, "loadcell", f.name)
                  for i, f in enumerate(self.feeders) if isinstance(f.hopper, LoadCellHopperSpec)]
        for where, url, driver, name in items:
            if url in owners and not (driver == "modbus" and owners[url][0] == "modbus"):
                raise FieldProblem(f"{where}.port_url", "port_used", url=url,
                                   other=owners[url][1])
            owners.setdefault(url, (driver, name))
        for i, s in enumerate(self.sensors):
            if s.driver == "modbus":
                key = (s.port_url, s.slave)
                if key in slaves:
                    raise FieldProblem(f"sensors.{i}.slave", "slave_used", slave=s.slave,
                                       url=s.port_url, other=slaves[key])
                slaves[key] = s.name

    # -- lookups ---------------------------------------------------------------------
    def feeder(self, name: str) -> FeederSpec:
        return next(f for f in self.feeders if f.name == name)

    def pond(self, name: str) -> PondSpec:
        return next(p for p in self.ponds if p.name == name)

    def feeders_of(self, pond: str) -> list[FeederSpec]:
        return [f for f in self.feeders if f.pond == pond]


def sensor_quantities(spec) -> list[str]:
    return [spec.quantity] if spec.driver == "ezo" else list(spec.registers)


__all__ = ["FishFeederConfig", "FeederSpec", "PondSpec", "PlanSpec", "PRESETS"]


CONFIG_MODEL = FishFeederConfig
"""The model of this kind's config file (``edge.config.load_config`` picks it by kind)."""
