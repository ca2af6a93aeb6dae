"""History: telemetry samples, events and daily roll-ups of one device.

Pages are in seq order; pass ``next_after_seq`` as ``after_seq`` to get the next page.
Times are UTC (a time without offset is taken as UTC); ``since <= ts < until``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from controller.api.deps import StateDep, StoreDep, VisibleDevice
from controller.api.schemas import AfterSeq, DailyOut, EventPage, QueryTime, TelemetryPage
from protocol.models import EventType

router = APIRouter(prefix="/api/v1/devices/{device_id}", tags=["history"])

Limit = Annotated[int, Query(ge=1, le=100_000, description="items per page")]
Day = Annotated[str, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")]


def _page(rows: list[dict], limit: int) -> int | None:
    return rows[-1]["seq"] if len(rows) == limit else None


@router.get("/telemetry", response_model=TelemetryPage)
def telemetry(store: StoreDep, state: StateDep, device: VisibleDevice,
              since: QueryTime | None = None, until: QueryTime | None = None,
              after_seq: AfterSeq = 0, limit: Limit = 100) -> TelemetryPage:
    """Telemetry samples (readings and output states)."""
    limit = min(limit, state.settings.api.max_page)
    rows = store.telemetry(device["device_id"], since=since, until=until, after_seq=after_seq,
                           limit=limit)
    return TelemetryPage(items=rows, next_after_seq=_page(rows, limit))


@router.get("/events", response_model=EventPage)
def events(store: StoreDep, state: StateDep, device: VisibleDevice,
           since: QueryTime | None = None, until: QueryTime | None = None,
           type: EventType | None = None, after_seq: AfterSeq = 0,
           limit: Limit = 100) -> EventPage:
    """Events (runs, feedings, alarms, config applied or rejected, ...)."""
    limit = min(limit, state.settings.api.max_page)
    rows = store.events(device["device_id"], since=since, until=until, after_seq=after_seq,
                        type=type.value if type else None, limit=limit)
    return EventPage(items=rows, next_after_seq=_page(rows, limit))


@router.get("/telemetry/daily", response_model=list[DailyOut])
def telemetry_daily(store: StoreDep, device: VisibleDevice, since_day: Day | None = None,
                    until_day: Day | None = None) -> list[dict]:
    """Daily roll-ups (UTC days) of numeric readings: samples, min, max, average.

    Kept after raw telemetry passes its retention.
    """
    return store.telemetry_daily(device["device_id"], since_day=since_day, until_day=until_day)
