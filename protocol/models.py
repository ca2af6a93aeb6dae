"""Payload models of the wire contract, one per channel.

Every payload is a JSON object with a schema version ``v`` (``1``) and a fixed set of
fields; unknown fields are refused. The models are frozen pydantic models, so a message
built in code is checked exactly as one read off the network::

    reading = Telemetry(seq=42, ts=now, readings={"moisture_pct.zone1": 31.5})
    payload = encode(reading)                  # bytes to publish
    same = decode(Channel.TELEMETRY, payload)  # == reading

Conventions shared by all models:

- Timestamps are UTC. Input must carry an offset (``Z`` or ``+08:00``); it is converted
  to UTC and written back as ``2024-05-01T02:30:00Z``. A naive timestamp is refused.
- Integers stay within +-(2**53 - 1) so JavaScript dashboards and SQLite keep them exact.
- Floats are finite: NaN and Infinity are refused.
- Booleans are ``true``/``false`` only; ``1`` or ``"yes"`` is not a boolean, and ``"5"``
  is not a number.
- Names of outputs, zones and feeders match :data:`protocol.ids.ID_PATTERN` (the unit's
  config uses the same); reading keys match :data:`protocol.ids.NAME_PATTERN`.

Channel to model: :data:`MODELS_BY_CHANNEL`. Reading and writing bytes:
:mod:`protocol.codec`.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from protocol.errors import ProtocolError
from protocol.ids import NAME_PATTERN, Ident, KindName, Name
from protocol.seqranges import merge_ranges
from protocol.times import MAX_PAUSE
from protocol.topics import Channel

__all__ = [
    "COMMAND_ID_PATTERN",
    "MAX_COMMAND_TTL",
    "MAX_INT",
    "MIN_DOSE_G",
    "MIN_RUN_S",
    "MODELS_BY_CHANNEL",
    "NAME_PATTERN",
    "PARAMS_BY_ACTION",
    "SCHEMA_VERSION",
    "Ack",
    "Clamp",
    "Command",
    "CommandAction",
    "CommandReply",
    "DesiredConfig",
    "DroppedRange",
    "FeederLimits",
    "Event",
    "EventType",
    "FeedNowParams",
    "Message",
    "OutboxDropped",
    "PauseParams",
    "RainDelayParams",
    "ReplyStatus",
    "ResumeParams",
    "ClearFaultParams",
    "RunZoneParams",
    "SkipNextParams",
    "Status",
    "StopAllParams",
    "Telemetry",
    "UnitLimits",
    "ZoneLimits",
    "channel_of",
    "dropped_ranges",
    "offline_status",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""Value of the ``v`` field this code writes and accepts."""

MAX_INT = 2**53 - 1
"""Largest integer magnitude on the wire (exact in JavaScript and SQLite)."""

COMMAND_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Syntax of a command id: 1-64 of ``A-Za-z0-9_-`` (a UUID fits)."""

MAX_COMMAND_TTL = timedelta(days=7)
"""Longest allowed span from a command's ``issued_at`` to its ``expires_at``."""

MAX_DETAILS_DEPTH = 8
MAX_DETAILS_ITEMS = 2_000
MAX_BODY_DEPTH = 16
MAX_BODY_ITEMS = 20_000
MAX_READINGS = 256
MAX_OUTPUTS = 64
MAX_DROPPED_ITEMS = 1_000

# --------------------------------------------------------------------------- field types

_TIMESTAMP_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})$", re.ASCII
)


