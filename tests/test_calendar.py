"""Tests of the working-day calendar (lifecycle/calendar.py) and its override files.

Expected dates are worked out by hand in the comments, from the State Council's 2026 arrangement:
元旦 1/1–3 (work Sun 1/4); 春节 2/15–23 (work Sat 2/14, Sat 2/28); 清明 4/4–6; 劳动节 5/1–5 (work Sat 5/9);
端午 6/19–21; 中秋 9/25–27; 国庆 10/1–7 (work Sun 9/20, Sat 10/10).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lifecycle.calendar import (
    CalendarResult,
    CountResult,
    DayInfo,
    Pause,
    WorkingCalendar,
    YearArrangement,
    default_calendar,
    load_year_file,
)
from lifecycle.errors import DefinitionError, Problem

D = date.fromisoformat
PACKAGE = WorkingCalendar()

# A calendar mixing every source: package years, an override for 2027 (元旦 only), and a made-up year
# 2030 whose March–August are all holidays, so that searches must cross long non-working stretches.
MIXED = WorkingCalendar(
    {
        2027: YearArrangement(2027, frozenset(D("2027-01-01") + timedelta(days=k) for k in range(3)), names={}),
        2030: YearArrangement(2030, frozenset(D("2030-03-01") + timedelta(days=k) for k in range(184)), title="test"),
    }
)
CALENDARS = pytest.mark.parametrize("cal", [PACKAGE, MIXED], ids=["package", "mixed"])

ALL_DATES = st.dates(min_value=date.min, max_value=date.max)
# Dates around the years with data, where the three sources meet.
NEAR_DATES = st.dates(min_value=D("2001-01-01"), max_value=D("2032-12-31"))


def days(first: str, last: str) -> Iterator[date]:
    """Every day from ``first`` to ``last`` inclusive."""
    d = D(first)
    while d <= D(last):
        yield d
        d += timedelta(days=1)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def open_or_closed_pause(start: date, length: int | None) -> Pause:
    """An open pause (``length`` None) or one of ``length`` days, cut at date.max."""
    if length is None:
        return Pause(start)
    return Pause(start, date.fromordinal(min(start.toordinal() + length, date.max.toordinal())))


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        load_year_file(path)
    return caught.value.problems()


def walk(cal: WorkingCalendar, start: date, n: int) -> tuple[date, bool]:
    """Reference add_working_days: step day by day; estimated if any examined day's year has no data."""
    step = 1 if n > 0 else -1
    d, left, estimated = start, abs(n), False
    covered = cal.covered_years()
    while left:
        d += timedelta(days=step)
        estimated |= d.year not in covered
        if cal.is_working_day(d):
            left -= 1
    return d, estimated


# --- the package data and the 2026 arrangement ------------------------------------------------------------


def test_package_years_are_covered() -> None:
    assert PACKAGE.covered_years() == frozenset(range(2004, 2027))
    assert MIXED.covered_years() == frozenset(range(2004, 2027)) | {2027, 2030}


def test_agrees_with_chinesecalendar_on_every_covered_day() -> None:
    for d in days("2004-01-01", "2026-12-31"):
        info = PACKAGE.day(d)
        assert info.working == chinese_calendar.is_workday(d), d
        assert (info.source, info.estimated) == ("chinesecalendar", False)


def test_2026_tiaoxiu_saturdays_are_working_days() -> None:
    for d in (D("2026-02-14"), D("2026-10-10")):
        assert d.weekday() == 5
        assert PACKAGE.is_working_day(d)
        assert PACKAGE.day(d) == DayInfo(d, True, False, "chinesecalendar", None)


def test_2026_09_20_sunday_is_a_working_day() -> None:
    assert D("2026-09-20").weekday() == 6
    assert PACKAGE.is_working_day(D("2026-09-20"))


def test_2026_national_day_is_not_working() -> None:
    for d in days("2026-10-01", "2026-10-07"):
        info = PACKAGE.day(d)
        assert not info.working
        assert info.holiday_name == "国庆节"
    assert PACKAGE.is_working_day(D("2026-10-08"))


