"""The ``details`` of each event type, as models, and the alarm codes.

An :class:`protocol.models.Event` carries ``details`` as a JSON object; this module says
what each type's details hold. The fields declared here are the ones both sides rely on
(the controller's reports and dashboard read them); a unit may add more facts, which are
kept as they are (``extra="allow"``)::

    details = details_of(event)            # e.g. RunFinished(zone="z1", litres=120.0, ...)
    if isinstance(details, Alarm) and details.code is AlarmCode.LEAK: ...

:func:`details_of` raises :class:`protocol.errors.PayloadError` when the details do not
fit their type (an alarm without a known ``code``, a number that is text). Units build
details with the same models (``Alarm(code=..., message=...).as_details()``).
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.errors import PayloadError
from protocol.ids import Ident
from protocol.models import MAX_INT, EventType, OutboxDropped

__all__ = [
    "ALARM_CODE_DESCRIPTIONS",
    "ALARM_SEVERITY",
    "CLEARED_BY",
    "CLEAR_BY_COMMAND",
    "CONTROLLER_CODES",
    "DETAILS_BY_TYPE",
    "UNIT_CLEARS",
    "Alarm",
    "AlarmCleared",
    "AlarmCode",
    "AlarmSeverity",
    "UpdateApplied",
    "UpdateFailed",
    "details_of",
]


class AlarmCode(StrEnum):
    """What an alarm is about. Add a code here before any unit raises it."""

    MAX_ON_TIME = "max_on_time"
    JOB_FAILED = "job_failed"
    ENGINE_ERROR = "engine_error"
    TICK_FAILED = "tick_failed"
    CONFIG_INVALID = "config_invalid"
    REMOTE_CONFIG_INVALID = "remote_config_invalid"
    SENSOR_STALE = "sensor_stale"
    SENSOR_RECOVERED = "sensor_recovered"
    LEAK = "leak"
    LEAK_CLEARED = "leak_cleared"
    NO_FLOW = "no_flow"
    FEEDER_JAM = "feeder_jam"
    FEEDER_NO_FEED = "feeder_no_feed"
    FEEDER_NEEDS_CALIBRATION = "feeder_needs_calibration"
    HOPPER_EMPTY = "hopper_empty"
    HOPPER_LOW = "hopper_low"
    HOPPER_SENSOR_FAILED = "hopper_sensor_failed"
    INVALID_EVENT = "invalid_event"
    UNIT_OFFLINE = "unit_offline"
    DATA_STALE = "data_stale"


ALARM_CODE_DESCRIPTIONS: MappingProxyType[AlarmCode, str] = MappingProxyType({
    AlarmCode.MAX_ON_TIME: "An output was forced off at its local maximum on-time.",
    AlarmCode.JOB_FAILED: "A scheduled job failed; every output was switched off.",
    AlarmCode.ENGINE_ERROR: "The irrigation engine failed a step; outputs off.",
    AlarmCode.TICK_FAILED: "The feeding loop failed a step; outputs off.",
    AlarmCode.CONFIG_INVALID: "The saved remote config no longer fits the local config.",
    AlarmCode.REMOTE_CONFIG_INVALID: "A remote config could not be applied.",
    AlarmCode.SENSOR_STALE: "A sensor gave no good reading for too long.",
    AlarmCode.SENSOR_RECOVERED: "A stale sensor reads again (ends sensor_stale).",
    AlarmCode.LEAK: "Water flows with every valve closed.",
    AlarmCode.LEAK_CLEARED: "The leak flow stopped (ends leak).",
    AlarmCode.NO_FLOW: "A valve is open but (almost) no water flows.",
    AlarmCode.FEEDER_JAM: "A feeder's motor ran without rotation pulses; it is locked.",
    AlarmCode.FEEDER_NO_FEED: "The auger turned but the hopper weight did not drop; locked.",
    AlarmCode.FEEDER_NEEDS_CALIBRATION: "A feeder's measured rate is far from its "
                                        "calibrated one.",
    AlarmCode.HOPPER_EMPTY: "A hopper is empty; feedings from it are skipped.",
    AlarmCode.HOPPER_LOW: "A hopper runs low (days of feed left below the warning).",
    AlarmCode.HOPPER_SENSOR_FAILED: "A hopper gauge could not be set up or read.",
    AlarmCode.INVALID_EVENT: "The unit's software made an event that breaks the contract; "
                             "this alarm stands in for it (event_type, message).",
    AlarmCode.UNIT_OFFLINE: "Raised by the controller, never by a unit: the unit was not "
                            "heard from for longer than the controller's setting.",
    AlarmCode.DATA_STALE: "Raised by the controller, never by a unit: the unit is online "
                          "but sent no telemetry for longer than the controller's setting.",
})


class AlarmSeverity(StrEnum):
    """How urgent an alarm is: ``critical`` needs someone now (water or feed is wrong, or
    the unit stopped working), ``warning`` soon, ``info`` is for the record."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