def _timestamp_input(value: object) -> object:
    """Let through datetimes and RFC 3339 strings only (no epoch numbers, no dates)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _TIMESTAMP_RE.fullmatch(value):
        return value
    raise ValueError("must be a timestamp with a UTC offset, like 2024-05-01T02:30:00Z")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError("timestamp out of range") from exc


UtcDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_timestamp_input),
    AfterValidator(_to_utc),
]
"""Offset-aware timestamp, stored and written in UTC."""


def _int_in_range(value: int) -> int:
    if not -MAX_INT <= value <= MAX_INT:
        raise ValueError(f"integer out of range (magnitude at most {MAX_INT})")
    return value


def _number(value: object) -> int | float:
    """A JSON number: int in range or finite float; not bool, not a numeric string."""
    kind = type(value)  # the common cases first, without isinstance chains
    if kind is float and math.isfinite(value):  # type: ignore[arg-type]
        return value  # type: ignore[return-value]
    if kind is int and -MAX_INT <= value <= MAX_INT:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, int):
        return _int_in_range(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number (no NaN or Infinity)")
        return value
    raise ValueError("must be a number")


def _reading(value: object) -> bool | int | float | None:
    kind = type(value)  # the common cases first, without isinstance chains
    if kind is float and math.isfinite(value):  # type: ignore[arg-type]
        return value  # type: ignore[return-value]
    if value is None or kind is bool:
        return value  # type: ignore[return-value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(value)
    raise ValueError("must be a number, true, false or null")


def _text(value: str) -> str:
    """Refuse strings that cannot be written as UTF-8 (lone surrogates from ``\\ud800``)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (lone surrogate)") from None
    return value


Text = Annotated[str, Strict(), AfterValidator(_text)]
Number = Annotated[int | float, PlainValidator(_number, json_schema_input_type=int | float)]
Reading = Annotated[
    bool | int | float | None,
    PlainValidator(_reading, json_schema_input_type=bool | int | float | None),
]
CommandId = Annotated[str, Strict(), StringConstraints(pattern=COMMAND_ID_PATTERN)]
Seq = Annotated[int, Strict(), Field(ge=1, le=MAX_INT)]
Count = Annotated[int, Strict(), Field(ge=0, le=MAX_INT)]
Flag = Annotated[bool, Strict()]


