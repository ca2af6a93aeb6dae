"""Alarms: the records of what went wrong, acknowledged and cleared by people.

An alarm is raised by a unit's ``alarm`` event (or by the controller for a unit offline
or with stale data), acknowledged by a person (who, when, a note) and cleared: by the
unit when the condition ends, by the controller for its own alarms, or by a person
(`controller.alarms`). Operators see and change their OPD's alarms only (another OPD's
alarm is 404, as a missing one); viewers read everything and change nothing.

Clearing an alarm that the unit holds locked (a feeder's jam) sends the unit the command
that lifts it (``clear_fault``), through the same path as any command: the answer is 202
with the command, and the alarm is cleared when the unit's ``alarm_cleared`` arrives.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, Field

from controller import alarms
from controller.api.deps import CurrentUser, LangDep, StateDep, StoreDep, Writer
from controller.api.schemas import AlarmCounts, CommandOut, Ident, _In
from controller.checks import Lang, check_command, detail
from controller.errors import Conflict, NotFound
from controller.store import utcnow
from protocol.models import MAX_INT

router = APIRouter(prefix="/api/v1", tags=["alarms"])

AlarmId = Annotated[int, Path(ge=1, le=MAX_INT)]

_TEXT: dict[str, dict[Lang, str]] = {
    "not_found": {"id": "alarm {id} tidak ditemukan", "en": "alarm {id} not found"},
    "cleared": {"id": "alarm {id} sudah ditutup pada {at}",
                "en": "alarm {id} was cleared at {at}"},
}


class AlarmOut(BaseModel):
    id: int
    device_id: str
    device_name: str
    opd: str
    kind: str
    code: str = Field(description="the alarm code (docs/protocol.md, Alarm codes)")
    subject: str = Field(description="zone, feeder, pond, output or sensor it concerns, or ''")
    severity: Literal["critical", "warning", "info"]
    state: Literal["open", "acknowledged", "cleared"]
    raised_at: datetime
    last_raised_at: datetime
    count: int = Field(description="how many times it was raised while not cleared")
    details: dict[str, Any] = Field(description="the facts of its latest raise")
    acked_by: str | None
    acked_at: datetime | None
    ack_note: str | None
    cleared_at: datetime | None
    cleared_by: str | None = Field(description="unit, controller, or person:<user>")
    clear_note: str | None
    clear_command: str | None = Field(description="the command sent to clear it on the "
                                      "unit, if one was")


class AlarmNote(_In):
    """An optional body: ``{"note": "..."}``."""

    note: str = Field("", max_length=500, description="what was seen or done")


class AlarmCleared(BaseModel):
    alarm: AlarmOut
    command: CommandOut | None = Field(
        None, description="the command sent to the unit (202): the alarm clears when the "
        "unit reports the condition cleared")


def _visible(store, user, alarm_id: int, lang: Lang) -> dict[str, Any]:
    alarm = alarms.get_alarm(store, alarm_id)
    if alarm is None or not user.sees_opd(alarm["opd"]):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=_TEXT["not_found"][lang].format(id=alarm_id))
    return alarm


def _changing(store, user, alarm_id: int, lang: Lang) -> dict[str, Any]:
    alarm = _visible(store, user, alarm_id, lang)
    if alarm["state"] == "cleared":
        raise _cleared(alarm, lang)
    return alarm


def _cleared(alarm: dict[str, Any], lang: Lang) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=_TEXT["cleared"][lang].format(
        id=alarm["id"], at=alarm["cleared_at"]))


@router.get("/alarms", response_model=list[AlarmOut])
def list_alarms(store: StoreDep, user: CurrentUser,
                state: Literal["open", "acknowledged", "cleared", "all"] | None = None,
                device_id: Ident | None = None, opd: Ident | None = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    """Alarms the caller may see, newest first: by default those not cleared yet (open or
    acknowledged); ``state`` picks one state or ``all`` (operators: their OPD only)."""
    if user.opd_scope is not None:
        if opd is not None and opd != user.opd_scope:
            return []
        opd = user.opd_scope
    return alarms.list_alarms(store, state=state or "active", opd=opd, device_id=device_id,
                              limit=limit)


@router.get("/alarms/counts", response_model=AlarmCounts)
def alarm_counts(store: StoreDep, user: CurrentUser) -> dict:
    """How many alarms the caller may see are not cleared (offline units'
    ``unit_offline`` included): the dashboard's header reads it on every page."""
    return alarms.counts(store, user.opd_scope)


@router.get("/alarms/{alarm_id}", response_model=AlarmOut)
def get_alarm(store: StoreDep, user: CurrentUser, alarm_id: AlarmId, lang: LangDep) -> dict:
    """One alarm record."""
    return _visible(store, user, alarm_id, lang)


@router.post("/alarms/{alarm_id}/ack", response_model=AlarmOut)
def ack_alarm(store: StoreDep, user: Writer, alarm_id: AlarmId, lang: LangDep,
              body: AlarmNote | None = None) -> dict:
    """Acknowledge an alarm: someone has seen it (who, when, a note). Acknowledging it
    again changes nothing; a cleared alarm is 409."""
    alarm = _changing(store, user, alarm_id, lang)
    note = body.note if body else ""
    try:
        return alarms.acknowledge(store, alarm_id, user=user.user, actor=user.actor,
                                  note=note, now=utcnow())
    except (Conflict, NotFound):  # cleared (or gone) since it was read
        raise _cleared(alarms.get_alarm(store, alarm_id) or alarm, lang) from None


@router.post("/alarms/{alarm_id}/clear", response_model=AlarmCleared,
             responses={202: {"model": AlarmCleared,
                              "description": "the command that clears it was sent"}})
def clear_alarm(store: StoreDep, state: StateDep, user: Writer, alarm_id: AlarmId,
                lang: LangDep, response: Response, body: AlarmNote | None = None) -> dict:
    """Clear an alarm. A latched or controller-raised alarm is cleared at once (200). An
    alarm the unit holds locked until a command (a feeder's jam: ``clear_fault``) gets
    that command, sent as any command (202 with the command); the alarm clears when the
    unit reports it cleared. A cleared alarm is 409."""
    alarm = _changing(store, user, alarm_id, lang)
    wanted = alarms.clear_command(alarm)
    note = body.note if body else ""
    now = utcnow()
    try:
        if wanted is None:
            return {"alarm": alarms.clear(store, alarm_id, user=user.user, actor=user.actor,
                                          note=note, now=now)}
        device = store.get_device(alarm["device_id"])
        action, params = wanted
        ttl_s = state.settings.api.command_ttl_s
        command, problems = check_command(device, id=uuid.uuid4().hex, issued_at=now,
                                          expires_at=now + timedelta(seconds=ttl_s),
                                          action=action, params=params)
        if problems or command is None:
            raise HTTPException(422, detail=detail(problems, lang, prefix=("alarm",)))
        store.create_command(device["device_id"], command, actor=user.actor, now=now)
        marked = alarms.mark_clear_requested(store, alarm_id, command.id, actor=user.actor,
                                             note=note, now=now)
        state.publisher.send_command(device["opd"], device["device_id"], command)
    except (Conflict, NotFound):  # cleared (or gone) since it was read
        raise _cleared(alarms.get_alarm(store, alarm_id) or alarm, lang) from None
    response.status_code = status.HTTP_202_ACCEPTED
    return {"alarm": marked, "command": store.get_command(command.id)}
