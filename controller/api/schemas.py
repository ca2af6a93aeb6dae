"""Request and response bodies of the HTTP API (they make the OpenAPI schema at /docs)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
    field_validator,
    model_validator,
)

from controller.auth import MAX_TOKEN_TTL_DAYS
from protocol.ids import KindName
from protocol.models import MAX_INT, PARAMS_BY_ACTION, CommandAction, NextStartReason
from protocol.release import VERSION_PATTERN
from protocol.topics import ID_PATTERN

Ident = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
UserName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]
Role = Literal["admin", "operator", "viewer"]
ConfigState = Literal["none", "pending", "in_sync", "rejected"]
CommandStatus = Literal["pending", "sent", "accepted", "done", "failed", "rejected", "expired"]
WINDOW_DOC = ("the unit's maintenance window as it last reported it (HH:MM-HH:MM, its local "
              "time, may wrap midnight; 00:00-24:00 is any time): an accepted release "
              "installs only inside it; null when the unit reports none (older units)")


def _utc(value: datetime) -> datetime:
    """Query times: naive means UTC; anything that cannot be UTC is a 422, not a crash."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError("time out of range") from exc


QueryTime = Annotated[datetime, AfterValidator(_utc)]


class Problem(BaseModel):
    """An error answer: what is wrong, in words."""

    detail: str


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- devices

class SeqInfo(BaseModel):
    acked: int = Field(description="every seq up to this one is stored (or announced dropped)")
    max_seen: int
    missing: int = Field(description="seqs below max_seen neither stored nor announced")
    gaps_opened: int
    duplicates: int
    dropped_announced: int


class NextStartOut(BaseModel):
    at: datetime
    program: str | None = Field(None, description="the irrigation program that starts")
    pond: str | None = Field(None, description="the pond fed")
    start: str | None = Field(None, description="the start as the schedule writes it")


class DeviceOut(BaseModel):
    device_id: str
    opd: str
    kind: str
    name: str
    created_at: datetime
    online: bool
    last_seen: datetime | None = Field(description="when the controller last heard from it")
    status_ts: datetime | None = Field(description="timestamp of its latest status (unit clock)")
    fw: str | None
    app: str | None
    clock_synced: bool | None
    outputs: dict[str, bool]
    backlog: int | None = Field(description="messages in the unit's outbox not yet acked")
    dropped: int | None
    paused_until: datetime | None = Field(
        None, description="end of a pause in force, as the unit last reported")
    rain_delay_until: datetime | None = Field(
        None, description="end of a rain delay in force, as the unit last reported")
    skip_next: list[str] = Field(
        default_factory=list, description="zones or feeders whose next start is skipped once "
        "(``*``: the unit's next start)")
    next_start: NextStartOut | None = Field(
        None, description="the unit's next scheduled start, honouring pause, rain delay and "
        "skips; null with next_start_reason when there is none")
    next_start_reason: NextStartReason | None = Field(
        None, description="why there is no next start: paused, rain_delay, no_program, "
        "clock_not_trusted, none_soon; null when the unit has not said (older units)")
    update_window: str | None = Field(None, description=WINDOW_DOC)
    reported_config_version: int | None
    desired_config_version: int | None
    config_state: ConfigState
    seq: SeqInfo


class DeviceCreate(_In):
    device_id: Ident
    opd: Ident
    kind: KindName
    name: str = Field("", max_length=80)


class DeviceCreated(BaseModel):
    device: DeviceOut
    mqtt_username: str
    mqtt_password: str = Field(description="shown once; put it in the unit's password file")


class OpdOut(BaseModel):
    code: str
    name: str


# --------------------------------------------------------------------------- history

class TelemetryOut(BaseModel):
    seq: int
    ts: datetime
    received_at: datetime
    readings: dict[str, bool | int | float | None]
    outputs: dict[str, bool]


class TelemetryPage(BaseModel):
    items: list[TelemetryOut]
    next_after_seq: int | None = Field(description="pass as after_seq for the next page")


class EventOut(BaseModel):
    seq: int
    ts: datetime
    received_at: datetime
    type: str
    details: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventOut]
    next_after_seq: int | None


class DailyOut(BaseModel):
    day: str
    reading: str
    samples: int
    min: float | None
    max: float | None
    avg: float | None


# --------------------------------------------------------------------------- schedules

class DesiredOut(BaseModel):
    version: int
    body: dict[str, Any]
    issued_at: datetime
    issued_by: str


class ScheduleOut(BaseModel):
    device_id: str
    desired: DesiredOut | None
    reported_version: int | None
    state: ConfigState = Field(description="none: never set; pending: sent, not yet applied; "
                               "in_sync: the unit reports this version; rejected: the unit "
                               "refused it (see rejection)")
    rejection: dict[str, Any] | None


