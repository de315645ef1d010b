"""Re-dating deadlines whose due date was estimated, once the calendar knows their years.

A due date counted through a year whose holidays are not published yet is a Monday–Friday guess, flagged
``estimated`` (see :mod:`lifecycle.calendar`). When an administrator adds that year's arrangement, the same
count gives the exact day. :func:`redated_due` counts a deadline again with the calendar as it is now: from
the day its clock started, for the clock's length, skipping its pauses, exactly as the engine counted it
when the clock opened. Deadlines of recurring obligations (clock ``obligation:<id>:<period>``) take their
period's due day again, moved by the obligation's holiday rule.

Pure: it reads the definition, the instance and the calendar, and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from lifecycle.calendar import Pause as CalendarPause
from lifecycle.calendar import WorkingCalendar
from lifecycle.clock import end_of_local_day
from lifecycle.spec.models import Clock, Obligation

from .compiled import CompiledDefinition
from .instance import Deadline, ProjectInstance
from .obligations import occurrence_of

OBLIGATION_CLOCK_PREFIX = "obligation:"
"""Deadlines of recurring obligations have the clock id ``obligation:<obligation id>:<period>``."""


def obligation_clock(obligation_id: str, period: str) -> str:
    """The clock id of the deadline of one period of an obligation (``obligation:weekly_progress:2026-W41``)."""
    return f"{OBLIGATION_CLOCK_PREFIX}{obligation_id}:{period}"


def parse_obligation_clock(clock: str) -> tuple[str, str] | None:
    """``(obligation id, period)`` of an obligation deadline's clock id; None for any other clock."""
    if not clock.startswith(OBLIGATION_CLOCK_PREFIX):
        return None
    obligation_id, sep, period = clock[len(OBLIGATION_CLOCK_PREFIX) :].partition(":")
    return (obligation_id, period) if sep and obligation_id and period else None


@dataclass(frozen=True)
class Due:
    """A deadline's due day, the instant it is due by, and whether the day is still a guess."""

    date: date
    at: datetime
    estimated: bool


def clock_of(compiled: CompiledDefinition, project: ProjectInstance, deadline: Deadline) -> Clock | None:
    """The clock spec that opened ``deadline``; None for an obligation deadline or a clock no longer known."""
    if deadline.subject_kind == "project":
        clocks = compiled.definition.clocks
    elif deadline.subject_kind == "task":
        task = project.tasks.get(deadline.subject_id)
        clocks = compiled.task_machines[task.machine].clocks if task else []
    else:
        notice = project.notices.get(deadline.subject_id)
        clocks = compiled.task_machines[notice.machine].clocks if notice else []
    return next((c for c in clocks if c.id == deadline.clock), None)


def redated_due(
    calendar: WorkingCalendar, compiled: CompiledDefinition, project: ProjectInstance, deadline: Deadline
) -> Due | None:
    """The deadline's due day counted again with ``calendar``; None when it cannot be counted again (a cure
    date or a date field is exact by nature; an unknown clock)."""
    found = parse_obligation_clock(deadline.clock)
    if found is not None:
        obligation: Obligation | None = compiled.definition.lookup("obligations").get(found[0])
        occurrence = occurrence_of(calendar, obligation, found[1]) if obligation else None
        if occurrence is None:
            return None
        return Due(occurrence.due_on, occurrence.due_at, occurrence.estimated)
    clock = clock_of(compiled, project, deadline)
    if clock is None:
        return None
    pauses = [CalendarPause(p.start, p.end) for p in deadline.pauses]
    if clock.basis == "duration" and clock.duration is not None:
        length = clock.duration
    elif clock.basis == "item_time_limit" and deadline.subject_kind == "task":
        task = project.tasks[deadline.subject_id]
        length = compiled.items[(task.group, task.item)].time_limit
    else:
        return None
    result = calendar.due_date(deadline.started_on, length.days, unit=length.unit, pauses=pauses)
    return Due(result.date, end_of_local_day(result.date), result.estimated)