ALARM_SEVERITY: MappingProxyType[AlarmCode, AlarmSeverity] = MappingProxyType({
    AlarmCode.MAX_ON_TIME: AlarmSeverity.CRITICAL,
    AlarmCode.JOB_FAILED: AlarmSeverity.CRITICAL,
    AlarmCode.ENGINE_ERROR: AlarmSeverity.CRITICAL,
    AlarmCode.TICK_FAILED: AlarmSeverity.CRITICAL,
    AlarmCode.CONFIG_INVALID: AlarmSeverity.WARNING,
    AlarmCode.REMOTE_CONFIG_INVALID: AlarmSeverity.WARNING,
    AlarmCode.SENSOR_STALE: AlarmSeverity.WARNING,
    AlarmCode.SENSOR_RECOVERED: AlarmSeverity.INFO,
    AlarmCode.LEAK: AlarmSeverity.CRITICAL,
    AlarmCode.LEAK_CLEARED: AlarmSeverity.INFO,
    AlarmCode.NO_FLOW: AlarmSeverity.CRITICAL,
    AlarmCode.FEEDER_JAM: AlarmSeverity.CRITICAL,
    AlarmCode.FEEDER_NO_FEED: AlarmSeverity.CRITICAL,
    AlarmCode.FEEDER_NEEDS_CALIBRATION: AlarmSeverity.WARNING,
    AlarmCode.HOPPER_EMPTY: AlarmSeverity.CRITICAL,
    AlarmCode.HOPPER_LOW: AlarmSeverity.WARNING,
    AlarmCode.HOPPER_SENSOR_FAILED: AlarmSeverity.WARNING,
    AlarmCode.INVALID_EVENT: AlarmSeverity.WARNING,
    AlarmCode.UNIT_OFFLINE: AlarmSeverity.CRITICAL,
    AlarmCode.DATA_STALE: AlarmSeverity.WARNING,
})
"""The severity of each alarm code (one table; every code has one)."""

CLEARED_BY: MappingProxyType[AlarmCode, AlarmCode] = MappingProxyType({
    AlarmCode.SENSOR_RECOVERED: AlarmCode.SENSOR_STALE,
    AlarmCode.LEAK_CLEARED: AlarmCode.LEAK,
})
"""Codes whose ``alarm`` ends another code's condition (for the same subject): they open
no alarm of their own. Units today send ``alarm_cleared`` instead; older ones sent these."""

UNIT_CLEARS: frozenset[AlarmCode] = frozenset({
    AlarmCode.SENSOR_STALE, AlarmCode.LEAK, AlarmCode.HOPPER_EMPTY, AlarmCode.HOPPER_LOW,
    AlarmCode.TICK_FAILED,
})
"""Codes the unit clears by itself (``alarm_cleared``) when the condition ends."""

CLEAR_BY_COMMAND: MappingProxyType[AlarmCode, tuple[str, str]] = MappingProxyType({
    AlarmCode.FEEDER_JAM: ("clear_fault", "feeder"),
    AlarmCode.FEEDER_NO_FEED: ("clear_fault", "feeder"),
})
"""Codes that lock something on the unit until a person sends a command: (action, the
parameter that names the alarm's subject). The unit answers the command and sends
``alarm_cleared`` with ``cleared_by = "command"`` (or ``"restart"`` after a restart)."""

CONTROLLER_CODES: frozenset[AlarmCode] = frozenset({AlarmCode.UNIT_OFFLINE,
                                                    AlarmCode.DATA_STALE})