def _json_copy(value: object, path: str, depth: int, budget: list[int], max_depth: int) -> Any:
    """Deep-copy ``value`` while checking that it is plain, bounded JSON."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError("too many items")
    where = f" at {path[:120]}" if path else ""
    if isinstance(value, dict | list):
        if depth >= max_depth:
            raise ValueError(f"nested too deeply (at most {max_depth} levels){where}")
        if isinstance(value, list):
            return [
                _json_copy(item, f"{path}[{index}]", depth + 1, budget, max_depth)
                for index, item in enumerate(value)
            ]
        copy = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"object keys must be strings{where}")
            try:
                _text(key)
            except ValueError as exc:
                raise ValueError(f"{exc}{where}") from None
            copy[key] = _json_copy(item, f"{path}.{key}" if path else key, depth + 1, budget,
                                   max_depth)
        return copy
    if isinstance(value, str):
        try:
            return _text(value)
        except ValueError as exc:
            raise ValueError(f"{exc}{where}") from None
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        try:
            return _number(value)
        except ValueError as exc:
            raise ValueError(f"{exc}{where}") from None
    raise ValueError(f"{type(value).__name__} is not a JSON value{where}")


def _bounded_json(max_depth: int, max_items: int) -> AfterValidator:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        return _json_copy(value, "", 0, [max_items], max_depth)

    return AfterValidator(check)


# --------------------------------------------------------------------------- bases


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Message(_Frozen):
    """Base of every payload: carries the schema version ``v``."""

    v: Literal[1] = Field(
        default=SCHEMA_VERSION,
        description="Schema version of this payload. Always 1 in this version.",
    )

    @field_validator("v", mode="before")
    @classmethod
    def _exact_version(cls, value: object) -> object:
        if type(value) is not int or value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema version {value!r} (this build reads "
                             f"{SCHEMA_VERSION})")
        return value


# --------------------------------------------------------------------------- status


class ZoneLimits(_Frozen):
    """One zone of an irrigation unit, with its local limits."""

    max_on_s: Annotated[Number, Field(gt=0)] = Field(
        description="Longest the zone's valve may stay open, in seconds (a longer run is "
        "clamped to it).")
    soil_probe: Flag = Field(default=False, description="True if the zone has a soil probe "
                             "(a schedule's moisture rule needs one).")


class FeederLimits(_Frozen):
    """One feeder of a fish-feeder unit, with its local limits."""

    pond: Ident = Field(description="The pond it feeds.")
    max_dose_g: Annotated[Number, Field(gt=0)] = Field(
        description="Most grams per feeding (a larger dose is clamped to it).")
    max_daily_g: Annotated[Number, Field(gt=0)] = Field(
        description="Most grams per day (the unit refuses or clamps past it).")


class UnitLimits(_Frozen):
    """What commands and schedules may refer to on this unit, with its local limits.

    The controller checks a schedule or command against the last report before it stores
    or sends it; refusals that depend on the unit's moment (its clock, water already used
    today) stay with the unit."""

    zones: dict[Ident, ZoneLimits] = Field(default_factory=dict, max_length=MAX_OUTPUTS,
                                           description="Zones by name (irrigation).")
    feeders: dict[Ident, FeederLimits] = Field(
        default_factory=dict, max_length=MAX_OUTPUTS, description="Feeders by name "
        "(fish feeder).")
    ponds: list[Ident] = Field(default_factory=list, max_length=MAX_OUTPUTS,
                               description="Ponds by name (fish feeder).")
    max_daily_water_min: Annotated[Number, Field(gt=0)] | None = Field(
        default=None, description="Most watering minutes a day, all zones (irrigation).")
    max_pause_s: Annotated[int, Strict(), Field(gt=0, le=MAX_INT)] = Field(
        default=int(MAX_PAUSE.total_seconds()),
        description="Longest pause the unit accepts, in seconds.")


class Status(Message):
    """What a unit is now. Retained, so a new subscriber learns it at once.

    Published on connect, on every change of outputs or config, and periodically. Its
    offline form (:func:`offline_status`) is the unit's Last Will, which the broker
    publishes when the connection drops without a clean disconnect.
    """

    online: Flag = Field(description="True while the unit is connected; false in the Last Will.")
    fw: Annotated[str, Strict(), StringConstraints(min_length=1, max_length=64,
                                                   pattern=r"^[!-~]+$")] = Field(
        description="Firmware (software) version of the unit, printable ASCII, no spaces."
    )
    config_version: Count | None = Field(
        default=None, description="Version of the desired config the unit applied; "
        "null if it runs on its local default only."
    )
    clock_synced: Flag = Field(
        description="True if the unit's clock is synchronised (NTP). Without it the unit "
        "runs no time-of-day schedule and refuses time-bounded commands."
    )
    outputs: dict[Ident, Flag] = Field(
        default_factory=dict, max_length=MAX_OUTPUTS,
        description="Every output (valve, pump, motor) and whether it is on now. "
        "Empty in the Last Will (unknown)."
    )
    ts: UtcDatetime = Field(description="When the unit wrote this status (UTC).")
    app: KindName | None = Field(
        default=None, description="Which application the unit runs."
    )
    dropped: Count = Field(
        default=0, description="Messages dropped from the outbox since it was created "
        "(each announced by an outbox_dropped event)."
    )
    backlog: Count = Field(
        default=0, description="Messages in the outbox not yet acknowledged by the controller."
    )
    bad_commands: Count = Field(
        default=0, description="Commands refused since the unit started because they could "
        "not be read (not JSON, not a command, bad fields); those without a readable id "
        "cannot be answered and show only here."
    )
    limits: UnitLimits | None = Field(
        default=None, description="Its zones or feeders and ponds with their local limits: "
        "what commands and schedules may name. Absent in the Last Will and from older units."
    )


def offline_status(
    fw: str,
    ts: datetime,
    *,
    config_version: int | None = None,
    clock_synced: bool = False,
    app: KindName | None = None,
) -> Status:
    """The Status a unit registers as its MQTT Last Will (``online: false``).

    The broker sends it, retained, when the unit's connection is lost. It is built at
    connect time, so its ``ts`` is when the will was registered, not when the link was
    lost; the controller uses its own receive time for that. ``outputs`` is empty: the
    unit may still be running a scheduled run on its own (local autonomy).
    """
    return Status(
        online=False,
        fw=fw,
        ts=ts,
        config_version=config_version,
        clock_synced=clock_synced,
        app=app,
        outputs={},
    )


# --------------------------------------------------------------------------- telemetry


class Telemetry(Message):
    """A periodic sample of sensor readings and output states. Goes through the outbox."""

    seq: Seq = Field(description="Per-device sequence number, shared with events; never "
                     "reused, survives restarts.")
    ts: UtcDatetime = Field(description="When the sample was taken (UTC).")
    readings: dict[Name, Reading] = Field(
        default_factory=dict, max_length=MAX_READINGS,
        description="Sensor readings keyed by quantity with unit and place, e.g. "
        "moisture_pct.zone1, do_mg_l.pond1, flow_lpm.main. A number, true/false, or "
        "null when the sensor gave no valid value."
    )
    outputs: dict[Ident, Flag] = Field(
        default_factory=dict, max_length=MAX_OUTPUTS,
        description="Output states at sample time (true = on)."
    )


# --------------------------------------------------------------------------- event


class EventType(StrEnum):
    """What happened. Add a type here before any unit sends it (controllers upgrade first)."""

    STARTED = "started"
    STOPPED = "stopped"
    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    RUN_SKIPPED = "run_skipped"
    RUN_INTERRUPTED = "run_interrupted"
    RUN_RESUMED = "run_resumed"
    FEED_DISPENSED = "feed_dispensed"
    FEEDING_POSTPONED = "feeding_postponed"
    FEEDING_SKIPPED = "feeding_skipped"
    PAUSED = "paused"
    RESUMED = "resumed"
    ALARM = "alarm"
    ALARM_CLEARED = "alarm_cleared"
    CONFIG_APPLIED = "config_applied"
    CONFIG_REJECTED = "config_rejected"
    LIMIT_CLAMPED = "limit_clamped"
    COMMAND_RESULT = "command_result"
    OUTBOX_DROPPED = "outbox_dropped"
    UPDATE_APPLIED = "update_applied"
    UPDATE_FAILED = "update_failed"


EVENT_TYPE_DESCRIPTIONS: MappingProxyType[EventType, str] = MappingProxyType({
    EventType.STARTED: "The daemon started (all outputs were driven off first).",
    EventType.STOPPED: "The daemon stopped cleanly (all outputs off).",
    EventType.RUN_STARTED: "An irrigation run started on a zone.",
    EventType.RUN_FINISHED: "An irrigation run ended normally.",
    EventType.RUN_SKIPPED: "A scheduled run did not start (rain, moisture, pause, skip, "
                           "untrusted clock, limit).",
    EventType.RUN_INTERRUPTED: "A run was cut short (stop command, fault, restart after "
                               "power loss or kill).",
    EventType.RUN_RESUMED: "An interrupted run was resumed by the restart policy.",
    EventType.FEED_DISPENSED: "A feeder dispensed a dose (grams asked and delivered).",
    EventType.FEEDING_POSTPONED: "A feeding was delayed, e.g. by a water-quality interlock.",
    EventType.FEEDING_SKIPPED: "A feeding was dropped (interlock held too long, daily cap, "
                               "skip, pause).",
    EventType.PAUSED: "The unit paused its schedules until a given time.",
    EventType.RESUMED: "The unit resumed its schedules.",
    EventType.ALARM: "A fault or out-of-range condition (jam, stuck valve, no flow, leak, "
                     "empty hopper, sensor stale).",
    EventType.ALARM_CLEARED: "An alarm condition has ended.",
    EventType.CONFIG_APPLIED: "A desired config version was accepted and is in use.",
    EventType.CONFIG_REJECTED: "A desired config version was refused (reason in details).",
    EventType.LIMIT_CLAMPED: "A schedule or command was cut to a local hard limit.",
    EventType.COMMAND_RESULT: "Durable record of a command's outcome (the reply is not "
                              "stored in the outbox).",
    EventType.OUTBOX_DROPPED: "Messages were dropped from a full outbox; details list "
                              "their seqs.",
    EventType.UPDATE_APPLIED: "A release bundle was installed and passed its health gate; "
                              "the unit runs the new version.",
    EventType.UPDATE_FAILED: "A release bundle was refused, or installed and switched back "
                             "(reason in details); the unit runs the version it names.",
})


class DroppedRange(_Frozen):
    """An inclusive run of dropped seqs, ``{"from": 10, "to": 20}``."""

    model_config = ConfigDict(populate_by_name=True)

    from_: Seq = Field(alias="from", description="First dropped seq.")
    to: Seq = Field(description="Last dropped seq (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> DroppedRange:
        if self.to < self.from_:
            raise ValueError("'to' must not be less than 'from'")
        return self


class OutboxDropped(_Frozen):
    """``details`` of an ``outbox_dropped`` event: which seqs will never arrive."""

    seqs: list[Seq] = Field(default_factory=list, max_length=MAX_DROPPED_ITEMS,
                            description="Single dropped seqs.")
    ranges: list[DroppedRange] = Field(default_factory=list, max_length=MAX_DROPPED_ITEMS,
                                       description="Inclusive ranges of dropped seqs.")
    reason: Annotated[Text, StringConstraints(max_length=200)] = Field(
        default="", description="Why, e.g. outbox full.")

    @model_validator(mode="after")
    def _not_empty(self) -> OutboxDropped:
        if not self.seqs and not self.ranges:
            raise ValueError("give at least one seq in 'seqs' or 'ranges'")
        return self


class Event(Message):
    """Something that happened on the unit. Goes through the outbox; never dropped."""

    seq: Seq = Field(description="Per-device sequence number, shared with telemetry.")
    ts: UtcDatetime = Field(description="When it happened (UTC).")
    type: EventType = Field(description="What happened (see the event type table).")
    details: Annotated[dict[str, Any], _bounded_json(MAX_DETAILS_DEPTH, MAX_DETAILS_ITEMS)] = (
        Field(default_factory=dict, validate_default=True,  # outbox_dropped needs details
              description="Type-specific facts as a JSON object "
              f"(at most {MAX_DETAILS_DEPTH} levels, {MAX_DETAILS_ITEMS} items), e.g. "
              "zone, duration_s, dose_g, reason, command id.")
    )

    @field_validator("details")
    @classmethod
    def _dropped_details(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("type") is not EventType.OUTBOX_DROPPED:
            return value
        dropped = OutboxDropped.model_validate(value)
        seq = info.data.get("seq")
        if seq is not None and _max_dropped(dropped) >= seq:
            raise ValueError("dropped seqs must be lower than the announcing event's seq")
        return value


def _max_dropped(dropped: OutboxDropped) -> int:
    return max([*dropped.seqs, *(r.to for r in dropped.ranges)])


def dropped_ranges(event: Event) -> list[tuple[int, int]]:
    """The seqs an ``outbox_dropped`` event announces, as sorted, merged inclusive ranges.

    Details ``{"seqs": [3, 1], "ranges": [{"from": 4, "to": 6}]}`` give
    ``[(1, 1), (3, 6)]``. The controller counts these seqs as accounted for, so its ack
    can move past them.
    """
    if event.type is not EventType.OUTBOX_DROPPED:
        raise ProtocolError(f"not an outbox_dropped event: {event.type.value}", field="type")
    dropped = OutboxDropped.model_validate(event.details)
    return merge_ranges([(s, s) for s in dropped.seqs] + [(r.from_, r.to) for r in dropped.ranges])


# --------------------------------------------------------------------------- command


class CommandAction(StrEnum):
    """What a command asks the unit to do."""

    RUN_ZONE = "run_zone"
    STOP_ALL = "stop_all"
    SKIP_NEXT = "skip_next"
    PAUSE = "pause"
    RESUME = "resume"
    RAIN_DELAY = "rain_delay"
    FEED_NOW = "feed_now"
    CLEAR_FAULT = "clear_fault"


MIN_RUN_S = 10
"""Shortest run (or cycle) a unit opens a valve for, in seconds."""

MIN_DOSE_G = 0.5
"""Smallest dose a feeder turns its motor on for, in grams."""


class RunZoneParams(_Frozen):
    """Open one zone now for a while (clamped to the local maximum on-time)."""

    zone: Ident = Field(description="Zone name as in the unit's local config.")
    duration_s: Annotated[int, Strict(), Field(ge=MIN_RUN_S, le=86_400)] = Field(
        description=f"How long to water, in seconds ({MIN_RUN_S} to 86400).")


class StopAllParams(_Frozen):
    """Turn every output off now and end the runs in progress. No params."""


class SkipNextParams(_Frozen):
    """Skip the next scheduled run or feeding (of one zone or feeder, or of the unit)."""

    zone: Ident | None = Field(default=None, description="Skip only this zone's next run.")
    feeder: Ident | None = Field(default=None, description="Skip only this feeder's next feeding.")

    @model_validator(mode="after")
    def _one_target(self) -> SkipNextParams:
        if self.zone is not None and self.feeder is not None:
            raise ValueError("give zone or feeder, not both")
        return self


class PauseParams(_Frozen):
    """Hold all schedules until a time (sensor rules and hard limits keep working)."""

    until: UtcDatetime = Field(description="End of the pause (UTC); after issued_at, at most "
                               "31 days after it.")


class ResumeParams(_Frozen):
    """End a pause or rain delay now. No params."""


class RainDelayParams(_Frozen):
    """Hold irrigation schedules for a number of hours (0 ends a delay)."""

    hours: Annotated[float, Strict(), Field(ge=0, le=168)] = Field(
        description="Delay in hours, 0 to 168 (7 days); 0 ends a rain delay now.")


class FeedNowParams(_Frozen):
    """Dispense a dose now (clamped to the local per-feeding and daily caps)."""

    feeder: Ident = Field(description="Feeder name as in the unit's local config.")
    dose_g: Annotated[float, Strict(), Field(ge=MIN_DOSE_G, le=100_000)] = Field(
        description=f"Dose in grams, {MIN_DOSE_G} to 100000.")


class ClearFaultParams(_Frozen):
    """Lift a feeder's jam lockout after a technician has fixed the cause."""

    feeder: Ident = Field(description="Feeder name as in the unit's local config.")


