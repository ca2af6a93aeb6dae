"""A park for the irrigation daemon to water: soil, sun, rain, valves, a flow meter.

The daemon under test is the real ``IrrigationApp`` on gpiozero mock pins; this module is
everything on the other side of those pins, driven by the same ``VirtualClock``:

Soil (``SoilModel``, one per zone)
    A root zone of ``root_depth_mm`` holding water as volumetric moisture (%). It loses
    water to evapotranspiration: reference ET (``Weather.et0_mm_day``, about 4 mm a day
    in Balikpapan) times the plant's crop coefficient ``kc``, shaped by the sun (a
    half-sine from sunrise to sunset computed with astral for the site, near zero at
    night), and reduced when the soil is so dry that the plants close up. Water above
    field capacity drains away over some hours. Irrigation adds the litres delivered to
    the zone, spread over its ``area_m2`` (1 L/m2 = 1 mm) at the system's efficiency;
    rain adds its millimetres.

Valves, supply and the flow meter
    A zone gets water while its valve output is on and the supply is on (the master
    valve or pump output when the unit has one), unless the simulator was told the valve
    is stuck shut. Water flows at the zone's nominal ``flow_lpm``; a ``leak_lpm`` flows
    whatever the valves do. The meter adds ``pulses_per_l`` pulses per litre to the
    app's ``PulseCounter``. Output changes are caught on the mock pins themselves (a pin
    class that reports each change), so water is integrated exactly between them, and
    while water flows the meter is brought up to date every ``flow_tick_s``.

Rain and the rain sensor (``Weather``, ``RainEvent``)
    Showers at given times with given millimetres (``Weather.generate`` draws a
    realistic series: afternoon convective showers on about a third of the days). The
    rain sensor is a hygroscopic disc: it trips (the input pin goes to its "wet" level)
    once about ``trip_mm`` has soaked it, and dries again with the sun.

Soil probes (``ZoneProbe``)
    ``readers()`` gives one reader per zone, handed to the app as ``soil_readers``: the
    zone's moisture plus a little noise. ``probe.failing = True`` makes it fail like a
    dead probe (``SensorError``), to exercise staleness.

``edge.sim.irrigation.simulate(config_path, days)`` puts a unit's config in such a park
and returns the daily figures.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from astral.sun import sunrise, sunset
from gpiozero.pins.mock import MockFactory, MockPWMPin

from protocol.planner import Site

from ..irrigation.config import IrrigationConfig
from ..irrigation.devices import wet_level
from ..sensors.base import SensorError

logger = logging.getLogger(__name__)


# -- pins that report their changes ------------------------------------------------------
class PinWatch:
    """Callbacks ``fn(pin, new_value)`` run just before and just after an output pin
    changes (the simulator integrates the old state up to the change; a test can check
    invariants at every change)."""

    def __init__(self):
        self.before: list[Callable] = []
        self.after: list[Callable] = []


def watched_factory(watch: PinWatch) -> MockFactory:
    """A ``MockFactory`` whose pins call ``watch`` on every output change."""

    class WatchedPin(MockPWMPin):
        def _change_state(self, value):
            changing = self._function == "output" and bool(self._state) != bool(value)
            if changing:
                for fn in list(watch.before):
                    fn(self, value)
            changed = super()._change_state(value)
            if changing:
                for fn in list(watch.after):
                    fn(self, value)
            return changed

    return MockFactory(pin_class=WatchedPin)


# -- soil and weather ---------------------------------------------------------------------
@dataclass
class SoilModel:
    """One zone's root zone (see the module docstring)."""

    moisture_pct: float = 30.0
    area_m2: float = 200.0
    root_depth_mm: float = 150.0
    field_capacity_pct: float = 36.0
    saturation_pct: float = 46.0
    wilting_pct: float = 12.0
    kc: float = 0.85
    efficiency: float = 0.85
    drain_tau_h: float = 8.0

    def add_mm(self, mm: float) -> None:
        self.moisture_pct = min(self.saturation_pct,
                                self.moisture_pct + mm / self.root_depth_mm * 100.0)

    def irrigate(self, litres: float) -> None:
        self.add_mm(litres / self.area_m2 * self.efficiency)

    def evaporate(self, et0_mm: float) -> None:
        # Plants close up as the soil nears wilting point (half the available water).
        easy = self.wilting_pct + 0.5 * (self.field_capacity_pct - self.wilting_pct)
        stress = min(1.0, max(0.0, (self.moisture_pct - self.wilting_pct)
                              / max(1e-6, easy - self.wilting_pct)))
        self.moisture_pct -= et0_mm * self.kc * stress / self.root_depth_mm * 100.0

    def drain(self, dt_s: float) -> None:
        if self.moisture_pct > self.field_capacity_pct:
            excess = self.moisture_pct - self.field_capacity_pct
            self.moisture_pct -= excess * (1.0 - math.exp(-dt_s / (self.drain_tau_h * 3600)))


