"""Helpers for the scheduler tests: the definitions with ladders published, projects seeded in any state,
and one tick at a chosen instant.

Time moves only through the frozen clock and the instants given to :meth:`Clockwork.sweep`; nothing sleeps.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from lifecycle.clock import SHANGHAI, FrozenClock
from lifecycle.engine.instance import Actor, Event, FireResult
from lifecycle.scheduler.sweep import Sweeper
from lifecycle.services import CallContext, Principal, Services
from lifecycle.services.scheduling import Scheduling
from lifecycle.services.scheduling_views import TickReport
from lifecycle.store.models import deadlines, events
from lifecycle.store.models_scheduling import escalation_notices, escalations
from lifecycle.store.projects import ProjectHeader
from tests.support.walker import advance_to, satisfying_fields

DATA = Path(__file__).resolve().parents[1] / "data"
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"

UNIT_A = Principal("owner-a", "乡镇甲", unit_id="unit_a", unit_kind="township", roles=frozenset({"unit"}))
UNIT_B = Principal("owner-b", "县属国企乙", unit_id="unit_b", roles=frozenset({"unit"}))
NDRC = Principal("ndrc-staff", "县发展改革委", unit_id="ndrc", roles=frozenset({"department"}))
PLANNING = Principal("planner", "县规划自然资源局", unit_id="planning_bureau", roles=frozenset({"department"}))
DISPATCHER = Principal("dispatch", "重点项目事务中心", roles=frozenset({"dispatcher"}))
TASK_FORCE = Principal("task-force", "工作专班", roles=frozenset({"task_force"}))
LEADER = Principal("县领导甲", "县领导甲", roles=frozenset({"leader"}))


def as_(principal: Principal) -> CallContext:
    return CallContext(principal)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An Asia/Shanghai wall-clock instant, in UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


class Clockwork:
    """The services with the scheduling definitions, a frozen clock, and ticks at chosen instants."""

    def __init__(self, services: Services, clock: FrozenClock) -> None:
        self.services = services
        self.clock = clock
        self.scheduling = Scheduling(services)
        self.sweeper = Sweeper(services)

    async def sweep(self, at: datetime, *, dry_run: bool = False) -> TickReport:
        """Move the clock to ``at`` and run one tick; fail on any error the tick reports."""
        self.clock.set(at)
        report = await self.sweeper.tick(at, dry_run=dry_run)
        assert not report.errors, report.errors
        return report

    async def seed(
        self,
        key: str,
        state: str,
        at: datetime,
        *,
        lead_unit: str = "unit_a",
        implementing_unit: str | None = "unit_b",
        lead_leader: str | None = "县领导甲",
        name: str = "巫山县某重大项目",
        code: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> str:
        """A project of ``key`` driven by the engine to ``state`` at instant ``at`` (items of the states it
        passed completed), stored with its whole aggregate and a history saying when it entered ``state``."""
        services = self.services
        async with services.database.reader() as session:
            compiled = await services.registry.active(session, key)
        definition = compiled.definition
        values = {**satisfying_fields(definition), **(fields or {})}
        project_id = str(uuid.uuid4())
        actor = Actor("seed", frozenset({"unit"}), lead_unit)
        instance, started = services.engine.start(key, compiled.version, project_id, actor, at, fields=values)
        history = list(started.events)
        if state != instance.state:
            advance_to(services.engine, instance, state, at)
            history.append(Event("project.transition", "project", project_id, "seed", at, "seed", None, state))
        header = ProjectHeader(
            name=name, source_category="规划项目", lead_unit=lead_unit, created_by="seed", code=code,
            lead_leader=lead_leader, implementing_unit=implementing_unit,
        )  # fmt: skip
        async with services.database.transaction() as session:
            result = FireResult(state=instance.state, deadlines_opened=list(instance.deadlines))
            await services._save_new(session, header, instance, definition, result, history, "seed", at)
        return project_id

    async def escalations(self, project_id: str, deadline_id: str | None = None) -> list[Any]:
        async with self.services.database.reader() as session:
            query = select(escalations).where(escalations.c.project_id == project_id)
            if deadline_id is not None:
                query = query.where(escalations.c.deadline_id == deadline_id)
            return list(await session.execute(query.order_by(escalations.c.fired_at, escalations.c.level)))

    async def notices(self, project_id: str) -> list[Any]:
        async with self.services.database.reader() as session:
            query = select(escalation_notices).where(escalation_notices.c.project_id == project_id)
            return list(await session.execute(query.order_by(escalation_notices.c.level, escalation_notices.c.id)))

    async def deadline(self, project_id: str, deadline_id: str) -> Any:
        async with self.services.database.reader() as session:
            query = select(deadlines).where(deadlines.c.project_id == project_id, deadlines.c.id == deadline_id)
            return (await session.execute(query)).one()

    async def deadlines(self, project_id: str) -> list[Any]:
        async with self.services.database.reader() as session:
            query = select(deadlines).where(deadlines.c.project_id == project_id).order_by(deadlines.c.id)
            return list(await session.execute(query))

    async def events(self, project_id: str, kind: str | None = None) -> list[Any]:
        async with self.services.database.reader() as session:
            query = select(events).where(events.c.project_id == project_id)
            if kind is not None:
                query = query.where(events.c.kind == kind)
            return list(await session.execute(query.order_by(events.c.seq)))


@pytest.fixture
async def clockwork(services: Services, clock: FrozenClock, tmp_path: Path) -> Clockwork:
    """The ``services`` fixture with ``ladder-mini`` and ``major-project`` published too."""
    bundle = tmp_path / "scheduling-definitions"
    bundle.mkdir()
    shutil.copyfile(DATA / "ladder-mini.yaml", bundle / "ladder-mini.yaml")
    shutil.copyfile(WORKFLOWS / "major-project.yaml", bundle / "major-project.yaml")
    await services.publish_bundled(bundle)
    return Clockwork(services, clock)
