"""Estimated due dates become exact when the year's calendar is added; each level fires exactly once
whatever races (the unique constraint holds it; concurrent sweeps split the work); a dry run writes
nothing."""

from __future__ import annotations

import asyncio
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from lifecycle.calendar import WorkingCalendar
from lifecycle.clock import FrozenClock, end_of_local_day
from lifecycle.engine.core import Engine
from lifecycle.scheduler.sweep import Sweeper
from lifecycle.services import CreateProject, Services
from lifecycle.store import Database
from lifecycle.store.ids import new_id
from lifecycle.store.models import deadlines, events, projects
from lifecycle.store.models_scheduling import escalation_notices, escalations
from lifecycle.store.scheduling import EscalationRecord, SchedulingRepository
from tests.scheduling.conftest import DATA, UNIT_A, Clockwork, as_, local

pytestmark = pytest.mark.anyio

YEAR_2027 = """\
year: 2027
title: 2027年部分节假日安排（测试用，非官方）
holidays:
  - {name: 元旦, from: 2027-01-01, to: 2027-01-03}
"""


def new_project(**overrides: object) -> CreateProject:
    values: dict[str, object] = {
        "definition_key": "ladder-mini",
        "name": "巫山县某文旅项目",
        "source_category": "规划项目",
        "lead_unit": "unit_a",
        "implementing_unit": "unit_b",
        "lead_leader": "县领导甲",
        "fields": {"investment": "150"},
    }
    values.update(overrides)
    return CreateProject(**values)  # type: ignore[arg-type]


async def permitting_project(services: Services) -> str:
    """A ladder-mini project that entered permitting now: its 30-working-day permitting limit starts."""
    project = await services.create_project(as_(UNIT_A), new_project())
    fired = await services.fire(as_(UNIT_A), project.id, project.version, "start_permitting", {"approval_no": "1号"})
    return fired.id


async def calendar_services(database: Database, clock: FrozenClock, folder: Path, bundle: Path) -> Services:
    services = Services(database, engine=Engine(WorkingCalendar.from_directory(folder)), clock=clock)
    await services.publish_bundled(bundle)
    return services


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    folder.mkdir()
    shutil.copyfile(DATA / "ladder-mini.yaml", folder / "ladder-mini.yaml")
    return folder


async def test_a_deadline_reaching_into_2027_is_estimated_and_exact_once_2027_is_added(
    database: Database, clock: FrozenClock, tmp_path: Path, bundle: Path
) -> None:
    folder = tmp_path / "calendars"
    folder.mkdir()
    services = await calendar_services(database, clock, folder, bundle)
    sweeper = Sweeper(services, calendars_dir=folder)
    clock.set(local(2026, 12, 1, 9))
    project_id = await permitting_project(services)
    deadline_id = f"{project_id}/permitting_limit/1"

    async with database.reader() as session:
        row = (await session.execute(select(deadlines).where(deadlines.c.id == deadline_id))).one()
    # 22 working days left in December 2026, then eight more counted Monday–Friday: 1 January guessed working.
    assert (row.due_date, row.estimated) == (date(2027, 1, 12), True)

    quiet = await sweeper.tick(local(2026, 12, 1, 10))
    assert quiet.redated == [] and quiet.errors == []

    (folder / "2027.yaml").write_text(YEAR_2027, encoding="utf-8")
    report = await sweeper.tick(local(2026, 12, 2, 10))
    assert report.errors == []
    assert [(r.deadline_id, r.old_due, r.new_due, r.estimated) for r in report.redated] == [
        (deadline_id, date(2027, 1, 12), date(2027, 1, 13), False)
    ]
    async with database.reader() as session:
        row = (await session.execute(select(deadlines).where(deadlines.c.id == deadline_id))).one()
        (event,) = await session.execute(
            select(events.c.data).where(events.c.project_id == project_id, events.c.kind == "deadline.redated")
        )
    assert (row.due_date, row.estimated, row.due_at) == (date(2027, 1, 13), False, end_of_local_day(date(2027, 1, 13)))
    assert row.next_fire_at == row.due_at  # rescheduled with the exact date
    assert event.data == {"deadline": deadline_id, "from": "2027-01-12", "to": "2027-01-13", "estimated": False}
    assert (await sweeper.tick(local(2026, 12, 3, 10))).redated == []


async def test_a_scheduler_started_after_the_file_was_added_makes_stale_estimates_exact(
    database: Database, clock: FrozenClock, tmp_path: Path, bundle: Path
) -> None:
    folder = tmp_path / "calendars"
    folder.mkdir()
    stale = await calendar_services(database, clock, folder, bundle)  # e.g. an API process not restarted
    clock.set(local(2026, 12, 1, 9))
    (folder / "2027.yaml").write_text(YEAR_2027, encoding="utf-8")
    project_id = await permitting_project(stale)
    fresh = Services(database, engine=Engine(WorkingCalendar.from_directory(folder)), clock=clock)
    report = await Sweeper(fresh, calendars_dir=folder).tick(local(2026, 12, 1, 10))
    assert [(r.project_id, r.new_due, r.estimated) for r in report.redated] == [(project_id, date(2027, 1, 13), False)]