"""Codes the controller raises and clears itself (a unit never sends them)."""

Grams = float
Place = Ident | None


class _Details(BaseModel):
    """Base of every details model: declared fields typed, other facts kept."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    def as_details(self) -> dict[str, Any]:
        """The JSON object to put in an event's ``details`` (unset fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class Alarm(_Details):
    """``alarm``: a fault or out-of-range condition."""

    code: AlarmCode = Field(description="What it is about (see the alarm code table).")
    message: str = Field(default="", max_length=500, description="Plain words for people.")
    zone: Place = Field(default=None, description="The zone it concerns, if one.")
    feeder: Place = Field(default=None, description="The feeder it concerns, if one.")
    pond: Place = Field(default=None, description="The pond it concerns, if one.")
    output: Place = Field(default=None, description="The output it concerns, if one.")


class AlarmCleared(Alarm):
    """``alarm_cleared``: an alarm's condition has ended."""

    cleared_by: str | None = Field(default=None, description="restart, command, or the "
                                   "condition itself (absent).")


class _Run(_Details):
    run_id: str | None = Field(default=None, description="The run's id (same in its start "
                               "and end).")
    zone: Place = Field(default=None, description="The zone watered.")
    trigger: Literal["schedule", "sensor", "manual"] | None = Field(
        default=None, description="What started it.")
    program: str | None = Field(default=None, description="The program, for a scheduled run.")
    cmd_id: str | None = Field(default=None, description="The command, for a manual run.")


class RunStarted(_Run):
    """``run_started``: a zone's valve opened for a run."""

    planned_s: float | None = Field(default=None, ge=0, description="Seconds it will run.")
    cycles: int | None = Field(default=None, ge=0, le=MAX_INT, description="Cycles it runs in.")


class RunFinished(_Run):
    """``run_finished``: a run ended."""

    ended: str | None = Field(default=None, description="completed; stopped (by a person: "
                              "stop_all or stop_zone, see stopped_by; stop_all from older "
                              "units); paused, rain, no_flow, max_on_time, ...")
    stopped_by: str | None = Field(default=None, description="The command that stopped "
                                   "it, when ended or reason is stopped.")
    duration_s: float | None = Field(default=None, ge=0, description="Seconds it watered.")
    litres: float | None = Field(default=None, ge=0, description="Litres metered (or "
                                 "estimated from the zone's nominal flow).")


class RunSkipped(_Run):
    """``run_skipped``: a run did not start (or a program's runs, ``zones``)."""

    reason: str | None = Field(default=None, description="rain, rain_delay, paused, "
                               "skip_next, clock_not_synced, moisture, stopped (by a person, "
                               "see stopped_by), ...")
    stopped_by: str | None = Field(default=None, description="The command that stopped "
                                   "it, when reason is stopped.")
    zones: list[Ident] | None = Field(default=None, description="Every zone of a skipped "
                                      "program.")


class RunInterrupted(_Run):
    """``run_interrupted``: a run or feeding was cut short (restart, stop, fault)."""

    action: Literal["resumed", "dropped"] | None = Field(
        default=None, description="What the restart policy did with it.")
    feeder: Place = Field(default=None, description="The feeder, for a feeding.")
    pond: Place = Field(default=None, description="The pond, for a feeding.")


class FeedDispensed(_Details):
    """``feed_dispensed``: a feeder ran; grams asked and delivered."""

    feeder: Ident = Field(description="The feeder.")
    pond: Ident = Field(description="The pond fed.")
    species: str | None = Field(default=None, description="The pond's species.")
    planned_g: Grams | None = Field(default=None, ge=0, description="Grams planned.")
    commanded_g: Grams | None = Field(default=None, ge=0, description="Grams the motor was "
                                      "run for.")
    measured_g: Grams | None = Field(default=None, ge=0, description="Grams measured (pulses "
                                     "or weight), if measured.")
    fault: str | None = Field(default=None, description="jam or no_feed when the feeding "
                              "stopped on a fault.")
    cmd_id: str | None = Field(default=None, description="The command, for feed_now.")


