"""A tick fires what is due for many projects in one transaction per claimed batch: every level once, every
project's history chained without a gap, and a batch that fails is fired again one deadline at a time so
that only the project in trouble is left for later. On both dialects; time moves only by the frozen clock."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.calendar import default_calendar
from lifecycle.clock import end_of_local_day, local_date
from lifecycle.scheduler.sweep import Sweeper
from lifecycle.services import Principal
from lifecycle.services.hooks import Change
from tests.scheduling.conftest import PLANNING, UNIT_A, Clockwork, as_, local

pytestmark = pytest.mark.anyio

ADMIN = Principal("root", "管理员", roles=frozenset({"admin"}))
PERMIT = "permits.planning_permit"
STARTED = local(2026, 11, 2, 9)  # a Monday


def working_days_after(days: int) -> timedelta:
    """From :data:`STARTED` to the end of the day ``days`` working days later."""
    due = default_calendar().add_working_days(local_date(STARTED), days).date
    return end_of_local_day(due) - STARTED


async def seeded(clockwork: Clockwork, count: int, *, with_permit: int) -> list[str]:
    """``count`` ladder-mini projects entering 审批 at :data:`STARTED` (their 30-working-day limit starts);
    the first ``with_permit`` also have their planning permit accepted then (its 20-working-day limit starts)."""
    ids = []
    for i in range(count):
        project_id = await clockwork.seed("ladder-mini", "permitting", STARTED, name=f"项目{i}")
        if i < with_permit:
            clockwork.clock.set(STARTED)
            task = await clockwork.services.fire_task(as_(UNIT_A), project_id, PERMIT, None, "submit")
            await clockwork.services.fire_task(as_(PLANNING), project_id, PERMIT, task.version, "accept")
        ids.append(project_id)
    return ids


async def test_one_tick_fires_every_due_level_of_many_projects_once_and_every_chain_verifies(
    clockwork: Clockwork, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await seeded(clockwork, 6, with_permit=2)
    # 30 working days on: the permit's limit (20) is 10 days past (levels 1–3 due), the permitting limit
    # (30) is due today (level 1). Both deadlines of a project are fired in the same batch, as one change.
    with caplog.at_level(logging.WARNING, logger="lifecycle.scheduler"):
        report = await clockwork.sweep(STARTED + working_days_after(30))
    assert not [r for r in caplog.records if "one by one" in r.getMessage()]  # the batch went through whole

    fired = Counter((f.project_id, f.deadline_id.split("/")[-2], f.level) for f in report.fired)
    assert all(n == 1 for n in fired.values()), fired
    for project_id in ids:
        assert fired[(project_id, "permitting_limit", 1)] == 1
    for project_id in ids[:2]:
        assert [level for (p, clock, level) in fired if p == project_id and clock == "time_limit"] == [1, 2, 3]
    for project_id in ids[2:]:
        assert not [key for key in fired if key[0] == project_id and key[1] == "time_limit"]

    for project_id in ids:
        levels = [(e.deadline_id.split("/")[-2], e.level) for e in await clockwork.escalations(project_id)]
        assert len(levels) == len(set(levels))
        history = await clockwork.events(project_id)
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        escalated = [e for e in history if e.kind == "deadline.escalated"]
        assert len(escalated) == len(levels)
    assert await clockwork.services.audit(as_(ADMIN)) == []

    # Nothing is due again until the next level's day: a second tick at the same instant fires nothing.
    again = await clockwork.sweep(STARTED + working_days_after(30))
    assert again.fired == []


class FailsFor:
    """A change hook that fails for one project: something wrong with that project alone."""

    def __init__(self, project_id: str) -> None:
        self.project_id = project_id

    def derive(self, change: Change) -> None:
        if change.record.id == self.project_id:
            raise RuntimeError(f"project {self.project_id} cannot be written")

    async def write(self, session: AsyncSession, changes: Sequence[Change]) -> None:
        pass


async def test_a_batch_that_fails_is_fired_one_deadline_at_a_time_and_only_the_broken_project_waits(
    clockwork: Clockwork,
) -> None:
    ids = await seeded(clockwork, 4, with_permit=0)
    broken = ids[1]
    services = clockwork.services
    hook = FailsFor(broken)
    services.hooks.append(hook)
    at = STARTED + working_days_after(30)
    clockwork.clock.set(at)
    report = await Sweeper(services).tick(at)
    services.hooks.remove(hook)

    assert {f.project_id for f in report.fired} == set(ids) - {broken}
    assert len(report.errors) == 1 and broken in report.errors[0]
    assert await clockwork.escalations(broken) == []
    for project_id in set(ids) - {broken}:
        assert len(await clockwork.escalations(project_id)) == 1

    # Its claim holds for the lease; once the lease has run out, the next tick fires it, once.
    later = await clockwork.sweep(at + timedelta(minutes=6))
    assert [(f.project_id, f.level) for f in later.fired] == [(broken, 1)]
    assert await clockwork.services.audit(as_(ADMIN)) == []