async def test_the_database_refuses_a_second_row_for_the_same_level(clockwork: Clockwork) -> None:
    services = clockwork.services
    project_id = await permitting_project(services)
    record = EscalationRecord(
        id=new_id(), project_id=project_id, deadline_id=f"{project_id}/permitting_limit/1", level=2,
        ladder="four_level",
        title="县政府分管领导跟踪调度", subject_kind="project", subject_id=project_id, deadline_title="审批总时限",
        deadline_due_date=date(2026, 4, 13), due_at=end_of_local_day(date(2026, 4, 20)),
        fired_at=end_of_local_day(date(2026, 4, 20)), late_by_seconds=0, days_late=5, outcome="fired", notice_ids=[],
    )  # fmt: skip
    async with services.database.transaction() as session:
        await SchedulingRepository(session).add_escalations([record])
    with pytest.raises(IntegrityError):
        async with services.database.transaction() as session:
            await SchedulingRepository(session).add_escalations(
                [EscalationRecord(**{**record.__dict__, "id": new_id(), "fired_at": record.fired_at + timedelta(1)})]
            )
    async with services.database.reader() as session:
        assert await session.scalar(select(func.count()).select_from(escalations)) == 1


async def test_concurrent_sweeps_and_stale_claims_fire_each_level_exactly_once(clockwork: Clockwork) -> None:
    services = clockwork.services
    clockwork.clock.set(local(2026, 3, 2, 9))
    project_ids = [await permitting_project(services) for _ in range(12)]
    late = local(2026, 6, 30, 9)  # every level of every permitting limit has come due

    # Two schedulers (each with its own connections) tick at the same instant.
    other = Services(Database(services.database.url), engine=services.engine, clock=clockwork.clock)
    try:
        first, second = await asyncio.gather(Sweeper(services).tick(late), Sweeper(other).tick(late))
    finally:
        await other.close()
    assert first.errors == [] and second.errors == []
    fired = [(f.project_id, f.deadline_id, f.level) for f in [*first.fired, *second.fired]]
    assert len(fired) == len(set(fired)) == 12 * 4
    async with services.database.reader() as session:
        rows = (await session.execute(select(escalations.c.project_id, escalations.c.level))).all()
        events_fired = await session.scalar(
            select(func.count()).select_from(events).where(events.c.kind == "deadline.escalated")
        )
    assert sorted(rows) == sorted((pid, level) for pid in project_ids for level in (1, 2, 3, 4))
    assert events_fired == 12 * 4

    # A claim left by a scheduler that died is taken by the next one, which finds nothing left to do.
    async with services.database.transaction() as session:
        await session.execute(deadlines.update().values(next_fire_at=late - timedelta(minutes=1)))
    again = await Sweeper(services).tick(late)
    assert again.fired == [] and again.errors == []
    async with services.database.reader() as session:
        assert await session.scalar(select(func.count()).select_from(escalations)) == 12 * 4


async def test_a_dry_run_reports_what_would_fire_and_writes_nothing(clockwork: Clockwork) -> None:
    services = clockwork.services
    clockwork.clock.set(local(2026, 3, 2, 9))
    project_id = await permitting_project(services)
    await clockwork.seed("ladder-mini", "building", local(2026, 3, 2, 9))

    async def snapshot() -> tuple[object, ...]:
        async with services.database.reader() as session:
            return tuple(
                [
                    await session.scalar(select(func.count()).select_from(table))
                    for table in (escalations, escalation_notices, events, deadlines)
                ]
                + [tuple((await session.execute(select(projects.c.light_at).order_by(projects.c.id))).scalars())]
                + [tuple((await session.execute(select(deadlines.c.next_fire_at).order_by(deadlines.c.id))).scalars())]
            )

    before = await snapshot()
    preview = await clockwork.sweep(local(2026, 6, 30, 9), dry_run=True)
    assert await snapshot() == before
    assert {(f.deadline_id, f.level) for f in preview.fired} >= {
        (f"{project_id}/permitting_limit/1", n) for n in (1, 2, 3, 4)
    }
    assert {o.period for o in preview.opened} >= {"2026-W27"}
    real = await clockwork.sweep(local(2026, 6, 30, 9))
    assert {(f.deadline_id, f.level) for f in real.fired} >= {(f.deadline_id, f.level) for f in preview.fired}