CommandParams = (
    RunZoneParams | StopAllParams | SkipNextParams | PauseParams | ResumeParams
    | RainDelayParams | FeedNowParams | ClearFaultParams
)

PARAMS_BY_ACTION: MappingProxyType[CommandAction, type[_Frozen]] = MappingProxyType({
    CommandAction.RUN_ZONE: RunZoneParams,
    CommandAction.STOP_ALL: StopAllParams,
    CommandAction.SKIP_NEXT: SkipNextParams,
    CommandAction.PAUSE: PauseParams,
    CommandAction.RESUME: ResumeParams,
    CommandAction.RAIN_DELAY: RainDelayParams,
    CommandAction.FEED_NOW: FeedNowParams,
    CommandAction.CLEAR_FAULT: ClearFaultParams,
})
"""The params model each action takes."""


class ReplyStatus(StrEnum):
    """A unit's answer to a command."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"
    DONE = "done"
    FAILED = "failed"


REPLY_STATUS_DESCRIPTIONS: MappingProxyType[ReplyStatus, str] = MappingProxyType({
    ReplyStatus.ACCEPTED: "Valid and started (may be followed by done or failed).",
    ReplyStatus.REJECTED: "Refused: unknown zone or feeder, clock not synchronised, "
                          "interlock, bad state. Reason in detail.",
    ReplyStatus.EXPIRED: "Arrived at or after expires_at; not acted on.",
    ReplyStatus.DUPLICATE: "This id was already received; not acted on again.",
    ReplyStatus.DONE: "Finished as asked (or as clamped, see clamped).",
    ReplyStatus.FAILED: "Started but did not complete (fault, stop). Reason in detail.",
})


class Clamp(_Frozen):
    """How a command was cut to a local hard limit."""

    field: Name = Field(description="The parameter that was cut, e.g. duration_s or dose_g.")
    asked: Number = Field(description="The value the command asked for.")
    allowed: Number = Field(description="The value the unit used instead.")


class CommandReply(Message):
    """A unit's answer to one command, matched by ``id``."""

    id: CommandId = Field(description="The id of the command answered.")
    status: ReplyStatus = Field(description="Outcome (see the reply status table).")
    detail: Annotated[Text, StringConstraints(max_length=500)] = Field(
        default="", description="Human-readable reason or result, at most 500 characters.")
    ts: UtcDatetime = Field(description="When the unit answered (UTC).")
    clamped: Clamp | None = Field(
        default=None, description="Set when a local hard limit cut the command.")


