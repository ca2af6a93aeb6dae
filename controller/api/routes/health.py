"""Liveness and metrics (no token needed; keep /metrics behind the proxy if exposed)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from controller.api.deps import StateDep
from controller.api.schemas import Health
from controller.metrics import CONTENT_TYPE

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health,
            responses={503: {"model": Health, "description": "the controller is failing"}})
def healthz(state: StateDep, response: Response) -> Health:
    """200 ``ok`` when the database answers and the ingest runs connected; 200
    ``degraded`` while the broker has been unreachable for less than
    ``api.health_broker_grace_s``; 503 ``failing`` past that, or when the database does
    not answer or the ingest's writer has stopped (``problems`` says which). ``leader``
    says whether this instance runs the periodic work now (docs/scaling.md)."""
    problems: list[str] = []
    try:
        version = state.store.schema_version
        database = True
    except Exception as exc:  # noqa: BLE001 - a health check reports, never raises
        logger.exception("health check: database not usable")
        version, database = 0, False
        problems.append(f"database not usable: {exc}")
    ingest = state.ingest
    mqtt = ingest.connected if ingest is not None else None
    degraded = []
    if ingest is not None:
        problems += ingest.problems()
        if not mqtt:
            down_s = ingest.unreachable_s()
            grace_s = state.settings.api.health_broker_grace_s
            (problems if down_s > grace_s else degraded).append(
                f"broker unreachable for {down_s:.0f} s (grace {grace_s:g} s)")
    if problems:
        response.status_code = 503
    status = "failing" if problems else "degraded" if degraded else "ok"
    leader = state.leader.leading if state.leader is not None else None
    return Health(status=status, database=database, schema_version=version,
                  mqtt_connected=mqtt, leader=leader, problems=problems or degraded)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}})
def metrics(state: StateDep) -> Response:
    """Prometheus metrics of this controller."""
    state.metrics.devices_online.set(state.store.count_online())
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
