"""Assembling an OPD's monthly report (`monthly_report`) from the store's rows: watering,
fisheries and feed conversion, uptime, alarms."""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from controller.errors import Invalid
from controller.reports.models import (
    MAX_ALARM_ITEMS,
    MONTH_PATTERN,
    MONTHS,
    PILLAR_BY_KIND,
    STOPPED_ON_PURPOSE,
    TEXT,
    WITA,
    AlarmItem,
    Alarms,
    FeedConversion,
    Fisheries,
    FisheriesSite,
    FisheriesTotals,
    Lang,
    MonthlyReport,
    Period,
    Pond,
    UnitAlarms,
    UnitUptime,
    Uptime,
    Watering,
    WateringSite,
    WateringTotals,
    ZoneFigures,
)
from controller.store import Store, utcnow
from protocol.errors import ProtocolError
from protocol.events import (
    Alarm,
    FeedDispensed,
    Feeding,
    RunFinished,
    RunInterrupted,
    RunSkipped,
    details_of,
)
from protocol.kinds import KINDS

logger = logging.getLogger(__name__)

_RUN_EVENTS = ("run_finished", "run_skipped", "run_interrupted")
_FEED_EVENTS = ("feed_dispensed", "feeding_postponed", "feeding_skipped")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``"2026-11"`` -> (1 Nov 00:00 WITA, 1 Dec 00:00 WITA) as UTC datetimes."""
    if not re.fullmatch(MONTH_PATTERN, month):
        raise Invalid("month must be YYYY-MM (2000-2099), e.g. 2026-11", field="month")
    year, mon = int(month[:4]), int(month[5:])
    start = datetime(year, mon, 1, tzinfo=WITA)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=WITA)
    return start.astimezone(UTC), end.astimezone(UTC)


def report_title(opd: str, month: str, lang: Lang = "id") -> str:
    """``Laporan Pelaksanaan Smart City — DLH — November 2026``."""
    year, mon = int(month[:4]), int(month[5:])
    return f"{TEXT[lang]['title']} — {opd.upper()} — {MONTHS[lang][mon - 1]} {year}"


def monthly_report(store: Store, opd: str, month: str, *, lang: Lang = "id",
                   now: datetime | None = None) -> MonthlyReport:
    """Assemble the report of ``opd`` for ``month`` (``YYYY-MM``, WITA)."""
    now = now or utcnow()
    start, end = month_bounds(month)
    until = max(start, min(end, now))
    opds = store.list_opds(opd)
    devices = store.list_devices(opd=opd)
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for device in devices:
        by_kind[device["kind"]].append(device)
    events = store.opd_events(opd, start, until, (*_RUN_EVENTS, *_FEED_EVENTS, "alarm"))
    per_device: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        per_device[event["device_id"]].append(event)
    watering = (_watering(by_kind["irrigation"], per_device, lang)
                if by_kind.get("irrigation") else None)
    fisheries = (_fisheries(store, by_kind["fish_feeder"], per_device, start, until, lang)
                 if by_kind.get("fish_feeder") else None)
    pillars = [PILLAR_BY_KIND[k] for k in KINDS if by_kind.get(k)]
    return MonthlyReport(
        title=report_title(opd, month, lang), opd=opd,
        opd_name=(opds[0]["name"] if opds else "") or opd.upper(), month=month, lang=lang,
        addressed_to=TEXT[lang]["to"], pillars=pillars,
        period=Period(start=start, end=end, partial=now < end, until=until),
        generated_at=now, units=len(devices), watering=watering, fisheries=fisheries,
        uptime=_uptime(store, devices, start, until), alarms=_alarms(devices, per_device))


def _site(device: dict) -> str:
    return device["name"] or device["device_id"]


def _round(value: float, places: int = 1) -> float:
    return round(value + 0.0, places)


def _watering(devices: list[dict], per_device: dict[str, list[dict]], lang: Lang) -> Watering:
    totals = WateringTotals(units=len(devices))
    stopped_all: Counter[str] = Counter()
    skipped_all: Counter[str] = Counter()
    failed_all: Counter[str] = Counter()
    sites = []
    for device in devices:
        zones: dict[str, ZoneFigures] = {}
        stopped: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        by_trigger: Counter[str] = Counter()
        litres = seconds = 0.0

        def zone(name: object, zones=zones) -> ZoneFigures:
            key = str(name or "?")
            return zones.setdefault(key, ZoneFigures(zone=key))

        for event in per_device.get(device["device_id"], []):
            d = typed_details(event)
            if isinstance(d, RunFinished):
                z = zone(d.zone)
                z.water_l += d.litres or 0.0
                z.water_min += (d.duration_s or 0.0) / 60
                litres += d.litres or 0.0
                seconds += d.duration_s or 0.0
                if d.ended == "completed":
                    z.done += 1
                    by_trigger[d.trigger or "unknown"] += 1
                elif d.ended in STOPPED_ON_PURPOSE:
                    z.stopped += 1
                    stopped[d.ended] += 1
                else:
                    z.failed += 1
                    failed[d.ended or "unknown"] += 1
            elif isinstance(d, RunSkipped):
                names = [d.zone] if d.zone else list(d.zones or ["?"])
                for name in names:
                    zone(name).skipped += 1
                skipped[d.reason or "unknown"] += len(names)
            elif isinstance(d, RunInterrupted) and d.action == "dropped" and d.feeder is None:
                zone(d.zone).failed += 1
                failed["interrupted"] += 1
        site = WateringSite(
            device_id=device["device_id"], site=_site(device), water_l=_round(litres),
            water_min=_round(seconds / 60), zones=[
                z.model_copy(update={"water_l": _round(z.water_l),
                                     "water_min": _round(z.water_min)})
                for _, z in sorted(zones.items())],
            done=sum(z.done for z in zones.values()),
            stopped=sum(z.stopped for z in zones.values()),
            skipped=sum(z.skipped for z in zones.values()),
            failed=sum(z.failed for z in zones.values()),
            stopped_reasons=dict(stopped.most_common()),
            skipped_reasons=dict(skipped.most_common()),
            failed_reasons=dict(failed.most_common()), done_by_trigger=dict(by_trigger))
        sites.append(site)
        totals.water_l += litres
        totals.water_min += seconds / 60
        totals.done += site.done
        totals.stopped += site.stopped
        totals.skipped += site.skipped
        totals.failed += site.failed
        stopped_all.update(stopped)
        skipped_all.update(skipped)
        failed_all.update(failed)
    totals.water_l, totals.water_min = _round(totals.water_l), _round(totals.water_min)
    return Watering(programme=TEXT[lang]["watering"], totals=totals,
                    stopped_reasons=dict(stopped_all.most_common()),
                    skipped_reasons=dict(skipped_all.most_common()),
                    failed_reasons=dict(failed_all.most_common()), sites=sites)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else 0.0


def typed_details(event: dict) -> Any:
    """A stored event's details as its type's model (``protocol.events``), or None when
    they do not fit it (then the event counts nowhere, and is logged)."""
    try:
        return details_of(event["type"], event["details"])
    except (ProtocolError, ValueError) as exc:
        logger.warning("event %s of %s does not fit its type: %s", event.get("seq"),
                       event.get("device_id"), exc)
        return None


def feed_given_g(details: dict | FeedDispensed) -> float:
    """Grams a ``feed_dispensed`` event says went into the pond: measured, else commanded."""
    d = details if isinstance(details, FeedDispensed) else typed_details(
        {"type": "feed_dispensed", "details": details})
    if d is None:
        return 0.0
    return (d.measured_g if d.measured_g is not None else d.commanded_g) or 0.0


def _fisheries(store: Store, devices: list[dict], per_device: dict[str, list[dict]],
               start: datetime, until: datetime, lang: Lang) -> Fisheries:
    totals = FisheriesTotals(units=len(devices))
    postponed_all: Counter[str] = Counter()
    skipped_all: Counter[str] = Counter()
    sites = []
    for device in devices:
        ponds: dict[str, dict[str, Any]] = {}

        def pond(name: object, ponds=ponds) -> dict[str, Any]:
            return ponds.setdefault(str(name or "?"), {
                "species": None, "feed_g": 0.0, "feedings": 0, "faulted": 0,
                "postponed": Counter(), "skipped": Counter()})

        for event in per_device.get(device["device_id"], []):
            d = typed_details(event)
            if isinstance(d, FeedDispensed):
                p = pond(d.pond)
                p["feed_g"] += feed_given_g(d)
                p["feedings"] += 1
                p["faulted"] += bool(d.fault)
                p["species"] = d.species or p["species"]
            elif isinstance(d, Feeding):
                counter = "postponed" if event["type"] == "feeding_postponed" else "skipped"
                pond(d.pond)[counter][d.reason or "unknown"] += 1
        plan_start = _plans(store.desired_config_at(device["device_id"], start))
        plan_end = _plans(store.desired_config_at(device["device_id"], until))
        for name in [*plan_start, *plan_end]:
            pond(name)
        site = FisheriesSite(device_id=device["device_id"], site=_site(device))
        for name, p in sorted(ponds.items()):
            first, last = plan_start.get(name, {}), plan_end.get(name, {})
            site.ponds.append(Pond(
                pond=name, species=p["species"] or last.get("species") or first.get("species"),
                feed_g=_round(p["feed_g"]), feedings=p["feedings"], feedings_faulted=p["faulted"],
                postponed=sum(p["postponed"].values()),
                postponed_reasons=dict(p["postponed"].most_common()),
                skipped=sum(p["skipped"].values()),
                skipped_reasons=dict(p["skipped"].most_common()),
                conversion=_conversion(p["feed_g"], first, last)))
            site.feed_g += p["feed_g"]
            site.feedings += p["feedings"]
            site.postponed += sum(p["postponed"].values())
            site.skipped += sum(p["skipped"].values())
            postponed_all.update(p["postponed"])
            skipped_all.update(p["skipped"])
        totals.feed_g += site.feed_g
        totals.feedings += site.feedings
        totals.postponed += site.postponed
        totals.skipped += site.skipped
        site.feed_g = _round(site.feed_g)
        sites.append(site)
    totals.feed_kg = _round(totals.feed_g / 1000, 3)
    totals.feed_g = _round(totals.feed_g)
    return Fisheries(programme=TEXT[lang]["fisheries"], totals=totals,
                     postponed_reasons=dict(postponed_all.most_common()),
                     skipped_reasons=dict(skipped_all.most_common()), sites=sites)


def _plans(config: dict | None) -> dict[str, dict[str, Any]]:
    """pond -> {fish_count, avg_weight_g, species, version, issued_at} of a desired config."""
    if not config or not isinstance(config.get("body"), dict):
        return {}
    ponds = config["body"].get("ponds")
    found = {}
    for name, change in (ponds.items() if isinstance(ponds, dict) else []):
        if not isinstance(change, dict):
            continue
        plan = change.get("plan") if isinstance(change.get("plan"), dict) else {}
        found[name] = {"fish_count": plan.get("fish_count"),
                       "avg_weight_g": plan.get("avg_weight_g"),
                       "species": change.get("species"), "version": config["version"],
                       "issued_at": config["issued_at"]}
    return found


def _biomass_kg(plan: dict) -> float | None:
    count, weight = plan.get("fish_count"), plan.get("avg_weight_g")
    if _num(count) > 0 and _num(weight) > 0:
        return count * weight / 1000
    return None


def _conversion(feed_g: float, first: dict, last: dict) -> FeedConversion:
    start_kg, end_kg = _biomass_kg(first), _biomass_kg(last)
    gain = end_kg - start_kg if start_kg is not None and end_kg is not None else None
    feed_kg = feed_g / 1000
    sources = sorted({f"desired config v{p['version']} ({p['issued_at'][:10]})"
                      for p in (first, last) if p})
    return FeedConversion(
        feed_kg=_round(feed_kg, 3),
        fish_count_start=first.get("fish_count") if start_kg is not None else None,
        avg_weight_g_start=first.get("avg_weight_g") if start_kg is not None else None,
        biomass_kg_start=_round(start_kg, 2) if start_kg is not None else None,
        fish_count_end=last.get("fish_count") if end_kg is not None else None,
        avg_weight_g_end=last.get("avg_weight_g") if end_kg is not None else None,
        biomass_kg_end=_round(end_kg, 2) if end_kg is not None else None,
        biomass_gain_kg=_round(gain, 2) if gain is not None else None,
        fcr=_round(feed_kg / gain, 2) if gain is not None and gain > 0 and feed_kg > 0
        else None,
        source="; ".join(sources) or "no fish count in the pond's plan (local config only)")


def unit_uptime(store: Store, device: dict, start: datetime, until: datetime) -> UnitUptime:
    """Online hours of one unit in ``[start, until)`` from its recorded status changes.

    Time before the first change the controller ever recorded is not counted (unknown).
    """
    before, changes = store.status_transitions(device["device_id"], start, until)
    online_s = covered_s = 0.0
    outages = 0
    state = before["online"] if before else None
    at = start
    for change in changes:
        t = datetime.fromisoformat(change["at"].replace("Z", "+00:00"))
        if state is not None:
            covered_s += (t - at).total_seconds()
            online_s += (t - at).total_seconds() if state else 0.0
        if state and not change["online"]:
            outages += 1
        state, at = change["online"], t
    if state is not None:
        covered_s += (until - at).total_seconds()
        online_s += (until - at).total_seconds() if state else 0.0
    return UnitUptime(device_id=device["device_id"], site=_site(device), kind=device["kind"],
                      online_h=_round(online_s / 3600, 2), covered_h=_round(covered_s / 3600, 2),
                      uptime_pct=_round(100 * online_s / covered_s, 2) if covered_s > 0 else None,
                      outages=outages)


def _uptime(store: Store, devices: list[dict], start: datetime, until: datetime) -> Uptime:
    units = [unit_uptime(store, d, start, until) for d in devices]
    known = [u.uptime_pct for u in units if u.uptime_pct is not None]
    return Uptime(average_pct=_round(sum(known) / len(known), 2) if known else None,
                  units=units)


def _alarms(devices: list[dict], per_device: dict[str, list[dict]]) -> Alarms:
    by_code: Counter[str] = Counter()
    units, items = [], []
    for device in devices:
        mine: Counter[str] = Counter()
        for event in per_device.get(device["device_id"], []):
            if event["type"] != "alarm":
                continue
            d = typed_details(event)
            code = d.code.value if isinstance(d, Alarm) else "unknown"
            mine[code] += 1
            items.append(AlarmItem(ts=event["ts"], device_id=device["device_id"],
                                   site=_site(device), code=code,
                                   message=d.message if isinstance(d, Alarm) else ""))
        by_code.update(mine)
        units.append(UnitAlarms(device_id=device["device_id"], site=_site(device),
                                count=sum(mine.values()), by_code=dict(mine.most_common())))
    items.sort(key=lambda a: a.ts)
    return Alarms(total=sum(by_code.values()), by_code=dict(by_code.most_common()),
                  units=units, items=items[:MAX_ALARM_ITEMS])


def default_month(now: datetime | None = None) -> str:
    """The current WITA month as ``YYYY-MM``."""
    return (now or utcnow()).astimezone(WITA).strftime("%Y-%m")
