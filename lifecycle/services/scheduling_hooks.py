"""The scheduling area's change hook: after every change of a project, in its transaction, store the
project's traffic light (红黄绿灯) and when the scheduler next has something to do for each deadline the
change opened or changed.

Both ride along with the change (see :mod:`.hooks`) rather than being recomputed later, so a rollback drops
them with it and the light shown is never older than the project: a transition that closes the last overdue
item turns the light green in the same commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.calendar import WorkingCalendar
from lifecycle.engine.core import Engine
from lifecycle.engine.escalation import next_action_at
from lifecycle.engine.instance import Deadline, ProjectInstance
from lifecycle.engine.lights import Light, compute_light
from lifecycle.engine.redate import parse_obligation_clock
from lifecycle.spec.models import Definition, Ladder

from .hooks import Change


def light_json(light: Light) -> list[dict[str, Any]]:
    """The reasons of a light as stored on the project (``projects.light_reasons``)."""
    return [
        {
            "measure": reason.measure,
            "value": str(reason.value),
            "color": reason.color,
            "title": reason.title,
            "title_en": reason.title_en,
        }
        for reason in light.reasons
    ]


def next_fire_times(
    calendar: WorkingCalendar, definition: Definition, instance: ProjectInstance, deadline_ids: list[str]
) -> list[tuple[str, datetime | None]]:
    """``(deadline id, next fire time or None)`` for each of ``deadline_ids`` still open in ``instance``."""
    ladders: Mapping[str, Ladder] = definition.lookup("ladders")
    out: list[tuple[str, datetime | None]] = []
    for deadline_id in dict.fromkeys(deadline_ids):
        deadline: Deadline | None = instance.deadlines.get(deadline_id)
        if deadline is None or deadline.closed_at is not None:
            continue
        ladder = ladders.get(deadline.ladder) if deadline.ladder else None
        out.append((deadline_id, next_action_at(calendar, ladder, deadline)))
    return out


class SchedulingHook:
    """Derives the traffic light and the deadlines' next fire times of every change, and closes the reports
    an ended project no longer owes (a :class:`~lifecycle.services.hooks.ChangeHook`: all of it is stored with
    the change's own rows, so it writes nothing of its own)."""

    def __init__(self, engine: Engine) -> None:
        # The engine, not its calendar: the scheduler may swap in a calendar that knows a new year.
        self.engine = engine

    def derive(self, change: Change) -> None:
        state = change.definition.lookup("states").get(change.instance.state)
        if state is not None and state.terminal:
            _close_reports(change)
        light = compute_light(change.definition, change.instance, change.now)
        reasons = light_json(light)
        record = change.record
        # An unchanged light is not written again (most changes leave it as it is; what time alone moves is
        # caught by the daily refresh, which keys on light_at, the last time the light was written).
        if (record.light, record.light_reasons) != (light.color, reasons):
            change.derived.update(light=light.color, light_reasons=reasons, light_at=change.now)
        result = change.result
        touched = [*result.deadlines_opened, *result.deadlines_changed]
        if touched:
            times = next_fire_times(self.engine.calendar, change.definition, change.instance, touched)
            change.fire_times.update(times)

    async def write(self, session: AsyncSession, changes: Sequence[Change]) -> None:
        """Nothing: what this hook derives is stored with the change's rows."""


def _close_reports(change: Change) -> None:
    """A project that has ended (终止, 完成) owes no more reports: the deadlines of its missing ones close, so
    their ladders stop. (Clocks of the definition close by themselves: none runs in a final state.)"""
    for deadline in change.instance.deadlines.values():
        if deadline.closed_at is None and parse_obligation_clock(deadline.clock) is not None:
            deadline.closed_at = change.now
            change.result.deadlines_closed.append(deadline.id)
