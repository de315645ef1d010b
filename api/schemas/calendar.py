"""Working-day calendar answers."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field


class DayOut(BaseModel):
    """What the calendar knows about one day."""

    date: date
    working: bool = Field(description="A working day (工作日), including a 调休 weekend working day.")
    estimated: bool = Field(description="The year's arrangement is not published: Monday–Friday was assumed.")
    source: Literal["chinesecalendar", "override", "weekday-estimate"]
    holiday_name: str | None = Field(default=None, description="The statutory holiday the day belongs to.")


class WorkingDaysOut(BaseModel):
    """The ``days``-th working day after ``start`` (the start day never counts)."""

    start: date
    days: int
    date: date
    estimated: bool = Field(description="Some day counted lies in a year with no published arrangement.")
