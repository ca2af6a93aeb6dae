"""What holds a unit's schedules back and what starts next: the ``outlook`` of its status.

Both unit kinds report it the same way, so the dashboard says "paused until ...", "rain
delay until ..." or "next: 06:00 (pagi)" from the unit's own word, at once: a unit
publishes its status again whenever its outlook changes.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Annotated

from pydantic import Field, StringConstraints

from protocol.fields import Frozen, Text, UtcDatetime
from protocol.ids import Ident

__all__ = ["NEXT_START_REASON_DESCRIPTIONS", "NextStart", "NextStartReason", "Outlook",
           "make_outlook", "valid_until"]

MAX_SKIPS = 64
"""At most this many skip targets (a unit's outputs are at most 64)."""


class NextStartReason(StrEnum):
    """Why a unit has no next scheduled start to show."""

    PAUSED = "paused"
    RAIN_DELAY = "rain_delay"
    NO_PROGRAM = "no_program"
    CLOCK_NOT_TRUSTED = "clock_not_trusted"
    NONE_SOON = "none_soon"


NEXT_START_REASON_DESCRIPTIONS: MappingProxyType[NextStartReason, str] = MappingProxyType({
    NextStartReason.PAUSED: "Schedules are paused (until ``paused_until``).",
    NextStartReason.RAIN_DELAY: "A rain delay holds starts (until ``rain_delay_until``).",
    NextStartReason.NO_PROGRAM: "No program or feeding time is set.",
    NextStartReason.CLOCK_NOT_TRUSTED: "The clock is not synchronised: no time-of-day "
                                       "schedule runs.",
    NextStartReason.NONE_SOON: "Nothing is scheduled within the planner's horizon (8 days).",
})


class NextStart(Frozen):
    """The unit's next scheduled start (a program's run or a pond's feeding)."""

    at: UtcDatetime = Field(description="When it starts (UTC).")
    program: Annotated[Text, StringConstraints(max_length=64)] | None = Field(
        default=None, description="The irrigation program that starts.")
    pond: Ident | None = Field(default=None, description="The pond fed.")
    start: Annotated[Text, StringConstraints(max_length=32)] | None = Field(
        default=None, description="The start as written in the schedule (``06:00``, "
        "``sunset-00:30``).")


class Outlook(Frozen):
    """What holds the unit's schedules back now and what starts next, so a dashboard
    tells the truth at once: a unit publishes its status again whenever this changes."""

    paused_until: UtcDatetime | None = Field(
        default=None, description="End of a pause in force (UTC).")
    rain_delay_until: UtcDatetime | None = Field(
        default=None, description="End of a rain delay in force (UTC).")
    skip_next: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=MAX_SKIPS,
        description="Zones or feeders whose next start is skipped once; ``*`` the unit's "
        "next start.")
    next_start: NextStart | None = Field(
        default=None, description="The next scheduled start, honouring pause, rain delay "
        "and skips; null with ``next_start_reason`` when there is none.")
    next_start_reason: NextStartReason | None = Field(
        default=None, description="Why there is no next start (see the reason table).")


def make_outlook(holds, now, *, clock_synced: bool, planner,
                 rain_delay_holds: bool = True, describe=None) -> Outlook:
    """A unit's outlook at ``now`` from its holds (``protocol.holds.Holds``) and its start
    planner (``protocol.planner.StartPlanner``); pure.

    The next start honours the holds: none while paused, in a rain delay (where one holds
    the unit's starts) or without a trusted clock, and a skip of the unit's next start
    (``*``) shows the one after. ``describe(planned)`` gives the start's fields
    (``program`` or ``pond``, ``start``).
    """
    from protocol.holds import ALL

    paused = holds.paused_until if holds.paused_until and holds.paused_until > now else None
    rain = (holds.rain_delay_until if holds.rain_delay_until and holds.rain_delay_until > now
            else None)
    base = {"paused_until": paused, "rain_delay_until": rain,
            "skip_next": sorted(holds.skip_next)}
    reason = (NextStartReason.CLOCK_NOT_TRUSTED if not clock_synced
              else NextStartReason.PAUSED if paused
              else NextStartReason.RAIN_DELAY if rain and rain_delay_holds
              else NextStartReason.NO_PROGRAM if not _has_starts(planner)
              else None)
    if reason is not None:
        return Outlook(**base, next_start_reason=reason)
    planned = planner.next_after(now)
    if planned is not None and ALL in holds.skip_next:
        planned = planner.next_after(planned.at)
    if planned is None:
        return Outlook(**base, next_start_reason=NextStartReason.NONE_SOON)
    fields = describe(planned) if describe else {"program": planned.program}
    return Outlook(**base, next_start=NextStart(at=planned.at, start=planned.start, **fields))


def _has_starts(planner) -> bool:
    """Whether the planner has any start time at all (a program or a feeding time)."""
    return planner is not None and any(plan.starts for plan in planner.plans)


def valid_until(outlook: Outlook):
    """The first time at which ``outlook`` may change by the clock alone (a hold ends, the
    next start passes), or None."""
    times = [t for t in (outlook.paused_until, outlook.rain_delay_until,
                         outlook.next_start.at if outlook.next_start else None) if t]
    return min(times, default=None)
