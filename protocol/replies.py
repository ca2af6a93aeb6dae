"""Reply codes: what a unit's answer to a command says, as a code with parameters.

A :class:`protocol.models.CommandReply` carries a ``status`` (accepted, rejected, ...),
a ``code`` (one per distinct outcome: ``zone_stopped``, ``unknown_feeder``, ...) and its
``params`` (names and numbers, never sentences). A dashboard says the code in its
reader's language from the params; ``detail`` keeps an English sentence for logs and
older dashboards, made from the code here, in one place::

    reply_text(ReplyCode.ZONE_STOPPED, {"zone": "z1"})   # "zone z1 stopped"

Add a code here before any unit replies with it. A param named in a code's ``params``
may be missing from a reply (an older unit, a value unknown); its text then shows ``?``.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator

from protocol.fields import _number, _text

__all__ = ["MAX_REPLY_PARAMS", "REPLY_CODES", "ReplyCode", "ReplyCodeSpec", "ReplyParams",
           "reply_text"]

MAX_REPLY_PARAMS = 20
"""Most params one reply carries."""


class ReplyCode(StrEnum):
    """The outcome a unit's reply reports (see the reply code table)."""

    # -- a run or feeding asked for ----------------------------------------------------------
    RUN_ACCEPTED = "run_accepted"
    RUN_COMPLETED = "run_completed"
    RUN_ENDED = "run_ended"
    RUN_SKIPPED = "run_skipped"
    RUN_DROPPED = "run_dropped"
    FEEDING_ACCEPTED = "feeding_accepted"
    FEEDING_DONE = "feeding_done"
    FEEDING_FAILED = "feeding_failed"
    FEEDING_SKIPPED = "feeding_skipped"
    # -- stops, holds, faults ----------------------------------------------------------------
    STOPPED_ALL = "stopped_all"
    ZONE_STOPPED = "zone_stopped"
    SKIP_SET = "skip_set"
    SKIP_SET_ALL = "skip_set_all"
    PAUSED = "paused"
    RESUMED = "resumed"
    NOTHING_TO_RESUME = "nothing_to_resume"
    RAIN_DELAY_SET = "rain_delay_set"
    RAIN_DELAY_ENDED = "rain_delay_ended"
    FAULT_CLEARED = "fault_cleared"
    NOT_LOCKED = "not_locked"
    # -- release updates ---------------------------------------------------------------------
    UPDATE_ACCEPTED = "update_accepted"
    UPDATE_CURRENT = "update_current"
    UPDATE_BUSY = "update_busy"
    UPDATE_NOT_TRUSTED = "update_not_trusted"
    # -- refusals by the app -----------------------------------------------------------------
    UNKNOWN_ACTION = "unknown_action"
    UNKNOWN_ZONE = "unknown_zone"
    UNKNOWN_FEEDER = "unknown_feeder"
    NO_ZONES = "no_zones"
    NO_FEEDERS = "no_feeders"
    BAD_PARAMS = "bad_params"
    ZONE_NOT_RUNNING = "zone_not_running"
    DAILY_LIMIT = "daily_limit"
    DAILY_CAP = "daily_cap"
    FEEDER_LOCKED = "feeder_locked"
    FEEDER_BUSY = "feeder_busy"
    PAUSE_REFUSED = "pause_refused"
    RAIN_DELAY_REFUSED = "rain_delay_refused"
    # -- refusals by the unit's link ---------------------------------------------------------
    INVALID_COMMAND = "invalid_command"
    DUPLICATE = "duplicate"
    CLOCK_NOT_SYNCED = "clock_not_synced"
    EXPIRED = "expired"
    UNIT_STARTING = "unit_starting"
    # -- the unit's own failures -------------------------------------------------------------
    UNIT_ERROR = "unit_error"
    NO_ANSWER = "no_answer"
    INVALID_REPLY = "invalid_reply"


class ReplyCodeSpec(NamedTuple):
    """What a code means, the params it carries, and its English words."""

    description: str
    params: tuple[str, ...]
    text: str


