"""Liveness and metrics (no token needed; keep /metrics behind the proxy if exposed)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from controller.api.deps import StateDep
from controller.api.schemas import Health
from controller.metrics import CONTENT_TYPE

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz(state: StateDep) -> Health:
    """``ok`` when the database answers and (if MQTT is on) the broker is connected."""
    try:
        version = state.store.schema_version
        database = True
    except Exception:  # noqa: BLE001 - a health check reports, never raises
        logger.exception("health check: database not usable")
        version, database = 0, False
    mqtt = state.ingest.connected if state.ingest is not None else None
    ok = database and mqtt is not False
    return Health(status="ok" if ok else "degraded", database=database,
                  schema_version=version, mqtt_connected=mqtt)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}})
def metrics(state: StateDep) -> Response:
    """Prometheus metrics of this controller."""
    state.metrics.devices_online.set(state.store.count_online())
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
