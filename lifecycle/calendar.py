"""The working-day calendar: which days are 工作日, and deadlines counted in them.

Chinese administrative deadlines are counted in working days (行政许可法 Art. 82 leaves statutory holidays
out) and every year the State Council moves some weekend days to working days (调休), so neither
"Monday to Friday" nor a fixed list of holidays is right. Each year's days come from, in order:

1. an override file ``<year>.yaml`` in ``workflows/calendars/`` (see the README there). It is
   authoritative for its year, also over the package, so a correction can ship without a new release;
2. the ``chinesecalendar`` package (1.11.0 covers 2004–2026);
3. otherwise a Monday–Friday guess. Every result that depended on a guessed day says ``estimated=True``,
   so that callers can show "provisional" and recompute once the year's arrangement is published.

Nothing here raises for a valid :class:`datetime.date` (years 1 to 9999). Results that would fall before
``date.min`` or after ``date.max`` are clamped to that edge and flagged ``estimated=True``: in this module
``estimated`` means "not exact", whether because of a guessed year or because of the clamp.

How counting works: every year with exact data gets a table of its working days and their running totals,
built once when the calendar is built (a few milliseconds for the 23 package years). With those, the number
of working days up to any day, ``W(day)``, costs one table look-up plus arithmetic for the Monday–Friday
years, so counting between two days is ``W(end) - W(start)`` and "the n-th working day after" is a search
on the monotone ``W``: O(log n) for any ``n``, without walking day by day. A built calendar never changes,
so one instance may be shared between threads.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

import chinese_calendar
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from lifecycle.errors import DefinitionError, Location, Problem, YamlProblems
from lifecycle.messages import register
from lifecycle.yamlsafe import SourceMap, load_yaml_file

__all__ = [
    "CalendarResult",
    "CountResult",
    "DayInfo",
    "DaySource",
    "Pause",
    "WorkingCalendar",
    "YearArrangement",
    "default_calendar",
    "load_year_file",
]

register(
    {
        "calendar.not_mapping": ("此处应为映射（键: 值）", "a mapping (key: value) is expected here"),
        "calendar.unknown_key": (
            "未知的键 “{key}”；允许的键：{allowed}",
            "unknown key '{key}'; the allowed keys are: {allowed}",
        ),
        "calendar.missing_key": ("缺少必填的键 “{key}”", "the required key '{key}' is missing"),
        "calendar.not_list": ("“{key}” 应为列表", "'{key}' must be a list"),
        "calendar.no_holidays": (
            "holidays 至少要列出一个节假日",
            "holidays must list at least one holiday period",
        ),
        "calendar.bad_year": (
            "年份应为 1 到 9999 之间的整数，而不是 {value}",
            "the year must be a whole number from 1 to 9999, not {value}",
        ),
        "calendar.bad_date": (
            "“{value}” 不是日期，应写作 YYYY-MM-DD",
            "'{value}' is not a date; write it as YYYY-MM-DD",
        ),
        "calendar.bad_text": (
            "此处应为非空文本，而不是 {value}",
            "a non-empty text is expected here, not {value}",
        ),
        "calendar.invalid": ("值无效：{reason}", "invalid value: {reason}"),
        "calendar.wrong_year": (
            "日期 {date} 不在本文件的年份（{year} 年）内",
            "the date {date} is not in this file's year {year}",
        ),
        "calendar.range_reversed": (
            "节假日的结束日期 {end} 早于开始日期 {start}",
            "the holiday ends ({end}) before it starts ({start})",
        ),
        "calendar.not_weekend": (
            "调休上班日 {date} 是{weekday_zh}，应为星期六或星期日",
            "the working weekend day {date} is a {weekday_en}, not a Saturday or Sunday",
        ),
        "calendar.holiday_on_working_weekend": (
            "{date} 既在节假日“{name}”内，又被列为调休上班日",
            "{date} is both in the holiday '{name}' and listed as a working weekend day",
        ),
        "calendar.file_name": (
            "文件名应为 {year}.yaml，与文件中的年份一致，而不是 {file}",
            "the file should be named {year}.yaml to match its year, not {file}",
        ),
        "calendar.not_directory": ("{path} 不是目录", "{path} is not a directory"),
    }
)

DaySource = Literal["chinesecalendar", "override", "weekday-estimate"]
"""Where a day's working status came from."""