@dataclass(frozen=True)
class RainEvent:
    start: datetime  # aware
    duration_h: float
    total_mm: float

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.duration_h)

    def mm_between(self, t0: datetime, t1: datetime) -> float:
        lo, hi = max(t0, self.start), min(t1, self.end)
        if hi <= lo:
            return 0.0
        return self.total_mm * (hi - lo).total_seconds() / (self.duration_h * 3600)


@dataclass
class Weather:
    et0_mm_day: float = 4.0
    events: list[RainEvent] = field(default_factory=list)
    night_share: float = 0.03  # of the day's ET that happens at night (near zero)

    @classmethod
    def generate(cls, start: datetime, days: int, *, seed: int = 1, tz=None,
                 rain_day_share: float = 0.3, mean_mm: float = 10.0,
                 et0_mm_day: float = 4.0) -> Weather:
        """Afternoon showers on about ``rain_day_share`` of the days (Balikpapan's drier
        months see roughly one rain day in three)."""
        rng = random.Random(seed)
        tz = tz or start.tzinfo
        events = []
        day0 = start.astimezone(tz).date()
        for d in range(days):
            if rng.random() >= rain_day_share:
                continue
            hour = rng.uniform(13.0, 19.0) if rng.random() < 0.8 else rng.uniform(0.0, 6.0)
            at = datetime.combine(day0 + timedelta(days=d), time(0), tzinfo=tz) \
                + timedelta(hours=hour)
            mm = min(60.0, max(1.5, rng.expovariate(1.0 / mean_mm)))
            events.append(RainEvent(at, rng.uniform(0.5, 2.5), round(mm, 1)))
        return cls(et0_mm_day=et0_mm_day, events=events)

    def rain_mm(self, t0: datetime, t1: datetime) -> float:
        return sum(e.mm_between(t0, t1) for e in self.events)

    def raining(self, t: datetime) -> bool:
        return any(e.start <= t < e.end for e in self.events)


class ZoneProbe:
    """A soil reader for the app: the zone's moisture plus noise (or a failure)."""

    def __init__(self, soil: SoilModel, rng: random.Random, noise_pct: float):
        self.soil = soil
        self.rng = rng
        self.noise_pct = noise_pct
        self.failing = False

    def read(self) -> float:
        if self.failing:
            raise SensorError("simulated probe: no answer")
        value = self.soil.moisture_pct + self.rng.gauss(0.0, self.noise_pct)
        return min(100.0, max(0.0, value))


@dataclass
class FieldDay:
    """What physically happened on one local day (the simulator's truth)."""

    rain_mm: float = 0.0
    delivered_l: dict[str, float] = field(default_factory=dict)
    water_s: dict[str, float] = field(default_factory=dict)
    moisture_min: dict[str, float] = field(default_factory=dict)
    moisture_max: dict[str, float] = field(default_factory=dict)