def test_2026_arrangement_matches_the_notice() -> None:
    off = [("01-01", "01-03"), ("02-15", "02-23"), ("04-04", "04-06"), ("05-01", "05-05")]
    off += [("06-19", "06-21"), ("09-25", "09-27"), ("10-01", "10-07")]
    holidays = {d for first, last in off for d in days(f"2026-{first}", f"2026-{last}")}
    working_weekends = {D(f"2026-{md}") for md in ("01-04", "02-14", "02-28", "05-09", "09-20", "10-10")}
    for d in days("2026-01-01", "2026-12-31"):
        expected = d in working_weekends or (d.weekday() < 5 and d not in holidays)
        assert PACKAGE.is_working_day(d) == expected, d


def test_year_without_data_is_a_weekday_estimate() -> None:
    for d in (D("2027-01-01"), D("2003-10-01"), date.min, date.max):
        info = PACKAGE.day(d)
        assert info == DayInfo(d, d.weekday() < 5, True, "weekday-estimate", None)


def test_day_of_a_datetime_is_a_plain_date() -> None:
    from datetime import datetime

    assert type(PACKAGE.day(datetime(2026, 10, 1, 9, 30)).date) is date


# --- adding and counting ----------------------------------------------------------------------------------


def test_add_working_days_into_2027_is_estimated() -> None:
    # 2026-12-20 is a Sunday. 2026 (exact): Mon–Fri 12/21–25 → 1..5; Mon–Thu 12/28–31 → 6..9.
    # 2027 has no data, so Mon–Fri is assumed: Fri 1/1 → 10; 1/4–8 → 11..15; 1/11–15 → 16..20.
    assert PACKAGE.add_working_days(D("2026-12-20"), 20) == CalendarResult(D("2027-01-15"), True)
    # Staying inside 2026 is exact.
    assert PACKAGE.add_working_days(D("2026-12-20"), 9) == CalendarResult(D("2026-12-31"), False)


def test_2027_override_file_makes_the_result_exact(tmp_path: Path) -> None:
    write(
        tmp_path,
        "2027.yaml",
        """
        year: 2027
        title: 测试用安排（非官方）
        holidays:
          - {name: 元旦, from: 2027-01-01, to: 2027-01-03}
        """,
    )
    cal = WorkingCalendar.from_directory(tmp_path)
    # Same count as above, but Fri 1/1 is now 元旦: 1/4–8 → 10..14; 1/11–15 → 15..19; Mon 1/18 → 20.
    assert cal.add_working_days(D("2026-12-20"), 20) == CalendarResult(D("2027-01-18"), False)
    assert cal.day(D("2027-01-01")) == DayInfo(D("2027-01-01"), False, False, "override", "元旦")
    assert 2027 in cal.covered_years()


def test_working_days_clock_across_national_day() -> None:
    # Started Mon 2026-09-28: 9/29, 9/30 → 1, 2; 10/1–7 holiday; 10/8, 10/9 → 3, 4; Sat 10/10 (调休) → 5;
    # 10/12–16 → 6..10; 10/19–23 → 11..15; 10/26–30 → 16..20.
    expected = CalendarResult(D("2026-10-30"), False)
    assert PACKAGE.due_date(D("2026-09-28"), 20, unit="working_days") == expected
    assert PACKAGE.add_working_days(D("2026-09-28"), 20) == expected
    assert PACKAGE.working_days_between(D("2026-09-28"), D("2026-10-30")) == CountResult(20, False)


def test_pause_moves_due_date_by_the_paused_working_days() -> None:
    # Paused Mon 10/12 up to (not including) Mon 10/19: 5 working days (10/12–16) plus a weekend. The
    # due date moves 5 working days past Fri 10/30: Mon 11/2 … Fri 11/6.
    pause = Pause(D("2026-10-12"), D("2026-10-19"))
    result = PACKAGE.due_date(D("2026-09-28"), 20, unit="working_days", pauses=[pause])
    assert result == CalendarResult(D("2026-11-06"), False)
    assert PACKAGE.working_days_between(D("2026-10-30"), result.date).days == 5


def test_pause_over_holidays_only_changes_nothing() -> None:
    pause = Pause(D("2026-10-01"), D("2026-10-08"))  # 国庆, no working day inside
    result = PACKAGE.due_date(D("2026-09-28"), 20, unit="working_days", pauses=[pause])
    assert result.date == D("2026-10-30")