_S = ReplyCodeSpec
REPLY_CODES: MappingProxyType[ReplyCode, ReplyCodeSpec] = MappingProxyType({
    ReplyCode.RUN_ACCEPTED: _S(
        "accepted: the zone's run is queued (or started); done or failed follows when it "
        "ends.", ("zone", "duration_s"), "zone {zone} for {duration_s} s"),
    ReplyCode.RUN_COMPLETED: _S(
        "done: the run watered its whole time.", ("zone", "duration_s", "litres"),
        "{zone}: {duration_s} s, {litres} L (completed)"),
    ReplyCode.RUN_ENDED: _S(
        "failed: the run ended early; ended says why (stopped: by a person, with "
        "stop_all or stop_zone; paused, rain, no_flow, max_on_time, daily_limit, ...).",
        ("zone", "duration_s", "litres", "ended"), "{zone}: {duration_s} s, {litres} L "
        "({ended})"),
    ReplyCode.RUN_SKIPPED: _S(
        "failed: the run ended before its valve opened; reason as in ended.",
        ("zone", "reason"), "run of {zone} skipped: {reason}"),
    ReplyCode.RUN_DROPPED: _S(
        "failed, set by the controller from the unit's run_interrupted event: the unit "
        "restarted mid-run and dropped the run or feeding (no unit replies with it).",
        ("zone", "feeder"), "the unit restarted mid-run and dropped the run"),
    ReplyCode.FEEDING_ACCEPTED: _S(
        "accepted: the feeder started dispensing; done or failed follows.",
        ("feeder", "dose_g"), "feeding {dose_g} g"),
    ReplyCode.FEEDING_DONE: _S(
        "done: the feeding ended; grams measured (or estimated) and planned.",
        ("feeder", "dispensed_g", "planned_g"), "dispensed {dispensed_g} g of {planned_g} g"),
    ReplyCode.FEEDING_FAILED: _S(
        "failed: the feeder stopped on a fault (jam, no_feed, stopped, ...) after some grams.",
        ("feeder", "fault", "dispensed_g"), "{fault} after {dispensed_g} g"),
    ReplyCode.FEEDING_SKIPPED: _S(
        "failed: the feeding did not run; reason (stopped, interlock, hopper_empty, ...).",
        ("feeder", "reason"), "feeding skipped: {reason}"),
    ReplyCode.STOPPED_ALL: _S(
        "done: every output off; runs (or feedings) counts the ones ended.",
        ("runs",), "stopped {runs} run(s); every output off"),
    ReplyCode.ZONE_STOPPED: _S(
        "done: the zone's run (watering, soaking or queued) ended; its valve is closed.",
        ("zone",), "zone {zone} stopped"),
    ReplyCode.SKIP_SET: _S(
        "done: the next scheduled run of the zone, or feeding of the feeder, is skipped.",
        ("target",), "next scheduled start of {target} will be skipped"),
    ReplyCode.SKIP_SET_ALL: _S(
        "done: the unit's next scheduled start is skipped (every zone or feeder).",
        (), "next scheduled start of every zone or feeder will be skipped"),
    ReplyCode.PAUSED: _S(
        "done: schedules held until (UTC).", ("until",), "paused until {until}"),
    ReplyCode.RESUMED: _S(
        "done: holds ended; cleared lists them, comma-separated (pause, rain_delay, "
        "and on an irrigation unit faults, leak).", ("cleared",), "cleared: {cleared}"),
    ReplyCode.NOTHING_TO_RESUME: _S(
        "done: there was no pause, delay or fault to end.", (), "nothing to resume"),
    ReplyCode.RAIN_DELAY_SET: _S(
        "done: irrigation schedules held for hours.", ("hours",), "rain delay {hours} h"),
    ReplyCode.RAIN_DELAY_ENDED: _S(
        "done: a rain delay of 0 hours ended any delay.", (), "rain delay ended"),
    ReplyCode.FAULT_CLEARED: _S(
        "done: the feeder's lockout (fault) is lifted.", ("feeder", "fault"),
        "feeder {feeder} unlocked"),
    ReplyCode.NOT_LOCKED: _S(
        "done: the feeder was not locked; nothing changed.", ("feeder",),
        "feeder {feeder} was not locked"),
    ReplyCode.UPDATE_ACCEPTED: _S(
        "accepted: the unit downloads the release and installs it in its maintenance window; "
        "an update_applied or update_failed event (and done or failed) follows.",
        ("version", "window"), "release {version} accepted, installs in window {window}"),
    ReplyCode.UPDATE_CURRENT: _S(
        "done: the unit already runs this version; nothing changed.", ("version",),
        "already running {version}"),
    ReplyCode.UPDATE_BUSY: _S(
        "rejected: another update is under way on the unit.", ("version", "busy_with"),
        "another update ({busy_with}) is under way"),
    ReplyCode.UPDATE_NOT_TRUSTED: _S(
        "rejected: the unit trusts no release key ([update] trusted_keys is empty), so it "
        "installs no bundle.", ("version",), "no trusted release key on this unit"),
    ReplyCode.UNKNOWN_ACTION: _S(
        "rejected: this kind of unit has no such action.", ("action",),
        "this unit does not know action {action}"),
    ReplyCode.UNKNOWN_ZONE: _S(
        "rejected: no zone of that name in the unit's local config.", ("zone",),
        "no zone named {zone}"),
    ReplyCode.UNKNOWN_FEEDER: _S(
        "rejected: no feeder of that name in the unit's local config.", ("feeder",),
        "unknown feeder {feeder}"),
    ReplyCode.NO_ZONES: _S(
        "rejected: a fish feeder has no zones (zone given).", (), "a fish feeder has no zones"),
    ReplyCode.NO_FEEDERS: _S(
        "rejected: an irrigation unit has no feeders (feeder given).", (),
        "an irrigation unit has no feeders"),
    ReplyCode.BAD_PARAMS: _S(
        "rejected: a parameter does not fit the action's model; reason_code is pydantic's "
        "error type (greater_than_equal, missing, ...); a bound (ge, le, ...) comes with it.",
        ("field", "reason_code"), "bad params: {field}: {reason_code}"),
    ReplyCode.ZONE_NOT_RUNNING: _S(
        "rejected: the zone has no run watering, soaking or queued.", ("zone",),
        "zone {zone} is not running"),
    ReplyCode.DAILY_LIMIT: _S(
        "rejected: the unit's daily water limit is used up.", ("max_daily_water_min",),
        "daily water limit reached ({max_daily_water_min} min)"),
    ReplyCode.DAILY_CAP: _S(
        "rejected: the feeder's daily cap of grams is used up.",
        ("feeder", "fed_g", "max_daily_g"),
        "daily cap reached ({fed_g} of {max_daily_g} g today)"),
    ReplyCode.FEEDER_LOCKED: _S(
        "rejected: the feeder is locked out by a fault (jam, no_feed) until clear_fault.",
        ("feeder", "fault"), "feeder {feeder} is locked out ({fault}); send clear_fault"),
    ReplyCode.FEEDER_BUSY: _S(
        "rejected: the feeder is dispensing or has a feeding waiting.", ("feeder",),
        "feeder {feeder} is busy"),
    ReplyCode.PAUSE_REFUSED: _S(
        "rejected: reason no_utc_offset, in_past or too_long (more than max_days).",
        ("reason",), "pause refused: {reason}"),
    ReplyCode.RAIN_DELAY_REFUSED: _S(
        "rejected: reason out_of_range (0 to max_hours).", ("reason",),
        "rain delay refused: {reason}"),
    ReplyCode.INVALID_COMMAND: _S(
        "rejected by the unit's link: the command breaks the wire contract at field.",
        ("field",), "invalid command: {field}"),
    ReplyCode.DUPLICATE: _S(
        "duplicate: this command id was already received.", (),
        "this command id was already received"),
    ReplyCode.CLOCK_NOT_SYNCED: _S(
        "rejected: the unit's clock is not synchronised; only stop_all and stop_zone run.",
        (), "clock not synchronised"),
    ReplyCode.EXPIRED: _S(
        "expired: the command arrived at or after expires_at.", ("expires_at",),
        "expired at {expires_at}"),
    ReplyCode.UNIT_STARTING: _S(
        "rejected: the unit's app is not running yet.", (), "unit is starting"),
    ReplyCode.UNIT_ERROR: _S(
        "failed: the unit's software failed handling it (error: the exception's type; "
        "the unit's log has the rest).", ("error",), "unit error: {error}"),
    ReplyCode.NO_ANSWER: _S(
        "accepted: the unit's app gave no answer (a fault in the unit's software).", (),
        "the unit's app gave no answer"),
    ReplyCode.INVALID_REPLY: _S(
        "failed: the unit built a reply that breaks the contract (a fault in the unit's "
        "software).", (), "unit built an invalid reply"),
})
"""Each code's meaning, params and English words."""


