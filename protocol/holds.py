"""Holds on scheduled starts: pause, rain delay and skip-next, one set of rules for both
unit kinds.

A unit's scheduled starts (irrigation program starts, feeding times) come from
``protocol.planner``; what may hold one back by a person's word is here, so the
irrigation unit and the fish feeder accept the same pauses and answer with the same
reasons:

- **pause** until a time: aware (with a UTC offset), in the future, at most
  ``MAX_PAUSE`` ahead. Scheduled starts during it are skipped with reason ``paused``.
- **rain delay** for some hours (at most ``MAX_RAIN_DELAY_H``; 0 ends one): starts are
  skipped with ``rain_delay``. A rain sensor extends it (``extend_rain_delay``). Only
  units that water have one.
- **skip next**: a target (a zone, a feeder, or ``ALL`` for the unit's next start)
  skips its next scheduled start once.

``resume`` ends a pause and a rain delay. Pure: times are passed in; ``to_doc`` and
``from_doc`` give what a unit saves to survive a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from protocol.times import MAX_PAUSE  # the longest pause a unit accepts

MAX_RAIN_DELAY_H = 168.0
"""The longest rain delay a unit accepts, in hours (7 days)."""
ALL = "*"
"""The skip target meaning "the unit's next scheduled start, whatever it is"."""


class HoldRefused(ValueError):
    """A pause or rain delay outside the limits; the text says why, ``params`` as a reply's
    (``reason``: no_utc_offset, in_past, too_long or out_of_range, with the bound)."""

    def __init__(self, text: str, **params):
        super().__init__(text)
        self.params = params


def _when(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text)


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat()


@dataclass
class Holds:
    """What holds a unit's scheduled starts back now."""

    paused_until: datetime | None = None
    rain_delay_until: datetime | None = None
    skip_next: set[str] = field(default_factory=set)

    # -- changes ----------------------------------------------------------------------------
    def pause(self, until: datetime, now: datetime) -> datetime:
        """Hold every scheduled start until ``until``; raises ``HoldRefused``."""
        if until.tzinfo is None:
            raise HoldRefused(f"pause until {until.isoformat()} has no UTC offset",
                              reason="no_utc_offset")
        if until <= now:
            raise HoldRefused(f"pause until {until.isoformat()} is in the past",
                              reason="in_past")
        if until - now > MAX_PAUSE:
            raise HoldRefused(f"pause longer than {MAX_PAUSE.days} days", reason="too_long",
                              max_days=MAX_PAUSE.days)
        self.paused_until = until
        return until

    def rain_delay(self, hours: float, now: datetime) -> datetime | None:
        """Hold scheduled starts for ``hours`` from now (0 ends a delay, as ``resume``
        does); raises ``HoldRefused``."""
        if not 0 <= hours <= MAX_RAIN_DELAY_H:
            raise HoldRefused(f"rain delay must be 0 to {MAX_RAIN_DELAY_H:g} hours "
                              "(0 ends one)", reason="out_of_range", max_hours=MAX_RAIN_DELAY_H)
        self.rain_delay_until = now + timedelta(hours=hours) if hours else None
        return self.rain_delay_until

    def extend_rain_delay(self, until: datetime, slack: timedelta = timedelta(0)) -> bool:
        """A rain sensor's delay: hold until ``until`` unless held that long already (to
        within ``slack``); True when it changed."""
        if self.rain_delay_until is not None and until - self.rain_delay_until <= slack:
            return False
        self.rain_delay_until = until
        return True

    def resume(self) -> list[str]:
        """End the pause and the rain delay; the names of those that were on."""
        cleared = [name for name, v in (("pause", self.paused_until),
                                        ("rain delay", self.rain_delay_until)) if v]
        self.paused_until = self.rain_delay_until = None
        return cleared

    def skip(self, targets: Iterable[str]) -> None:
        """Skip the next scheduled start of each target (``ALL``: of the unit)."""
        self.skip_next.update(targets)

    def take_skip(self, target: str) -> bool:
        """Whether ``target``'s start is skipped; the flag is used up."""
        if target in self.skip_next:
            self.skip_next.discard(target)
            return True
        return False

    def expire(self, now: datetime) -> list[str]:
        """Forget holds that ended by ``now``; the names of those that did."""
        ended = []
        if self.paused_until is not None and now >= self.paused_until:
            self.paused_until = None
            ended.append("pause")
        if self.rain_delay_until is not None and now >= self.rain_delay_until:
            self.rain_delay_until = None
            ended.append("rain delay")
        return ended

    # -- questions --------------------------------------------------------------------------
    def reason(self, now: datetime, *, rain_delay: bool = True) -> str | None:
        """Why a scheduled start at ``now`` is held (``paused``, ``rain_delay``), or None.
        ``rain_delay=False``: starts a rain delay does not hold (a soil probe's)."""
        if self.paused_until is not None and now < self.paused_until:
            return "paused"
        if rain_delay and self.rain_delay_until is not None and now < self.rain_delay_until:
            return "rain_delay"
        return None

    # -- saving -----------------------------------------------------------------------------
    def to_doc(self) -> dict:
        return {"paused_until": _iso(self.paused_until),
                "rain_delay_until": _iso(self.rain_delay_until),
                "skip_next": sorted(self.skip_next)}

    @classmethod
    def from_doc(cls, doc: dict | None) -> Holds:
        doc = doc or {}
        return cls(_when(doc.get("paused_until")), _when(doc.get("rain_delay_until")),
                   set(doc.get("skip_next") or []))
