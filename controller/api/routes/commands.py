"""Commands: run a zone now, stop all, skip next, pause, resume, rain delay, feed now.

A command is checked against the protocol's `Command` model and the unit's last report
(``controller.checks``), stored ``pending``,
published (QoS 1, never retained) and becomes ``sent`` once the broker took it; the
unit's replies move it to ``accepted``, ``done``, ``failed``, ``rejected`` or
``expired``. Commands nobody answered by ``expires_at`` expire.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from controller.api.deps import (
    CurrentUser,
    LangDep,
    StateDep,
    StoreDep,
    VisibleDevice,
    Writer,
    not_found,
)
from controller.api.schemas import CommandIn, CommandOut
from controller.checks import check_command, detail
from controller.store import utcnow
from protocol.checks import Problem
from protocol.models import COMMAND_ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["commands"])

UPDATE_BY_ROLLOUT = Problem("action", "update_by_rollout", "only a rollout offers a release "
                            "to units (POST /api/v1/rollouts)")


@router.post("/devices/{device_id}/commands", response_model=CommandOut,
             status_code=status.HTTP_202_ACCEPTED)
def send_command(store: StoreDep, state: StateDep, device: VisibleDevice, user: Writer,
                 body: CommandIn, lang: LangDep) -> dict:
    """Send a command to a unit; answers at once with the stored command (pending/sent).

    A command the unit would refuse (an action its kind does not take, a zone or feeder
    it does not report, a pause longer than it accepts) gets 422 naming the field and
    reason in the caller's language, and is neither stored nor published. ``update`` is
    refused (422, ``update_by_rollout``): only a rollout offers a release."""
    if body.action == "update":
        raise HTTPException(422, detail=detail([UPDATE_BY_ROLLOUT], lang))
    now = utcnow()
    ttl_s = body.ttl_s or state.settings.api.command_ttl_s
    command, problems = check_command(device, id=uuid.uuid4().hex, issued_at=now,
                                      expires_at=now + timedelta(seconds=ttl_s),
                                      action=body.action, params=body.params)
    if problems or command is None:
        raise HTTPException(422, detail=detail(problems, lang))
    store.create_command(device["device_id"], command, actor=user.actor, now=now)
    state.publisher.send_command(device["opd"], device["device_id"], command)
    return store.get_command(command.id)


@router.get("/devices/{device_id}/commands", response_model=list[CommandOut])
def list_commands(store: StoreDep, device: VisibleDevice,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    """The device's commands, newest first."""
    return store.list_commands(device["device_id"], limit)


@router.get("/commands/{command_id}", response_model=CommandOut)
def get_command(store: StoreDep, user: CurrentUser,
                command_id: Annotated[str, Path(pattern=COMMAND_ID_PATTERN)]) -> dict:
    """One command with its status and every reply the unit sent."""
    row = store.get_command(command_id)
    if row is None or not user.sees_opd(row["opd"]):
        raise not_found(f"command {command_id!r}")
    return row
