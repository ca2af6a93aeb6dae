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
:mod:`protocol.codec`. The shared field types and the base ``Message`` are in
:mod:`protocol.fields`, the command actions, their params and the reply in
:mod:`protocol.commands`; every name is importable from here.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from protocol.commands import (
    COMMAND_ACTION_DESCRIPTIONS,
    MAX_COMMAND_TTL,
    MIN_DOSE_G,
    MIN_RUN_S,
    PARAMS_BY_ACTION,
    REPLY_STATUS_DESCRIPTIONS,
    Clamp,
    ClearFaultParams,
    Command,
    CommandAction,
    CommandParams,
    CommandReply,
    FeedNowParams,
    PauseParams,
    RainDelayParams,
    ReplyStatus,
    ResumeParams,
    RunZoneParams,
    SkipNextParams,
    StopAllParams,
    StopZoneParams,
)
from protocol.errors import ProtocolError
from protocol.fields import (
    COMMAND_ID_PATTERN,
    MAX_INT,
    SCHEMA_VERSION,
    Count,
    Flag,
    Frozen,
    Message,
    Number,
    Reading,
    Seq,
    Text,
    UtcDatetime,
    bounded_json,
)
from protocol.ids import NAME_PATTERN, Ident, KindName, Name
from protocol.outlook import (  # noqa: F401 - part of the status, exported here too
    NEXT_START_REASON_DESCRIPTIONS,
    NextStart,
    NextStartReason,
    Outlook,
)
from protocol.replies import REPLY_CODES, ReplyCode, reply_text
from protocol.seqranges import merge_ranges
from protocol.times import MAX_PAUSE
from protocol.topics import Channel

__all__ = [
    "COMMAND_ACTION_DESCRIPTIONS",
    "COMMAND_ID_PATTERN",
    "EVENT_TYPE_DESCRIPTIONS",
    "MAX_COMMAND_TTL",
    "MAX_INT",
    "MIN_DOSE_G",
    "MIN_RUN_S",
    "MODELS_BY_CHANNEL",
    "NAME_PATTERN",
    "PARAMS_BY_ACTION",
    "REPLY_CODES",
    "REPLY_STATUS_DESCRIPTIONS",
    "SCHEMA_VERSION",
    "Ack",
    "Clamp",
    "Command",
    "CommandAction",
    "CommandParams",
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
    "ReplyCode",
    "ReplyStatus",
    "ResumeParams",
    "ClearFaultParams",
    "RunZoneParams",
    "SkipNextParams",
    "Status",
    "StopAllParams",
    "StopZoneParams",
    "Telemetry",
    "UnitLimits",
    "ZoneLimits",
    "channel_of",
    "reply_text",
    "dropped_ranges",
    "offline_status",
]

logger = logging.getLogger(__name__)

MAX_DETAILS_DEPTH = 8
MAX_DETAILS_ITEMS = 2_000
MAX_BODY_DEPTH = 16
MAX_BODY_ITEMS = 20_000
MAX_READINGS = 256
MAX_OUTPUTS = 64
MAX_DROPPED_ITEMS = 1_000


# --------------------------------------------------------------------------- status


class ZoneLimits(Frozen):
    """One zone of an irrigation unit, with its local limits."""

    max_on_s: Annotated[Number, Field(gt=0)] = Field(
        description="Longest the zone's valve may stay open, in seconds (a longer run is "
        "clamped to it).")
    soil_probe: Flag = Field(default=False, description="True if the zone has a soil probe "
                             "(a schedule's moisture rule needs one).")


class FeederLimits(Frozen):
    """One feeder of a fish-feeder unit, with its local limits."""

    pond: Ident = Field(description="The pond it feeds.")
    max_dose_g: Annotated[Number, Field(gt=0)] = Field(
        description="Most grams per feeding (a larger dose is clamped to it).")
    max_daily_g: Annotated[Number, Field(gt=0)] = Field(
        description="Most grams per day (the unit refuses or clamps past it).")


class UnitLimits(Frozen):
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
    outlook: Outlook | None = Field(
        default=None, description="Holds in force and the next start. Absent in the Last "
        "Will and from older units."
    )
    update_window: Annotated[str, StringConstraints(
        pattern=r"^\d\d:\d\d-\d\d:\d\d$")] | None = Field(
        default=None, description="The unit's maintenance window (HH:MM-HH:MM, its local "
        "time, may wrap midnight): a release the controller offers is downloaded and "
        "installed only inside it. Absent in the Last Will and from older units."
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


class DroppedRange(Frozen):
    """An inclusive run of dropped seqs, ``{"from": 10, "to": 20}``."""

    model_config = ConfigDict(populate_by_name=True)

    from_: Seq = Field(alias="from", description="First dropped seq.")
    to: Seq = Field(description="Last dropped seq (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> DroppedRange:
        if self.to < self.from_:
            raise ValueError("'to' must not be less than 'from'")
        return self


class OutboxDropped(Frozen):
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
    details: Annotated[dict[str, Any], bounded_json(MAX_DETAILS_DEPTH, MAX_DETAILS_ITEMS)] = (
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
    body: Annotated[dict[str, Any], bounded_json(MAX_BODY_DEPTH, MAX_BODY_ITEMS)] = Field(
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
