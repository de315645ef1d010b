"""Escalation ladders (四级调度) and the notices (提示函 / 督办函) their levels send.

A deadline that passes climbs its ladder: level *n* comes due ``after`` working (or calendar) days past the
deadline's due date. The scheduler asks :func:`levels_due` which levels have come due by now and fires each
exactly once; this module only computes, it never records.

Notice templates come from YAML, which is untrusted input: :func:`render_notice` substitutes ``{name}`` for
the closed set of placeholders in :data:`lifecycle.spec.models.NOTICE_PLACEHOLDERS` and nothing else. It does
not use ``str.format``, whose ``{a.b}`` and ``{a[0]}`` forms reach into objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from lifecycle.calendar import WorkingCalendar
from lifecycle.clock import end_of_local_day, local_date
from lifecycle.spec.models import NOTICE_PLACEHOLDERS, Ladder, LadderLevel

from .instance import Deadline


@dataclass(frozen=True)
class LevelDue:
    """A ladder level that has come due for a deadline.

    Attributes:
        level: the level's spec.
        due_on: the local date from the end of which the level is due.
        due_at: that instant in UTC.
        estimated: the date relied on a year with no published holidays.
    """

    level: LadderLevel
    due_on: date
    due_at: datetime
    estimated: bool


def level_due_date(calendar: WorkingCalendar, deadline_due: date, level: LadderLevel) -> tuple[date, bool]:
    """The local date after which ``level`` is due, for a deadline due on ``deadline_due``."""
    result = calendar.due_date(deadline_due, level.after.days, unit=level.after.unit)
    return result.date, result.estimated


def levels_due(calendar: WorkingCalendar, ladder: Ladder, deadline: Deadline, now: datetime) -> list[LevelDue]:
    """Every level of ``ladder`` above the deadline's current level that has come due by ``now``, lowest first.

    A level is due once the end of its due day has passed (level ``after: 0`` is due when the deadline itself
    is). After downtime several levels may be due at once: each is returned, and fired once, in order.
    """
    due: list[LevelDue] = []
    for level in ladder.levels:
        if level.level <= deadline.level:
            continue
        on, estimated = level_due_date(calendar, deadline.due_date, level)
        at = end_of_local_day(on)
        if at > now:
            break  # levels are increasing in delay (a static check), so none above is due either
        due.append(LevelDue(level=level, due_on=on, due_at=at, estimated=estimated))
    return due


def working_days_late(calendar: WorkingCalendar, deadline: Deadline, now: datetime) -> int:
    """How many working days ``now`` is past the deadline's due date (0 if not past)."""
    today = local_date(now)
    if today <= deadline.due_date:
        return 0
    return max(0, calendar.working_days_between(deadline.due_date, today).days)


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z_]+)\}")


def render_notice(template: str, values: Mapping[str, object]) -> str:
    """``template`` with each allowed ``{name}`` replaced by ``values[name]`` (``—`` when absent).

    ``{{`` and ``}}`` are literal braces; an unknown name is left as written (the static checks refuse such
    templates before they are published, so this is only a second line of defence).
    """

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        if name not in NOTICE_PLACEHOLDERS:
            return token
        value = values.get(name)
        return "—" if value is None or value == "" else str(value)

    return _PLACEHOLDER.sub(substitute, template)
