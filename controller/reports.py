"""Monthly implementation reports of an OPD for Bappeda and Diskominfo.

``monthly_report(store, opd, "2026-11")`` reads one WITA calendar month (Asia/Makassar,
from the 1st 00:00 to the next month's 1st 00:00) of the OPD's units and assembles:

- **Watering** (masterplan pillar *Smart Environment*): water used per site and zone
  (litres and minutes from the units' ``run_finished`` events), runs done, stopped early,
  skipped and failed, each with its reasons.
- **Fisheries** (pillar *Smart Economy*): feed given per pond (``feed_dispensed``:
  the measured grams, or the commanded grams where nothing measured them), feedings
  postponed for water quality and skipped, with reasons, and the feed-conversion inputs:
  fish count and average weight from the pond's plan (desired config) at the start and
  the end of the month, the biomass they give, and FCR = feed / biomass gain when both
  are known.
- **Uptime** of every unit: the share of the month it was online, from the online and
  offline changes the controller recorded (``status_history``).
- **Alarms** per unit and code.

How things are counted (also in docs/reports.md):

- A run is *done* when it ended ``completed``; *stopped* when a rule or a person ended
  it early on purpose (`STOPPED_ON_PURPOSE`: the soil got wet, rain, a pause, stop all,
  the daily limit); *failed* when it ended any other way (no flow, maximum on-time, a
  fault, a shutdown) or was interrupted by a restart and dropped. A run interrupted and
  then resumed counts once, when it ends. A *skipped* event that names several zones (a
  whole program skipped) counts one skipped run per zone.
- Events count in the month of their own timestamp (the unit's clock, UTC), uptime by the
  controller's receive time. In the running month the report covers up to now
  (``period.partial``).

Nothing here holds SQL: the rows come from `controller.store.Store`. ``report_csv``
flattens a report to one CSV row per figure.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from controller.errors import Invalid
from controller.store import Store, iso, utcnow
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

WITA = ZoneInfo("Asia/Makassar")
MONTH_PATTERN = r"^20\d{2}-(0[1-9]|1[0-2])$"
"""``YYYY-MM`` of this century (so every month and the next one are valid dates)."""

PILLARS = ("Smart Governance", "Smart Branding", "Smart Economy", "Smart Environment",
           "Smart Living", "Smart Society")
"""The six pillars of Balikpapan's Smart City masterplan."""
PILLAR_BY_KIND = {kind: spec.pillar for kind, spec in KINDS.items()}

Lang = Literal["id", "en"]
MONTHS = {
    "id": ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus",
           "September", "Oktober", "November", "Desember"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}
TEXT = {
    "id": {
        "title": "Laporan Pelaksanaan Smart City",
        "to": ["Bappeda Kota Balikpapan", "Diskominfo Kota Balikpapan"],
        "watering": "Penyiraman otomatis taman dan median jalan",
        "fisheries": "Pemberian pakan ikan otomatis di kolam dan tambak",
    },
    "en": {
        "title": "Smart City Implementation Report",
        "to": ["Bappeda (Regional Development Planning Agency), Balikpapan",
               "Diskominfo (Communication and Informatics Office), Balikpapan"],
        "watering": "Automatic watering of parks and road medians",
        "fisheries": "Automatic fish feeding at ponds (tambak)",
    },
}
MAX_ALARM_ITEMS = 500
STOPPED_ON_PURPOSE = frozenset({"soil_wet", "rain", "rain_delay", "paused", "stop_all",
                                "daily_limit", "skip_next"})
"""How a started run may end early without anything being wrong (``ended`` values)."""

_RUN_EVENTS = ("run_finished", "run_skipped", "run_interrupted")
_FEED_EVENTS = ("feed_dispensed", "feeding_postponed", "feeding_skipped")


# --------------------------------------------------------------------------- models

class Period(BaseModel):
    start: datetime = Field(description="first instant of the month (00:00 WITA, as UTC)")
    end: datetime = Field(description="first instant of the next month (00:00 WITA, as UTC)")
    timezone: str = "Asia/Makassar"
    partial: bool = Field(description="true while the month is not over")
    until: datetime = Field(description="the report covers start <= t < until")


class Runs(BaseModel):
    done: int = Field(0, description="ended completed")
    stopped: int = Field(0, description="ended early on purpose (rule or person)")
    skipped: int = Field(0, description="never started (per zone)")
    failed: int = Field(0, description="ended by a fault, or interrupted and dropped")