_MIN_ORDINAL: Final = date.min.toordinal()
_MAX_ORDINAL: Final = date.max.toordinal()

# The package's own notion of its range (see chinese_calendar.utils._validate_date): every year from the
# first to the last year of its holiday table. Read from the public dicts, not from is_workday(), because
# is_workday() rescans the whole table on every call to find that range.
_PACKAGE_HOLIDAYS: Final[Mapping[date, str]] = chinese_calendar.holidays
_PACKAGE_WORKDAYS: Final[Mapping[date, str]] = chinese_calendar.workdays
_PACKAGE_YEARS: Final = range(min(_PACKAGE_HOLIDAYS).year, max(_PACKAGE_HOLIDAYS).year + 1)
# The package names holidays in English ("National Day"); users read Chinese ("国庆节").
_PACKAGE_NAMES_ZH: Final[Mapping[str, str]] = {
    str(holiday.value): str(holiday.chinese) for holiday in chinese_calendar.Holiday
}

_WEEKDAY_ZH: Final = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
_WEEKDAY_EN: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# --- public value types ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayInfo:
    """What the calendar knows about one day.

    Attributes:
        date: the day.
        working: whether it is a working day (工作日), including a 调休 weekend day.
        estimated: True when the year has no data and ``working`` is the Monday–Friday guess.
        source: where ``working`` came from.
        holiday_name: the statutory holiday the day belongs to (e.g. "国庆节") when it is a non-working
            holiday day; None on other days, including 调休 working weekend days.
    """

    date: date
    working: bool
    estimated: bool
    source: DaySource
    holiday_name: str | None


@dataclass(frozen=True)
class CalendarResult:
    """A day computed by adding days to another.

    Attributes:
        date: the resulting day.
        estimated: True when the result is not exact: some day it depended on lies in a year with no data
            (Monday–Friday was assumed), or the result was clamped at ``date.min``/``date.max``.
    """

    date: date
    estimated: bool


@dataclass(frozen=True)
class CountResult:
    """A number of days counted between two days.

    Attributes:
        days: the count (negative when counting backwards).
        estimated: True when some day counted lies in a year with no data (Monday–Friday was assumed).
    """

    days: int
    estimated: bool


@dataclass(frozen=True)
class Pause:
    """An interval during which a deadline clock does not run (行政许可法 Art. 45: 专家评审、听证、检验…).

    Attributes:
        start: the first paused day (inclusive).
        end: the day the clock runs again (exclusive), or None while the pause is still open.

    Raises:
        ValueError: ``end`` is before ``start`` (an empty pause, ``end == start``, is allowed).
    """

    start: date
    end: date | None = None

    def __post_init__(self) -> None:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"a pause cannot end ({self.end}) before it starts ({self.start})")


@dataclass(frozen=True)
class YearArrangement:
    """One year's official holiday arrangement (国务院办公厅关于部分节假日安排的通知), from an override file.

    Attributes:
        year: the year it covers.
        holidays: every non-working statutory holiday day of the year.
        working_weekends: the Saturdays and Sundays that are working days (调休上班).
        title: free text, e.g. the notice's title.
        source: free text, e.g. the notice's document number (国办发明电〔2026〕X号).
        names: holiday day → holiday name, for days of ``holidays`` that have one.

    Raises:
        ValueError: a date outside ``year``, a working weekend day that is not a Saturday or Sunday, a day
            that is both, or a name for a day that is not a holiday (files are checked with located
            problems by :func:`load_year_file` before they get here; this guards direct construction).
    """

    year: int
    holidays: frozenset[date]
    working_weekends: frozenset[date] = frozenset()
    title: str | None = None
    source: str | None = None
    # A read-only mapping is not hashable, so it is compared but left out of the hash.
    names: Mapping[date, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "holidays", frozenset(self.holidays))
        object.__setattr__(self, "working_weekends", frozenset(self.working_weekends))
        object.__setattr__(self, "names", MappingProxyType(dict(self.names)))
        if not 1 <= self.year <= 9999:
            raise ValueError(f"year {self.year} is outside 1..9999")
        wrong = sorted(d for d in self.holidays | self.working_weekends if d.year != self.year)
        if wrong:
            raise ValueError(f"dates outside {self.year}: {wrong}")
        if any(d.weekday() < 5 for d in self.working_weekends):
            raise ValueError("a working weekend day must be a Saturday or Sunday")
        if self.holidays & self.working_weekends:
            raise ValueError(f"days both holiday and working: {sorted(self.holidays & self.working_weekends)}")
        if not set(self.names) <= self.holidays:
            raise ValueError("names given for days that are not holidays")


