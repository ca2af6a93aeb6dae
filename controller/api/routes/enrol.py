"""Enrolment: a unit trades a one-time token for its MQTT credentials (no bearer token).

See ``controller.enrolment`` for what happens; ``smartcity-controller enrol create``
makes the tokens and ``smartcity-edge provision`` uses them.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from controller.api.deps import StateDep
from controller.api.schemas import Problem
from controller.enrolment import EnrolmentRefused, enrol

router = APIRouter(prefix="/api/v1", tags=["enrolment"])

STATUS = {
    "unknown": status.HTTP_401_UNAUTHORIZED,
    "used": status.HTTP_409_CONFLICT,
    "conflict": status.HTTP_409_CONFLICT,
    "expired": status.HTTP_410_GONE,
    "not_ready": status.HTTP_503_SERVICE_UNAVAILABLE,
}


class EnrolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=256, description="the one-time enrolment token")
    check_only: bool = Field(False, description="say what the token is for, without using it")


class MqttCredentials(BaseModel):
    host: str
    port: int
    tls: bool
    username: str = Field(description="the device id")
    password: str | None = Field(description="shown in this answer only; null for check_only")


class EnrolOut(BaseModel):
    device_id: str
    opd: str
    kind: str
    name: str
    mqtt: MqttCredentials


@router.post("/enrol", response_model=EnrolOut, responses={
    401: {"model": Problem, "description": "unknown enrolment token"},
    409: {"model": Problem, "description": "token already used, or the device id is "
                                           "registered under another OPD or kind"},
    410: {"model": Problem, "description": "token expired"},
    503: {"model": Problem, "description": "the controller cannot write the broker files"},
})
def enrol_unit(body: EnrolIn, state: StateDep, request: Request) -> EnrolOut:
    """Use a one-time enrolment token: registers the device (or gives it a new MQTT
    password), marks the token used, rewrites the broker's password and ACL files, and
    answers the unit's identity and MQTT credentials. Audited."""
    used_from = request.client.host if request.client else "unknown"
    try:
        result = enrol(state.store, state.settings, body.token, used_from=used_from,
                       check_only=body.check_only)
    except EnrolmentRefused as exc:
        raise HTTPException(STATUS[exc.reason], detail=str(exc)) from None
    return EnrolOut(device_id=result.device_id, opd=result.opd, kind=result.kind,
                    name=result.name,
                    mqtt=MqttCredentials(host=result.broker_host, port=result.broker_port,
                                         tls=result.broker_tls, username=result.username,
                                         password=result.password))