class ZoneFigures(Runs):
    zone: str
    water_l: float = 0.0
    water_min: float = 0.0


class WateringSite(Runs):
    device_id: str
    site: str
    water_l: float = 0.0
    water_min: float = 0.0
    zones: list[ZoneFigures] = Field(default_factory=list)
    stopped_reasons: dict[str, int] = Field(default_factory=dict)
    skipped_reasons: dict[str, int] = Field(default_factory=dict)
    failed_reasons: dict[str, int] = Field(default_factory=dict)
    done_by_trigger: dict[str, int] = Field(default_factory=dict)


class WateringTotals(Runs):
    water_l: float = 0.0
    water_min: float = 0.0
    units: int = 0


class Watering(BaseModel):
    pillar: str = PILLAR_BY_KIND["irrigation"]
    programme: str
    totals: WateringTotals
    stopped_reasons: dict[str, int]
    skipped_reasons: dict[str, int]
    failed_reasons: dict[str, int]
    sites: list[WateringSite]


class FeedConversion(BaseModel):
    """Feed-conversion inputs of one pond for the month."""

    feed_kg: float
    fish_count_start: int | None = None
    avg_weight_g_start: float | None = None
    biomass_kg_start: float | None = None
    fish_count_end: int | None = None
    avg_weight_g_end: float | None = None
    biomass_kg_end: float | None = None
    biomass_gain_kg: float | None = None
    fcr: float | None = Field(None, description="feed_kg / biomass_gain_kg when both known "
                              "and the gain is positive")
    source: str = Field("", description="where the fish count and weights come from")


class Pond(BaseModel):
    pond: str
    species: str | None = None
    feed_g: float = 0.0
    feedings: int = 0
    feedings_faulted: int = 0
    postponed: int = 0
    postponed_reasons: dict[str, int] = Field(default_factory=dict)
    skipped: int = 0
    skipped_reasons: dict[str, int] = Field(default_factory=dict)
    conversion: FeedConversion


class FisheriesSite(BaseModel):
    device_id: str
    site: str
    feed_g: float = 0.0
    feedings: int = 0
    postponed: int = 0
    skipped: int = 0
    ponds: list[Pond] = Field(default_factory=list)


class FisheriesTotals(BaseModel):
    feed_kg: float = 0.0
    feed_g: float = 0.0
    feedings: int = 0
    postponed: int = 0
    skipped: int = 0
    units: int = 0


class Fisheries(BaseModel):
    pillar: str = PILLAR_BY_KIND["fish_feeder"]
    programme: str
    totals: FisheriesTotals
    postponed_reasons: dict[str, int]
    skipped_reasons: dict[str, int]
    sites: list[FisheriesSite]


class UnitUptime(BaseModel):
    device_id: str
    site: str
    kind: str
    online_h: float
    covered_h: float = Field(description="hours of the period with a known state")
    uptime_pct: float | None = Field(description="online_h / covered_h; null if unknown")
    outages: int = Field(description="online -> offline changes in the period")


class Uptime(BaseModel):
    average_pct: float | None
    units: list[UnitUptime]


class AlarmItem(BaseModel):
    ts: datetime
    device_id: str
    site: str
    code: str
    message: str


class UnitAlarms(BaseModel):
    device_id: str
    site: str
    count: int
    by_code: dict[str, int]


class Alarms(BaseModel):
    total: int
    by_code: dict[str, int]
    units: list[UnitAlarms]
    items: list[AlarmItem] = Field(description=f"oldest first, at most {MAX_ALARM_ITEMS}")


class MonthlyReport(BaseModel):
    """An OPD's Smart City implementation report for one month."""

    title: str
    opd: str
    opd_name: str
    month: str
    lang: Lang
    addressed_to: list[str]
    pillars: list[str] = Field(description="the masterplan pillars this report serves")
    period: Period
    generated_at: datetime
    units: int
    watering: Watering | None = Field(description="null when the OPD has no watering units")
    fisheries: Fisheries | None = Field(description="null when the OPD has no feeders")
    uptime: Uptime
    alarms: Alarms


# --------------------------------------------------------------------------- assembly

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


# --------------------------------------------------------------------------- CSV

CSV_COLUMNS = ("section", "pillar", "device_id", "site", "subject", "metric", "value", "unit")