# --- per-year tables -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _YearTable:
    """The exact working days of one year and their running totals.

    Attributes:
        source: where the data came from.
        first: the ordinal of 1 January.
        working: ``working[k]`` is 1 when day ``first + k`` is a working day, else 0.
        prefix: ``prefix[k]`` is the number of working days among the year's first ``k`` days.
        names: non-working holiday day → holiday name.
    """

    source: DaySource
    first: int
    working: bytes
    prefix: tuple[int, ...]
    names: Mapping[date, str]


def _build_table(
    year: int, source: DaySource, is_working: Callable[[date], bool], names: Mapping[date, str]
) -> _YearTable:
    first = date(year, 1, 1)
    length = (date(year, 12, 31) - first).days + 1
    flags = bytes(int(is_working(first + timedelta(days=k))) for k in range(length))
    prefix = [0]
    for flag in flags:
        prefix.append(prefix[-1] + flag)
    return _YearTable(source, first.toordinal(), flags, tuple(prefix), MappingProxyType(dict(names)))


@functools.cache
def _package_table(year: int) -> _YearTable:
    """The table of a year covered by chinesecalendar (shared by every calendar: the data never changes)."""

    def is_working(d: date) -> bool:
        # Same rule as chinese_calendar.is_workday: a listed 调休 workday, or a weekday not listed as holiday.
        return d in _PACKAGE_WORKDAYS or (d.weekday() < 5 and d not in _PACKAGE_HOLIDAYS)

    names = {
        d: _PACKAGE_NAMES_ZH.get(name, name)
        for d, name in _PACKAGE_HOLIDAYS.items()
        if d.year == year and not is_working(d)
    }
    return _build_table(year, "chinesecalendar", is_working, names)


def _override_table(arrangement: YearArrangement) -> _YearTable:
    def is_working(d: date) -> bool:
        if d in arrangement.working_weekends:
            return True
        return d.weekday() < 5 and d not in arrangement.holidays

    return _build_table(arrangement.year, "override", is_working, arrangement.names)


_DUE_DATE_CACHE_SIZE = 65_536
"""How many unpaused due-date answers a calendar remembers (then it starts again)."""


def _weekdays_upto(ordinal: int) -> int:
    """The number of Mondays–Fridays from 0001-01-01 (a Monday, ordinal 1) to ``ordinal`` inclusive."""
    weeks, rest = divmod(ordinal, 7)
    return weeks * 5 + min(rest, 5)


def _weekdays_in_year(year: int) -> int:
    return _weekdays_upto(date(year, 12, 31).toordinal()) - _weekdays_upto(date(year, 1, 1).toordinal() - 1)


def _plain_date(d: date) -> date:
    # A datetime is a date subclass; results and DayInfo carry plain dates.
    return d.date() if isinstance(d, datetime) else d


# --- the calendar ----------------------------------------------------------------------------------------


