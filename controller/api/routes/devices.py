"""Devices: the registry and each unit's latest state."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from controller.api.deps import AdminUser, CurrentUser, StoreDep, VisibleDevice
from controller.api.schemas import DeviceCreate, DeviceCreated, DeviceOut, Ident, OpdOut
from controller.api.views import device_out
from controller.broker_files import mosquitto_hash, new_password

router = APIRouter(prefix="/api/v1", tags=["devices"])


@router.get("/devices", response_model=list[DeviceOut])
def list_devices(store: StoreDep, user: CurrentUser, opd: Ident | None = None,
                 online: bool | None = None) -> Response:
    """Every device the caller may see, with its state (operators: their OPD only)."""
    if user.opd_scope is not None:
        if opd is not None and opd != user.opd_scope:
            return Response(b"[]", media_type="application/json")
        opd = user.opd_scope
    # The body comes straight from SQLite (same shape as DeviceOut; the schema above
    # documents it): thousands of devices in a few milliseconds.
    return Response(store.list_devices_json(opd=opd, online=online),
                    media_type="application/json")


@router.get("/devices/{device_id}", response_model=DeviceOut)
def get_device(store: StoreDep, device: VisibleDevice) -> DeviceOut:
    """One device and its state: online, last seen, outputs, config and seq accounting."""
    return device_out(store, device)


@router.post("/devices", response_model=DeviceCreated, status_code=status.HTTP_201_CREATED)
def add_device(store: StoreDep, user: AdminUser, body: DeviceCreate) -> DeviceCreated:
    """Register a device and make its MQTT password (shown once). Admins only.

    Run ``smartcity-controller mqtt-acl`` afterwards so the broker lets it in.
    """
    password = new_password()
    row = store.add_device(body.device_id, body.opd, kind=body.kind, name=body.name,
                           mqtt_password_hash=mosquitto_hash(password, body.device_id),
                           actor=user.actor)
    return DeviceCreated(device=device_out(store, row), mqtt_username=row["mqtt_username"],
                         mqtt_password=password)


@router.get("/opds", response_model=list[OpdOut])
def list_opds(store: StoreDep, user: CurrentUser) -> list[dict]:
    """The departments (OPDs) the caller may see."""
    return store.list_opds(user.opd_scope)