def report_csv(report: MonthlyReport) -> str:
    """The report as CSV: one row per figure (columns `CSV_COLUMNS`), UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)

    def row(section, metric, value, unit="", pillar="", device=None, subject=""):
        writer.writerow([section, pillar, device["device_id"] if device else "",
                         device["site"] if device else "", subject, metric,
                         "" if value is None else value, unit])

    row("report", "title", report.title)
    row("report", "opd", report.opd)
    row("report", "month", report.month)
    row("report", "period_start", iso(report.period.start))
    row("report", "period_until", iso(report.period.until))
    row("report", "partial", str(report.period.partial).lower())
    row("report", "pillars", "; ".join(report.pillars))
    row("report", "units", report.units, "count")
    if report.watering is not None:
        w, pillar = report.watering, report.watering.pillar
        row("watering", "water", w.totals.water_l, "L", pillar)
        row("watering", "water_time", w.totals.water_min, "min", pillar)
        for key in ("done", "stopped", "skipped", "failed"):
            row("watering", f"runs_{key}", getattr(w.totals, key), "count", pillar)
        for site in w.sites:
            dev = {"device_id": site.device_id, "site": site.site}
            row("watering", "water", site.water_l, "L", pillar, dev)
            for z in site.zones:
                row("watering", "water", z.water_l, "L", pillar, dev, z.zone)
                row("watering", "water_time", z.water_min, "min", pillar, dev, z.zone)
                for key in ("done", "stopped", "skipped", "failed"):
                    row("watering", f"runs_{key}", getattr(z, key), "count", pillar, dev, z.zone)
            for reason, n in site.stopped_reasons.items():
                row("watering", f"stopped:{reason}", n, "count", pillar, dev)
            for reason, n in site.skipped_reasons.items():
                row("watering", f"skipped:{reason}", n, "count", pillar, dev)
            for reason, n in site.failed_reasons.items():
                row("watering", f"failed:{reason}", n, "count", pillar, dev)
    if report.fisheries is not None:
        f, pillar = report.fisheries, report.fisheries.pillar
        row("fisheries", "feed", f.totals.feed_kg, "kg", pillar)
        row("fisheries", "feedings", f.totals.feedings, "count", pillar)
        row("fisheries", "postponed_water_quality", f.totals.postponed, "count", pillar)
        row("fisheries", "feedings_skipped", f.totals.skipped, "count", pillar)
        for site in f.sites:
            dev = {"device_id": site.device_id, "site": site.site}
            for p in site.ponds:
                c = p.conversion
                row("fisheries", "feed", p.feed_g, "g", pillar, dev, p.pond)
                row("fisheries", "feedings", p.feedings, "count", pillar, dev, p.pond)
                row("fisheries", "postponed_water_quality", p.postponed, "count", pillar, dev,
                    p.pond)
                for reason, n in p.postponed_reasons.items():
                    row("fisheries", f"postponed:{reason}", n, "count", pillar, dev, p.pond)
                row("fisheries", "feedings_skipped", p.skipped, "count", pillar, dev, p.pond)
                for reason, n in p.skipped_reasons.items():
                    row("fisheries", f"skipped:{reason}", n, "count", pillar, dev, p.pond)
                row("fisheries", "biomass_start", c.biomass_kg_start, "kg", pillar, dev, p.pond)
                row("fisheries", "biomass_end", c.biomass_kg_end, "kg", pillar, dev, p.pond)
                row("fisheries", "fcr", c.fcr, "", pillar, dev, p.pond)
    for u in report.uptime.units:
        dev = {"device_id": u.device_id, "site": u.site}
        row("uptime", "uptime", u.uptime_pct, "%", PILLAR_BY_KIND.get(u.kind, ""), dev)
        row("uptime", "online", u.online_h, "h", PILLAR_BY_KIND.get(u.kind, ""), dev)
        row("uptime", "outages", u.outages, "count", PILLAR_BY_KIND.get(u.kind, ""), dev)
    for unit in report.alarms.units:
        dev = {"device_id": unit.device_id, "site": unit.site}
        for code, n in unit.by_code.items():
            row("alarms", "alarms", n, "count", "", dev, code)
    return out.getvalue()


def default_month(now: datetime | None = None) -> str:
    """The current WITA month as ``YYYY-MM``."""
    return (now or utcnow()).astimezone(WITA).strftime("%Y-%m")