def _scalars(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_REPLY_PARAMS:
        raise ValueError(f"at most {MAX_REPLY_PARAMS} params")
    for key, item in value.items():
        if not 1 <= len(key) <= 64:
            raise ValueError("param names are 1 to 64 characters")
        _text(key)
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            if len(item) > 200:
                raise ValueError(f"{key}: at most 200 characters")
            _text(item)
        elif isinstance(item, int | float):
            try:
                _number(item)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        else:
            raise ValueError(f"{key}: must be a string, number, true, false or null")
    return value


ReplyParams = Annotated[dict[str, Any], AfterValidator(_scalars)]
"""A reply's params: at most 20 names, each a scalar (text at most 200 characters)."""


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def _word(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:g}"
    return value


def reply_text(code: ReplyCode | str, params: dict[str, Any] | None = None) -> str:
    """The English sentence of ``code`` with ``params`` (for ``detail`` and logs)."""
    params = params or {}
    text = REPLY_CODES[ReplyCode(code)].text.format_map(
        _Missing({k: _word(v) for k, v in params.items()}))
    extra = {k: v for k, v in params.items() if k not in REPLY_CODES[ReplyCode(code)].params}
    if extra:
        text += " (" + ", ".join(f"{k} {_word(v)}" for k, v in extra.items()) + ")"
    return text
