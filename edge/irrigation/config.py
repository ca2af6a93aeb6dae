"""Config of an irrigation unit.

Two parts, on purpose:

- The **local** part is the technician's and never changes remotely: zones and their
  valves (``[[zones]]``), the master valve or pump (``[master]``), the rain sensor
  (``[rain]``), the flow meter (``[flow]``), the soil probes (``[soil]``), the hard limits
  (``[limits]`` plus each output's ``max_on_s``) and what to do after a crash (``[runs]``).
- The **program** (``[program]``, an ``IrrigationProgramConfig``) holds the schedules and
  the sensor-rule thresholds. The local file carries the default program; the controller
  may replace it (``IrrigationApp.apply_remote_config``), and the same model validates
  both. Hard limits are never part of it, so a remote program is clamped to them.

See docs/irrigation.md for every field with the example park.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from protocol.planner import parse_month_day, parse_start

from ..config import FieldProblem, Ident, StrictModel, UnitConfig
from ..errors import ConfigError, Reason

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# The MCP3008 sits on SPI0: SCLK 11, MOSI 10, MISO 9, CE0 8, CE1 7.
SPI0_PINS = {7: "SPI0 CE1", 8: "SPI0 CE0", 9: "SPI0 MISO", 10: "SPI0 MOSI", 11: "SPI0 SCLK"}


# --------------------------------------------------------------------------------------
# The program: schedules and sensor-rule thresholds (local default, remotely replaceable)
# --------------------------------------------------------------------------------------
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
                raise FieldProblem("", "start_time_bad", error=str(exc), value=s) from None
        if len(set(v)) != len(v):
            raise FieldProblem("", "start_times_repeat")
        return v

    @field_validator("active_from", "active_to")
    @classmethod
    def _month_day(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_month_day(v)
            except ValueError as exc:
                raise FieldProblem("", "month_day_bad", error=str(exc), value=v) from None
        return v

    @model_validator(mode="after")
    def _one_day_rule(self):
        given = [n for n in ("weekdays", "interval_days", "odd_even")
                 if getattr(self, n) is not None]
        if len(given) > 1:
            raise FieldProblem(given[1], "one_day_rule", given=", ".join(given))
        if (self.active_from is None) != (self.active_to is None):
            raise FieldProblem("active_to" if self.active_to is None else "active_from",
                               "season_needs_both")
        if self.weekdays is not None and not self.weekdays:
            raise FieldProblem("weekdays", "weekdays_empty")
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
            raise FieldProblem("start_below_pct", "moisture_band")
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
                raise FieldProblem(f"programs.{i}.name", "program_twice", name=p.name)
            seen.add(p.name)
        seen = set()
        for i, z in enumerate(self.zones):
            if z.zone in seen:
                raise FieldProblem(f"zones.{i}.zone", "rules_twice", zone=z.zone)
            seen.add(z.zone)
        return self

    def rules_for(self, zone: str) -> ZoneRules:
        for z in self.zones:
            if z.zone == zone:
                return z
        return ZoneRules(zone=zone)

    def problems(self, zones: dict[str, ZoneSpec], prefix: str = "") -> list[tuple[str, str]]:
        """Cross-checks against the local zones: ``[(field, reason)]``, empty when fine."""
        found = []
        for i, p in enumerate(self.programs):
            for j, pz in enumerate(p.zones):
                if pz.zone not in zones:
                    found.append((f"{prefix}programs.{i}.zones.{j}.zone",
                                  Reason("no_zone", name=pz.zone)))
        for i, z in enumerate(self.zones):
            if z.zone not in zones:
                found.append((f"{prefix}zones.{i}.zone", Reason("no_zone", name=z.zone)))
            elif z.moisture is not None and zones[z.zone].soil_sensor is None:
                found.append((f"{prefix}zones.{i}.moisture",
                              Reason("zone_no_probe", zone=z.zone)))
        return found


def parse_program(body: dict, zones: dict[str, ZoneSpec], source: str) -> IrrigationProgramConfig:
    """Validate a program sent by the controller; raises ``ConfigError``."""
    from ..config import parse_config

    program = parse_config(body, source, model=IrrigationProgramConfig)
    problems = program.problems(zones)
    if problems:
        raise ConfigError(source, problems)
    return program


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
        problems = self.program.problems(self.zone_map(), prefix="program.")
        if problems:
            raise FieldProblem(*problems[0])
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

    def zone_map(self) -> dict[str, ZoneSpec]:
        return {z.name: z for z in self.zones}

    def soil_sensor(self, name: str):
        return next(s for s in self.soil.sensors if s.name == name)
