"""Where a unit is when its config does not say: Balikpapan, in WITA (Asia/Makassar).

Schedules are written in the site's local time zone; sunrise and sunset starts use the
site's coordinates. A unit's ``[site]`` section overrides these defaults; the controller
uses them for units that do not report their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

__all__ = ["DEFAULT_SITE", "SiteDefaults"]


@dataclass(frozen=True)
class SiteDefaults:
    timezone: str
    latitude: float
    longitude: float

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


DEFAULT_SITE = SiteDefaults("Asia/Makassar", -1.2379, 116.8529)
