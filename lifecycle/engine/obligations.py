"""Recurring obligations: when each period's report is due (每周一报送, 按月分解, 每季度初, 10月底前).

An obligation's due rule picks a day in each period; when that day is not a working day, its holiday rule
moves it (to the next working day, the previous one, or keeps it). Periods are named by a stable key
(``2026-W41``, ``2026-10``, ``2026-Q4``, ``2026``) so that a report is filed against exactly one period and a
missing one is detected exactly once.
"""

from __future__ import annotations

import calendar as gregorian
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from lifecycle.calendar import WorkingCalendar
from lifecycle.clock import local_datetime
from lifecycle.spec.models import DueRule, Obligation


@dataclass(frozen=True)
class Occurrence:
    """One period of an obligation and when its report is due.

    Attributes:
        period: the period's key (``2026-W41``, ``2026-10``, ``2026-Q4``, ``2026``).
        nominal: the day the rule names, before the holiday rule.
        due_on: the local due day after the holiday rule.
        due_at: the due instant (the rule's local time on ``due_on``) in UTC.
        estimated: the holiday rule relied on a year with no published holidays.
    """

    period: str
    nominal: date
    due_on: date
    due_at: datetime
    estimated: bool


def _day_in_month(year: int, month: int, rule: DueRule) -> date:
    last = gregorian.monthrange(year, month)[1]
    day = last if rule.last_day or rule.day is None else min(rule.day, last)
    return date(year, month, day)


def period_of(obligation: Obligation, day: date) -> tuple[str, date]:
    """The key of the period containing ``day``, and the nominal due day of that period."""
    rule = obligation.due
    match obligation.recurrence:
        case "weekly":
            iso = day.isocalendar()
            monday = day - timedelta(days=iso.weekday - 1)
            return f"{iso.year}-W{iso.week:02d}", monday + timedelta(days=(rule.weekday or 1) - 1)
        case "monthly":
            return f"{day.year}-{day.month:02d}", _day_in_month(day.year, day.month, rule)
        case "quarterly":
            quarter = (day.month - 1) // 3 + 1
            month = (quarter - 1) * 3 + (rule.month_of_quarter or 1)
            return f"{day.year}-Q{quarter}", _day_in_month(day.year, month, rule)
        case _:
            return f"{day.year}", _day_in_month(day.year, rule.month or 12, rule)


def _next_period_start(obligation: Obligation, day: date) -> date:
    match obligation.recurrence:
        case "weekly":
            return day - timedelta(days=day.weekday()) + timedelta(days=7)
        case "monthly":
            return date(day.year + (day.month == 12), day.month % 12 + 1, 1)
        case "quarterly":
            first = ((day.month - 1) // 3) * 3 + 1
            month = first + 3
            return date(day.year + (month > 12), (month - 1) % 12 + 1, 1)
        case _:
            return date(day.year + 1, 1, 1)


def occurrence(calendar: WorkingCalendar, obligation: Obligation, day: date) -> Occurrence:
    """The occurrence of the period containing ``day``."""
    period, nominal = period_of(obligation, day)
    rule = obligation.due
    due_on, estimated = nominal, False
    if rule.holiday_rule != "keep" and not calendar.is_working_day(nominal):
        if rule.holiday_rule == "next_working_day":
            moved = calendar.next_working_day(nominal, include_self=False)
        else:
            moved = calendar.add_working_days(nominal, -1)
        due_on, estimated = moved.date, moved.estimated
    else:
        estimated = calendar.day(nominal).estimated
    hour, minute = (int(part) for part in rule.time.split(":"))
    return Occurrence(period, nominal, due_on, local_datetime(due_on, time(hour, minute)), estimated)


def occurrences_between(calendar: WorkingCalendar, obligation: Obligation, start: date, end: date) -> list[Occurrence]:
    """Every occurrence whose period overlaps ``start``..``end`` (inclusive), in order."""
    out: list[Occurrence] = []
    day = start
    while day <= end:
        out.append(occurrence(calendar, obligation, day))
        day = _next_period_start(obligation, day)
    return out


_PERIOD_KEYS = {
    "weekly": re.compile(r"^(\d{4})-W(\d{2})$"),
    "monthly": re.compile(r"^(\d{4})-(\d{2})$"),
    "quarterly": re.compile(r"^(\d{4})-Q([1-4])$"),
    "yearly": re.compile(r"^(\d{4})$"),
}


def period_start(obligation: Obligation, key: str) -> date | None:
    """The first day of the period named ``key`` (``2026-W41``, ``2026-10``, ``2026-Q4``, ``2026``) for the
    obligation's recurrence; None when ``key`` is not such a period."""
    match = _PERIOD_KEYS[obligation.recurrence].match(key)
    if match is None:
        return None
    year = int(match.group(1))
    try:
        match obligation.recurrence:
            case "weekly":
                return date.fromisocalendar(year, int(match.group(2)), 1)
            case "monthly":
                return date(year, int(match.group(2)), 1)
            case "quarterly":
                return date(year, (int(match.group(2)) - 1) * 3 + 1, 1)
            case _:
                return date(year, 1, 1)
    except ValueError:  # week 53 of a year that has 52, month 13…
        return None


def occurrence_of(calendar: WorkingCalendar, obligation: Obligation, key: str) -> Occurrence | None:
    """The occurrence of the period named ``key``; None when ``key`` is not a period of this obligation."""
    start = period_start(obligation, key)
    return None if start is None else occurrence(calendar, obligation, start)
