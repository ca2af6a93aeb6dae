"""Running an irrigation unit in a simulated park, day by day.

``simulate(config_path, days)`` puts a unit's config in the park of ``edge.sim.park`` (soil,
sun, rain, valves and a flow meter on the other side of the mock pins) and returns the
daily figures (``SimulationResult.format_table()`` for people). The park's names are
importable from here too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from protocol.planner import Site

from ..clock import VirtualClock
from ..config import load_config
from ..errors import ConfigError
from ..irrigation.config import IrrigationConfig
from ..publisher import MemoryPublisher
from ..state import StateStore
from .park import (
    FieldDay,
    IrrigationField,
    PinWatch,
    RainEvent,
    SoilModel,
    Weather,
    ZoneProbe,
    watched_factory,
)

__all__ = ["DayFigures", "FieldDay", "IrrigationField", "PinWatch", "RainEvent",
           "SimulationResult", "SoilModel", "Weather", "ZoneProbe", "simulate",
           "watched_factory"]

logger = logging.getLogger(__name__)


# -- running a unit in the park -------------------------------------------------------------
@dataclass
class DayFigures:
    date: date
    rain_mm: float
    water_min: dict[str, float]  # as the unit reported it (run_finished events)
    water_l: dict[str, float]
    delivered_l: dict[str, float]  # what the park received (the simulator's truth)
    moisture_min: dict[str, float]
    moisture_max: dict[str, float]
    runs: int
    skipped: int

    @property
    def total_l(self) -> float:
        return sum(self.water_l.values())

    @property
    def total_min(self) -> float:
        return sum(self.water_min.values())


@dataclass
class SimulationResult:
    days: list[DayFigures]
    zones: list[str]
    events: list  # the unit's events (edge.publisher.Record)
    field: IrrigationField

    def format_table(self) -> str:
        """The daily figures as a table: water used (the unit's meter), rain, and each
        zone's litres and its soil moisture range over the day."""
        head1 = f"{'':<10} {'rain':>5} {'water':>6} {'water':>7}"
        head2 = f"{'date':<10} {'mm':>5} {'min':>6} {'L':>7}"
        for z in self.zones:
            head1 += f"  {z[:15]:<15}"
            head2 += f"  {'L':>5} {'moist %':>9}"
        head1 += f"  {'runs':>4} {'skips':>5}"
        head2 += f"  {'':>4} {'':>5}"
        rule = "-" * len(head1)
        lines = [head1, head2, rule]
        for d in self.days:
            row = f"{d.date.isoformat():<10} {d.rain_mm:5.1f} {d.total_min:6.1f} {d.total_l:7.0f}"
            for z in self.zones:
                lo, hi = d.moisture_min.get(z, 0.0), d.moisture_max.get(z, 0.0)
                row += f"  {d.water_l.get(z, 0.0):5.0f} {lo:4.1f}-{hi:4.1f}"
            row += f"  {d.runs:>4} {d.skipped:>5}"
            lines.append(row)
        n = max(1, len(self.days))
        total_l = sum(d.total_l for d in self.days)
        total_min = sum(d.total_min for d in self.days)
        lines.append(rule)
        lines.append(f"{'total':<10} {sum(d.rain_mm for d in self.days):5.1f} "
                     f"{total_min:6.0f} {total_l:7.0f}  (mean {total_min / n:.0f} min, "
                     f"{total_l / n:.0f} L a day)")
        return "\n".join(lines)


def simulate(config_path, days: int = 14, *, start: datetime | date | None = None,
             seed: int = 11, step_s: float = 60.0, weather: Weather | None = None,
             soil: dict[str, SoilModel] | None = None) -> SimulationResult:
    """Run a unit's config in a simulated park for ``days`` and return the daily figures.

    ``config_path`` is an irrigation config file (or an ``IrrigationConfig``). The park
    starts at local midnight of ``start`` (default 1 September 2026, the drier months),
    with ``Weather.generate(seed=seed)`` unless ``weather`` is given. Mock pins, a
    ``VirtualClock`` and an in-memory state store: nothing touches the machine. A file
    that is unreadable, invalid or not an irrigation config raises ``ConfigError``.
    """
    from ..irrigation.app import IrrigationApp

    config = config_path if isinstance(config_path, IrrigationConfig) \
        else load_config(Path(config_path))
    if not isinstance(config, IrrigationConfig):
        raise ConfigError(config_path, [("kind", f"the irrigation simulator needs kind = "
                                                 f"'irrigation', got {config.kind!r}")])
    site = Site.from_config(config.site)
    if start is None:
        start = date(2026, 9, 1)
    if isinstance(start, datetime):
        start_local = start.astimezone(site.tz)
    else:
        start_local = datetime.combine(start, time(0), tzinfo=site.tz)
    clock = VirtualClock(start_local)
    weather = weather or Weather.generate(start_local, days, seed=seed, tz=site.tz)
    if soil is None:
        soil = {z.name: SoilModel(moisture_pct=_band_middle(config, z.name),
                                  area_m2=z.area_m2 or 200.0) for z in config.zones}
    park = IrrigationField(config, clock, weather=weather, seed=seed, soil=soil)
    publisher = MemoryPublisher(clock)
    app = IrrigationApp(config, pin_factory=park.pin_factory, clock=clock,
                        publisher=publisher, state=StateStore(":memory:"),
                        soil_readers=park.readers())
    park.connect(app)
    end = start_local + timedelta(days=days)
    try:
        app.start()
        while clock.now() < end:
            clock.advance(min(step_s, (end - clock.now()).total_seconds()))
            park.sync()
            app.tick()
    finally:
        app.close()
    return SimulationResult(_daily(publisher.events(), park, site, start_local, days),
                            [z.name for z in config.zones], publisher.events(), park)


def _band_middle(config: IrrigationConfig, zone: str) -> float:
    rule = config.program.rules_for(zone).moisture
    if rule is None or rule.start_below_pct is None:
        return 30.0
    return (rule.start_below_pct + rule.skip_above_pct) / 2


def _daily(events, park: IrrigationField, site: Site, start_local: datetime,
           days: int) -> list[DayFigures]:
    out = []
    for i in range(days):
        d = start_local.date() + timedelta(days=i)
        mine = [e for e in events if e.ts.astimezone(site.tz).date() == d]
        water_min: dict[str, float] = {}
        water_l: dict[str, float] = {}
        for e in mine:
            if e.type == "run_finished":
                z = e.data["zone"]
                water_min[z] = water_min.get(z, 0.0) + e.data["duration_s"] / 60.0
                water_l[z] = water_l.get(z, 0.0) + e.data["litres"]
        fd = park.days.get(d, FieldDay())
        out.append(DayFigures(
            date=d, rain_mm=round(fd.rain_mm, 1), water_min=water_min, water_l=water_l,
            delivered_l=dict(fd.delivered_l), moisture_min=dict(fd.moisture_min),
            moisture_max=dict(fd.moisture_max),
            runs=sum(1 for e in mine if e.type == "run_started"),
            skipped=sum(1 for e in mine if e.type == "run_skipped"),
        ))
    return out