class WorkingCalendar:
    """Working days of every year 1–9999: override files, then chinesecalendar, then a Monday–Friday guess.

    Immutable once built, so it is thread-safe; the per-year tables are built in the constructor (the
    package years' tables are cached for the whole process).
    """

    __slots__ = ("_before", "_due_dates", "_exact", "_overrides", "_tables", "_total")

    def __init__(self, overrides: Mapping[int, YearArrangement] | None = None) -> None:
        """Build a calendar from the package data plus ``overrides`` (year → arrangement).

        Args:
            overrides: arrangements that replace the package data for their years, or add years to it.

        Raises:
            ValueError: a key of ``overrides`` differs from its arrangement's year.
        """
        own = dict(overrides or {})
        for year, arrangement in own.items():
            if year != arrangement.year:
                raise ValueError(f"override keyed {year} holds the arrangement for {arrangement.year}")
        self._overrides: Mapping[int, YearArrangement] = MappingProxyType(own)
        tables: dict[int, _YearTable] = {year: _package_table(year) for year in _PACKAGE_YEARS}
        tables.update({year: _override_table(arrangement) for year, arrangement in own.items()})
        self._tables: Mapping[int, _YearTable] = MappingProxyType(tables)
        self._exact: tuple[int, ...] = tuple(sorted(tables))
        # _before[i]: how many more working days the exact years before _exact[i] have than Monday–Friday
        # would give them; with it, W() needs only the table of the day's own year.
        before = [0]
        for year in self._exact:
            before.append(before[-1] + tables[year].prefix[-1] - _weekdays_in_year(year))
        self._before: tuple[int, ...] = tuple(before)
        self._total = self._w(_MAX_ORDINAL)
        self._due_dates: dict[tuple[int, int, bool], CalendarResult] = {}

    def __repr__(self) -> str:
        return f"WorkingCalendar(overrides={sorted(self._overrides)})"

    @classmethod
    def from_directory(cls, directory: Path | str | None) -> WorkingCalendar:
        """Build a calendar from the package data plus every ``*.yaml`` override file in ``directory``.

        Args:
            directory: the folder of ``<year>.yaml`` files; None or a missing folder means no overrides.

        Raises:
            DefinitionError: with every problem of every file (YAML-level problems keep their ``yaml.``
                codes), or ``calendar.not_directory`` when ``directory`` exists but is not a folder.
        """
        if directory is None:
            return cls()
        folder = Path(directory)
        if not folder.exists():
            return cls()
        if not folder.is_dir():
            raise DefinitionError([Problem.of("calendar.not_directory", None, path=str(folder))])
        overrides: dict[int, YearArrangement] = {}
        problems: list[Problem] = []
        for path in sorted(p for p in folder.glob("*.yaml") if p.is_file()):
            arrangement, found = _read_year_file(path)
            problems.extend(found)
            if arrangement is not None:
                # Unique file names plus the "stem equals year" rule make years unique as well.
                overrides[arrangement.year] = arrangement
        if problems:
            raise DefinitionError(problems)
        return cls(overrides)

    # -- single days --

    def day(self, d: date) -> DayInfo:
        """Everything known about ``d``: working or not, where that came from, and its holiday's name."""
        d = _plain_date(d)
        table = self._tables.get(d.year)
        if table is None:
            return DayInfo(d, d.weekday() < 5, True, "weekday-estimate", None)
        working = table.working[d.toordinal() - table.first] == 1
        return DayInfo(d, working, False, table.source, table.names.get(d))

    def is_working_day(self, d: date) -> bool:
        """Whether ``d`` is a working day (a guess, Monday–Friday, in a year with no data)."""
        table = self._tables.get(d.year)
        if table is None:
            return d.weekday() < 5
        return table.working[d.toordinal() - table.first] == 1

    def covered_years(self) -> frozenset[int]:
        """The years with exact data: the package's years plus the override files' years."""
        return frozenset(self._exact)

    # -- arithmetic --

    def add_working_days(self, start: date, n: int) -> CalendarResult:
        """The ``n``-th working day after ``start`` (before it when ``n`` is negative).

        The start day itself never counts (民法典 Art. 201: 开始的当日不计入), so ``n = 1`` is the next
        working day strictly after ``start`` whatever ``start`` is, and ``n = 0`` returns ``start``.

        Returns:
            The day, estimated when a day examined (between ``start`` and the result) lies in a year with
            no data; clamped to ``date.max``/``date.min`` (and estimated) when the calendar ends first.
        """
        origin = start.toordinal()
        if n == 0:
            return CalendarResult(date.fromordinal(origin), False)
        if n > 0:
            found = self._nth_after(origin, n)
            if found is None:
                return CalendarResult(date.max, True)
            return CalendarResult(date.fromordinal(found), self._any_estimated(origin + 1, found))
        found = self._nth_before(origin, -n)
        if found is None:
            return CalendarResult(date.min, True)
        return CalendarResult(date.fromordinal(found), self._any_estimated(found, origin - 1))

    def add_calendar_days(self, start: date, n: int, *, roll_to_working_day: bool = False) -> CalendarResult:
        """``start`` plus ``n`` calendar days.

        Args:
            start: the day the period starts from.
            n: calendar days to add (may be negative).
            roll_to_working_day: when the result is not a working day, move it to the next working
                day (民法典 Art. 203: a period whose last day is a statutory holiday ends on the next
                working day).

        Returns:
            The day. It is estimated only when rolling looked at a day of a year with no data, or when the
            result was clamped to ``date.min``/``date.max``.
        """
        target = start.toordinal() + n
        clamped = not _MIN_ORDINAL <= target <= _MAX_ORDINAL
        target = min(max(target, _MIN_ORDINAL), _MAX_ORDINAL)
        result = date.fromordinal(target)
        if not roll_to_working_day:
            return CalendarResult(result, clamped)
        rolled = self.next_working_day(result, include_self=True)
        return CalendarResult(rolled.date, clamped or rolled.estimated)

    def next_working_day(self, d: date, *, include_self: bool = True) -> CalendarResult:
        """The first working day on or after ``d`` (strictly after when ``include_self`` is False).

        Returns:
            The day, estimated when a day examined lies in a year with no data, or clamped to ``date.max``
            (and estimated) when no working day is left.
        """
        base = d.toordinal() - 1 if include_self else d.toordinal()
        found = self._nth_after(base, 1)
        if found is None:
            return CalendarResult(date.max, True)
        return CalendarResult(date.fromordinal(found), self._any_estimated(base + 1, found))

    def working_days_between(self, start: date, end: date) -> CountResult:
        """The number of working days ``d`` with ``start < d <= end``.

        When ``end < start`` it is negative: minus the number of working days ``d`` with ``end < d <= start``.

        It is the inverse of :meth:`add_working_days`: ``add_working_days(s, n).date == e`` implies
        ``working_days_between(s, e).days == n``.
        """
        low, high = start.toordinal(), end.toordinal()
        if low == high:
            return CountResult(0, False)
        days = self._w(high) - self._w(low)
        low, high = min(low, high), max(low, high)
        return CountResult(days, self._any_estimated(low + 1, high))

    def due_date(
        self,
        start: date,
        n: int,
        *,
        unit: Literal["working_days", "calendar_days"],
        pauses: Sequence[Pause] = (),
    ) -> CalendarResult:
        """When a clock started on ``start`` has run ``n`` days of ``unit``, not counting paused days.

        Days are counted as in :meth:`add_working_days` (the start day never counts). A day inside any
        pause is skipped (行政许可法 Art. 45: time for 听证、招标、拍卖、检验、检测、检疫、鉴定、专家评审
        does not count), so for working days each paused working day moves the due date one working
        day later. Pauses may overlap,
        touch, or start before ``start``. The calendar-day due date is not rolled to a working day (use
        :meth:`add_calendar_days` for that rule).

        An open pause (``end=None``) is treated as if it had ended on its own start day, i.e. it pauses
        nothing: while it stays open the due date is unknown, so callers show the result as provisional and
        recompute when the pause ends.

        Raises:
            ValueError: ``n`` is negative or ``unit`` is not one of the two units (programming errors).
        """
        if n < 0:
            raise ValueError(f"a clock cannot run {n} days")
        if unit not in ("working_days", "calendar_days"):
            raise ValueError(f"unknown unit {unit!r}")
        origin = start.toordinal()
        if n == 0:
            return CalendarResult(date.fromordinal(origin), False)
        working = unit == "working_days"
        if not pauses:
            # The scheduler asks the same few questions for every deadline of a kind (due dates of each
            # ladder level from the same start): the answer of an immutable calendar is remembered.
            key = (origin, n, working)
            cached = self._due_dates.get(key)
            if cached is None:
                if len(self._due_dates) >= _DUE_DATE_CACHE_SIZE:
                    self._due_dates.clear()
                cached = self._due_dates[key] = self._due_date(origin, n, working, ())
            return cached
        return self._due_date(origin, n, working, pauses)

    def _due_date(self, origin: int, n: int, working: bool, pauses: Sequence[Pause]) -> CalendarResult:
        count: Callable[[int], int] = self._w if working else _identity
        cursor, remaining = origin, n
        for first, last in _paused_runs(pauses, origin):
            # Days that count between the cursor and this pause; if they suffice, the pause is too late.
            available = count(first - 1) - count(cursor)
            if available >= remaining:
                break
            remaining -= available
            cursor = last
        if working:
            found = self._nth_after(cursor, remaining)
        else:
            found = cursor + remaining if cursor + remaining <= _MAX_ORDINAL else None
        if found is None:
            return CalendarResult(date.max, True)
        return CalendarResult(date.fromordinal(found), working and self._any_estimated(origin + 1, found))

    # -- internals --

    def _w(self, ordinal: int) -> int:
        """``W``: the number of working days from 0001-01-01 to ``ordinal`` inclusive (0 for ordinal 0)."""
        if ordinal <= 0:
            return 0
        year = date.fromordinal(ordinal).year
        index = bisect.bisect_left(self._exact, year)
        table = self._tables.get(year)
        if table is None:
            return _weekdays_upto(ordinal) + self._before[index]
        return _weekdays_upto(table.first - 1) + self._before[index] + table.prefix[ordinal - table.first + 1]

    def _nth_after(self, base: int, k: int) -> int | None:
        """The ordinal of the ``k``-th (k >= 1) working day strictly after ``base``, or None past date.max."""
        target = self._w(base) + k
        if self._total < target:
            return None
        # Exponential search for a bracket W(low) < target <= W(high), then bisection. The first bracket
        # (2k + 16 days) already holds the answer unless holidays are very dense, so small k stays cheap.
        low, step = base, 2 * k + 16
        high = min(base + step, _MAX_ORDINAL)
        while self._w(high) < target:
            low, step = high, step * 2
            high = min(base + step, _MAX_ORDINAL)
        return self._bisect(target, low, high)

    def _nth_before(self, base: int, k: int) -> int | None:
        """The ordinal of the ``k``-th (k >= 1) working day strictly before ``base``; None before date.min."""
        # That day is the first one whose W reaches W(base - 1) - k + 1.
        target = self._w(base - 1) - k + 1
        if target <= 0:
            return None
        high, step = base - 1, 2 * k + 16
        low = max(base - 1 - step, 0)
        while self._w(low) >= target:
            high, step = low, step * 2
            low = max(base - 1 - step, 0)
        return self._bisect(target, low, high)

    def _bisect(self, target: int, low: int, high: int) -> int:
        """The first ordinal in ``(low, high]`` whose W reaches ``target``, given W(low) < target <= W(high).

        Being the first, it is a working day: W only rises on working days.
        """
        while high - low > 1:
            middle = (low + high) // 2
            if self._w(middle) >= target:
                high = middle
            else:
                low = middle
        return high

    def _any_estimated(self, first: int, last: int) -> bool:
        """Whether a day in ``[first, last]`` (ordinals, first <= last) lies in a year with no data."""
        first_year, last_year = date.fromordinal(first).year, date.fromordinal(last).year
        exact = bisect.bisect_right(self._exact, last_year) - bisect.bisect_left(self._exact, first_year)
        return exact < last_year - first_year + 1


