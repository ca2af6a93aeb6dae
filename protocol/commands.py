"""Commands: the actions a controller may ask of a unit, the params model of each, and
the unit's reply. Part of the payload models (:mod:`protocol.models` exports every name
here)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from protocol.errors import ProtocolError
from protocol.fields import (
    CommandId,
    Frozen,
    Message,
    Number,
    Text,
    UtcDatetime,
)
from protocol.ids import Ident, Name
from protocol.release import MAX_BUNDLE_BYTES, VERSION_PATTERN
from protocol.replies import ReplyCode, ReplyParams
from protocol.times import MAX_PAUSE

__all__ = ["COMMAND_ACTION_DESCRIPTIONS", "MAX_COMMAND_TTL", "MIN_DOSE_G", "MIN_RUN_S",
           "PARAMS_BY_ACTION", "REPLY_STATUS_DESCRIPTIONS", "ClearFaultParams", "Clamp",
           "Command", "CommandAction", "CommandParams", "CommandReply", "FeedNowParams",
           "PauseParams", "RainDelayParams", "ReplyStatus", "ResumeParams", "RunZoneParams",
           "SkipNextParams", "StopAllParams", "StopZoneParams", "UpdateParams"]

MAX_COMMAND_TTL = timedelta(days=7)
"""Longest allowed span from a command's ``issued_at`` to its ``expires_at``."""


class CommandAction(StrEnum):
    """What a command asks the unit to do."""

    RUN_ZONE = "run_zone"
    STOP_ALL = "stop_all"
    STOP_ZONE = "stop_zone"
    SKIP_NEXT = "skip_next"
    PAUSE = "pause"
    RESUME = "resume"
    RAIN_DELAY = "rain_delay"
    FEED_NOW = "feed_now"
    CLEAR_FAULT = "clear_fault"
    UPDATE = "update"


MIN_RUN_S = 10
"""Shortest run (or cycle) a unit opens a valve for, in seconds."""

MIN_DOSE_G = 0.5
"""Smallest dose a feeder turns its motor on for, in grams."""


class RunZoneParams(Frozen):
    """Open one zone now for a while (clamped to the local maximum on-time)."""

    zone: Ident = Field(description="Zone name as in the unit's local config.")
    duration_s: Annotated[int, Strict(), Field(ge=MIN_RUN_S, le=86_400)] = Field(
        description=f"How long to water, in seconds ({MIN_RUN_S} to 86400).")


class StopAllParams(Frozen):
    """Turn every output off now and end the runs in progress. No params."""


class StopZoneParams(Frozen):
    """End one zone's run now (watering, soaking or queued); its valve closes."""

    zone: Ident = Field(description="Zone name as in the unit's local config.")


class SkipNextParams(Frozen):
    """Skip the next scheduled run or feeding (of one zone or feeder, or of the unit)."""

    zone: Ident | None = Field(default=None, description="Skip only this zone's next run.")
    feeder: Ident | None = Field(default=None, description="Skip only this feeder's next feeding.")

    @model_validator(mode="after")
    def _one_target(self) -> SkipNextParams:
        if self.zone is not None and self.feeder is not None:
            raise ValueError("give zone or feeder, not both")
        return self


class PauseParams(Frozen):
    """Hold all schedules until a time (sensor rules and hard limits keep working)."""

    until: UtcDatetime = Field(description="End of the pause (UTC); after issued_at, at most "
                               "31 days after it.")


class ResumeParams(Frozen):
    """End a pause or rain delay now. No params."""


class RainDelayParams(Frozen):
    """Hold irrigation schedules for a number of hours (0 ends a delay)."""

    hours: Annotated[float, Strict(), Field(ge=0, le=168)] = Field(
        description="Delay in hours, 0 to 168 (7 days); 0 ends a rain delay now.")


class FeedNowParams(Frozen):
    """Dispense a dose now (clamped to the local per-feeding and daily caps)."""

    feeder: Ident = Field(description="Feeder name as in the unit's local config.")
    dose_g: Annotated[float, Strict(), Field(ge=MIN_DOSE_G, le=100_000)] = Field(
        description=f"Dose in grams, {MIN_DOSE_G} to 100000.")