class ScheduleIn(_In):
    body: dict[str, Any] = Field(description="the application's schedules and rules")


# --------------------------------------------------------------------------- commands

def _command_body(action: CommandAction, params: type[BaseModel]) -> type[BaseModel]:
    """``{"action": <action>, "params": <its params model>, "ttl_s": ...}`` for one action."""
    needs_params = any(f.is_required() for f in params.model_fields.values())
    if action is CommandAction.UPDATE:  # accepted by the schema so it is refused clearly
        return create_model(
            "CommandUpdate", __base__=_In,
            __doc__="Refused here (422): only a rollout offers a release (POST "
            "/api/v1/rollouts).",
            action=(Literal[action.value], ...),  # type: ignore[valid-type]
            params=(dict[str, Any], Field(default_factory=dict)),
            ttl_s=(int | None, None))
    return create_model(
        "Command" + "".join(part.title() for part in action.value.split("_")),
        __base__=_In,
        __doc__=params.__doc__,
        action=(Literal[action.value], ...),  # type: ignore[valid-type]
        params=(params, ... if needs_params else Field(default_factory=params)),
        ttl_s=(int | None, Field(None, ge=1, le=7 * 86_400,
                                 description="seconds until the command expires (default "
                                 "from the controller config)")),
    )


CommandIn = Annotated[
    Union[tuple(_command_body(a, m) for a, m in PARAMS_BY_ACTION.items())],  # noqa: UP007
    Field(discriminator="action"),
]
"""A command request: the action and its params, as the protocol's models define them."""


class ReplyOut(BaseModel):
    status: str
    detail: str = Field(description="the unit's words in English (for logs)")
    ts: datetime
    received_at: datetime
    clamped: dict[str, Any] | None
    code: str | None = Field(default=None, description="the outcome as a reply code "
                             "(docs/protocol.md, reply codes); null from older units")
    params: dict[str, Any] | None = Field(default=None, description="the code's params")


class CommandOut(BaseModel):
    id: str
    device_id: str
    opd: str
    action: str
    params: dict[str, Any]
    issued_at: datetime
    expires_at: datetime
    status: CommandStatus
    created_by: str
    sent_at: datetime | None
    updated_at: datetime
    detail: str
    clamped: dict[str, Any] | None
    reply_code: str | None = Field(default=None, description="the reply code of the answer "
                                   "(or run-end event) that set the status; null before one, "
                                   "and from older units")
    reply_params: dict[str, Any] | None = Field(default=None, description="its params")
    duplicates: int
    replies: list[ReplyOut] = Field(default_factory=list)


# --------------------------------------------------------------------------- users

ExpiresDays = Annotated[int | None, Field(
    ge=1, le=MAX_TOKEN_TTL_DAYS,
    description="days until the token expires (default: the controller's "
    "`[api] token_ttl_days`, 90 unless set)")]


class TokenIn(_In):
    name: UserName
    role: Role
    opd: Ident | None = Field(None, description="required for operators, absent otherwise")
    expires_days: ExpiresDays = None


class TokenRotateIn(_In):
    expires_days: ExpiresDays = None


class TokenOut(BaseModel):
    id: int
    user: str
    role: Role
    opd: str | None
    created_at: datetime
    created_by: str
    expires_at: datetime = Field(description="from then on the token is answered 401")
    last_used_at: datetime | None = Field(
        description="first accepted request in the latest minute the token was used "
        "(null: never used)")
    revoked_at: datetime | None
    revoked_by: str | None


class TokenCreated(TokenOut):
    token: str = Field(description="shown once; only its hash is stored")


class UserOut(BaseModel):
    id: int
    name: str
    role: Role
    opd: str | None
    created_at: datetime
    live_tokens: int


class Me(BaseModel):
    user: str
    role: Role
    opd: str | None
    token_id: int


class AuditOut(BaseModel):
    id: int
    ts: datetime
    actor: str
    action: str
    target: str
    opd: str | None
    before: Any
    after: Any


# --------------------------------------------------------------------------- health

class Health(BaseModel):
    status: Literal["ok", "degraded", "failing"]
    database: bool
    schema_version: int
    mqtt_connected: bool | None = Field(description="null when MQTT is disabled")
    leader: bool | None = Field(
        None, description="true while this instance leads the periodic work (expiry, alarm "
        "sweeps, retention, notifications); null when it takes no part (no ingest)")
    problems: list[str] = Field(
        default_factory=list,
        description="what is wrong: with status 'failing' (HTTP 503) the reasons, with "
        "'degraded' (HTTP 200) a broker outage still within api.health_broker_grace_s")