def _identity(ordinal: int) -> int:
    return ordinal


def _paused_runs(pauses: Iterable[Pause], origin: int) -> list[tuple[int, int]]:
    """The paused days after ``origin`` as sorted, disjoint, inclusive ordinal runs (open pauses dropped)."""
    runs: list[tuple[int, int]] = []
    for pause in pauses:
        if pause.end is None:
            continue  # treated as ended on its start: see WorkingCalendar.due_date
        first, last = max(pause.start.toordinal(), origin + 1), pause.end.toordinal() - 1
        if first <= last:
            runs.append((first, last))
    runs.sort()
    merged: list[tuple[int, int]] = []
    for first, last in runs:
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


@functools.cache
def default_calendar() -> WorkingCalendar:
    """The process-wide calendar: package data plus the project's ``workflows/calendars/*.yaml``.

    Built on first use and cached. If a file there is invalid, each call raises the same
    :class:`DefinitionError` (failures are not cached), so a fixed file is picked up without a restart.
    """
    return WorkingCalendar.from_directory(Path(__file__).resolve().parent.parent / "workflows" / "calendars")


# --- override files --------------------------------------------------------------------------------------

_ISO_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_TOP_KEYS: Final = ("year", "title", "source", "holidays", "working_weekends")
_PERIOD_KEYS: Final = ("name", "from", "to")


