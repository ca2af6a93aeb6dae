"""A feeding waiting to run, and the UTC time strings the fish feeder's state keeps."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class Pending:
    """A feeding waiting to run (persisted when it comes from the schedule)."""

    feeder: str
    pond: str
    plan_g: float
    source: str  # "schedule" or "command"
    due: str  # ISO UTC
    retry_until: str  # ISO UTC; after it a postponed feeding is skipped
    slot: str | None = None
    cmd_id: str | None = None
    postponed: bool = False
    reply: Any = field(default=None, repr=False, compare=False)

    def persistable(self) -> dict:
        d = asdict(self)
        d.pop("reply")
        return d


def iso_utc(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def parse_utc(value) -> datetime:
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("time must carry a UTC offset")
    return dt.astimezone(UTC)