def test_overlapping_and_early_pauses_count_each_day_once() -> None:
    pauses = [
        Pause(D("2026-09-01"), D("2026-10-13")),  # began before the clock: only 10/8, 10/9, 10/10, 10/12
        Pause(D("2026-10-12"), D("2026-10-14")),  # overlaps: adds 10/13
        Pause(D("2026-10-14"), D("2026-10-15")),  # touches: adds 10/14
    ]
    # Paused working days after the start: 9/29, 9/30, 10/8, 10/9, 10/10, 10/12, 10/13, 10/14 = 8.
    result = PACKAGE.due_date(D("2026-09-28"), 20, unit="working_days", pauses=pauses)
    assert result.date == PACKAGE.add_working_days(D("2026-10-30"), 8).date == D("2026-11-11")


def test_open_and_empty_pauses_pause_nothing() -> None:
    pauses = [Pause(D("2026-10-12")), Pause(D("2026-10-20"), D("2026-10-20"))]
    result = PACKAGE.due_date(D("2026-09-28"), 20, unit="working_days", pauses=pauses)
    assert result.date == D("2026-10-30")


def test_calendar_days_clock_skips_paused_days_and_is_not_rolled() -> None:
    # 2026-09-03 + 30 calendar days = Sat 10/3 (国庆): the clock's due date is not rolled.
    assert PACKAGE.due_date(D("2026-09-03"), 30, unit="calendar_days") == CalendarResult(D("2026-10-03"), False)
    # A 7-day pause moves it 7 calendar days.
    pause = Pause(D("2026-09-10"), D("2026-09-17"))
    assert PACKAGE.due_date(D("2026-09-03"), 30, unit="calendar_days", pauses=[pause]).date == D("2026-10-10")


def test_due_date_with_zero_days_is_the_start() -> None:
    assert PACKAGE.due_date(D("2026-10-01"), 0, unit="working_days") == CalendarResult(D("2026-10-01"), False)


def test_due_date_rejects_a_negative_clock_and_an_unknown_unit() -> None:
    with pytest.raises(ValueError):
        PACKAGE.due_date(D("2026-10-01"), -1, unit="working_days")
    with pytest.raises(ValueError):
        PACKAGE.due_date(D("2026-10-01"), 1, unit="weeks")  # type: ignore[arg-type]


def test_pause_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError):
        Pause(D("2026-10-02"), D("2026-10-01"))


def test_roll_to_working_day_national_day() -> None:
    # 2026-09-03 + 30 days = Sat 10/3, inside 国庆 (10/1–7): the period ends on the next working day,
    # Thu 10/8.
    assert PACKAGE.add_calendar_days(D("2026-09-03"), 30, roll_to_working_day=True) == CalendarResult(
        D("2026-10-08"), False
    )
    assert PACKAGE.add_calendar_days(D("2026-09-03"), 30) == CalendarResult(D("2026-10-03"), False)
    # A working day is not moved; rolling into a year without data is estimated.
    assert PACKAGE.add_calendar_days(D("2026-09-03"), 35, roll_to_working_day=True).date == D("2026-10-08")
    assert PACKAGE.add_calendar_days(D("2026-12-31"), 1, roll_to_working_day=True) == CalendarResult(
        D("2027-01-01"), True
    )


def test_next_working_day() -> None:
    assert PACKAGE.next_working_day(D("2026-10-01")) == CalendarResult(D("2026-10-08"), False)
    assert PACKAGE.next_working_day(D("2026-10-08")).date == D("2026-10-08")
    assert PACKAGE.next_working_day(D("2026-10-08"), include_self=False).date == D("2026-10-09")
    assert PACKAGE.next_working_day(D("2026-10-09"), include_self=False).date == D("2026-10-10")


def test_add_working_days_zero_and_backwards() -> None:
    assert PACKAGE.add_working_days(D("2026-10-03"), 0) == CalendarResult(D("2026-10-03"), False)
    # Backwards from Thu 10/8: 9/30 → 1, 9/29 → 2, 9/28 → 3, Sun 9/27 is 中秋, Fri 9/25 too, Thu 9/24 → 4.
    assert PACKAGE.add_working_days(D("2026-10-08"), -4) == CalendarResult(D("2026-09-24"), False)
    assert PACKAGE.working_days_between(D("2026-10-08"), D("2026-09-24")) == CountResult(-4, False)