class Command(Message):
    """An instruction from the controller to one unit. Never retained.

    A unit acts on a command only if it arrives before ``expires_at`` (and its clock is
    synchronised), runs each ``id`` at most once, and answers every command it can read
    with a :class:`CommandReply`.
    """

    id: CommandId = Field(description="Unique command id (1-64 of A-Za-z0-9_-), e.g. a UUID.")
    issued_at: UtcDatetime = Field(description="When the controller issued it (UTC).")
    expires_at: UtcDatetime = Field(
        description="After this instant the unit must not act on it (UTC). Later than "
        f"issued_at, at most {MAX_COMMAND_TTL.days} days after it.")
    action: CommandAction = Field(description="What to do (see the command action table).")
    params: CommandParams = Field(
        default_factory=dict, validate_default=True,
        description="Arguments of the action (see the command action table).")

    @field_validator("expires_at")
    @classmethod
    def _expiry_window(cls, value: datetime, info: ValidationInfo) -> datetime:
        issued_at = info.data.get("issued_at")
        if issued_at is None:
            return value
        if value <= issued_at:
            raise ValueError("must be later than issued_at")
        if value - issued_at > MAX_COMMAND_TTL:
            raise ValueError(f"must be at most {MAX_COMMAND_TTL.days} days after issued_at")
        return value

    @field_validator("params", mode="before")
    @classmethod
    def _params_for_action(cls, value: object, info: ValidationInfo) -> object:
        action = info.data.get("action")
        if action is None:
            raise ValueError("not checked because action is invalid")
        model = PARAMS_BY_ACTION[action]
        if isinstance(value, BaseModel) and not isinstance(value, model):
            raise ValueError(f"params of {action.value} must be {model.__name__}")
        params = value if isinstance(value, model) else model.model_validate(value)
        issued_at = info.data.get("issued_at")
        if isinstance(params, PauseParams) and issued_at:
            if params.until <= issued_at:
                raise ValueError("until must be later than issued_at")
            if params.until - issued_at > MAX_PAUSE:
                raise ValueError(f"until must be at most {MAX_PAUSE.days} days after issued_at")
        return params

    def is_expired(self, now: datetime) -> bool:
        """True if ``now`` (aware) is at or past ``expires_at``: the unit must not act."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ProtocolError("now must be timezone-aware", field="now")
        return now >= self.expires_at

    def reply(
        self,
        status: ReplyStatus | str,
        ts: datetime,
        detail: str = "",
        clamped: Clamp | dict[str, Any] | None = None,
    ) -> CommandReply:
        """Build the :class:`CommandReply` for this command."""
        return CommandReply(id=self.id, status=status, ts=ts, detail=detail, clamped=clamped)


COMMAND_ACTION_DESCRIPTIONS: MappingProxyType[CommandAction, str] = MappingProxyType(
    {action: (model.__doc__ or "").strip() for action, model in PARAMS_BY_ACTION.items()}
)


# --------------------------------------------------------------------------- ack, config


class Ack(Message):
    """The controller's receipt: every message of this unit up to ``seq`` is stored."""

    seq: Count = Field(
        description="Highest seq such that this seq and every lower one is committed in "
        "the controller's database (or announced as dropped). 0 = nothing yet.")
    ts: UtcDatetime = Field(description="When the controller sent the ack (UTC).")


