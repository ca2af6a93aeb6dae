"""The dashboard: its static page at ``/`` and ``/static/...``, and the views it reads.

The page itself needs no token (it holds no data); everything it shows comes from
``/api/v1`` with the user's bearer token. The views under ``/api/v1/dashboard`` gather
for one screen what would otherwise take many calls (see `controller.dashboard.views`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from controller import alarms
from controller.api.deps import CurrentUser, LangDep, StoreDep, VisibleDevice, Writer, not_found
from controller.api.schemas import WINDOW_DOC, AlarmCounts, _In
from controller.dashboard import STATIC_DIR
from controller.dashboard.views import (
    activity,
    charts,
    check_schedule,
    order_cards,
    unit_view,
)
from controller.store import utcnow

router = APIRouter(tags=["dashboard"])

STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(js|css|html)$")
MEDIA_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
               "html": "text/html; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str, request: Request) -> Response:
    """The file with its ETag; ``no-cache`` makes the browser ask again each time, and an
    unchanged file is answered 304 without a body (the page loads a dozen modules)."""
    path = STATIC_DIR / name
    if not STATIC_NAME.fullmatch(name) or not path.is_file():
        raise not_found(f"file {name!r}")
    stat = path.stat()
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    headers = {**SECURITY_HEADERS, "ETag": etag}
    if etag in (t.strip() for t in request.headers.get("if-none-match", "").split(",")):
        return Response(status_code=304, headers=headers)
    return FileResponse(path, media_type=MEDIA_TYPES[name.rsplit(".", 1)[1]],
                        headers=headers, stat_result=stat)


@router.get("/", include_in_schema=False)
def index(request: Request) -> Response:
    return _file("index.html", request)


@router.get("/static/{name}", include_in_schema=False)
def static(name: str, request: Request) -> Response:
    return _file(name, request)


# --------------------------------------------------------------------------- views

class RunNow(BaseModel):
    zone: str
    since: datetime
    trigger: str | None
    cmd_id: str | None
    planned_s: float | None = Field(None, description="how long it runs (run_started)")


class AlarmNow(BaseModel):
    id: int = Field(description="the alarm record (GET /api/v1/alarms/{id})")
    code: str
    subject: str = Field(description="zone, feeder, pond, output or sensor it concerns, "
                         "if any")
    severity: Literal["critical", "warning", "info"]
    state: Literal["open", "acknowledged"]
    ts: datetime = Field(description="when it was raised")
    last_ts: datetime = Field(description="when it was last raised again")
    count: int = Field(description="how many times the unit raised it")
    message: str


class NextStart(BaseModel):
    known: bool
    source: Literal["unit", "computed"] = Field(
        "computed", description="unit: the outlook of the unit's last status (honours "
        "pause, rain delay and skips); computed: from the schedule the unit applied (a unit "
        "that reports no outlook)")
    reason: str | None = Field(None, description="why unknown; from the unit: paused, "
                               "rain_delay, no_program, clock_not_trusted, none_soon; "
                               "computed: local_schedule (the unit runs its local "
                               "default) or none_within_8_days")
    version: int | None = Field(None, description="schedule version it is computed from")
    at: datetime | None = None
    start: str | None = Field(None, description="as written: 05:30, sunrise-01:00, ...")
    program: str | None = None
    zones: list[dict[str, Any]] | None = None
    pond: str | None = None
    dose_g: float | None = None


class ConfigVersions(BaseModel):
    desired: int | None
    reported: int | None
    state: Literal["none", "pending", "in_sync", "rejected"]


class UnitVersion(BaseModel):
    running: str | None = Field(description="the version the unit reports (status fw)")
    offered: str | None = Field(description="the version a rollout last offered it")
    offer_state: str | None = Field(description="that offer's state (rollout unit state)")
    update_window: str | None = Field(None, description=WINDOW_DOC)


class UnitOut(BaseModel):
    device_id: str
    name: str
    opd: str
    kind: str
    icon: str = Field("drop", description="the kind's icon (protocol.kinds)")
    online: bool
    last_seen: datetime | None
    state: Literal["running", "online", "offline", "alarm"] = Field(
        description="the card's colour: running/online green, offline grey, alarm red")
    running: list[RunNow] = Field(description="runs started and not yet ended")
    runs_ended: dict[str, str] = Field({}, description="how the runs that commands started "
                                       "ended in the last day, by command id: completed, "
                                       "stop_all, stop_zone, paused, max_on_time, ...")
    outputs_on: list[str]
    alarms: list[AlarmNow] = Field(description="its alarms not cleared yet, newest first")
    next: NextStart
    config: ConfigVersions
    version: UnitVersion = Field(description="release running and offered")
    paused: bool
    paused_until: datetime | None = Field(None, description="end of the pause in force, "
                                          "as the unit reports it")
    rain: bool
    rain_delay_h: float
    rain_delay_until: datetime | None = Field(None, description="end of the rain delay in "
                                              "force, as the unit reports it")
    skip_next: list[str] = Field([], description="zones or feeders whose next start is "
                                 "skipped once; * the unit's next start")
    limits: dict[str, Any] | None = Field(None, description="the unit's reported local "
                                          "limits (protocol.models.UnitLimits)")
    today: dict[str, float] = Field(description="water_l (watering) or feed_g (feeders)")
    readings: dict[str, bool | int | float | None]
    readings_ts: datetime | None
    zones: list[str] | None = None
    probed_zones: list[str] | None = None
    feeders: list[str] | None = None
    ponds: list[str] | None = None


class UnitsOut(BaseModel):
    now: datetime
    alarm_counts: AlarmCounts = Field(description="the alarms the caller may see that are "
                                      "not cleared (offline units' unit_offline included)")
    units: list[UnitOut] = Field(description="units with alarms first (critical before "
                                 "warning), then offline ones, then the rest")


class Series(BaseModel):
    name: str
    points: list[tuple[datetime, float]]


class Chart(BaseModel):
    key: str = Field(description="moisture_pct, do_mg_l, temp_c (lines); water_l, feed_kg "
                     "(bars)")
    kind: Literal["line", "bar"]
    unit: str
    series: list[Series] | None = None
    points: list[tuple[datetime, float]] | None = None


class ChartsOut(BaseModel):
    device_id: str
    period: Literal["day", "week", "month"]
    since: datetime
    until: datetime
    bucket_s: int
    bars_per: Literal["hour", "day"]
    charts: list[Chart]


class ActivityItem(BaseModel):
    ts: datetime
    type: str = Field(description="the event's type (run_finished, run_skipped, "
                      "limit_clamped, feed_dispensed, feeding_postponed, ...)")
    details: dict[str, Any] = Field(description="the event's details (a soil_wet skip "
                                    "also with skip_above_pct from the applied schedule)")


class ActivityOut(BaseModel):
    device_id: str
    items: list[ActivityItem] = Field(description="newest first, the last 3 days")


class ScheduleCheckIn(_In):
    body: dict[str, Any]


class Problem(BaseModel):
    field: str
    reason: str


class ScheduleCheckOut(BaseModel):
    ok: bool
    problems: list[Problem]
    next: NextStart | None


@router.get("/api/v1/dashboard/units", response_model=UnitsOut)
def units(store: StoreDep, user: CurrentUser) -> dict:
    """Every unit the caller may see, as the dashboard's cards (operators: their OPD):
    units with alarms first (critical before warning), then offline, then the rest."""
    now = utcnow()
    cards = [unit_view(store, row, now) for row in store.list_devices(opd=user.opd_scope)]
    return {"now": now, "alarm_counts": alarms.counts(store, user.opd_scope),
            "units": order_cards(cards)}


@router.get("/api/v1/dashboard/units/{device_id}", response_model=UnitOut)
def unit(store: StoreDep, device: VisibleDevice) -> dict:
    """One unit's card."""
    return unit_view(store, device)


