"""Monthly Smart City implementation reports per OPD (for Bappeda and Diskominfo).

Operators get their own OPD's report only (another OPD answers 404, as for devices);
viewers and admins any OPD's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from controller.api.deps import CurrentUser, StoreDep, not_found
from controller.api.schemas import Ident
from controller.reports import MONTH_PATTERN, MonthlyReport, monthly_report, report_csv

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])


@router.get("/monthly", response_model=MonthlyReport, responses={200: {"content": {
    "text/csv": {"schema": {"type": "string"}}},
    "description": "the report as JSON, or as CSV with format=csv"}})
def monthly(store: StoreDep, user: CurrentUser, opd: Ident,
            month: Annotated[str, Query(pattern=MONTH_PATTERN, description="YYYY-MM, WITA")],
            format: Literal["json", "csv"] = "json",
            lang: Literal["id", "en"] = "id") -> MonthlyReport | Response:
    """Water, runs, feed, feedings postponed, uptime and alarms of one OPD in one month."""
    if not user.sees_opd(opd) or not store.list_opds(opd):
        raise not_found(f"OPD {opd!r}")
    report = monthly_report(store, opd, month, lang=lang)
    if format == "csv":
        name = f"laporan-smartcity-{opd}-{month}.csv"
        return Response(report_csv(report), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return report
