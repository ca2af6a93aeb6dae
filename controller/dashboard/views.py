"""What the dashboard shows, assembled from the store (no SQL here).

- `unit_view`: one unit as a card: online, what runs now, the next scheduled start,
  its alarms not cleared (`controller.alarms` records), today's water or feed, its
  zones, feeders and ponds.
- `order_cards`: units with alarms first (critical before warning), then offline ones,
  then the rest.
- `charts`: the series of a unit's page over a day, a week or a month.
- `check_schedule`: a schedule body checked with the very models the unit checks it with
  (the kind's schedule model in `protocol.kinds`) plus the zone, pond and sensor names
  the unit reports, before anything is sent.

"Next start" is the unit's own word: the ``outlook`` of its last status (the holds in
force: pause, rain delay, skips; the next start honouring them, or why there is none),
which a unit publishes as soon as it changes. For a unit that does not report an
outlook (older firmware), or whose reported next start has passed (it is offline), it
is computed from the schedule version the unit *reports applied* (the desired config it
accepted), with the same planner the unit uses (`protocol.planner.StartPlanner`);
sunrise and sunset starts use Balikpapan's coordinates. A unit on its local default
schedule (it never accepted a remote one) then has no next start here: the page says
the schedule is local.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from controller import alarms, checks
from controller.api.views import config_state
from controller.checks import Lang
from controller.reports import WITA, feed_given_g, typed_details
from controller.store import Store, utcnow
from protocol.events import RunInterrupted, RunStarted
from protocol.kinds import KINDS
from protocol.kinds.fish_feeder import RemoteBody
from protocol.kinds.irrigation import IrrigationProgramConfig
from protocol.planner import Plan, Site, StartPlanner
from protocol.site import DEFAULT_SITE

logger = logging.getLogger(__name__)

RUN_WINDOW = timedelta(hours=24)
BALIKPAPAN = Site(DEFAULT_SITE.tz, DEFAULT_SITE.latitude, DEFAULT_SITE.longitude)

Period = Literal["day", "week", "month"]
PERIODS: dict[str, tuple[timedelta, int, str]] = {
    # span, line bucket (s), bar bucket
    "day": (timedelta(days=1), 900, "hour"),
    "week": (timedelta(days=7), 2 * 3600, "day"),
    "month": (timedelta(days=30), 6 * 3600, "day"),
}


def _ts(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _places(readings: dict[str, Any], prefix: str) -> list[str]:
    return sorted(k.split(".", 1)[1] for k in readings if k.startswith(prefix + "."))


# --------------------------------------------------------------------------- unit card

def unit_view(store: Store, device: dict, now: datetime | None = None) -> dict[str, Any]:
    """One unit as the dashboard shows it (see the module docstring)."""
    now = now or utcnow()
    dev = device["device_id"]
    latest = store.latest_telemetry(dev)
    readings = latest["readings"] if latest else {}
    running, ended = _runs(store, dev, now)
    if not device["online"]:
        running = []
    alarms = active_alarms(store, dev, now)
    outputs_on = sorted(k for k, v in (device["outputs"] or {}).items() if v)
    if not device["online"]:
        state = "offline"
    elif alarms:
        state = "alarm"
    elif running or outputs_on:
        state = "running"
    else:
        state = "online"
    names = _names(device["kind"], readings)
    desired = device["desired_config_version"]
    reported = device["reported_config_version"]
    today: dict[str, float] = {}
    if device["kind"] == "irrigation" and "water_l_today" in readings:
        today["water_l"] = readings["water_l_today"]
    if device["kind"] == "fish_feeder":
        ponds = names.get("ponds", [])
        today["feed_g"] = round(sum(_number(readings.get(f"feed_g_today.{p}")) for p in ponds), 1)
    return {
        "device_id": dev, "name": device["name"] or dev, "opd": device["opd"],
        "kind": device["kind"], "online": device["online"], "last_seen": device["last_seen"],
        "icon": KINDS[device["kind"]].icon if device["kind"] in KINDS else "drop",
        "state": state, "running": running, "outputs_on": outputs_on, "alarms": alarms,
        "runs_ended": ended,
        "next": next_start(store, device, now),
        "version": store.device_version(dev),
        "config": {"desired": desired, "reported": reported,
                   "state": config_state(store, dev, desired, reported)[0]},
        **holds(device, readings, now),
        "limits": device.get("limits"),
        "today": today, "readings": readings, "readings_ts": latest["ts"] if latest else None,
        **names,
    }


def holds(device: dict, readings: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Pause, rain and rain delay: from the unit's outlook when it reports one (at once),
    else from its last telemetry."""
    outlook = device.get("outlook") or {}
    paused_until = _future(outlook.get("paused_until"), now)
    rain_until = _future(outlook.get("rain_delay_until"), now)
    out = {"paused_until": paused_until, "rain_delay_until": rain_until,
           "skip_next": list(outlook.get("skip_next") or []),
           "rain": bool(readings.get("rain"))}
    if outlook:
        out["paused"] = paused_until is not None
        out["rain_delay_h"] = (round((rain_until - now).total_seconds() / 3600, 1)
                               if rain_until else 0.0)
    else:
        out["paused"] = bool(readings.get("paused"))
        out["rain_delay_h"] = _number(readings.get("rain_delay_h"))
    return out


