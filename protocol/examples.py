"""Canonical example messages: one per channel, plus one command per action.

The protocol document shows these, and the tests check that each one is valid and
round-trips, so the examples in the document cannot drift from the models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

from protocol.models import (
    Ack,
    Command,
    CommandAction,
    CommandReply,
    DesiredConfig,
    Event,
    Message,
    NextStart,
    Outlook,
    Status,
    Telemetry,
    UnitLimits,
    ZoneLimits,
    offline_status,
)
from protocol.topics import Channel

__all__ = [
    "COMMAND_EXAMPLES",
    "EVENT_EXAMPLES",
    "EXAMPLES",
    "LAST_WILL_EXAMPLE",
]

_T0 = datetime(2025, 3, 14, 22, 0, 0, tzinfo=UTC)  # 06:00 WITA, 15 March


def _at(minutes: float) -> datetime:
    return datetime.fromtimestamp(_T0.timestamp() + minutes * 60, tz=UTC)


_CMD = {"issued_at": _at(0), "expires_at": _at(5)}

COMMAND_EXAMPLES: MappingProxyType[CommandAction, Command] = MappingProxyType({
    CommandAction.RUN_ZONE: Command(
        id="c-7f3a9e", action="run_zone", params={"zone": "zone1", "duration_s": 600}, **_CMD),
    CommandAction.STOP_ALL: Command(id="c-7f3a9f", action="stop_all", params={}, **_CMD),
    CommandAction.STOP_ZONE: Command(
        id="c-7f3aa6", action="stop_zone", params={"zone": "zone1"}, **_CMD),
    CommandAction.SKIP_NEXT: Command(
        id="c-7f3aa0", action="skip_next", params={"zone": "zone2"}, **_CMD),
    CommandAction.PAUSE: Command(
        id="c-7f3aa1", action="pause", params={"until": _at(24 * 60)}, **_CMD),
    CommandAction.RESUME: Command(id="c-7f3aa2", action="resume", params={}, **_CMD),
    CommandAction.RAIN_DELAY: Command(
        id="c-7f3aa3", action="rain_delay", params={"hours": 24.0}, **_CMD),
    CommandAction.FEED_NOW: Command(
        id="c-7f3aa4", action="feed_now", params={"feeder": "feeder1", "dose_g": 250.0},
        **_CMD),
    CommandAction.CLEAR_FAULT: Command(
        id="c-7f3aa5", action="clear_fault", params={"feeder": "feeder1"}, **_CMD),
    CommandAction.UPDATE: Command(
        id="c-7f3aa6", action="update",
        params={"version": "0.3.0",
                "url": "https://controller.example/api/v1/releases/0.3.0/bundle",
                "sha256": "9f2c" * 16, "size": 11_534_336}, **_CMD),
})
"""One valid command for each action."""

EVENT_EXAMPLES: tuple[Event, ...] = (
    Event(seq=1041, ts=_at(1), type="run_started",
          details={"run_id": "pagi@2025-03-15T05:30:zone1", "zone": "zone1",
                   "trigger": "schedule", "program": "pagi", "planned_s": 600, "cycles": 1}),
    Event(seq=1057, ts=_at(11), type="run_finished",
          details={"run_id": "pagi@2025-03-15T05:30:zone1", "zone": "zone1",
                   "trigger": "schedule", "program": "pagi", "ended": "completed",
                   "duration_s": 600, "litres": 182.5}),
    Event(seq=1060, ts=_at(12), type="limit_clamped",
          details={"cmd_id": "c-7f3a9e", "zone": "zone1", "field": "duration_s", "asked": 600,
                   "allowed": 300, "limit": "max_on_s"}),
    Event(seq=1062, ts=_at(13), type="alarm",
          details={"code": "no_flow", "zone": "zone2", "message": "valve open but 0.00 L/min "
                   "through the meter", "flow_lpm": 0.0}),
    Event(seq=2210, ts=_at(20), type="outbox_dropped",
          details={"seqs": [1990], "ranges": [{"from": 2001, "to": 2050}],
                   "reason": "outbox full"}),
)
"""A few events with typical details, including an outbox drop announcement."""

LAST_WILL_EXAMPLE: Status = offline_status("0.1.0", _at(-30), config_version=7,
                                           clock_synced=True, app="irrigation")
"""The Last Will a unit registers when it connects."""

EXAMPLES: MappingProxyType[Channel, Message] = MappingProxyType({
    Channel.STATUS: Status(
        online=True, fw="0.1.0", config_version=7, clock_synced=True,
        outputs={"master": True, "zone1": True, "zone2": False}, ts=_at(1),
        app="irrigation", dropped=0, backlog=3,
        limits=UnitLimits(zones={"zone1": ZoneLimits(max_on_s=1800, soil_probe=True),
                                 "zone2": ZoneLimits(max_on_s=1800)},
                          max_daily_water_min=240),
        outlook=Outlook(skip_next=["zone2"], next_start=NextStart(
            at=datetime(2025, 3, 15, 21, 30, tzinfo=UTC), program="pagi", start="05:30")),
        update_window="22:00-05:00"),
    Channel.TELEMETRY: Telemetry(
        seq=1042, ts=_at(2),
        readings={"moisture_pct.zone1": 23.4, "flow_lpm.main": 18.2, "rain.gauge": False,
                  "flow_pulses.main": 3310, "temp_c.cabinet": None},
        outputs={"master": True, "zone1": True, "zone2": False}),
    Channel.EVENT: EVENT_EXAMPLES[0],
    Channel.CMD: COMMAND_EXAMPLES[CommandAction.RUN_ZONE],
    Channel.CMD_REPLY: CommandReply(
        id="c-7f3a9e", status="accepted", ts=_at(0.1),
        code="run_accepted", params={"zone": "zone1", "duration_s": 300},
        detail="zone zone1 for 300 s; clamped: duration_s 600 -> 300 (max_on_s)",
        clamped={"field": "duration_s", "asked": 600, "allowed": 300}),
    Channel.ACK: Ack(seq=1042, ts=_at(2.1)),
    Channel.CONFIG: DesiredConfig(
        version=8, issued_at=_at(-60),
        body={"programs": [{"name": "pagi", "start_times": ["05:30", "sunset+00:30"],
                            "weekdays": ["mon", "wed", "fri"],
                            "zones": [{"zone": "zone1", "duration_min": 10},
                                      {"zone": "zone2", "duration_min": 10}]}],
              "watering_pct": 100, "rain_delay_h": 24}),
})
"""One valid message per channel."""