@router.get("/api/v1/dashboard/units/{device_id}/charts", response_model=ChartsOut)
def unit_charts(store: StoreDep, device: VisibleDevice,
                period: Annotated[Literal["day", "week", "month"], Query()] = "day") -> dict:
    """Sensor lines (averages per bucket) and water or feed bars over the period."""
    return charts(store, device, period)


@router.get("/api/v1/dashboard/units/{device_id}/activity", response_model=ActivityOut)
def unit_activity(store: StoreDep, device: VisibleDevice,
                  limit: Annotated[int, Query(ge=1, le=200)] = 40) -> dict:
    """What the unit did lately and what decided it (runs, skips and why, cuts to its
    limits, feedings, postponements, alarms, schedules applied), newest first."""
    return {"device_id": device["device_id"], "items": activity(store, device, limit)}


@router.post("/api/v1/dashboard/units/{device_id}/schedule/check",
             response_model=ScheduleCheckOut)
def schedule_check(store: StoreDep, device: VisibleDevice, user: Writer,
                   body: ScheduleCheckIn, lang: LangDep) -> dict:
    """Check a schedule body as the unit would, before sending it; nothing is stored.

    For those who may change schedules (viewers: 403, as for every POST)."""
    result = check_schedule(store, device, body.body, lang=lang)
    if result["next"] is not None:
        result["next"] = {"known": True, **result["next"]}
    return result