class Feeding(_Details):
    """``feeding_postponed`` / ``feeding_skipped``: a feeding waits or is dropped."""

    pond: Place = Field(default=None, description="The pond.")
    feeder: Place = Field(default=None, description="The feeder.")
    reason: str | None = Field(default=None, description="low_oxygen, temperature, ph, "
                               "daily_cap_reached, paused, skip_next, ...")
    plan_g: Grams | None = Field(default=None, ge=0, description="Grams planned.")


class Paused(_Details):
    """``paused``: schedules held until a time."""

    until: str = Field(description="End of the pause (UTC, RFC 3339).")
    cmd_id: str | None = None


class Config(_Details):
    """``config_applied`` / ``config_rejected``: a desired config version's fate."""

    version: int | None = Field(ge=0, le=MAX_INT, description="The desired config version "
                                "(null when the config could not be read at all).")
    errors: list[str] | None = Field(default=None, description="Why it was rejected.")


class LimitClamped(_Details):
    """``limit_clamped``: a schedule or command cut to a local hard limit."""

    field: str = Field(description="The parameter cut, e.g. duration_s or dose_g.")
    asked: float = Field(description="What was asked.")
    allowed: float = Field(description="What the unit used.")
    limit: str | None = Field(default=None, description="The local limit that cut it.")


class UpdateApplied(_Details):
    """``update_applied``: a release is installed, switched to and healthy."""

    version: str = Field(max_length=64, description="The version the unit runs now.")
    previous: str | None = Field(default=None, max_length=64,
                                 description="The version it ran before.")
    update_id: str | None = Field(default=None, max_length=80,
                                  description="The update's id (one per attempt).")
    duration_s: float | None = Field(default=None, ge=0, description="Seconds from start "
                                     "of the update to the health gate passing.")


class UpdateFailed(_Details):
    """``update_failed``: a release was refused, or switched back after its health gate."""

    version: str | None = Field(default=None, max_length=64,
                                description="The version the bundle offered.")
    running: str | None = Field(default=None, max_length=64,
                                description="The version the unit runs now.")
    update_id: str | None = Field(default=None, max_length=80,
                                  description="The update's id (one per attempt).")
    step: str | None = Field(default=None, max_length=32, description="The step that failed "
                             "(verify, install, config, idle, switch, restart, health).")
    reason: str = Field(max_length=500, description="Why, in plain words.")
    rolled_back: bool = Field(default=False, description="True when the new version ran and "
                              "the previous one was put back.")


class Lifecycle(_Details):
    """``started`` / ``stopped`` / ``resumed`` / ``run_resumed`` / ``command_result``."""


DETAILS_BY_TYPE: MappingProxyType[EventType, type[BaseModel]] = MappingProxyType({
    EventType.STARTED: Lifecycle,
    EventType.STOPPED: Lifecycle,
    EventType.RUN_STARTED: RunStarted,
    EventType.RUN_FINISHED: RunFinished,
    EventType.RUN_SKIPPED: RunSkipped,
    EventType.RUN_INTERRUPTED: RunInterrupted,
    EventType.RUN_RESUMED: RunStarted,
    EventType.FEED_DISPENSED: FeedDispensed,
    EventType.FEEDING_POSTPONED: Feeding,
    EventType.FEEDING_SKIPPED: Feeding,
    EventType.PAUSED: Paused,
    EventType.RESUMED: Lifecycle,
    EventType.ALARM: Alarm,
    EventType.ALARM_CLEARED: AlarmCleared,
    EventType.CONFIG_APPLIED: Config,
    EventType.CONFIG_REJECTED: Config,
    EventType.LIMIT_CLAMPED: LimitClamped,
    EventType.COMMAND_RESULT: Lifecycle,
    EventType.OUTBOX_DROPPED: OutboxDropped,
    EventType.UPDATE_APPLIED: UpdateApplied,
    EventType.UPDATE_FAILED: UpdateFailed,
})
"""The details model of each event type."""


def details_of(event_type: EventType | str, details: dict[str, Any]) -> BaseModel:
    """An event's details as its type's model; ``PayloadError`` when they do not fit."""
    model = DETAILS_BY_TYPE[EventType(event_type)]
    try:
        return model.model_validate(details)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise PayloadError(first["msg"], field=field and f"details.{field}",
                           context=f"{EventType(event_type).value} details") from None
