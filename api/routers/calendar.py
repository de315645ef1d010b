"""Working-day calendar: is a day a working day, and which day is n working days after another."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import calendar
from api.routers import API_PREFIX
from api.schemas.calendar import DayOut, WorkingDaysOut
from api.schemas.common import ERROR_RESPONSES
from lifecycle.calendar import WorkingCalendar

router = APIRouter(prefix=API_PREFIX + "/calendar", tags=["calendar"], responses=ERROR_RESPONSES)

MAX_DAYS = 36_500
"""The most working days one may add (about 140 years): more is certainly a mistake."""


@router.get("/days/{day}", response_model=DayOut)
async def get_day(day: date, cal: Annotated[WorkingCalendar, Depends(calendar)]) -> DayOut:
    """Whether a day is a working day, whether that is estimated, and its holiday's name."""
    info = cal.day(day)
    return DayOut(
        date=info.date,
        working=info.working,
        estimated=info.estimated,
        source=info.source,
        holiday_name=info.holiday_name,
    )


@router.get("/add-working-days", response_model=WorkingDaysOut)
async def add_working_days(
    start: Annotated[date, Query(description="The day counting starts from (it does not count itself).")],
    days: Annotated[int, Query(ge=-MAX_DAYS, le=MAX_DAYS, description="Working days to add (negative: back).")],
    cal: Annotated[WorkingCalendar, Depends(calendar)],
) -> WorkingDaysOut:
    """The day that is ``days`` working days after ``start``, and whether it is estimated."""
    result = cal.add_working_days(start, days)
    return WorkingDaysOut(start=start, days=days, date=result.date, estimated=result.estimated)
