"""The scheduler as ``lifecycle serve`` runs it: ``start_scheduler`` ticks at once inside the running loop,
``stop()`` ends it and releases the leader lock; on PostgreSQL a second scheduler stands by while the first
holds the lock and takes over when it is released."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lifecycle.scheduler import LeaderLock, SchedulerRunner, start_scheduler
from lifecycle.services import CreateProject
from lifecycle.settings import Settings
from tests.scheduling.conftest import UNIT_A, Clockwork, as_, local

pytestmark = pytest.mark.anyio


async def _overdue(clockwork: Clockwork) -> str:
    services = clockwork.services
    clockwork.clock.set(local(2026, 3, 2, 9))
    data = CreateProject(
        definition_key="ladder-mini", name="项目", source_category="规划项目", lead_unit="unit_a",
        fields={"investment": "150"},
    )  # fmt: skip
    project = await services.create_project(as_(UNIT_A), data)
    await services.fire(as_(UNIT_A), project.id, project.version, "start_permitting", {"approval_no": "1"})
    clockwork.clock.set(local(2026, 6, 30, 9))
    return project.id


async def _until(condition: object, what: str) -> None:
    for _ in range(2000):  # waiting for the scheduler's task to run, not for time to pass
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def test_start_scheduler_ticks_at_once_and_stop_ends_it(clockwork: Clockwork, tmp_path: Path) -> None:
    project_id = await _overdue(clockwork)
    settings = Settings(database_url=clockwork.services.database.url, workflows_dir=tmp_path)
    handle = await start_scheduler(clockwork.services, settings)
    try:
        await _until(lambda: handle.ticks >= 1, "the first tick")
        assert handle.leader
        assert handle.last_report is not None and handle.last_report.errors == []
        assert [e.level for e in await clockwork.escalations(project_id)] == [1, 2, 3, 4]
    finally:
        await handle.stop()
    if clockwork.services.database.dialect == "postgresql":
        lock = LeaderLock(clockwork.services.database.url)
        try:
            assert await lock.acquire()  # stop() released it
        finally:
            await lock.close()


async def test_a_second_scheduler_stands_by_until_the_first_lets_go(clockwork: Clockwork, tmp_path: Path) -> None:
    project_id = await _overdue(clockwork)
    settings = Settings(database_url=clockwork.services.database.url, workflows_dir=tmp_path)
    first = SchedulerRunner(clockwork.services, settings, interval=3600, name="first")
    second = SchedulerRunner(clockwork.services, settings, interval=3600, name="second")
    if clockwork.services.database.dialect == "sqlite":
        # No election on SQLite (one host, writers queue): both work, and each level still fires once.
        assert await first.tick_now() is not None and await second.tick_now() is not None
        assert first.leader and second.leader
        assert [e.level for e in await clockwork.escalations(project_id)] == [1, 2, 3, 4]
        await first.stop()
        await second.stop()
        return
    assert await first.tick_now() is not None and first.leader
    assert await second.tick_now() is None and not second.leader
    assert len(await clockwork.escalations(project_id)) == 4
    await first.stop()
    report = await second.tick_now()
    try:
        assert report is not None and second.leader and report.fired == []
        assert len(await clockwork.escalations(project_id)) == 4
    finally:
        await second.stop()
