"""The scheduling area's change hook: after every change of a project, in its transaction, store the
project's traffic light (红黄绿灯) and when the scheduler next has something to do for each deadline the
change opened or changed.

Both ride along with the change (see :mod:`.hooks`) rather than being recomputed later, so a rollback drops
them with it and the light shown is never older than the project: a transition that closes the last overdue
item turns the light green in the same commit.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from lifecycle.store.scheduling import SchedulingRepository

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
    """Writes the traffic light and the deadlines' next fire times of every change (a
    :class:`~lifecycle.services.hooks.ChangeHook`)."""

    def __init__(self, engine: Engine) -> None:
        # The engine, not its calendar: the scheduler may swap in a calendar that knows a new year.
        self.engine = engine

    async def __call__(self, session: AsyncSession, change: Change) -> None:
        repository = SchedulingRepository(session)
        state = change.definition.lookup("states").get(change.instance.state)
        if state is not None and state.terminal:
            await self._close_reports(repository, change)
        light = compute_light(change.definition, change.instance, change.now)
        reasons = light_json(light)
        record = change.record
        # An unchanged light is not written again: most changes leave it as it is, and what time alone moves
        # is caught by the daily refresh (which keys on light_at, the last time the light was written).
        if (record.light, record.light_reasons) != (light.color, reasons):
            await repository.set_light(record.id, light.color, reasons, change.now)
        change.derived.update(light=light.color, light_reasons=reasons)
        result = change.result
        if result is None:
            return
        touched = [*result.deadlines_opened, *result.deadlines_changed]
        if touched:
            times = next_fire_times(self.engine.calendar, change.definition, change.instance, touched)
            await repository.schedule(change.record.id, times)

    @staticmethod
    async def _close_reports(repository: SchedulingRepository, change: Change) -> None:
        """A project that has ended (终止, 完成) owes no more reports: the deadlines of its missing ones close,
        so their ladders stop. (Clocks of the definition close by themselves: none runs in a final state.)"""
        owed = [
            d
            for d in change.instance.deadlines.values()
            if d.closed_at is None and parse_obligation_clock(d.clock) is not None
        ]
        for deadline in owed:
            deadline.closed_at = change.now
        await repository.close_deadlines(change.record.id, [d.id for d in owed], change.now)