def _shorten(value: Any) -> str:
    """``value`` as shown in a message: dates in ISO form, blank text quoted, at most 40 characters."""
    if isinstance(value, date):
        text = value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    elif isinstance(value, str) and value.strip():
        text = value
    else:
        text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _as_date(value: Any) -> date | None:
    """``value`` as a date: a YAML date, or a quoted ``YYYY-MM-DD`` text; None otherwise."""
    if isinstance(value, datetime):
        return None  # a time of day has no place in a holiday arrangement
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _is_year(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 9999


def _check_date(value: Any) -> date:
    found = _as_date(value)
    if found is None:
        raise PydanticCustomError("calendar.bad_date", "not a date: {value}", {"value": _shorten(value)})
    return found


def _check_year(value: Any) -> Any:
    if not _is_year(value):
        raise PydanticCustomError("calendar.bad_year", "not a year: {value}", {"value": _shorten(value)})
    return value


def _check_text(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise PydanticCustomError("calendar.bad_text", "not a text: {value}", {"value": _shorten(value)})


def _check_optional_text(value: Any) -> str | None:
    # None is handled here, not by a `str | None` union, because union errors put the branch name into
    # the error's loc, which would no longer be a YAML path.
    return None if value is None else _check_text(value)


def _check_weekend(value: date) -> date:
    weekday = value.weekday()
    if weekday < 5:
        raise PydanticCustomError(
            "calendar.not_weekend",
            "{date} is not a weekend day",
            {
                "date": value.isoformat(),
                "weekday_zh": _WEEKDAY_ZH[weekday],
                "weekday_en": _WEEKDAY_EN[weekday],
            },
        )
    return value


def _check_not_empty(periods: tuple[Any, ...]) -> tuple[Any, ...]:
    if not periods:
        raise PydanticCustomError("calendar.no_holidays", "no holiday periods")
    return periods


_Date = Annotated[date, BeforeValidator(_check_date)]
_WeekendDate = Annotated[date, BeforeValidator(_check_date), AfterValidator(_check_weekend)]
_Year = Annotated[int, BeforeValidator(_check_year)]
_Text = Annotated[str, BeforeValidator(_check_text)]
_OptionalText = Annotated[str | None, BeforeValidator(_check_optional_text)]


class _HolidayPeriod(BaseModel):
    """One ``holidays`` entry: ``{name, from, to}``, both ends inclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: _Text
    start: _Date = Field(alias="from")
    end: _Date = Field(alias="to")

    @field_validator("end")
    @classmethod
    def _not_before_start(cls, end: date, info: ValidationInfo) -> date:
        # A field validator (not a model validator) so that the problem points at the `to` value.
        start = info.data.get("start")
        if isinstance(start, date) and end < start:
            raise PydanticCustomError(
                "calendar.range_reversed",
                "ends before it starts",
                {"start": start.isoformat(), "end": end.isoformat()},
            )
        return end


class _YearFile(BaseModel):
    """The schema of an override file; checks each value on its own (relations: _relation_problems)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    year: _Year
    title: _OptionalText = None
    source: _OptionalText = None
    # Non-empty is checked after the items (not with min_length), so that a list whose items all fail is
    # not also reported as empty.
    holidays: Annotated[tuple[_HolidayPeriod, ...], AfterValidator(_check_not_empty)]
    working_weekends: tuple[_WeekendDate, ...] = ()


def load_year_file(path: Path | str) -> YearArrangement:
    """Read and check one override file (format: ``workflows/calendars/README.md``).

    Raises:
        DefinitionError: with every problem of the file, each located at its file, line and column
            (YAML-level problems, e.g. a syntax error, keep their ``yaml.`` codes).
    """
    arrangement, problems = _read_year_file(Path(path))
    if problems or arrangement is None:
        raise DefinitionError(problems)
    return arrangement


def _read_year_file(path: Path) -> tuple[YearArrangement | None, list[Problem]]:
    """The file's arrangement (None when it has problems) and all of its problems, sorted by position."""
    try:
        loaded = load_yaml_file(path)
    except YamlProblems as exc:
        return None, exc.problems()
    except ValueError as exc:
        # PyYAML raises a bare ValueError for an impossible unquoted date (2027-02-30), which the reader
        # does not turn into a located problem; it is still a problem of the file, not a crash.
        return None, [Problem.of("yaml.scalar", Location(str(path), 1, 1, ()), reason=str(exc))]
    problems: list[Problem] = []
    model: _YearFile | None = None
    try:
        model = _YearFile.model_validate(loaded.data)
    except ValidationError as exc:
        problems.extend(_schema_problems(exc, loaded.source))
    # Relations are checked on the raw data, so that they are reported even when the schema fails too.
    problems.extend(_relation_problems(loaded.data, loaded.source, path))
    problems.sort(key=lambda p: (p.location.line, p.location.column) if p.location else (0, 0))
    if problems or model is None:
        return None, problems
    holidays: dict[date, str] = {}
    for period in model.holidays:
        for offset in range((period.end - period.start).days + 1):
            holidays.setdefault(period.start + timedelta(days=offset), period.name)
    arrangement = YearArrangement(
        year=model.year,
        holidays=frozenset(holidays),
        working_weekends=frozenset(model.working_weekends),
        title=model.title,
        source=model.source,
        names=holidays,
    )
    return arrangement, []


def _schema_problems(exc: ValidationError, source: SourceMap) -> list[Problem]:
    """Pydantic's errors as located problems: its ``loc`` tuples are the YAML paths of the source map."""
    problems = []
    for error in exc.errors(include_url=False):
        path = tuple(error["loc"])
        kind = error["type"]
        where = source.locate(path)
        key = str(path[-1]) if path else ""
        if kind.startswith("calendar."):
            problems.append(Problem.of(kind, where, **error.get("ctx", {})))
        elif kind in ("extra_forbidden", "invalid_key"):  # invalid_key: a key that is not text, e.g. 2028
            allowed = _TOP_KEYS if len(path) == 1 else _PERIOD_KEYS
            problems.append(Problem.of("calendar.unknown_key", where, key=key, allowed=", ".join(allowed)))
        elif kind == "missing":
            problems.append(Problem.of("calendar.missing_key", where, key=key))
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            problems.append(Problem.of("calendar.not_mapping", where))
        elif kind in ("list_type", "tuple_type"):
            problems.append(Problem.of("calendar.not_list", where, key=key))
        else:  # pragma: no cover - every other pydantic error is caught by the custom checks above
            problems.append(Problem.of("calendar.invalid", where, reason=error["msg"]))
    return problems


def _relation_problems(data: Any, source: SourceMap, path: Path) -> list[Problem]:
    """Problems between values: a date outside the file's year, a day both holiday and working, and a
    file name that is not the year. Values of the wrong type are skipped (the schema reports them)."""
    if not isinstance(data, dict) or not _is_year(data.get("year")):
        return []
    year: int = data["year"]
    problems = []
    if path.stem != str(year):
        problems.append(Problem.of("calendar.file_name", source.locate(("year",)), year=year, file=path.name))

    def check_year(value: date, where: tuple[str | int, ...]) -> bool:
        if value.year == year:
            return True
        problems.append(Problem.of("calendar.wrong_year", source.locate(where), date=value.isoformat(), year=year))
        return False

    holidays: dict[date, str] = {}
    periods = data.get("holidays")
    for index, entry in enumerate(periods if isinstance(periods, list) else []):
        if not isinstance(entry, dict):
            continue
        start, end = _as_date(entry.get("from")), _as_date(entry.get("to"))
        in_year = [
            check_year(value, ("holidays", index, key))
            for key, value in (("from", start), ("to", end))
            if value is not None
        ]
        # Only a well-formed period inside the year is expanded, which also bounds the loop to 366 days.
        if start is not None and end is not None and all(in_year) and start <= end:
            name = entry.get("name")
            for offset in range((end - start).days + 1):
                holidays.setdefault(start + timedelta(days=offset), str(name).strip() if name else "?")
    weekends = data.get("working_weekends")
    for index, value in enumerate(weekends if isinstance(weekends, list) else []):
        day = _as_date(value)
        if day is None or not check_year(day, ("working_weekends", index)):
            continue
        if day in holidays:
            problems.append(
                Problem.of(
                    "calendar.holiday_on_working_weekend",
                    source.locate(("working_weekends", index)),
                    date=day.isoformat(),
                    name=holidays[day],
                )
            )
    return problems
