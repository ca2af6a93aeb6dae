"""Time formats of schedules and commands, one for both unit kinds.

- A time of day is ``"HH:MM"``, 24 hours, two digits each (``"05:30"``, ``"17:00"``),
  in the site's local time zone: :func:`parse_hhmm`.
- An irrigation start is a time of day, or ``"sunrise"``/``"sunset"`` with an optional
  offset ``"+HH:MM"``/``"-HH:MM"`` of at most :data:`MAX_SUN_OFFSET`: :func:`parse_start`.
- A season bound is ``"MM-DD"``: :func:`parse_month_day`.
- A pause lasts at most :data:`MAX_PAUSE` from the command's ``issued_at``.

Each parser raises ``ValueError`` with the reason, so a pydantic validator can call it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

__all__ = ["MAX_PAUSE", "MAX_SUN_OFFSET", "StartTime", "parse_hhmm", "parse_month_day",
           "parse_start"]

MAX_PAUSE = timedelta(days=31)
"""Longest pause a unit accepts (both kinds)."""

MAX_SUN_OFFSET = timedelta(hours=6)
"""Largest offset from sunrise or sunset."""

_HHMM = r"(?P<hh>[01]\d|2[0-3]):(?P<mm>[0-5]\d)"
_HHMM_RE = re.compile(f"^{_HHMM}$")
_START = re.compile(rf"^(?:{_HHMM}|(?P<sun>sunrise|sunset)"
                    r"(?:(?P<sign>[+-])(?P<oh>\d{2}):(?P<om>[0-5]\d))?)$")


@dataclass(frozen=True)
class StartTime:
    """A program start: ``anchor`` is clock, sunrise or sunset; ``offset_s`` from it."""

    anchor: Literal["clock", "sunrise", "sunset"]
    offset_s: int
    text: str


def parse_hhmm(text: str) -> int:
    """``"HH:MM"`` -> seconds after local midnight."""
    m = _HHMM_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"time {text!r} is not HH:MM (24 h)")
    return int(m["hh"]) * 3600 + int(m["mm"]) * 60


def parse_start(text: str) -> StartTime:
    """``"05:30"``, ``"sunrise"``, ``"sunrise-00:45"``, ``"sunset+01:00"``."""
    m = _START.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f'start time {text!r} is not "HH:MM" or sunrise/sunset[+-HH:MM]')
    if m["hh"] is not None:
        return StartTime("clock", int(m["hh"]) * 3600 + int(m["mm"]) * 60, text)
    offset = 0
    if m["sign"]:
        offset = int(m["oh"]) * 3600 + int(m["om"]) * 60
        if offset > MAX_SUN_OFFSET.total_seconds():
            raise ValueError(f"start time {text!r}: offset must be at most 06:00")
        offset *= -1 if m["sign"] == "-" else 1
    return StartTime(m["sun"], offset, text)  # type: ignore[arg-type]


def parse_month_day(text: str) -> tuple[int, int]:
    """``"MM-DD"`` -> (month, day); 02-29 is allowed (it counts as 02-28 in other years)."""
    m = re.fullmatch(r"(\d{2})-(\d{2})", text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f'{text!r} is not "MM-DD"')
    month, day = int(m[1]), int(m[2])
    try:
        date(2024, month, day)
    except ValueError:
        raise ValueError(f"{text!r} is not a day of the year") from None
    return month, day
