"""A migration killed half-way (``kill -9``) and resumed: every project is either wholly on version 1 or
wholly on version 2, never in between (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle.engine.instance import ProjectInstance
from lifecycle.services import Services
from lifecycle.services.workflows import MigrationRequest, WorkflowAdmin
from lifecycle.store.events import EventRepository
from lifecycle.store.projects import ProjectRepository
from lifecycle.store.workflows import MigrationRepository

from .conftest import ADMIN, DISPATCHER, PLANNING_PERMIT, as_, in_permitting
from .edits import mini_v2

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
NEW_ITEM = "permits.fire_review"


def _environment(db_url: str) -> dict[str, str]:
    env = {**os.environ, "LIFECYCLE_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    env.pop("LIFECYCLE_LOG_LEVEL", None)
    return env


async def _instance(services: Services, project_id: str) -> tuple[ProjectInstance, list[str]]:
    async with services.database.reader() as session:
        projects = ProjectRepository(session)
        record = await projects.get(project_id)
        assert record is not None
        definition = await services.registry.definition(session, record.definition_key, record.definition_version)
        instance = await projects.instance(record, definition)
        kinds = [event.kind for event in await EventRepository(session).history(project_id, 0, 1000)]
    return instance, kinds


async def _assert_whole(services: Services, run_id: str, versions: dict[str, int]) -> dict[str, int]:
    """Each project is wholly on v1 (untouched) or wholly on v2 (moved, once), and its outcome row says the
    same; returns project id → definition version."""
    async with services.database.reader() as session:
        outcomes = {o.project_id: o for o in await MigrationRepository(session).outcomes(run_id)}
    where: dict[str, int] = {}
    for project_id, version in versions.items():
        instance, kinds = await _instance(services, project_id)
        where[project_id] = instance.definition_version
        limit = next(d for d in instance.deadlines.values() if d.subject_id == PLANNING_PERMIT and d.is_open)
        if instance.definition_version == 2:
            assert outcomes[project_id].status == "migrated"
            assert NEW_ITEM in instance.tasks and instance.version == version + 1
            assert kinds.count("project.migrated") == 1 and kinds[-2:] == ["project.migrated", "task.opened"]
            expected = services.engine.calendar.due_date(limit.started_on, 15, unit="working_days").date
            assert limit.due_date == expected
        else:
            assert instance.definition_version == 1
            assert outcomes[project_id].status == "pending"
            assert NEW_ITEM not in instance.tasks and instance.version == version
            assert "project.migrated" not in kinds
            assert limit.due_date == services.engine.calendar.due_date(limit.started_on, 20, unit="working_days").date
        assert await services.audit(as_(ADMIN), project_id) == []
    return where


async def _started_run(services: Services, count: int) -> tuple[str, dict[str, int]]:
    projects = [await in_permitting(services) for _ in range(count)]
    admin = WorkflowAdmin(services)
    await admin.publish(as_(ADMIN), mini_v2())
    run = await admin.start_migration(as_(ADMIN), "mini", MigrationRequest(from_version=1, to_version=2))
    return run.id, {p.id: p.version for p in projects}


async def _resume_with_the_cli(db_url: str, run_id: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lifecycle.cli", "workflow", "migrate", "mini", "--resume", run_id]
    return await asyncio.to_thread(
        subprocess.run, command, env=_environment(db_url), capture_output=True, text=True, timeout=120, cwd=ROOT
    )


async def test_a_run_killed_inside_a_projects_transaction_resumes_and_no_project_is_half_moved(
    services: Services, db_url: str
) -> None:
    run_id, versions = await _started_run(services, 5)
    command = [sys.executable, "-m", "tests.workflows.crash_migration", db_url, "mini", run_id, "3"]
    crashed = await asyncio.to_thread(
        subprocess.run, command, env=_environment(db_url), capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    assert "killing myself" in crashed.stdout

    where = await _assert_whole(services, run_id, versions)
    assert sorted(where.values()) == [1, 1, 1, 2, 2]  # two committed; the third died before its commit
    admin = WorkflowAdmin(services)
    progress = await admin.migration(as_(ADMIN), "mini", run_id)
    assert progress.status == "running" and progress.counts["pending"] == 3

    resumed = await _resume_with_the_cli(db_url, run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "migrated 5" in resumed.stdout
    assert set((await _assert_whole(services, run_id, versions)).values()) == {2}
    finished = await admin.migration(as_(ADMIN), "mini", run_id)
    assert finished.status == "finished" and finished.counts == {
        "pending": 0,
        "migrated": 5,
        "blocked": 0,
        "skipped": 0,
    }
    # And once more: nothing left to move, nothing moved twice.
    again = await admin.migrate(as_(ADMIN), "mini", MigrationRequest(from_version=1, to_version=2))
    assert again.total == 0 and again.status == "finished"
    assert set((await _assert_whole(services, run_id, versions)).values()) == {2}


async def test_kill_9_of_the_migrate_command_then_resume(services: Services, db_url: str) -> None:
    count = 12
    projects = [await in_permitting(services) for _ in range(count)]
    versions = {p.id: p.version for p in projects}
    await WorkflowAdmin(services).publish(as_(ADMIN), mini_v2())
    command = [sys.executable, "-m", "lifecycle.cli", "workflow", "migrate", "mini", "--from", "1", "--to", "2"]
    process = await asyncio.create_subprocess_exec(
        *command, env=_environment(db_url), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    header = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
    assert "run" in header, header
    run_id = header.split("run", 1)[1].split("：", 1)[0].strip()
    for _ in range(2):  # two projects reported moved: the run is under way
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert "migrated" in line, line
    process.kill()  # SIGKILL, wherever it is
    await process.wait()
    assert process.returncode == -signal.SIGKILL

    where = await _assert_whole(services, run_id, versions)
    moved = sum(1 for version in where.values() if version == 2)
    assert 2 <= moved < count, "the kill should land while projects are still pending"

    resumed = await _resume_with_the_cli(db_url, run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert set((await _assert_whole(services, run_id, versions)).values()) == {2}
    for project in projects:
        view = await services.get_project(as_(DISPATCHER), project.id)
        assert view.definition_version == 2 and view.state == "permitting"