def test_working_days_between_same_day_and_estimate() -> None:
    assert PACKAGE.working_days_between(D("2026-10-03"), D("2026-10-03")) == CountResult(0, False)
    # 12/31 (Thu) plus Mon–Fri 2027-01-01 and 01-04..08 under the guess.
    assert PACKAGE.working_days_between(D("2026-12-30"), D("2027-01-08")) == CountResult(7, True)


def test_edges_are_clamped_and_flagged() -> None:
    assert PACKAGE.add_working_days(date.max, 1) == CalendarResult(date.max, True)
    assert PACKAGE.add_working_days(date.min, -1) == CalendarResult(date.min, True)
    assert PACKAGE.add_working_days(D("2026-01-01"), 10**15) == CalendarResult(date.max, True)
    assert PACKAGE.add_working_days(D("2026-01-01"), -(10**15)) == CalendarResult(date.min, True)
    assert PACKAGE.add_calendar_days(date.max, 1) == CalendarResult(date.max, True)
    assert PACKAGE.add_calendar_days(date.min, -1, roll_to_working_day=True).estimated
    assert PACKAGE.next_working_day(date.max, include_self=False) == CalendarResult(date.max, True)
    assert PACKAGE.due_date(date.max - timedelta(days=3), 10, unit="calendar_days") == CalendarResult(date.max, True)
    # 9999-12-31 is a Friday: the last working day of the calendar.
    assert PACKAGE.next_working_day(date.max) == CalendarResult(date.max, True)


# --- property tests ---------------------------------------------------------------------------------------


@CALENDARS
@settings(deadline=None)
@given(d=ALL_DATES)
def test_day_never_fails(cal: WorkingCalendar, d: date) -> None:
    info = cal.day(d)
    assert info.date == d
    assert info.working == cal.is_working_day(d)
    assert info.estimated == (d.year not in cal.covered_years())


@CALENDARS
@settings(deadline=None)
@given(start=ALL_DATES, n=st.integers(-400, 400))
@example(start=date.max, n=1)
@example(start=date.min, n=-1)
@example(start=date.max - timedelta(days=1), n=2)
def test_add_working_days_never_fails(cal: WorkingCalendar, start: date, n: int) -> None:
    result = cal.add_working_days(start, n)
    clamped = result.estimated and result.date in (date.min, date.max)
    if n > 0:
        assert result.date > start or clamped
    elif n < 0:
        assert result.date < start or clamped
    else:
        assert result == CalendarResult(start, False)
    assert n == 0 or cal.is_working_day(result.date) or clamped


@CALENDARS
@settings(deadline=None)
@given(start=ALL_DATES, end=ALL_DATES)
def test_working_days_between_never_fails(cal: WorkingCalendar, start: date, end: date) -> None:
    result = cal.working_days_between(start, end)
    assert result.days == -cal.working_days_between(end, start).days
    assert abs(result.days) <= abs((end - start).days)


@CALENDARS
@settings(deadline=None)
@given(
    start=ALL_DATES,
    n=st.integers(0, 400),
    unit=st.sampled_from(["working_days", "calendar_days"]),
    pauses=st.lists(
        st.builds(
            open_or_closed_pause,
            ALL_DATES,
            st.one_of(st.none(), st.integers(0, 60)),
        ),
        max_size=3,
    ),
)
def test_due_date_and_rolling_never_fail(
    cal: WorkingCalendar, start: date, n: int, unit: str, pauses: list[Pause]
) -> None:
    due = cal.due_date(start, n, unit=unit, pauses=pauses)  # type: ignore[arg-type]
    assert due.date >= start
    rolled = cal.add_calendar_days(start, n, roll_to_working_day=True)
    assert rolled.date >= start


@CALENDARS
@settings(deadline=None, max_examples=300)
@given(start=st.dates(min_value=date.min, max_value=D("9998-12-31")), n=st.integers(0, 300))
def test_working_days_between_inverts_add_working_days(cal: WorkingCalendar, start: date, n: int) -> None:
    end = cal.add_working_days(start, n).date
    assert cal.working_days_between(start, end).days == n


@CALENDARS
@settings(deadline=None)
@given(start=st.dates(min_value=D("0002-01-01"), max_value=D("9998-12-31")), n=st.integers(0, 300))
def test_backwards_inverts_forwards(cal: WorkingCalendar, start: date, n: int) -> None:
    # From a working day s, n working days back and n forward again returns to s.
    s = cal.next_working_day(start).date
    back = cal.add_working_days(s, -n).date
    assert cal.add_working_days(back, n).date == s
    assert cal.working_days_between(back, s).days == n


