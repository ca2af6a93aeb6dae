"""Schedules: the desired config of a unit against what it reports applied.

Each edit is a new version, published retained on the unit's ``config`` topic; it shows
as ``pending`` until the unit's status reports that version (``in_sync``), or
``rejected`` if the unit refused it.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import ValidationError

from controller.api.deps import StateDep, StoreDep, VisibleDevice, Writer
from controller.api.schemas import DesiredOut, ScheduleIn, ScheduleOut
from controller.api.views import schedule_out
from controller.store import utcnow
from protocol.models import DesiredConfig

router = APIRouter(prefix="/api/v1/devices/{device_id}/schedule", tags=["schedules"])


def validation_422(exc: ValidationError, prefix: tuple[str, ...] = ("body",)) -> HTTPException:
    """A pydantic error on our wire models as FastAPI's usual 422 body."""
    detail = [{"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
              for err in exc.errors(include_url=False, include_context=False,
                                    include_input=False)]
    return HTTPException(422, detail=detail)


@router.get("", response_model=ScheduleOut)
def get_schedule(store: StoreDep, device: VisibleDevice) -> ScheduleOut:
    """The latest desired config, the version the unit reports, and their state."""
    return schedule_out(store, device)


@router.put("", response_model=ScheduleOut)
def put_schedule(store: StoreDep, state: StateDep, device: VisibleDevice, user: Writer,
                 body: ScheduleIn) -> ScheduleOut:
    """Make a new desired config version and push it (retained) to the unit."""
    now = utcnow()
    try:  # the wire model's bounds (depth, size), before anything is stored
        DesiredConfig(version=1, issued_at=now, body=body.body)
    except ValidationError as exc:
        raise validation_422(exc) from None
    row = store.create_desired_config(device["device_id"], body.body, actor=user.actor, now=now)
    state.publisher.push_config(device["opd"], device["device_id"], row["version"], now,
                                row["body"])
    return schedule_out(store, device)


@router.get("/versions", response_model=list[DesiredOut])
def schedule_versions(store: StoreDep, device: VisibleDevice) -> list[dict]:
    """Every desired config version of the device, newest first."""
    return store.desired_config_versions(device["device_id"])
