"""A field simulator for the fish feeder: pond water, feeders, hoppers and the serial probes.

It stands in for the hardware only; the daemon under test is the real
``FishFeederApp`` on gpiozero's mock pins. Everything is driven by the ``VirtualClock``,
so a simulated day takes a second or two.
The pond and the feeders (``PondSim``, ``FeederSim``: how DO, temperature, pH, augers and
hoppers behave) are in ``edge.sim.pond``, the serial probes (EZO, Modbus, load cell,
ultrasonic, with noise and garbling) in ``edge.sim.probes``; this module puts them
together for a unit's config and runs it. Their names are importable from here too.

Usage::

    clock = VirtualClock(start=...)
    sim = FishFeederSim(config, clock, seed=1)
    app = FishFeederApp(config, pin_factory=factory, clock=clock, publisher=pub,
                        **sim.app_kwargs())
    sim.attach(app)
    app.start()
    sim.run(24 * 3600)          # advances the clock, steps the physics, ticks the app

For a daemon on the real clock (the demo), pass ``**sim.app_kwargs()`` to the app class
(e.g. with ``functools.partial``), ``attach`` the built app, and ``start_realtime()``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from .pond import FeederSim, PondSim, do_saturation_mg_l
from .probes import (
    PtyBridge,
    SimDistance,
    SimEzoPort,
    SimLoadCellPort,
    SimModbusPort,
    _SimPort,
    modbus_crc,
)

__all__ = ["FeederSim", "FishFeederSim", "PondSim", "PondSimulationResult", "PtyBridge",
           "SimDistance", "SimEzoPort", "SimLoadCellPort", "SimModbusPort",
           "do_saturation_mg_l", "modbus_crc", "simulate"]

logger = logging.getLogger(__name__)


# -- the whole site -----------------------------------------------------------------------
class FishFeederSim:
    """Ponds, feeders and probes for one unit's config, stepped with the app's clock.

    ``ponds`` and ``feeders`` map names to keyword overrides of ``PondSim`` and
    ``FeederSim`` (e.g. ``{"kolam-nila": {"photosynthesis": 0.1}}``);
    ``garble_rate`` applies to every serial probe.
    """

    def __init__(self, config, clock, *, seed: int = 1, ponds: dict | None = None,
                 feeders: dict | None = None, garble_rate: float = 0.0):
        self.config = config
        self.clock = clock
        self.rng = random.Random(seed)
        ponds = ponds or {}
        feeders = feeders or {}
        self.ponds: dict[str, PondSim] = {}
        for p in config.ponds:
            brackish = p.species in ("vaname", "bandeng")
            # Brackish tambak: salt lowers oxygen solubility; paddle-wheel aerators help.
            kwargs = {"salinity_ppt": 15.0 if brackish else 0.0,
                      "ph_base": 7.9 if brackish else 7.4,
                      "reaeration_per_h": 0.3 if brackish else 0.15}
            kwargs.update(ponds.get(p.name, {}))
            self.ponds[p.name] = PondSim(p.name, tz=config.site.timezone,
                                         rng=random.Random(self.rng.random()), **kwargs)
            self.ponds[p.name].spin_up(clock.now())
        self.feeders: dict[str, FeederSim] = {}
        for f in config.feeders:
            capacity = f.hopper.capacity_g if f.hopper is not None else 40_000.0
            kwargs = {"hopper_g": 0.8 * capacity}
            kwargs.update(feeders.get(f.name, {}))
            self.feeders[f.name] = FeederSim(f.name, rng=random.Random(self.rng.random()),
                                             **kwargs)
        self.ports: dict[str, _SimPort] = {}
        self.distance_sources: dict[str, SimDistance] = {}
        self._build_ports(garble_rate)
        self.app = None

    def _pond_of_sensor(self, name: str) -> PondSim:
        for p in self.config.ponds:
            if name in p.sensors:
                return self.ponds[p.name]
        return next(iter(self.ponds.values()))

    def _build_ports(self, garble_rate: float) -> None:
        modbus: dict[str, dict] = {}
        for s in self.config.sensors:
            pond = self._pond_of_sensor(s.name)
            rng = random.Random(self.rng.random())
            if s.driver == "ezo":
                decimals = {"do_mg_l": 2, "temp_c": 3, "ph": 2}[s.quantity]
                noise = {"do_mg_l": 0.03, "temp_c": 0.02, "ph": 0.01}[s.quantity]
                self.ports[s.port_url] = SimEzoPort(
                    s.port_url, lambda p=pond, q=s.quantity: getattr(p, q),
                    decimals=decimals, noise=noise, garble_rate=garble_rate, rng=rng)
            else:
                def registers(p=pond, regs=s.registers, r=rng):
                    out = {}
                    for q, spec in regs.items():
                        v = getattr(p, q) + r.gauss(0, 0.02)
                        raw = round(v * 10 ** spec.decimals)
                        out[spec.address] = raw & 0xFFFF
                    return out

                modbus.setdefault(s.port_url, {})[s.slave] = registers
        for url, slaves in modbus.items():
            self.ports[url] = SimModbusPort(url, slaves, garble_rate=garble_rate,
                                            rng=random.Random(self.rng.random()))
        for f in self.config.feeders:
            h = f.hopper
            if h is None:
                continue
            fs = self.feeders[f.name]
            if h.driver == "loadcell":
                self.ports[h.port_url] = SimLoadCellPort(
                    h.port_url, lambda fs=fs, tare=h.tare_g: tare + fs.hopper_g,
                    garble_rate=garble_rate, rng=random.Random(self.rng.random()))
            else:
                self.distance_sources[f.name] = SimDistance(
                    fs, capacity_g=h.capacity_g, full_distance_m=h.full_distance_m,
                    empty_distance_m=h.empty_distance_m, rng=random.Random(self.rng.random()))

    def app_kwargs(self) -> dict:
        """Keyword arguments that plug this simulator into ``FishFeederApp``."""
        return {"ports": self.ports, "distance_sources": self.distance_sources}

    def attach(self, app) -> None:
        self.app = app
        for f in self.config.feeders:
            pin = None
            if f.rotation_input is not None:
                pin = app.pin_factory.pin(self.config.input(f.rotation_input).pin)
            self.feeders[f.name].attach(app.outputs[f.motor], pin)

    def step(self, dt_s: float) -> None:
        """Physics only, for ``dt_s`` that have just passed on the clock."""
        now = self.clock.now()
        for f in self.config.feeders:
            grams = self.feeders[f.name].step(dt_s)
            if grams:
                self.ponds[f.pond].add_feed(grams)
        for pond in self.ponds.values():
            pond.step(now, dt_s)

    def motors_on(self) -> bool:
        return any(fs.output is not None and fs.output.is_active for fs in self.feeders.values())

    def run(self, seconds: float, *, step_s: float = 60.0, fast_step_s: float = 0.25) -> None:
        """Advance the clock by ``seconds``: physics, then the app's ``tick()``, each step.

        Steps are ``fast_step_s`` while a motor runs or a feeding is being measured (so
        pulses arrive as they would), else ``step_s``, shortened so the app ticks when
        its next scheduled job is due.
        """
        end = self.clock.monotonic() + seconds
        while True:
            left = end - self.clock.monotonic()
            if left <= 1e-9:
                break
            busy = self.motors_on() or (self.app is not None and any(
                f.busy for f in self.app.feeders.values()))
            dt = min(left, fast_step_s if busy else step_s)
            if not busy and self.app is not None:
                idle = self.app.idle_s()
                if idle is not None and 0 < idle < dt:
                    dt = idle + 1e-3
            self.clock.advance(dt)
            self.step(dt)
            if self.app is not None:
                self.app.tick()

    def start_realtime(self, *, step_s: float = 0.1) -> threading.Event:
        """Step the physics from a background thread on the real clock, for a daemon on
        ``SystemClock`` (the demo); the app ticks itself. Set the returned event to stop."""
        stop = threading.Event()

        def loop():
            last = time.monotonic()
            while not stop.wait(step_s):
                now = time.monotonic()
                try:
                    self.step(now - last)
                except Exception:  # noqa: BLE001 - a simulator hiccup must not end the demo
                    logger.exception("simulator step failed")
                last = now

        threading.Thread(target=loop, name="fish-feeder-sim", daemon=True).start()
        return stop

    def run_until(self, when: datetime, **kwargs) -> None:
        self.run((when - self.clock.now()).total_seconds(), **kwargs)


# -- smartcity-edge simulate -----------------------------------------------------------------
class PondSimulationResult:
    """What ``simulate`` saw, day by day: feed, feedings, interlocks, water, hoppers."""

    def __init__(self, config, days: list[dict], events: list):
        self.config = config
        self.days = days
        self.events = events  # the unit's events (edge.publisher.Record)

    def format_table(self) -> str:
        ponds = [p.name for p in self.config.ponds]
        head1 = f"{'':<10}"
        head2 = f"{'date':<10}"
        for p in ponds:
            head1 += f"  {p[:26]:<26}"
            head2 += f"  {'feed kg':>7} {'n':>2} {'wait':>4} {'skip':>4} {'DO mg/L':>9}"
        head1 += f"  {'alarms':>6}"
        head2 += f"  {'':>6}"
        rule = "-" * len(head1)
        lines = [head1, head2, rule]
        for d in self.days:
            row = f"{d['date']:<10}"
            for p in ponds:
                f = d["ponds"][p]
                row += (f"  {f['feed_g'] / 1000:7.2f} {f['feedings']:>2} {f['postponed']:>4} "
                        f"{f['skipped']:>4} {f['do_min']:4.1f}-{f['do_max']:4.1f}")
            row += f"  {d['alarms']:>6}"
            lines.append(row)
        lines.append(rule)
        for p in ponds:
            total = sum(d["ponds"][p]["feed_g"] for d in self.days) / 1000
            reasons: dict[str, int] = {}
            for e in self.events:
                if e.type == "feeding_skipped" and e.data.get("pond") == p:
                    reasons[e.data["reason"]] = reasons.get(e.data["reason"], 0) + 1
            why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
            lines.append(f"{p}: {total:.1f} kg of feed in {len(self.days)} days; "
                         f"skipped: {why}")
        return "\n".join(lines)


def simulate(config_path, days: int = 14, *, start: datetime | None = None, seed: int = 11,
             ponds: dict | None = None, feeders: dict | None = None,
             garble_rate: float = 0.0) -> PondSimulationResult:
    """Run a fish-feeder config at simulated ponds for ``days`` and return the figures.

    Each day's sky is drawn from ``seed`` (mostly sunny, sometimes overcast, when the
    oxygen stays low in the morning), and the pond keeper tops up a hopper that is below
    its low mark at 08:00. Mock pins, a ``VirtualClock``, an in-memory state store:
    nothing touches the machine. Raises ``ConfigError`` for a bad or non-fish-feeder file.
    """
    from datetime import timedelta

    from ..clock import VirtualClock
    from ..config import load_config
    from ..errors import ConfigError
    from ..fish_feeder.app import FishFeederApp
    from ..fish_feeder.config import FishFeederConfig
    from ..hardware import make_pin_factory
    from ..publisher import MemoryPublisher
    from ..state import StateStore

    config = config_path if isinstance(config_path, FishFeederConfig) else load_config(config_path)
    if not isinstance(config, FishFeederConfig):
        raise ConfigError(config_path, [("kind", "the pond simulator needs kind = "
                                                 f"'fish_feeder', got {config.kind!r}")])
    tz = ZoneInfo(config.site.timezone)
    start = start or datetime(2026, 9, 1, tzinfo=tz)
    start = start.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    clock = VirtualClock(start)
    sim = FishFeederSim(config, clock, seed=seed, ponds=ponds, feeders=feeders,
                        garble_rate=garble_rate)
    publisher = MemoryPublisher(clock)
    app = FishFeederApp(config, pin_factory=make_pin_factory("mock"), clock=clock,
                        publisher=publisher, state=StateStore(":memory:"), **sim.app_kwargs())
    sim.attach(app)
    sky = random.Random(seed)
    figures = []
    try:
        app.start()
        for i in range(days):
            day = start + timedelta(days=i)
            for pond in sim.ponds.values():
                pond.photosynthesis = (sky.uniform(0.15, 0.5) if sky.random() < 0.15
                                       else sky.uniform(0.8, 1.1))
            do_range = {p: [99.0, 0.0] for p in sim.ponds}
            t = day
            while t < day + timedelta(days=1):
                nxt = min(day + timedelta(days=1), t + timedelta(minutes=10))
                sim.run_until(nxt)
                t = nxt
                for name, pond in sim.ponds.items():
                    do_range[name][0] = min(do_range[name][0], pond.do_mg_l)
                    do_range[name][1] = max(do_range[name][1], pond.do_mg_l)
                if t.astimezone(tz).hour == 8 and t.astimezone(tz).minute == 0:
                    _refill_hoppers(config, sim)
            figures.append(_day_figures(config, publisher.events(), day, tz, do_range))
    finally:
        app.close()
    return PondSimulationResult(config, figures, publisher.events())


def _refill_hoppers(config, sim: FishFeederSim) -> None:
    for f in config.feeders:
        if f.hopper is None:
            continue
        fs = sim.feeders[f.name]
        if fs.hopper_g < f.hopper.low_pct / 100 * f.hopper.capacity_g:
            fs.hopper_g = 0.9 * f.hopper.capacity_g


def _day_figures(config, events, day: datetime, tz, do_range) -> dict:
    date = day.date()
    mine = [e for e in events if e.ts.astimezone(tz).date() == date]
    out = {"date": date.isoformat(), "ponds": {}, "alarms": sum(
        1 for e in mine if e.type == "alarm")}
    for p in config.ponds:
        fed = [e for e in mine if e.type == "feed_dispensed" and e.data.get("pond") == p.name]
        out["ponds"][p.name] = {
            "feed_g": sum((e.data["measured_g"] if e.data["measured_g"] is not None
                           else e.data["commanded_g"]) for e in fed),
            "feedings": len(fed),
            "postponed": sum(1 for e in mine if e.type == "feeding_postponed"
                             and e.data.get("pond") == p.name),
            "skipped": sum(1 for e in mine if e.type == "feeding_skipped"
                           and e.data.get("pond") == p.name),
            "do_min": do_range[p.name][0], "do_max": do_range[p.name][1],
        }
    return out
