"""A monthly report as CSV (`report_csv`): one row per figure."""

from __future__ import annotations

import csv
import io

from controller.reports.models import PILLAR_BY_KIND, MonthlyReport
from controller.store import iso

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
