"""Obligation periods and due days, with the holiday rules."""

from __future__ import annotations

from datetime import date

from lifecycle.calendar import default_calendar
from lifecycle.engine.obligations import occurrence, occurrences_between
from lifecycle.spec.models import Obligation


def obligation(recurrence: str, **due: object) -> Obligation:
    return Obligation.model_validate(
        {"id": "o", "title": "报送", "recurrence": recurrence, "due": due, "applies_in": ["construction"],
         "roles": ["unit"]}
    )  # fmt: skip


def test_monday_report_in_national_day_week_moves_to_the_next_working_day() -> None:
    weekly = obligation("weekly", weekday=1)
    occ = occurrence(default_calendar(), weekly, date(2026, 10, 7))
    assert occ.period == "2026-W41"
    assert occ.nominal == date(2026, 10, 5)
    assert occ.due_on == date(2026, 10, 8)
    assert occ.due_at.hour == 10  # 18:00 local is 10:00 UTC


def test_end_of_october_list_moves_back_when_the_31st_is_a_weekend() -> None:
    yearly = obligation("yearly", month=10, last_day=True, holiday_rule="previous_working_day")
    occ = occurrence(default_calendar(), yearly, date(2026, 5, 1))
    assert (occ.period, occ.nominal, occ.due_on) == ("2026", date(2026, 10, 31), date(2026, 10, 30))


def test_quarter_start_and_monthly_periods() -> None:
    quarterly = obligation("quarterly", month_of_quarter=1, day=10)
    occs = occurrences_between(default_calendar(), quarterly, date(2026, 1, 1), date(2026, 12, 31))
    assert [o.period for o in occs] == ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    # 10/10/2026 is a 调休 Saturday (a working day): kept.
    assert [o.due_on for o in occs] == [date(2026, 1, 12), date(2026, 4, 10), date(2026, 7, 10), date(2026, 10, 10)]
    monthly = obligation("monthly", day=31, holiday_rule="keep")
    assert occurrence(default_calendar(), monthly, date(2026, 2, 3)).due_on == date(2026, 2, 28)


def test_weekly_occurrences_cover_a_year_boundary() -> None:
    weekly = obligation("weekly", weekday=1)
    occs = occurrences_between(default_calendar(), weekly, date(2026, 12, 21), date(2027, 1, 10))
    assert [o.period for o in occs] == ["2026-W52", "2026-W53", "2027-W01"]
    # 2027's holidays are not published (chinesecalendar stops at 2026): Monday 1/4 is assumed working.
    assert (occs[-1].due_on, occs[-1].estimated) == (date(2027, 1, 4), True)
    assert not occs[0].estimated