def _future(value: str | None, now: datetime) -> datetime | None:
    if not value:
        return None
    at = _ts(value)
    return at if at > now else None


_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def card_rank(card: dict[str, Any]) -> tuple[int, int]:
    """Where a card goes in the list: (0, severity) with alarms, (1, 0) offline, (2, 0)."""
    if card["alarms"]:
        return 0, min(_SEVERITY_RANK.get(a["severity"], 2) for a in card["alarms"])
    return (1, 0) if not card["online"] else (2, 0)


def order_cards(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Units with alarms first (critical before warning), then offline, then the rest;
    by device id within each."""
    return sorted(cards, key=lambda c: (card_rank(c), c["device_id"]))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else 0.0


def _names(kind: str, readings: dict[str, Any]) -> dict[str, list[str]]:
    if kind == "irrigation":
        return {"zones": _places(readings, "water_l_today"),
                "probed_zones": sorted(set(_places(readings, "moisture_pct"))
                                       | set(_places(readings, "moisture_stale")))}
    feeders = _places(readings, "feeder_locked")
    ponds = sorted(set(_places(readings, "feed_g_today")) - set(feeders))
    return {"feeders": feeders, "ponds": ponds}


def _runs(store: Store, device_id: str, now: datetime
          ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Runs started and not yet ended (an interrupted run that resumes stays running),
    and how the runs of commands ended (``{cmd_id: ended}``: completed, stop_all,
    paused, ...) within the last day."""
    events = store.recent_events(device_id, now - RUN_WINDOW,
                                 ("run_started", "run_finished", "run_skipped",
                                  "run_interrupted"))
    runs: dict[str, dict[str, Any]] = {}
    ended: dict[str, str] = {}
    for event in reversed(events):  # oldest first
        d = typed_details(event)
        if d is None or not d.run_id or not d.zone:
            continue
        if isinstance(d, RunStarted):
            runs[d.run_id] = {"zone": d.zone, "since": event["ts"], "trigger": d.trigger,
                              "cmd_id": d.cmd_id, "planned_s": d.planned_s}
        elif isinstance(d, RunInterrupted) and d.action == "resumed":
            continue
        else:
            runs.pop(d.run_id, None)
            if d.cmd_id:
                how = getattr(d, "ended", None) or getattr(d, "reason", None)
                ended[d.cmd_id] = how or event["type"]
    return sorted(runs.values(), key=lambda r: r["since"]), ended


def active_alarms(store: Store, device_id: str, now: datetime | None = None
                  ) -> list[dict[str, Any]]:
    """The unit's alarms not cleared (open or acknowledged; `controller.alarms`), newest
    first. ``now`` is kept for callers; a record stays until it is cleared."""
    out = []
    for a in alarms.list_alarms(store, device_id=device_id, limit=1000):
        message = a["details"].get("message")
        out.append({"id": a["id"], "code": a["code"], "subject": a["subject"],
                    "severity": a["severity"], "state": a["state"], "ts": a["raised_at"],
                    "last_ts": a["last_raised_at"], "count": a["count"],
                    "message": message if isinstance(message, str) else ""})
    return out


# --------------------------------------------------------------------------- next start

def next_start(store: Store, device: dict, now: datetime | None = None) -> dict[str, Any]:
    """The next scheduled start (or feeding) as the unit reports it in its outlook, or
    else by the schedule the unit reports applied (see the module doc).

    From the outlook: ``{"known": true, "source": "unit", "at", "program" | "pond",
    "start"}`` (with the program's zones or the feeding's dose when the applied schedule
    has them), or ``{"known": false, "source": "unit", "reason"}`` with the unit's reason
    (``paused``, ``rain_delay``, ``no_program``, ``clock_not_trusted``, ``none_soon``).
    Computed: ``{"known": false, "reason": "local_schedule"}`` when the unit runs its
    local default, ``"none_within_8_days"`` when the schedule has no start soon.
    """
    now = now or utcnow()
    version = device["reported_config_version"]
    outlook = device.get("outlook") or {}
    reported = outlook.get("next_start")
    if reported and _ts(reported["at"]) > now:
        found = {"known": True, "source": "unit", "version": version,
                 "at": _ts(reported["at"]),
                 **{k: reported.get(k) for k in ("program", "pond", "start")}}
        found.update(_plan_details(store, device, version, reported))
        return found
    if not reported and outlook.get("next_start_reason") and device["online"]:
        return {"known": False, "source": "unit", "reason": outlook["next_start_reason"],
                "version": version}
    config = store.desired_config(device["device_id"], version) if version else None
    if config is None:
        return {"known": False, "reason": "local_schedule", "version": version}
    found = next_from_body(device["kind"], config["body"], now)
    if found is None:
        return {"known": False, "reason": "none_within_8_days", "version": version}
    return {"known": True, "version": version, **found}


def _plan_details(store: Store, device: dict, version: int | None, reported: dict
                  ) -> dict[str, Any]:
    """The zones of the program, or the dose of the feeding, the unit says starts next,
    from the schedule version it applied (nothing when it runs its local one)."""
    config = store.desired_config(device["device_id"], version) if version else None
    if config is None:
        return {}
    body = config["body"]
    if reported.get("program"):
        for program in body.get("programs") or []:
            if program.get("name") == reported["program"]:
                return {"zones": [{"zone": z.get("zone"), "duration_min": z.get("duration_min")}
                                  for z in program.get("zones") or []]}
    if reported.get("pond"):
        plan = ((body.get("ponds") or {}).get(reported["pond"]) or {}).get("plan") or {}
        times, doses = plan.get("times") or [], plan.get("doses_g") or []
        if reported.get("start") in times and len(doses) == len(times):
            return {"dose_g": doses[times.index(reported["start"])]}
    return {}


def next_from_body(kind: str, body: dict, now: datetime) -> dict[str, Any] | None:
    """The first start after ``now`` of a schedule body, or None (none, or invalid)."""
    try:
        if kind == "irrigation":
            program = IrrigationProgramConfig.model_validate(body)
            planned = StartPlanner([Plan.of(p) for p in program.programs],
                                   BALIKPAPAN).next_after(now)
            if planned is None:
                return None
            spec = next(p for p in program.programs if p.name == planned.program)
            return {"at": planned.at.astimezone(UTC), "program": planned.program,
                    "start": planned.start,
                    "zones": [{"zone": z.zone, "duration_min": z.duration_min}
                              for z in spec.zones]}
        remote = RemoteBody.model_validate(body)
    except (ValidationError, ValueError):
        return None
    best: dict[str, Any] | None = None
    local_today = now.astimezone(WITA).date()
    for pond, change in remote.ponds.items():
        if change.plan is None:
            continue
        for i, text in enumerate(change.plan.times):
            hh, mm = (int(x) for x in text.split(":"))
            for day in (local_today, local_today + timedelta(days=1)):
                at = datetime.combine(day, time(hh, mm), tzinfo=WITA)
                if at > now and (best is None or at < best["at"]):
                    dose = change.plan.doses_g[i] if change.plan.doses_g else None
                    best = {"at": at.astimezone(UTC), "pond": pond, "start": text,
                            "dose_g": dose}
                    break
    return best


# --------------------------------------------------------------------------- activity

ACTIVITY_TYPES = ("run_started", "run_finished", "run_skipped", "run_interrupted",
                  "limit_clamped", "feed_dispensed", "feeding_postponed", "feeding_skipped",
                  "alarm", "alarm_cleared", "config_applied", "config_rejected")
ACTIVITY_WINDOW = timedelta(days=3)


def activity(store: Store, device: dict, limit: int = 40, now: datetime | None = None
             ) -> list[dict[str, Any]]:
    """The unit's recent events that say what it did and what decided it, newest first:
    ``{"ts", "type", "details"}``. A run skipped because the soil was wet gets the
    threshold it was held against (``skip_above_pct``, from the schedule the unit
    applied) when the unit did not send it."""
    now = now or utcnow()
    rows = store.recent_events(device["device_id"], now - ACTIVITY_WINDOW, ACTIVITY_TYPES,
                               limit)
    program = None
    out = []
    for row in rows:
        details = dict(row["details"] or {})
        if (row["type"] == "run_skipped" and details.get("reason") == "soil_wet"
                and "skip_above_pct" not in details and details.get("zone")):
            if program is None:
                program = _applied_program(store, device) or False
            if program:
                rule = program.rules_for(details["zone"]).moisture
                if rule is not None:
                    details["skip_above_pct"] = rule.skip_above_pct
        out.append({"ts": row["ts"], "type": row["type"], "details": details})
    return out


def _applied_program(store: Store, device: dict) -> IrrigationProgramConfig | None:
    version = device["reported_config_version"]
    config = store.desired_config(device["device_id"], version) if version else None
    if config is None or device["kind"] != "irrigation":
        return None
    try:
        return IrrigationProgramConfig.model_validate(config["body"])
    except (ValidationError, ValueError):
        return None


# --------------------------------------------------------------------------- charts

def charts(store: Store, device: dict, period: Period, now: datetime | None = None
           ) -> dict[str, Any]:
    """Line series (sensor averages per bucket) and bars (water or feed per hour or
    WITA day) of one unit over ``period`` ending now."""
    now = now or utcnow()
    span, bucket_s, bar_unit = PERIODS[period]
    epoch = int((now - span).timestamp())
    since = datetime.fromtimestamp(epoch - epoch % bucket_s, UTC)
    kind = device["kind"]
    quantities = KINDS[kind].charts if kind in KINDS else ()
    rows = store.telemetry_buckets(device["device_id"], since, now, bucket_s,
                                   [q for q, _ in quantities])
    out = []
    for quantity, unit in quantities:
        series: dict[str, list[list[Any]]] = {}
        for row in rows:
            name, _, place = row["reading"].partition(".")
            if name != quantity:
                continue
            at = since + timedelta(seconds=row["bucket"] * bucket_s)
            series.setdefault(place, []).append([at, round(row["avg"], 2)])
        out.append({"key": quantity, "kind": "line", "unit": unit,
                    "series": [{"name": k, "points": v} for k, v in sorted(series.items())]})
    if kind == "irrigation":
        events = store.recent_events(device["device_id"], since, ("run_finished",), 100_000)
        out.append(_bars("water_l", "L", events, lambda d: _number(d.get("litres")),
                         since, now, bar_unit))
    else:
        events = store.recent_events(device["device_id"], since, ("feed_dispensed",), 100_000)
        out.append(_bars("feed_kg", "kg", events, lambda d: feed_given_g(d) / 1000,
                         since, now, bar_unit))
    return {"device_id": device["device_id"], "period": period, "since": since, "until": now,
            "bucket_s": bucket_s, "bars_per": bar_unit, "charts": out}


def _bars(key: str, unit: str, events: Iterable[dict], amount, since: datetime,
          until: datetime, per: str) -> dict[str, Any]:
    """Sum ``amount(details)`` of events per local hour or WITA day, every bucket shown."""
    def bucket(t: datetime) -> datetime:
        local = t.astimezone(WITA)
        local = local.replace(minute=0, second=0, microsecond=0)
        if per == "day":
            local = local.replace(hour=0)
        return local

    step = timedelta(hours=1) if per == "hour" else timedelta(days=1)  # WITA has no DST
    totals: dict[datetime, float] = {}
    at = bucket(since)
    while at < until:
        totals[at] = 0.0
        at += step
    for event in events:
        b = bucket(_ts(event["ts"]))
        if b in totals:
            totals[b] += amount(event["details"])
    return {"key": key, "kind": "bar", "unit": unit,
            "points": [[b.astimezone(UTC), round(v, 3)] for b, v in totals.items()]}


# --------------------------------------------------------------------------- schedules

def check_schedule(store: Store, device: dict, body: dict[str, Any],
                   now: datetime | None = None, lang: Lang = "en") -> dict[str, Any]:
    """``{"ok", "problems": [{"field", "reason"}], "next"}`` for a schedule body: the
    checks of ``PUT .../schedule`` (``controller.checks``), nothing stored."""
    now = now or utcnow()
    problems = checks.check_schedule(device, body)
    if problems:
        return {"ok": False, "next": None,
                "problems": [{"field": p.field, "reason": checks.message(p, lang)}
                             for p in problems]}
    return {"ok": True, "problems": [], "next": next_from_body(device["kind"], body, now)}
