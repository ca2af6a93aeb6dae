"""Who is told, and when: pure functions of (policy, alarm, time); no I/O, no clock.

The policy is what `controller.notify.outbox.write_policy` stores from ``[notify]``: a
dict with ``timezone``, ``quiet_hours``, ``flap_hold_s``, ``escalate_after_s``,
``public_url`` and ``channels`` (each ``name``, ``type``, ``opd``, ``min_severity``,
``escalation``).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
UNKNOWN_SEVERITY = "warning"
"""How an alarm without a known severity is treated (filters and quiet hours)."""


def severity_of(alarm: dict) -> str:
    severity = alarm.get("severity")
    return severity if severity in SEVERITY_RANK else UNKNOWN_SEVERITY


def matches(channel: dict, alarm: dict) -> bool:
    """Whether ``channel``'s filters let ``alarm`` through (no filters: every alarm)."""
    if channel.get("opd") and alarm.get("opd") not in channel["opd"]:
        return False
    return SEVERITY_RANK[severity_of(alarm)] >= SEVERITY_RANK[channel.get("min_severity")
                                                               or "info"]


def quiet_end(at: datetime, quiet_hours: str, zone: str) -> datetime | None:
    """The end (UTC) of the quiet hours ``"HH:MM-HH:MM"`` (local to ``zone``, may span
    midnight) that ``at`` falls in, or None when ``at`` is outside them."""
    if not quiet_hours:
        return None
    tz = ZoneInfo(zone)
    start, end = (time.fromisoformat(part) for part in quiet_hours.split("-"))
    local = at.astimezone(tz)
    for days_back in (1, 0):
        day = local.date() - timedelta(days=days_back)
        begins = datetime.combine(day, start, tz)
        ends = datetime.combine(day + timedelta(days=1 if end <= start else 0), end, tz)
        if begins <= local < ends:
            return ends.astimezone(UTC)
    return None


def release_at(at: datetime, severity: str, policy: dict) -> tuple[datetime, bool]:
    """When a notification meant for ``at`` may go out: ``at`` itself, or for anything
    below critical the end of the quiet hours ``at`` falls in; and whether it was held."""
    if severity == "critical":
        return at, False
    end = quiet_end(at, policy.get("quiet_hours") or "", policy["timezone"])
    return (end, True) if end is not None else (at, False)


def backoff_s(attempts: int, retry_min_s: float, retry_max_s: float) -> float:
    """Wait after the ``attempts``-th failed attempt: doubling from ``retry_min_s``."""
    return min(retry_max_s, retry_min_s * 2 ** min(max(attempts - 1, 0), 40))


def unit_url(public_url: str, device_id: str) -> str:
    """The dashboard's page of a unit (its ``#/unit/<id>`` route)."""
    return f"{public_url.rstrip('/')}/#/unit/{quote(device_id, safe='')}"