@CALENDARS
@settings(deadline=None, max_examples=300)
@given(start=NEAR_DATES, n=st.integers(-300, 300))
def test_add_working_days_matches_a_day_by_day_walk(cal: WorkingCalendar, start: date, n: int) -> None:
    expected, estimated = walk(cal, start, n)
    assert cal.add_working_days(start, n) == CalendarResult(expected, estimated)


@CALENDARS
@settings(deadline=None)
@given(start=NEAR_DATES, span=st.integers(0, 800))
def test_working_days_between_matches_counting(cal: WorkingCalendar, start: date, span: int) -> None:
    examined = [start + timedelta(days=k) for k in range(1, span + 1)]
    expected = CountResult(
        sum(cal.is_working_day(d) for d in examined),
        any(d.year not in cal.covered_years() for d in examined),
    )
    assert cal.working_days_between(start, start + timedelta(days=span)) == expected


@settings(deadline=None)
@given(
    start=st.dates(min_value=D("2026-01-01"), max_value=D("2026-12-31")),
    n=st.integers(1, 120),
    pause_start=st.dates(min_value=D("2026-01-01"), max_value=D("2027-06-30")),
    pause_days=st.integers(0, 40),
)
def test_due_date_matches_a_day_by_day_walk(start: date, n: int, pause_start: date, pause_days: int) -> None:
    pause_end = pause_start + timedelta(days=pause_days)
    d, left = start, n
    while left:
        d += timedelta(days=1)
        if MIXED.is_working_day(d) and not pause_start <= d < pause_end:
            left -= 1
    pause = Pause(pause_start, pause_end)
    assert MIXED.due_date(start, n, unit="working_days", pauses=[pause]).date == d


# --- override files ---------------------------------------------------------------------------------------


def test_override_wins_over_the_package(tmp_path: Path) -> None:
    # A (made-up) correction for 2026 replaces the package's whole year, not just the listed days.
    write(
        tmp_path,
        "2026.yaml",
        """
        year: 2026
        source: 测试
        holidays:
          - {name: 更正, from: 2026-10-08, to: 2026-10-09}
        working_weekends: [2026-10-11]
        """,
    )
    cal = WorkingCalendar.from_directory(tmp_path)
    assert cal.day(D("2026-10-08")) == DayInfo(D("2026-10-08"), False, False, "override", "更正")
    assert cal.is_working_day(D("2026-10-01"))  # no longer a holiday: the file does not list it
    assert cal.is_working_day(D("2026-10-11"))  # a Sunday, working per the file
    assert not cal.is_working_day(D("2026-10-10"))  # the package's 调休 Saturday is gone too
    assert cal.covered_years() == PACKAGE.covered_years()


def test_load_year_file_reads_every_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "2027.yaml",
        """
        year: 2027
        title: 标题
        source: "国办发明电〔2026〕X号"
        holidays:
          - name: 春节
            from: "2027-02-06"
            to: 2027-02-13
        working_weekends:
          - 2027-02-14
        """,
    )
    arrangement = load_year_file(path)
    assert arrangement.year == 2027
    assert arrangement.holidays == frozenset(days("2027-02-06", "2027-02-13"))
    assert arrangement.working_weekends == {D("2027-02-14")}
    assert (arrangement.title, arrangement.source) == ("标题", "国办发明电〔2026〕X号")
    assert arrangement.names[D("2027-02-10")] == "春节"
    assert hash(arrangement) == hash(load_year_file(path))


def test_readme_example_is_a_valid_file(tmp_path: Path) -> None:
    readme = Path(__file__).resolve().parent.parent / "workflows" / "calendars" / "README.md"
    example = re.search(r"```yaml\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    assert example is not None
    path = tmp_path / "2027.yaml"
    path.write_text(example.group(1), encoding="utf-8")
    arrangement = load_year_file(path)
    assert arrangement.year == 2027
    assert D("2027-02-06") in arrangement.holidays
    assert arrangement.working_weekends == {D("2027-02-14")}


def test_from_directory_without_a_directory() -> None:
    assert WorkingCalendar.from_directory(None).covered_years() == PACKAGE.covered_years()
    assert WorkingCalendar.from_directory("/nonexistent/calendars").covered_years() == PACKAGE.covered_years()


def test_from_directory_that_is_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "calendars", "x")
    with pytest.raises(DefinitionError) as caught:
        WorkingCalendar.from_directory(path)
    assert [p.code for p in caught.value.problems()] == ["calendar.not_directory"]


