"""The one source of "now", and the county's local time.

Nothing in the system reads the wall clock except :class:`SystemClock`. The engine takes ``now`` as an
argument; services and the scheduler take a :class:`Clock`; tests pass a :class:`FrozenClock` and move it
instead of sleeping (as Temporal's time-skipping test environment does).

Times are stored in UTC and shown in Asia/Shanghai. China has kept UTC+8 without daylight saving since 1991,
so a fixed offset is exact for every date the service handles and needs no time-zone database.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Protocol

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
"""The county's local time: UTC+8."""


class Clock(Protocol):
    """Something that says what time it is (always timezone-aware, UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that stands still until moved: for tests and for ``lifecycle sweep --as-of``."""

    def __init__(self, at: datetime) -> None:
        self._now = ensure_utc(at)

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        """Jump to ``at``."""
        self._now = ensure_utc(at)

    def advance(self, delta: timedelta) -> None:
        """Move forward by ``delta``."""
        self._now += delta


def ensure_utc(at: datetime) -> datetime:
    """``at`` in UTC; a naive datetime is taken as UTC."""
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


def local_date(at: datetime) -> date:
    """The Asia/Shanghai calendar date of the instant ``at``."""
    return ensure_utc(at).astimezone(SHANGHAI).date()


@functools.lru_cache(maxsize=4096)
def end_of_local_day(day: date) -> datetime:
    """The instant (UTC) at which the local day ``day`` ends: a deadline "due on day D" is due by then.
    (Remembered: the scheduler asks it for the same few days over and over.)"""
    return datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=SHANGHAI).astimezone(UTC)


def local_datetime(day: date, at: time) -> datetime:
    """The instant (UTC) of local time ``at`` on local day ``day``."""
    return datetime.combine(day, at, tzinfo=SHANGHAI).astimezone(UTC)