class ClearFaultParams(Frozen):
    """Lift a feeder's jam lockout after a technician has fixed the cause."""

    feeder: Ident = Field(description="Feeder name as in the unit's local config.")


class UpdateParams(Frozen):
    """Download a signed release bundle from the controller and install it in the unit's
    maintenance window (checked, switched to and kept only if healthy: docs/updates.md)."""

    version: Annotated[str, StringConstraints(pattern=VERSION_PATTERN, max_length=64)] = Field(
        description="The release's version (as its manifest says).")
    url: Annotated[str, StringConstraints(pattern=r"^https?://[!-~]+$", max_length=500)] = Field(
        description="Where to download the bundle (HTTP Range requests resume a cut "
                    "download).")
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="SHA-256 of the whole bundle file, hex.")
    size: Annotated[int, Strict(), Field(gt=0, le=MAX_BUNDLE_BYTES)] = Field(
        description="The bundle file's size in bytes.")


CommandParams = (
    RunZoneParams | StopAllParams | StopZoneParams | SkipNextParams | PauseParams | ResumeParams
    | RainDelayParams | FeedNowParams | ClearFaultParams | UpdateParams
)

PARAMS_BY_ACTION: MappingProxyType[CommandAction, type[Frozen]] = MappingProxyType({
    CommandAction.RUN_ZONE: RunZoneParams,
    CommandAction.STOP_ALL: StopAllParams,
    CommandAction.STOP_ZONE: StopZoneParams,
    CommandAction.SKIP_NEXT: SkipNextParams,
    CommandAction.PAUSE: PauseParams,
    CommandAction.RESUME: ResumeParams,
    CommandAction.RAIN_DELAY: RainDelayParams,
    CommandAction.FEED_NOW: FeedNowParams,
    CommandAction.CLEAR_FAULT: ClearFaultParams,
    CommandAction.UPDATE: UpdateParams,
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
                          "interlock, bad state. Reason in code and params.",
    ReplyStatus.EXPIRED: "Arrived at or after expires_at; not acted on.",
    ReplyStatus.DUPLICATE: "This id was already received; not acted on again.",
    ReplyStatus.DONE: "Finished as asked (or as clamped, see clamped).",
    ReplyStatus.FAILED: "Started but did not complete (fault, stop). Reason in code and "
                        "params.",
})


class Clamp(Frozen):
    """How a command was cut to a local hard limit."""

    field: Name = Field(description="The parameter that was cut, e.g. duration_s or dose_g.")
    asked: Number = Field(description="The value the command asked for.")
    allowed: Number = Field(description="The value the unit used instead.")


class CommandReply(Message):
    """A unit's answer to one command, matched by ``id``."""

    id: CommandId = Field(description="The id of the command answered.")
    status: ReplyStatus = Field(description="Outcome (see the reply status table).")
    detail: Annotated[Text, StringConstraints(max_length=500)] = Field(
        default="", description="The code's words in English, for logs and older readers, "
        "at most 500 characters.")
    ts: UtcDatetime = Field(description="When the unit answered (UTC).")
    clamped: Clamp | None = Field(
        default=None, description="Set when a local hard limit cut the command.")
    code: ReplyCode | None = Field(
        default=None, description="The outcome as a code (see the reply code table); "
        "absent from older units.")
    params: ReplyParams = Field(
        default_factory=dict, description="The code's parameters: names and numbers, at "
        "most 20, each a string (at most 200 characters), number, boolean or null.")


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
        code: ReplyCode | str | None = None,
        params: dict[str, Any] | None = None,
    ) -> CommandReply:
        """Build the :class:`CommandReply` for this command."""
        return CommandReply(id=self.id, status=status, ts=ts, detail=detail, clamped=clamped,
                            code=code, params=params or {})


COMMAND_ACTION_DESCRIPTIONS: MappingProxyType[CommandAction, str] = MappingProxyType(
    {action: (model.__doc__ or "").strip() for action, model in PARAMS_BY_ACTION.items()}
)