class DesiredConfig(Message):
    """Schedules and rules the controller wants the unit to run. Retained.

    ``body`` is checked by the unit's application, not here; the unit answers with a
    ``config_applied`` or ``config_rejected`` event and reports the applied version in
    its status. Local hard limits still win over anything in it.
    """

    version: Annotated[int, Strict(), Field(ge=1, le=MAX_INT)] = Field(
        description="Config version; each edit makes a higher one.")
    issued_at: UtcDatetime = Field(description="When this version was made (UTC).")
    body: Annotated[dict[str, Any], _bounded_json(MAX_BODY_DEPTH, MAX_BODY_ITEMS)] = Field(
        description="Application-specific schedules and rules as a JSON object (at most "
        f"{MAX_BODY_DEPTH} levels, {MAX_BODY_ITEMS} items).")


# --------------------------------------------------------------------------- channel map

MODELS_BY_CHANNEL: MappingProxyType[Channel, type[Message]] = MappingProxyType({
    Channel.STATUS: Status,
    Channel.TELEMETRY: Telemetry,
    Channel.EVENT: Event,
    Channel.CMD: Command,
    Channel.CMD_REPLY: CommandReply,
    Channel.ACK: Ack,
    Channel.CONFIG: DesiredConfig,
})
"""The payload model each channel carries."""

_CHANNEL_BY_MODEL = {model: channel for channel, model in MODELS_BY_CHANNEL.items()}


def channel_of(message: Message | type[Message]) -> Channel:
    """The channel a message (or model class) is published on."""
    cls = message if isinstance(message, type) else type(message)
    try:
        return _CHANNEL_BY_MODEL[cls]
    except KeyError:
        raise ProtocolError(f"{cls.__name__} is not a payload model") from None