def test_from_directory_reports_the_problems_of_every_file(tmp_path: Path) -> None:
    write(tmp_path, "2027.yaml", "year: 2027\nholidays:\n  - {name: 元旦, from: 2027-01-01, to: 2026-01-03}\n")
    write(tmp_path, "2028.yaml", "year: 2028\nholidays: []\n")
    write(tmp_path, "2029.yaml", "year: [\n")
    write(tmp_path, "notes.txt", "not read")
    with pytest.raises(DefinitionError) as caught:
        WorkingCalendar.from_directory(tmp_path)
    found = [(Path(p.location.file).name, p.code) for p in caught.value.problems() if p.location]
    assert found == [
        # Both about the same `to` value, so at the same place: schema problems are listed first.
        ("2027.yaml", "calendar.range_reversed"),
        ("2027.yaml", "calendar.wrong_year"),
        ("2028.yaml", "calendar.no_holidays"),
        ("2029.yaml", "yaml.syntax"),
    ]


def test_default_calendar_is_cached_and_covers_the_package() -> None:
    assert default_calendar() is default_calendar()
    assert default_calendar().covered_years() >= PACKAGE.covered_years()


VALID_HOLIDAY = "holidays:\n  - {name: 元旦, from: 2027-01-01, to: 2027-01-03}\n"


@pytest.mark.parametrize(
    ("name", "text", "code", "line", "column", "path"),
    [
        pytest.param(
            "2027.yaml",
            "year: 2027\nholidays:\n  - {name: 元旦, from: 2027-01-01, to: 2028-01-03}\n",
            "calendar.wrong_year",
            3,
            38,
            ("holidays", 0, "to"),
            id="wrong-year-in-holiday",
        ),
        pytest.param(
            "2027.yaml",
            f"year: 2027\n{VALID_HOLIDAY}working_weekends:\n  - 2026-02-14\n",
            "calendar.wrong_year",
            5,
            5,
            ("working_weekends", 0),
            id="wrong-year-in-working-weekend",
        ),
        pytest.param(
            "2027.yaml",
            "year: 2027\nholidays:\n  - {name: 春节, from: 2027-02-13, to: 2027-02-06}\n",
            "calendar.range_reversed",
            3,
            38,
            ("holidays", 0, "to"),
            id="from-after-to",
        ),
        pytest.param(
            "2027.yaml",
            f"year: 2027\n{VALID_HOLIDAY}working_weekends:\n  - 2027-02-15\n",
            "calendar.not_weekend",
            5,
            5,
            ("working_weekends", 0),
            id="working-weekend-on-monday",
        ),
        pytest.param(
            "2027.yaml",
            f"year: 2027\n{VALID_HOLIDAY}working_weekends:\n  - 2027-01-02\n",
            "calendar.holiday_on_working_weekend",
            5,
            5,
            ("working_weekends", 0),
            id="overlap",
        ),
        pytest.param(
            "2027.yaml",
            f"year: 2027\n{VALID_HOLIDAY}colour: red\n",
            "calendar.unknown_key",
            4,
            9,
            ("colour",),
            id="unknown-top-key",
        ),
        pytest.param(
            "2027.yaml",
            "year: 2027\nholidays:\n  - {name: 元旦, from: 2027-01-01, to: 2027-01-03, til: 1}\n",
            "calendar.unknown_key",
            3,
            55,
            ("holidays", 0, "til"),
            id="unknown-period-key",
        ),
        pytest.param(
            "2027.yaml",
            "- 2027-01-01\n",
            "calendar.not_mapping",
            1,
            1,
            (),
            id="top-not-a-mapping",
        ),
        pytest.param(
            "2027.yaml",
            "year: 2027\nholidays:\n  - 元旦\n",
            "calendar.not_mapping",
            3,
            5,
            ("holidays", 0),
            id="period-not-a-mapping",
        ),
        pytest.param(
            "2028.yaml",
            f"year: 2027\n{VALID_HOLIDAY}",
            "calendar.file_name",
            1,
            7,
            ("year",),
            id="stem-not-year",
        ),
        pytest.param(
            "2027.yaml",
            VALID_HOLIDAY,
            "calendar.missing_key",
            1,
            1,
            ("year",),
            id="missing-year",
        ),
        pytest.param(
            "2027.yaml",
            "year: 2027\nholidays: []\n",
            "calendar.no_holidays",
            2,
            11,
            ("holidays",),
            id="no-holidays",
        ),
        pytest.param(
            "2027.yaml",
            "year: 2027\nholidays: 元旦\n",
            "calendar.not_list",
            2,
            11,
            ("holidays",),
            id="not-a-list",
        ),
        pytest.param(
            "2027.yaml",
            f"year: '2027'\n{VALID_HOLIDAY}",
            "calendar.bad_year",
            1,
            7,
            ("year",),
            id="year-as-text",
        ),
        pytest.param(
            "2027.yaml",
            "year: 2027\nholidays:\n  - {name: 元旦, from: '2027-02-30', to: 2027-03-01}\n",
            "calendar.bad_date",
            3,
            22,
            ("holidays", 0, "from"),
            id="impossible-date",
        ),
        pytest.param(
            "2027.yaml",
            "year: 2027\nholidays:\n  - {name: '', from: 2027-01-01, to: 2027-01-01}\n",
            "calendar.bad_text",
            3,
            12,
            ("holidays", 0, "name"),
            id="empty-name",
        ),
    ],
)
def test_override_file_errors(
    tmp_path: Path, name: str, text: str, code: str, line: int, column: int, path: tuple[str | int, ...]
) -> None:
    file = write(tmp_path, name, text)
    problems = problems_of(file)
    assert [p.code for p in problems] == [code]
    (problem,) = problems
    assert problem.location is not None
    assert (problem.location.file, problem.location.line, problem.location.column) == (
        str(file),
        line,
        column,
    )
    assert problem.location.path == path
    assert "?" not in problem.zh and "?" not in problem.en  # every message field was filled