class IrrigationField:
    """The park around one irrigation unit (see the module docstring)."""

    def __init__(self, config: IrrigationConfig, clock, *, weather: Weather | None = None,
                 seed: int = 1, soil: dict[str, SoilModel] | None = None,
                 noise_pct: float = 0.3, flow_tick_s: float = 2.0,
                 trip_mm: float = 3.0, reset_mm: float = 1.0):
        self.config = config
        self.clock = clock
        self.site = Site.from_config(config.site)
        self.rng = random.Random(seed)
        self.weather = weather or Weather()
        self.watch = PinWatch()
        self.watch.before.append(self._before_change)
        self.watch.after.append(self._after_change)
        self.pin_factory = watched_factory(self.watch)
        soil = dict(soil or {})
        self.soil = {z.name: soil.get(z.name) or SoilModel(area_m2=z.area_m2 or 200.0)
                     for z in config.zones}
        self.probes = {z: ZoneProbe(s, self.rng, noise_pct) for z, s in self.soil.items()}
        self.stuck_closed: set[str] = set()
        self.leak_lpm = 0.0
        self.flow_tick_s = flow_tick_s
        self.trip_mm, self.reset_mm = trip_mm, reset_mm
        self.sensor_water_mm = 0.0
        self.rain_sensor_wet = False
        self.days: dict[date, FieldDay] = {}
        self.after_watering: dict[str, list[tuple[datetime, float]]] = {z: [] for z in self.soil}
        self._zones = config.zone_map()
        self._valve_pins = {z.name: config.output(z.valve) for z in config.zones}
        self._master = config.output(config.master.output) if config.master else None
        self._counter = None
        self._rain_pin = None
        self._rain_spec = config.input(config.rain.input) if config.rain else None
        self._carry = 0.0
        self._ticker = None
        self._sun_cache: dict[date, tuple[datetime, datetime]] = {}
        self._pins: dict[int, object] = {}
        self._last = clock.monotonic()
        self._last_utc = clock.now()

    # -- wiring ---------------------------------------------------------------------
    def readers(self) -> dict[str, ZoneProbe]:
        """Soil readers for the zones that have a probe in the config."""
        return {z.name: self.probes[z.name] for z in self.config.zones if z.soil_sensor}

    def connect(self, app) -> None:
        """Attach to a built app: its flow counter and the rain input's pin."""
        if self.config.flow is not None:
            self._counter = app.pulse_counter(self.config.flow.input)
        if self._rain_spec is not None:
            self._rain_pin = self._pin(self._rain_spec)
            self._drive_rain(False)
        self._last, self._last_utc = self.clock.monotonic(), self.clock.now()

    def _drive_rain(self, wet: bool) -> None:
        level = wet_level(self._rain_spec) if wet else not wet_level(self._rain_spec)
        if level:
            self._rain_pin.drive_high()
        else:
            self._rain_pin.drive_low()

    def _pin(self, spec):
        pin = self._pins.get(spec.pin)
        if pin is None:
            pin = self._pins[spec.pin] = self.pin_factory.pin(spec.pin)
        return pin

    def _is_on(self, spec) -> bool:
        pin = self._pin(spec)
        return pin._function == "output" and bool(pin._state) == spec.active_high

    def supply_on(self) -> bool:
        return self._master is None or self._is_on(self._master)

    def watered_zones(self) -> list[str]:
        if not self.supply_on():
            return []
        return [z for z, spec in self._valve_pins.items()
                if self._is_on(spec) and z not in self.stuck_closed]

    def flowing(self) -> bool:
        return bool(self.watered_zones()) or self.leak_lpm > 0

    # -- the sun --------------------------------------------------------------------
    def _sun(self, day: date) -> tuple[datetime, datetime]:
        if day not in self._sun_cache:
            obs = self.site.observer
            self._sun_cache[day] = (sunrise(obs, date=day, tzinfo=self.site.tz),
                                    sunset(obs, date=day, tzinfo=self.site.tz))
        return self._sun_cache[day]

    def et0_mm_per_s(self, t: datetime) -> float:
        """Reference ET now: a half-sine over the daylight hours, near zero at night."""
        local = t.astimezone(self.site.tz)
        rise, set_ = self._sun(local.date())
        day_s = (set_ - rise).total_seconds()
        total = self.weather.et0_mm_day
        if self.weather.raining(t):
            return 0.0
        if rise <= local <= set_:
            x = (local - rise).total_seconds() / day_s
            return total * (1 - self.weather.night_share) * math.pi / (2 * day_s) \
                * math.sin(math.pi * x)
        return total * self.weather.night_share / (86_400 - day_s)

    # -- time passing ---------------------------------------------------------------
    def _day(self, t: datetime) -> FieldDay:
        d = t.astimezone(self.site.tz).date()
        if d not in self.days:
            self.days[d] = FieldDay()
        return self.days[d]

    def sync(self) -> None:
        """Bring the park up to the clock's time, with the outputs as they are now."""
        mono, now = self.clock.monotonic(), self.clock.now()
        dt = mono - self._last
        if dt <= 0:
            return
        t0 = self._last_utc
        self._last, self._last_utc = mono, now
        day = self._day(t0 + (now - t0) / 2)
        total_l = self.leak_lpm * dt / 60.0
        for zone in self.watered_zones():
            litres = (self._zones[zone].flow_lpm or 30.0) * dt / 60.0
            self.soil[zone].irrigate(litres)
            total_l += litres
            day.delivered_l[zone] = day.delivered_l.get(zone, 0.0) + litres
            day.water_s[zone] = day.water_s.get(zone, 0.0) + dt
        if self._counter is not None and total_l > 0:
            self._carry += total_l * self.config.flow.pulses_per_l
            pulses = int(self._carry)
            self._carry -= pulses
            if pulses:
                self._counter.add(pulses)
        mid = t0 + (now - t0) / 2
        et0 = self.et0_mm_per_s(mid) * dt
        rain = self.weather.rain_mm(t0, now)
        day.rain_mm += rain
        for zone, soil in self.soil.items():
            soil.evaporate(et0)
            soil.add_mm(rain)
            soil.drain(dt)
            m = soil.moisture_pct
            day.moisture_min[zone] = min(day.moisture_min.get(zone, m), m)
            day.moisture_max[zone] = max(day.moisture_max.get(zone, m), m)
        # The rain sensor's disc soaks up rain and dries in the sun (and a little at night).
        self.sensor_water_mm = max(0.0, self.sensor_water_mm + rain
                                   - (et0 * 4.0 + dt * 0.3 / 3600.0))
        wet = self.rain_sensor_wet
        if self.sensor_water_mm >= self.trip_mm:
            wet = True
        elif self.sensor_water_mm <= self.reset_mm:
            wet = False
        if wet != self.rain_sensor_wet and self._rain_pin is not None:
            self.rain_sensor_wet = wet
            self._drive_rain(wet)

    def _before_change(self, pin, value) -> None:
        self.sync()
        zone = next((z for z, spec in self._valve_pins.items()
                     if self._pin(spec) is pin), None)
        if zone is not None and bool(value) != self._valve_pins[zone].active_high:
            self.after_watering[zone].append((self.clock.now(),
                                              self.soil[zone].moisture_pct))

    def _after_change(self, pin, value) -> None:
        self._arm_ticker()

    def _arm_ticker(self) -> None:
        if self._ticker is None and self.flowing():
            self._ticker = self.clock.call_later(self.flow_tick_s, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        self.sync()
        self._arm_ticker()

    def set_leak(self, lpm: float) -> None:
        self.sync()
        self.leak_lpm = lpm
        self._arm_ticker()
