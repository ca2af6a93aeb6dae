"""What a monthly report is: its models (`MonthlyReport` and its parts), its texts in
Bahasa Indonesia and English, and the masterplan pillars it serves."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from protocol.kinds import KINDS

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
STOPPED_ON_PURPOSE = frozenset({"soil_wet", "rain", "rain_delay", "paused", "stopped",
                                "stop_all", "daily_limit", "skip_next"})
"""How a started run may end early without anything being wrong (``ended`` values;
``stop_all`` is how older units said ``stopped``)."""


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
