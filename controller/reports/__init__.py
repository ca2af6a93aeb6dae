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
  it early on purpose (`STOPPED_ON_PURPOSE`: the soil got wet, rain, a pause, stop all or
  stop zone, the daily limit); *failed* when it ended any other way (no flow, maximum
  on-time, a fault, a shutdown) or was interrupted by a restart and dropped. A run interrupted and
  then resumed counts once, when it ends. A *skipped* event that names several zones (a
  whole program skipped) counts one skipped run per zone.
- Events count in the month of their own timestamp (the unit's clock, UTC), uptime by the
  controller's receive time. In the running month the report covers up to now
  (``period.partial``).

Nothing here holds SQL: the rows come from `controller.store.Store`.
`controller.reports.models` holds the report's models and texts,
`controller.reports.monthly` assembles it, and `controller.reports.export` flattens it to
one CSV row per figure (``report_csv``).
"""

from __future__ import annotations

from controller.reports.export import CSV_COLUMNS, report_csv
from controller.reports.models import (
    MAX_ALARM_ITEMS,
    MONTH_PATTERN,
    MONTHS,
    PILLAR_BY_KIND,
    PILLARS,
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
    Runs,
    UnitAlarms,
    UnitUptime,
    Uptime,
    Watering,
    WateringSite,
    WateringTotals,
    ZoneFigures,
)
from controller.reports.monthly import (
    default_month,
    feed_given_g,
    month_bounds,
    monthly_report,
    report_title,
    typed_details,
    unit_uptime,
)

__all__ = [
    "CSV_COLUMNS",
    "MAX_ALARM_ITEMS",
    "MONTHS",
    "MONTH_PATTERN",
    "PILLARS",
    "PILLAR_BY_KIND",
    "STOPPED_ON_PURPOSE",
    "TEXT",
    "WITA",
    "AlarmItem",
    "Alarms",
    "FeedConversion",
    "Fisheries",
    "FisheriesSite",
    "FisheriesTotals",
    "Lang",
    "MonthlyReport",
    "Period",
    "Pond",
    "Runs",
    "UnitAlarms",
    "UnitUptime",
    "Uptime",
    "Watering",
    "WateringSite",
    "WateringTotals",
    "ZoneFigures",
    "default_month",
    "feed_given_g",
    "month_bounds",
    "monthly_report",
    "report_csv",
    "report_title",
    "typed_details",
    "unit_uptime",
]