def test_several_problems_are_reported_together_with_line_numbers(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "2026.yaml",
        """
        year: 2027
        holidays:
          - {name: 元旦, from: 2027-01-01, to: 2027-01-03}
          - name: 春节
            from: 2027-02-13
            to: 2027-02-06
          - {name: 劳动节, from: 2027-05-01, to: 2028-05-05}
        working_weekends:
          - 2027-02-15
          - 2027-01-02
        colour: red
        """,
    )
    found = [(p.code, p.location.line, p.location.column) for p in problems_of(file) if p.location]
    assert found == [
        ("calendar.file_name", 1, 7),
        ("calendar.range_reversed", 6, 9),
        ("calendar.wrong_year", 7, 39),
        ("calendar.not_weekend", 9, 5),
        ("calendar.holiday_on_working_weekend", 10, 5),
        ("calendar.unknown_key", 11, 9),
    ]


def test_impossible_unquoted_date_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    # PyYAML itself fails on 2027-02-30; the file is still reported through DefinitionError.
    file = write(tmp_path, "2027.yaml", "year: 2027\nholidays:\n  - {name: 元旦, from: 2027-02-30, to: 2027-03-01}\n")
    (problem,) = problems_of(file)
    assert problem.code in ("yaml.scalar", "calendar.bad_date")
    assert problem.location is not None and problem.location.file == str(file)


def test_yaml_level_problems_are_definition_errors(tmp_path: Path) -> None:
    file = write(tmp_path, "2027.yaml", "year: 2027\nyear: 2027\n")
    assert [p.code for p in problems_of(file)] == ["yaml.duplicate_key"]
    assert [p.code for p in problems_of(tmp_path / "missing.yaml")] == ["yaml.unreadable"]


def test_year_arrangement_checks_direct_construction() -> None:
    with pytest.raises(ValueError):
        YearArrangement(2027, frozenset({D("2028-01-01")}))
    with pytest.raises(ValueError):
        YearArrangement(2027, frozenset(), frozenset({D("2027-02-15")}))
    with pytest.raises(ValueError):
        YearArrangement(2027, frozenset({D("2027-02-14")}), frozenset({D("2027-02-14")}))
    with pytest.raises(ValueError):
        YearArrangement(2027, frozenset(), names={D("2027-01-01"): "元旦"})
    with pytest.raises(ValueError):
        WorkingCalendar({2028: YearArrangement(2027, frozenset())})