AfterSeq = Annotated[int, Field(ge=0, le=MAX_INT)]


# --------------------------------------------------------------------------- alarms

class AlarmsBySeverity(BaseModel):
    critical: int
    warning: int
    info: int


class AlarmCounts(BaseModel):
    open: int = Field(description="alarms nobody acknowledged yet")
    acknowledged: int = Field(description="acknowledged, not cleared yet")
    by_severity: AlarmsBySeverity = Field(description="not cleared (both states)")


# --------------------------------------------------------------------------- releases

class ReleaseOut(BaseModel):
    version: str
    sha256: str = Field(description="SHA-256 of the whole bundle file (the update command's)")
    size: int = Field(description="the bundle file's size in bytes")
    platforms: list[str]
    manifest_created_at: str = Field(description="when the bundle was built (its manifest)")
    key_id: str = Field(description="the release key that signed it (16 hex digits)")
    created_at: datetime = Field(description="when it was added to the controller")
    added_by: str


class RolloutTarget(_In):
    """Which units: an OPD's (``opd``), a list (``devices``), or a share (``percent``) of
    all units or, with ``opd``, of that OPD's."""

    opd: Ident | None = None
    devices: list[Ident] | None = Field(None, min_length=1, max_length=10_000)
    percent: int | None = Field(None, ge=1, le=100)

    @model_validator(mode="after")
    def _one(self):
        if self.devices is not None and (self.opd is not None or self.percent is not None):
            raise ValueError("give devices alone, or opd and/or percent")
        if self.devices is None and self.opd is None and self.percent is None:
            raise ValueError("give opd, devices or percent")
        return self


class RolloutIn(_In):
    version: str = Field(pattern=VERSION_PATTERN, description="a release added before")
    target: RolloutTarget
    canary: int = Field(1, ge=1, le=1_000, description="units in the first stage")
    stage_percents: list[int] = Field(
        default_factory=lambda: [100], min_length=1, max_length=20,
        description="after the canary, stages ending at these cumulative percentages of "
        "the target's units, ascending, the last 100 (default [100]: the rest at once)")
    max_failure_share: float = Field(
        0.2, ge=0, le=1, description="a stage whose failed share exceeds this stops the "
        "rollout (failure_threshold)")
    stage_timeout_s: float = Field(
        86_400.0, ge=1, le=30 * 86_400,
        description="a unit with no outcome this long after its stage started counts as "
        "failed (timeout); also the update command's lifetime, at most 7 days")

    @field_validator("stage_percents")
    @classmethod
    def _ascending(cls, value: list[int]) -> list[int]:
        if any(not 1 <= p <= 100 for p in value):
            raise ValueError("each percentage is from 1 to 100")
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError("percentages must ascend")
        if value[-1] != 100:
            raise ValueError("the last stage must reach 100")
        return value


class RolloutStopIn(_In):
    reason: str = Field("", max_length=500, description="why (kept in the audit log)")


class RolloutUnitOut(BaseModel):
    device_id: str
    opd: str
    running: str | None = Field(description="the version the unit reports (status fw)")
    offered: str | None = Field(description="the version offered to it (null: not yet)")
    update_window: str | None = Field(None, description=WINDOW_DOC)
    stage: int
    state: Literal["waiting", "offered", "accepted", "applied", "failed", "skipped"]
    result: str | None = Field(description="applied, current (ran it already), a refusal's "
                               "reply code, update_failed, expired or timeout")
    reason: str = Field(description="the unit's words (update_failed's reason)")
    step: str | None = Field(description="the update step that failed")
    command_id: str | None
    offered_at: datetime | None
    updated_at: datetime


class RolloutOut(BaseModel):
    id: int
    version: str
    target: dict[str, Any]
    canary: int
    stage_percents: list[int]
    max_failure_share: float
    stage_timeout_s: float
    stages: int = Field(description="how many stages (the canary's is stage 0)")
    stage: int = Field(description="the stage under way (or the last one)")
    stage_started_at: datetime | None
    state: Literal["running", "completed", "stopped"]
    reason: str | None = Field(description="why stopped: failure_threshold or "
                               "stopped_by_admin")
    note: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    finished_at: datetime | None
    stopped_by: str | None
    counts: dict[str, int] = Field(description="units per state")
    units: list[RolloutUnitOut] = Field(default_factory=list)


class UnitVersionOut(BaseModel):
    device_id: str
    opd: str
    running: str | None
    offered: str | None = Field(description="the version last offered by a rollout")
    offer_state: str | None = Field(description="that offer's state")
    update_window: str | None = Field(None, description=WINDOW_DOC)
