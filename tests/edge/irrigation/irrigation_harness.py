"""A test bench for IrrigationApp: the real app, the park simulator, a virtual clock.

``Bench`` builds the app on the simulator's mock pins and checks the hydraulic
invariants at every output change (not only at sampled steps): no more zones open than
``max_concurrent_zones``, never two zones of one sequential group, and (with a master
valve) no zone valve open while the master is shut.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from edge.clock import VirtualClock
from edge.config import parse_config
from edge.irrigation.app import IrrigationApp
from edge.irrigation.config import IrrigationConfig
from edge.publisher import MemoryPublisher
from edge.sim.irrigation import IrrigationField, SoilModel, Weather
from edge.state import StateStore
from protocol.models import ReplyCode, reply_text

WITA = ZoneInfo("Asia/Makassar")

BASE = {
    "kind": "irrigation",
    "unit": {"device_id": "dlh-test-01", "opd": "dlh"},
    "state_dir": "/nonexistent",
    "outputs": [
        {"name": "v1", "pin": 17, "max_on_s": 3600},
        {"name": "v2", "pin": 27, "max_on_s": 3600},
        {"name": "v3", "pin": 22, "max_on_s": 3600},
        {"name": "v4", "pin": 23, "max_on_s": 3600},
        {"name": "master", "pin": 24, "max_on_s": 14_400},
    ],
    "inputs": [
        {"name": "rain", "pin": 5, "kind": "digital"},
        {"name": "flow", "pin": 6, "kind": "pulse"},
    ],
    "zones": [
        {"name": "z1", "valve": "v1", "group": "a", "flow_lpm": 40, "area_m2": 200},
        {"name": "z2", "valve": "v2", "group": "a", "flow_lpm": 40, "area_m2": 200},
        {"name": "z3", "valve": "v3", "group": "b", "flow_lpm": 20, "area_m2": 100},
        {"name": "z4", "valve": "v4", "group": "c", "flow_lpm": 20, "area_m2": 100},
    ],
    "limits": {"max_concurrent_zones": 2, "max_daily_water_min": 600},
    "master": {"output": "master", "kind": "valve", "pre_s": 2, "post_s": 5},
    "rain": {"input": "rain", "debounce_s": 10},
    "flow": {"input": "flow", "pulses_per_l": 2.0, "window_s": 15, "leak_lpm": 1.0,
             "leak_s": 60, "settle_s": 30, "no_flow_below_lpm": 2.0, "no_flow_s": 60},
    "program": {"watering_pct": 100, "rain_delay_h": 24, "programs": [], "zones": []},
}


class WirePublisher(MemoryPublisher):
    """A MemoryPublisher that also checks every message against the wire models, so the
    app never emits an event type, detail or reading the controller would refuse."""

    def event(self, type, **details):
        from protocol.models import Event

        Event(seq=len(self.records) + 1, ts=self.clock.now(), type=type, details=details)
        super().event(type, **details)

    def telemetry(self, readings, outputs):
        from protocol.models import Telemetry

        Telemetry(seq=len(self.records) + 1, ts=self.clock.now(), readings=readings,
                  outputs=outputs)
        super().telemetry(readings, outputs)


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_config(**over) -> IrrigationConfig:
    """The base unit with sections replaced (``None`` removes a section)."""
    return parse_config(merge(BASE, over), "<test>", model=IrrigationConfig)


class Probe:
    """A soil reader with a fixed value (or failing), for exact threshold tests."""

    def __init__(self, value: float):
        self.value = value
        self.failing = False

    def read(self) -> float:
        from edge.sensors.base import SensorError

        if self.failing:
            raise SensorError("probe unplugged")
        return self.value


class Bench:
    def __init__(self, config: IrrigationConfig, *, start: datetime | None = None,
                 state: StateStore | None = None, clock_synced=None,
                 weather: Weather | None = None, soil: dict | None = None,
                 probes: dict | None = None, clock: VirtualClock | None = None,
                 publisher: WirePublisher | None = None):
        """``publisher``: one shared with an earlier Bench on the same state, standing in
        for the outbox that outlives a process (it keeps the keys of ``event_once``)."""
        self.config = config
        self.clock = clock or VirtualClock(start or datetime(2026, 9, 7, 0, 0, tzinfo=WITA))
        soil = soil or {z.name: SoilModel(moisture_pct=30.0, area_m2=z.area_m2 or 200)
                        for z in config.zones}
        self.field = IrrigationField(config, self.clock, weather=weather or Weather(0.0),
                                     soil=soil, noise_pct=0.0)
        self.pub = publisher or WirePublisher(self.clock)
        self.pub.clock = self.clock
        self.state = state if state is not None else StateStore(":memory:")
        readers = probes if probes is not None else self.field.readers()
        self.app = IrrigationApp(config, pin_factory=self.field.pin_factory, clock=self.clock,
                                 publisher=self.pub, state=self.state,
                                 clock_synced=clock_synced, soil_readers=readers)
        self.field.connect(self.app)
        self._out_by_pin = {id(self.field.pin_factory.pin(o.pin)): o for o in config.outputs}
        self._pins = {o.name: (o, self.field.pin_factory.pin(o.pin)) for o in config.outputs}
        self._zones = config.zone_map()
        self._zone_of = {z.valve: z for z in config.zones}
        self.transitions: list[tuple[datetime, str, bool]] = []
        self.violations: list[str] = []
        self.samples = 0
        self.field.watch.after.append(self._after_change)
        self.replies: list[tuple[str, str, str, object]] = []
        self.codes: list[tuple] = []  # (cmd_id, status, ReplyCode, params)

    # -- invariants ------------------------------------------------------------------
    def is_on(self, output: str) -> bool:
        spec, pin = self._pins[output]
        return pin.function == "output" and bool(pin.state) == spec.active_high

    def open_zones(self) -> list[str]:
        return [z.name for z in self.config.zones if self.is_on(z.valve)]

    def check(self, where: str) -> None:
        self.samples += 1
        open_zones = self.open_zones()
        zones = self._zones
        cap = self.config.limits.max_concurrent_zones
        if len(open_zones) > cap:
            self.violations.append(f"{where}: {open_zones} open, cap {cap}")
        groups = [zones[z].group for z in open_zones]
        if len(set(groups)) != len(groups):
            self.violations.append(f"{where}: one group twice in {open_zones}")
        m = self.config.master
        if m is not None and m.kind == "valve" and open_zones and not self.is_on(m.output):
            self.violations.append(f"{where}: {open_zones} open with the master shut")

    def _after_change(self, pin, value) -> None:
        spec = self._out_by_pin.get(id(pin))
        if spec is None:
            return
        on = bool(value) == spec.active_high
        self.transitions.append((self.clock.now(), spec.name, on))
        self.check(f"{self.clock.now().astimezone(WITA):%a %H:%M:%S} {spec.name}->{on}")

    # -- driving ---------------------------------------------------------------------
    def start(self) -> Bench:
        self.app.start()
        return self

    def run(self, seconds: float, step: float = 30.0) -> None:
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.monotonic()))
            self.field.sync()
            self.app.tick()
            self.check(f"step {self.clock.now().astimezone(WITA):%a %H:%M:%S}")

    def run_until(self, local: datetime, step: float = 30.0) -> None:
        self.run((local - self.clock.now()).total_seconds(), step)

    def command(self, action: str, cmd_id: str | None = None, **params):
        cmd_id = cmd_id or f"c{len(self.replies)}"
        got = []

        def reply(status, code, *, clamped=None, **params):
            code = ReplyCode(code)  # every reply a unit makes has a code
            detail = reply_text(code, params)
            got.append((status, detail, clamped))
            self.replies.append((cmd_id, status, detail, clamped))
            self.codes.append((cmd_id, status, code, params))

        self.app.handle_command(cmd_id, action, params, reply)
        return got

    def events(self, type_: str | None = None) -> list[dict]:
        return [dict(r.data, _ts=r.ts, _type=r.type) for r in self.pub.events(type_)]

    def on_periods(self, output: str) -> list[tuple[datetime, datetime]]:
        """(on, off) datetimes of an output from the recorded transitions."""
        periods, since = [], None
        for ts, name, on in self.transitions:
            if name != output:
                continue
            if on and since is None:
                since = ts
            elif not on and since is not None:
                periods.append((since, ts))
                since = None
        if since is not None:
            periods.append((since, self.clock.now()))
        return periods

    def local(self, *args) -> datetime:
        return datetime(*args, tzinfo=WITA)

    def close(self) -> None:
        self.app.close()


def at_local(day: datetime, hh: int, mm: int = 0) -> datetime:
    return day.replace(hour=hh, minute=mm, second=0, microsecond=0)


def days(n: float) -> float:
    return timedelta(days=n).total_seconds()
