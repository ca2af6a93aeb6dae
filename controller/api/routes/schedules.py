"""Schedules: the desired config of a unit against what it reports applied.

Each edit is a new version, published retained on the unit's ``config`` topic; it shows
as ``pending`` until the unit's status reports that version (``in_sync``), or
``rejected`` if the unit refused it.

A body is checked as the unit would check it (``controller.checks``) before anything is
stored or published: one the unit would refuse gets 422 naming each field and reason, in
the caller's language. ``GET`` answers with an ``ETag`` (the version in force); a ``PUT``
with ``If-Match`` of another version gets 412 and changes nothing. A ``PUT`` without
``If-Match`` is accepted (scripts), and its audit entry says it was not checked.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status
from pydantic import ValidationError

from controller.api.deps import LangDep, StateDep, StoreDep, VisibleDevice, Writer
from controller.api.schemas import DesiredOut, ScheduleIn, ScheduleOut
from controller.api.views import schedule_out
from controller.checks import check_schedule, detail
from controller.errors import Conflict
from controller.store import utcnow
from protocol.models import DesiredConfig

router = APIRouter(prefix="/api/v1/devices/{device_id}/schedule", tags=["schedules"])


def validation_422(exc: ValidationError, prefix: tuple[str, ...] = ("body",)) -> HTTPException:
    """A pydantic error on our wire models as FastAPI's usual 422 body."""
    detail = [{"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
              for err in exc.errors(include_url=False, include_context=False,
                                    include_input=False)]
    return HTTPException(422, detail=detail)


def etag(out: ScheduleOut) -> str:
    """The ETag of a device's schedule: the desired version in force (0: none yet)."""
    return f'"{out.device_id}-v{out.desired.version if out.desired else 0}"'


_ETAG = re.compile(r'^(?:W/)?"(?P<device>[^"]+)-v(?P<version>\d+)"$')


def _based_on(if_match: str, device_id: str) -> int:
    """The version an ``If-Match`` names; 412 when it is no ETag of this schedule."""
    m = _ETAG.match(if_match.strip())
    if m is None or m["device"] != device_id:
        raise HTTPException(status.HTTP_412_PRECONDITION_FAILED,
                            detail=f"If-Match {if_match!r} is not an ETag of this schedule")
    return int(m["version"])


@router.get("", response_model=ScheduleOut)
def get_schedule(store: StoreDep, device: VisibleDevice, response: Response) -> ScheduleOut:
    """The latest desired config, the version the unit reports, and their state."""
    out = schedule_out(store, device)
    response.headers["ETag"] = etag(out)
    return out


@router.put("", response_model=ScheduleOut,
            responses={412: {"description": "If-Match names another version than the one "
                             "in force: nothing changed"},
                       422: {"description": "a schedule the unit would refuse: each field "
                             "and reason (nothing stored or published)"}})
def put_schedule(store: StoreDep, state: StateDep, device: VisibleDevice, user: Writer,
                 body: ScheduleIn, lang: LangDep, response: Response,
                 if_match: Annotated[str | None, Header()] = None) -> ScheduleOut:
    """Make a new desired config version and push it (retained) to the unit."""
    now = utcnow()
    try:  # the wire model's bounds (depth, size), before anything is stored
        DesiredConfig(version=1, issued_at=now, body=body.body)
    except ValidationError as exc:
        raise validation_422(exc) from None
    problems = check_schedule(device, body.body)
    if problems:
        raise HTTPException(422, detail=detail(problems, lang, ("body", "body")))
    based_on = None if if_match is None or if_match.strip() == "*" else _based_on(
        if_match, device["device_id"])
    try:
        row = store.create_desired_config(device["device_id"], body.body, actor=user.actor,
                                          now=now, based_on=based_on)
    except Conflict as exc:
        raise HTTPException(status.HTTP_412_PRECONDITION_FAILED, detail=str(exc)) from None
    state.publisher.push_config(device["opd"], device["device_id"], row["version"], now,
                                row["body"])
    out = schedule_out(store, device)
    response.headers["ETag"] = etag(out)
    return out


@router.get("/versions", response_model=list[DesiredOut])
def schedule_versions(store: StoreDep, device: VisibleDevice) -> list[dict]:
    """Every desired config version of the device, newest first."""
    return store.desired_config_versions(device["device_id"])
