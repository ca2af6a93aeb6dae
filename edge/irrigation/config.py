"""Config of an irrigation unit.

Two parts, on purpose:

- The **local** part is the technician's and never changes remotely: zones and their
  valves (``[[zones]]``), the master valve or pump (``[master]``), the rain sensor
  (``[rain]``), the flow meter (``[flow]``), the soil probes (``[soil]``), the hard limits
  (``[limits]`` plus each output's ``max_on_s``) and what to do after a crash (``[runs]``).
- The **program** (``[program]``, ``protocol.kinds.irrigation.IrrigationProgramConfig``) holds the schedules and
  the sensor-rule thresholds. The local file carries the default program; the controller
  may replace it (``IrrigationApp.apply_remote_config``), and the same model validates
  both. Hard limits are never part of it, so a remote program is clamped to them.

See docs/irrigation.md for every field with the example park.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from protocol import validation
from protocol.kinds.irrigation import (  # noqa: F401 - the program's models, re-exported
    WEEKDAYS,
    IrrigationProgramConfig,
    MoistureRule,
    ProgramSpec,
    ProgramZone,
    Weekday,
    ZoneRules,
)
from protocol.models import UnitLimits, ZoneLimits

from ..config import FieldProblem, Ident, StrictModel, UnitConfig
from ..errors import ConfigError

# The MCP3008 sits on SPI0: SCLK 11, MOSI 10, MISO 9, CE0 8, CE1 7.
SPI0_PINS = {7: "SPI0 CE1", 8: "SPI0 CE0", 9: "SPI0 MISO", 10: "SPI0 MOSI", 11: "SPI0 SCLK"}


def parse_program(body: dict, zones: dict[str, ZoneSpec], source: str) -> IrrigationProgramConfig:
    """Validate a program sent by the controller; raises ``ConfigError``."""
    from ..config import field_name, parse_config

    program = parse_config(body, source, model=IrrigationProgramConfig)
    problems = program.problems(probed(zones))
    if problems:
        raise ConfigError(source, [(field_name(f, body), r) for f, r in problems])
    return program


def probed(zones: dict[str, ZoneSpec]) -> dict[str, bool]:
    """Zone name -> whether it has a soil probe (what a program's checks need)."""
    return {name: z.soil_sensor is not None for name, z in zones.items()}


# --------------------------------------------------------------------------------------
# The local part: hardware, hard limits
# --------------------------------------------------------------------------------------
class ZoneSpec(StrictModel):
    name: Ident
    valve: Ident = Field(description="name of the output that opens this zone's valve")
    group: Ident = Field("main", description="zones of one group never run together")
    flow_lpm: float | None = Field(None, gt=0, le=2000, description="nominal flow when open")
    area_m2: float | None = Field(None, gt=0, le=1_000_000)
    soil_sensor: Ident | None = Field(None, description="name of a [[soil.sensors]] entry")


class IrrigationLimits(StrictModel):
    max_concurrent_zones: int = Field(1, ge=1, le=16)
    max_daily_water_min: float = Field(240, gt=0, le=1440,
                                       description="sum of every zone's run minutes per day")


class MasterSpec(StrictModel):
    output: Ident
    kind: Literal["valve", "pump"] = Field(
        "valve",
        description="valve: opens pre_s before the first zone, closes post_s after the last; "
                    "pump: starts pre_s after the first zone valve opens, stops post_s before "
                    "the last zone valve closes",
    )
    pre_s: float = Field(2, ge=0, le=300)
    post_s: float = Field(5, ge=0, le=300)


class RainSpec(StrictModel):
    input: Ident = Field(description="a digital input")
    debounce_s: float = Field(10, ge=0, le=600, description="wet/dry must hold this long")


class FlowSpec(StrictModel):
    input: Ident = Field(description="a pulse input")
    pulses_per_l: float = Field(gt=0, le=10_000, description="the meter's K-factor")
    window_s: float = Field(15, ge=2, le=300, description="flow rate averaged over this")
    leak_lpm: float = Field(1.0, gt=0, description="flow with every valve closed = leak")
    leak_s: float = Field(60, ge=1, le=3600, description="...for this long")
    settle_s: float = Field(30, ge=0, le=600, description="ignore flow this long after close")
    no_flow_below_lpm: float = Field(2.0, gt=0, description="a valve open with less = no flow")
    no_flow_s: float = Field(60, ge=5, le=3600, description="...for this long after opening")

    @model_validator(mode="after")
    def _windows(self):
        if self.no_flow_s < self.window_s:
            raise FieldProblem("no_flow_s", "no_flow_window", window_s=self.window_s)
        return self


class AdcSoilSpec(StrictModel):
    name: Ident
    kind: Literal["mcp3008"]
    channel: int = Field(ge=0, le=7)
    device: Literal[0, 1] = Field(0, description="SPI chip select: 0 = CE0, 1 = CE1")
    dry_raw: float = Field(ge=0, le=1, description="ADC value 0..1 in dry soil")
    wet_raw: float = Field(ge=0, le=1, description="ADC value 0..1 in soaked soil")
    dry_pct: float = Field(0, ge=0, le=100)
    wet_pct: float = Field(100, ge=0, le=100)

    @model_validator(mode="after")
    def _two_points(self):
        if abs(self.dry_raw - self.wet_raw) < 0.01:
            raise FieldProblem("wet_raw", "wet_is_dry")
        return self


class SerialSoilSpec(StrictModel):
    name: Ident
    kind: Literal["serial"]
    port: str = Field(min_length=1, description="device or pyserial URL")
    baudrate: int = Field(9600, ge=300, le=921_600)
    key: str = Field("moisture_pct", min_length=1, max_length=32)
    query: str | None = Field(None, max_length=32, description="sent before each read")
    checksum: bool = Field(False, description="require the *HH checksum")
    timeout_s: float = Field(1.0, gt=0, le=10)


class ModbusSoilSpec(StrictModel):
    name: Ident
    kind: Literal["modbus"]
    port: str = Field(min_length=1, description="device or pyserial URL")
    slave: int = Field(ge=1, le=247)
    baudrate: int = Field(9600, ge=300, le=921_600)
    moisture_register: int = Field(0, ge=0, le=0xFFFF, description="register holding moisture")
    decimals: int = Field(1, ge=0, le=4)
    function_code: Literal[3, 4] = 3
    timeout_s: float = Field(0.5, gt=0, le=10)


SoilSensorSpec = Annotated[AdcSoilSpec | SerialSoilSpec | ModbusSoilSpec,
                           Field(discriminator="kind")]


class SoilSection(StrictModel):
    poll_s: float = Field(60, ge=1, le=3600)
    sensors: list[SoilSensorSpec] = Field(default_factory=list)


class RunsSection(StrictModel):
    on_interrupted: Literal["resume", "drop"] = Field(
        "resume", description="after a crash or power cut: finish the run or forget it")
    max_queue_wait_min: float = Field(360, gt=0, le=2880,
                                      description="a run waiting longer is skipped")
    late_start_grace_s: float = Field(300, ge=0, le=3600,
                                      description="a start noticed later than this is missed")
    checkpoint_s: float = Field(30, ge=1, le=600, description="save run progress this often")


class IrrigationConfig(UnitConfig):
    kind: Literal["irrigation"]
    zones: list[ZoneSpec] = Field(min_length=1)
    limits: IrrigationLimits = IrrigationLimits()
    master: MasterSpec | None = None
    rain: RainSpec | None = None
    flow: FlowSpec | None = None
    soil: SoilSection = SoilSection()
    runs: RunsSection = RunsSection()
    program: IrrigationProgramConfig = IrrigationProgramConfig()

    @model_validator(mode="after")
    def _zones_resolve(self):
        self.check_refs(
            [(f"zones.{i}.valve", z.valve) for i, z in enumerate(self.zones)], "outputs", "valve"
        )
        names: dict[str, int] = {}
        valves: dict[str, int] = {}
        for i, z in enumerate(self.zones):
            if z.name in names:
                raise FieldProblem(f"zones.{i}.name", "zone_twice", name=z.name)
            names[z.name] = i
            if z.valve in valves:
                raise FieldProblem(f"zones.{i}.valve", "valve_shared", valve=z.valve,
                                   zone=self.zones[valves[z.valve]].name)
            valves[z.valve] = i
        if self.master is not None:
            self.check_refs([("master.output", self.master.output)], "outputs", "master")
            if self.master.output in valves:
                raise FieldProblem("master.output", "master_is_valve", name=self.master.output)
        if self.rain is not None:
            self.check_refs([("rain.input", self.rain.input)], "inputs", "digital")
        if self.flow is not None:
            self.check_refs([("flow.input", self.flow.input)], "inputs", "pulse")
            for i, z in enumerate(self.zones):
                if z.flow_lpm is not None and z.flow_lpm <= self.flow.no_flow_below_lpm:
                    raise FieldProblem(f"zones.{i}.flow_lpm", "flow_below_no_flow",
                                       flow=z.flow_lpm, limit=self.flow.no_flow_below_lpm)
        self._check_soil()
        problems = self.program.problems(probed(self.zone_map()), prefix="program.")
        if problems:
            raise validation.FieldProblem(*problems[0])  # in the protocol's plain words
        return self

    def _check_soil(self):
        sensors: dict[str, int] = {}
        channels: dict[tuple[int, int], str] = {}
        for i, s in enumerate(self.soil.sensors):
            if s.name in sensors:
                raise FieldProblem(f"soil.sensors.{i}.name", "sensor_twice", name=s.name)
            sensors[s.name] = i
            if isinstance(s, AdcSoilSpec):
                key = (s.device, s.channel)
                if key in channels:
                    raise FieldProblem(f"soil.sensors.{i}.channel", "adc_channel_used",
                                       device=s.device, channel=s.channel,
                                       other=channels[key])
                channels[key] = s.name
        if channels:
            used = [("outputs", o) for o in self.outputs] + [("inputs", x) for x in self.inputs]
            for section, spec in used:
                if spec.pin in SPI0_PINS:
                    idx = getattr(self, section).index(spec)
                    raise FieldProblem(f"{section}.{idx}.pin", "spi_pin", pin=spec.pin,
                                       spi=SPI0_PINS[spec.pin])
        used_by: dict[str, str] = {}
        for i, z in enumerate(self.zones):
            if z.soil_sensor is None:
                continue
            if z.soil_sensor not in sensors:
                raise FieldProblem(f"zones.{i}.soil_sensor", "no_soil_sensor",
                                   name=z.soil_sensor)
            if z.soil_sensor in used_by:
                raise FieldProblem(f"zones.{i}.soil_sensor", "soil_sensor_shared",
                                   name=z.soil_sensor, zone=used_by[z.soil_sensor])
            used_by[z.soil_sensor] = z.name

    def unit_limits(self) -> UnitLimits:
        return UnitLimits(
            zones={z.name: ZoneLimits(max_on_s=self.output(z.valve).max_on_s,
                                      soil_probe=z.soil_sensor is not None)
                   for z in self.zones},
            max_daily_water_min=self.limits.max_daily_water_min)

    def zone_map(self) -> dict[str, ZoneSpec]:
        return {z.name: z for z in self.zones}

    def soil_sensor(self, name: str):
        return next(s for s in self.soil.sensors if s.name == name)


CONFIG_MODEL = IrrigationConfig
"""The model of this kind's config file (``edge.config.load_config`` picks it by kind)."""
