"""The start planner: when scheduled things start, for the units and the controller.

One pure question, asked by the irrigation unit (program starts), the fish feeder
(feeding times, and the ones it missed while it was down) and the controller's dashboard
("next run"): **which starts fall between t0 and t1?** No I/O, no clock of its own: the
caller passes the times.

The inputs are small types of their own, built from the strings configs use:

- ``StartTime`` (``parse_start``): a fixed local time (``"06:00"``) or an offset from
  sunrise or sunset (``"sunrise-00:30"``, ``"sunset+06:00"``, at most 6 hours either
  way), computed with astral for the ``Site``'s latitude and longitude;
- ``DayRule``: which local days a plan runs on: weekdays, every N days from a given day,
  odd or even days of the month, and a season (``"MM-DD"`` range, may wrap over the new
  year);
- ``Plan``: a name, its start times and its day rule (``Plan.of`` reads a schedule
  model that has ``name``, ``start_times`` and the day-rule fields).

A start belongs to the **day its plan runs on**, even when a sun offset moves it over
midnight (``sunset+06:00`` is about 00:15 the next day, ``sunrise-06:00`` about 23:51 the
day before). The planner therefore looks at the days either side of a window and sorts
what it finds by time: a start that crossed midnight is neither lost nor found twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from astral import Observer
from astral.sun import sunrise, sunset

from protocol.times import StartTime, parse_month_day, parse_start

__all__ = ["MAX_CATCH_UP", "DayRule", "Plan", "Site", "StartPlanner", "StartTime",
           "parse_month_day", "parse_start", "starts_between"]

logger = logging.getLogger(__name__)

MAX_CATCH_UP = timedelta(days=1)
"""How far back a unit looks for starts that fell due while it was not looking."""
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")



# -- inputs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Site:
    """Where the unit is: its time zone and coordinates (for sunrise and sunset)."""

    tz: ZoneInfo
    latitude: float
    longitude: float

    @classmethod
    def from_config(cls, site) -> Site:
        """From a config's site section (``timezone``, ``latitude``, ``longitude``)."""
        return cls(ZoneInfo(site.timezone), site.latitude, site.longitude)

    @property
    def observer(self) -> Observer:
        return Observer(latitude=self.latitude, longitude=self.longitude)


@dataclass(frozen=True)
class DayRule:
    """Which local days a plan runs on. At most one of ``weekdays`` (0 = Monday),
    ``interval_days`` (counted from ``interval_start``) and ``odd_even``; a season
    ``active_from``..``active_to`` (inclusive ``(month, day)``, may wrap over the new
    year) on top. The default runs every day."""

    weekdays: frozenset[int] | None = None
    interval_days: int | None = None
    interval_start: date = date(2026, 1, 1)
    odd_even: Literal["odd", "even"] | None = None
    active_from: tuple[int, int] | None = None
    active_to: tuple[int, int] | None = None
    enabled: bool = True

    @classmethod
    def parse(cls, *, weekdays: Iterable[str] | None = None, interval_days: int | None = None,
              interval_start: date | None = None, odd_even: str | None = None,
              active_from: str | None = None, active_to: str | None = None,
              enabled: bool = True) -> DayRule:
        """From the strings configs use (``["mon", "thu"]``, ``"11-01"``)."""
        if weekdays is not None:
            unknown = [d for d in weekdays if d not in WEEKDAYS]
            if unknown:
                raise ValueError(f"weekday {unknown[0]!r} is not one of {', '.join(WEEKDAYS)}")
        return cls(
            weekdays=None if weekdays is None else frozenset(WEEKDAYS.index(d) for d in weekdays),
            interval_days=interval_days,
            interval_start=interval_start or date(2026, 1, 1),
            odd_even=odd_even,  # type: ignore[arg-type]
            active_from=None if active_from is None else parse_month_day(active_from),
            active_to=None if active_to is None else parse_month_day(active_to),
            enabled=enabled,
        )

    def in_season(self, day: date) -> bool:
        if self.active_from is None or self.active_to is None:
            return True
        key, lo, hi = (day.month, day.day), self.active_from, self.active_to
        if lo <= hi:
            return lo <= key <= hi
        return key >= lo or key <= hi

    def runs_on(self, day: date) -> bool:
        """Does the plan run on the local date ``day``?"""
        if not self.enabled or not self.in_season(day):
            return False
        if self.weekdays is not None:
            return day.weekday() in self.weekdays
        if self.interval_days is not None:
            return (day - self.interval_start).days % self.interval_days == 0
        if self.odd_even is not None:
            return (day.day % 2 == 1) == (self.odd_even == "odd")
        return True


