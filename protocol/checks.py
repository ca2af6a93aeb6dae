"""Would the unit take it? A schedule or command checked against the protocol's models and
the unit's last report (:class:`protocol.models.UnitLimits`), before anything is stored
or sent.

Each check returns a list of :class:`Problem` (empty: fine). A problem names the field,
a fixed ``code`` for translation, the reason in English and its values (``ctx``)::

    problems = schedule_problems("irrigation", body, status.limits)
    problems = command_problems("irrigation", command, status.limits)

With ``limits`` None (the unit has not reported yet) only the model checks apply.
Refusals that depend on the unit's moment (its clock, water already used today) are the
unit's: it answers those with a reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from protocol.kinds import KINDS
from protocol.models import (
    ClearFaultParams,
    Command,
    FeedNowParams,
    PauseParams,
    RunZoneParams,
    SkipNextParams,
    StopZoneParams,
    UnitLimits,
)

__all__ = ["Problem", "command_problems", "model_problems", "schedule_problems"]


class Problem(NamedTuple):
    field: str
    code: str
    reason: str
    ctx: Mapping[str, Any] = {}


def model_problems(exc: ValidationError, prefix: str = "") -> list[Problem]:
    """Every problem of a pydantic error, fields as dotted paths under ``prefix``."""
    from protocol.validation import FieldProblem

    found = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        ctx = dict(err.get("ctx") or {})
        cause = ctx.pop("error", None)
        if isinstance(cause, FieldProblem):
            loc = ".".join(p for p in (loc, cause.field) if p)
        field = ".".join(p for p in (prefix, loc) if p) or "body"
        found.append(Problem(field, err["type"], str(cause or err["msg"]),
                             {k: v for k, v in ctx.items() if isinstance(v, int | float | str)}))
    return found


def schedule_problems(kind: str, body: Any, limits: UnitLimits | None = None
                      ) -> list[Problem]:
    """Problems of a remote schedule ``body`` for a unit of ``kind``."""
    model = KINDS[kind].schedule
    try:
        schedule = model.model_validate(body)
    except ValidationError as exc:
        return model_problems(exc)
    if limits is None:
        return []
    if kind == "irrigation":
        probed = {name: z.soil_probe for name, z in limits.zones.items()}
        return [_cross(field, reason) for field, reason in schedule.problems(probed)]
    return [_cross(field, reason) for field, reason in schedule.problems(set(limits.ponds))]


def _cross(field: str, reason: str) -> Problem:
    code = "no_soil_probe" if field.endswith(".moisture") else "unknown_name"
    return Problem(field, code, reason)


def command_problems(kind: str, command: Command, limits: UnitLimits | None = None
                     ) -> list[Problem]:
    """Problems of a command (already a valid :class:`Command`) for a unit of ``kind``."""
    spec = KINDS[kind]
    if command.action not in spec.actions:
        return [Problem("action", "action_not_for_kind",
                        f"a {kind} unit does not take {command.action.value}",
                        {"action": command.action.value, "kind": kind})]
    p: BaseModel = command.params
    if isinstance(p, SkipNextParams):
        if kind == "irrigation" and p.feeder is not None:
            return [Problem("params.feeder", "not_for_kind", "an irrigation unit has no "
                            "feeders", {"kind": kind})]
        if kind == "fish_feeder" and p.zone is not None:
            return [Problem("params.zone", "not_for_kind", "a fish feeder has no zones",
                            {"kind": kind})]
    if limits is None:
        return []
    if isinstance(p, PauseParams) and (p.until - command.issued_at).total_seconds() \
            > limits.max_pause_s:
        return [Problem("params.until", "pause_too_long",
                        f"the unit pauses at most {limits.max_pause_s / 86400:g} days",
                        {"days": limits.max_pause_s / 86400})]
    zone = (getattr(p, "zone", None)
            if isinstance(p, RunZoneParams | StopZoneParams | SkipNextParams) else None)
    if zone is not None and zone not in limits.zones:
        return [Problem("params.zone", "unknown_name", f"no zone named {zone!r} on this unit",
                        {"name": zone})]
    feeder = (getattr(p, "feeder", None)
              if isinstance(p, FeedNowParams | ClearFaultParams | SkipNextParams) else None)
    if feeder is not None and feeder not in limits.feeders:
        return [Problem("params.feeder", "unknown_name",
                        f"no feeder named {feeder!r} on this unit", {"name": feeder})]
    return []
