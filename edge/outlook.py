"""The unit's outlook (``protocol.outlook``), worked out again only when it can change.

The link asks for it at every poll (5 times a second) to publish the status as soon as
it changes; planning the next start is not free on a Pi, so the outlook is kept until
its inputs (holds, clock trust, program) change or a time in it passes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from protocol.outlook import Outlook, make_outlook, valid_until

MAX_AGE = timedelta(hours=1)
"""Worked out again at least this often (a start may come within the planner's horizon)."""


class OutlookCache:
    """``get(now, holds=..., planner=..., ...)``: the outlook, computed again only when
    needed."""

    def __init__(self):
        self._key: tuple | None = None
        self._value: Outlook | None = None
        self._until: datetime | None = None

    def get(self, now: datetime, *, holds, clock_synced: bool, planner,
            rain_delay_holds: bool = True, describe=None) -> Outlook:
        key = (holds.paused_until, holds.rain_delay_until, frozenset(holds.skip_next),
               bool(clock_synced), id(planner))
        if key == self._key and self._value is not None and (
                self._until is None or now < self._until):
            return self._value
        value = make_outlook(holds, now, clock_synced=clock_synced, planner=planner,
                             rain_delay_holds=rain_delay_holds, describe=describe)
        until = valid_until(value)
        self._key, self._value = key, value
        self._until = min(until, now + MAX_AGE) if until else now + MAX_AGE
        return value