EVERY_DAY = DayRule()


@dataclass(frozen=True)
class Plan:
    """Something that starts: a name, its start times, the days it runs on."""

    name: str
    starts: tuple[StartTime, ...]
    days: DayRule = EVERY_DAY

    @classmethod
    def parse(cls, name: str, start_times: Iterable[str], days: DayRule = EVERY_DAY) -> Plan:
        return cls(name, tuple(parse_start(s) for s in start_times), days)

    @classmethod
    def of(cls, program) -> Plan:
        """From a schedule model: ``name``, ``start_times`` and, where it has them,
        ``enabled``, ``weekdays``, ``interval_days``, ``interval_start``, ``odd_even``,
        ``active_from``, ``active_to`` (an irrigation program)."""
        fields = ("weekdays", "interval_days", "interval_start", "odd_even", "active_from",
                  "active_to", "enabled")
        rule = DayRule.parse(**{f: getattr(program, f) for f in fields if hasattr(program, f)})
        return cls.parse(program.name, program.start_times, rule)


# -- the answers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedStart:
    """One start of one plan: ``at`` is local and aware; ``day`` the day it belongs to."""

    at: datetime
    program: str
    start: str
    day: date

    @property
    def key(self) -> str:
        return f"{self.program}@{self.at.isoformat()}"


def start_datetime(start: StartTime, day: date, site: Site) -> datetime | None:
    """The local aware datetime of ``start`` on ``day`` (None when the sun never rises)."""
    if start.anchor == "clock":
        hh, rest = divmod(start.offset_s, 3600)
        # Local wall-clock time; fold/gap handled by zoneinfo for zones with DST.
        return datetime.combine(day, time(hh, rest // 60), tzinfo=site.tz)
    fn = sunrise if start.anchor == "sunrise" else sunset
    try:
        at = fn(site.observer, date=day, tzinfo=site.tz)
    except ValueError:
        logger.warning("no %s at %s on %s", start.anchor, site, day)
        return None
    return (at + timedelta(seconds=start.offset_s)).replace(microsecond=0)


def _order(s: PlannedStart):
    return (s.at, s.program, s.start)


def starts_on(plans: Iterable[Plan], day: date, site: Site) -> list[PlannedStart]:
    """Every start belonging to ``day`` (sorted by time; some may fall on the day
    before or after, when a sun offset crosses midnight)."""
    found = []
    for plan in plans:
        if not plan.days.runs_on(day):
            continue
        for start in plan.starts:
            at = start_datetime(start, day, site)
            if at is not None:
                found.append(PlannedStart(at, plan.name, start.text, day))
    return sorted(found, key=_order)


def starts_between(plans: Sequence[Plan], site: Site, t0: datetime,
                   t1: datetime) -> list[PlannedStart]:
    """The starts with ``t0 < at <= t1`` (aware datetimes, any zone), in time order."""
    return StartPlanner(plans, site).between(t0, t1)


class StartPlanner:
    """``starts_between`` with a per-day cache, for callers that ask again and again."""

    def __init__(self, plans: Sequence[Plan], site: Site):
        self.plans = list(plans)
        self.site = site
        self._cache: dict[date, list[PlannedStart]] = {}

    def for_day(self, day: date) -> list[PlannedStart]:
        if day not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[day] = starts_on(self.plans, day, self.site)
        return self._cache[day]

    def between(self, after: datetime, until: datetime) -> list[PlannedStart]:
        """Starts with ``after < at <= until``, in time order.

        A start's day is within one day of its date (offsets are at most 6 hours), so
        the days from one before ``after`` to one after ``until`` hold every candidate.
        """
        if until <= after:
            return []
        d = after.astimezone(self.site.tz).date() - timedelta(days=1)
        last = until.astimezone(self.site.tz).date() + timedelta(days=1)
        found = []
        while d <= last:
            found += [s for s in self.for_day(d) if after < s.at <= until]
            d += timedelta(days=1)
        return sorted(found, key=_order)

    def next_after(self, after: datetime, horizon_days: int = 8) -> PlannedStart | None:
        """The first start after ``after`` (within ``horizon_days``), or None.

        The window grows a day at a time; ``between`` sorts what the days either side
        hold, so a start a sun offset moved over midnight comes first when it is first.
        """
        for n in range(1, horizon_days + 1):
            found = self.between(after, after + timedelta(days=n))
            if found:
                return found[0]
        return None
