"""Two real ``lifecycle scheduler`` processes on one PostgreSQL database: one works, the other stands by;
``kill -9`` of the active one in the middle of its work, and the standby takes over. Every due level fires
exactly once: no level is lost with the killed process's claims, none fires twice.

The deadlines are due in real time (the projects were set up with a clock months in the past), since the
processes run on the system clock; the test waits for the processes (polling the database), it never
sleeps for time to pass.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from lifecycle.clock import FrozenClock
from lifecycle.engine.core import Engine
from lifecycle.services import CreateProject, Services
from lifecycle.settings import async_database_url
from lifecycle.store import Database
from lifecycle.store.models import deadlines, events
from lifecycle.store.models_scheduling import escalations
from tests.scheduling.conftest import DATA, UNIT_A, as_

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = 60
LEVELS = 4
ACTIVE = re.compile(r"scheduler pid (\d+) is the active scheduler")


def _setup(url: str, bundle: Path) -> list[str]:
    """PROJECTS ladder-mini projects whose permitting limit started 150 days ago: all four levels are due."""

    async def work() -> list[str]:
        clock = FrozenClock(datetime.now(UTC) - timedelta(days=150))
        services = Services(Database(url), engine=Engine(), clock=clock)
        try:
            await services.publish_bundled(bundle)
            ids = []
            for n in range(PROJECTS):
                data = CreateProject(
                    definition_key="ladder-mini", name=f"项目{n:03d}", source_category="规划项目", lead_unit="unit_a",
                    implementing_unit="unit_b", lead_leader="县领导甲", fields={"investment": "150"},
                )  # fmt: skip
                project = await services.create_project(as_(UNIT_A), data)
                fired = await services.fire(
                    as_(UNIT_A), project.id, project.version, "start_permitting", {"approval_no": "1"}
                )
                ids.append(fired.id)
            return ids
        finally:
            await services.close()

    return asyncio.run(work())


def _query(url: str, statement: Any) -> list[Any]:
    async def work() -> list[Any]:
        database = Database(url, pool_size=1, max_overflow=0)
        try:
            async with database.reader() as session:
                return list((await session.execute(statement)).all())
        finally:
            await database.dispose()

    return asyncio.run(work())


def _count(url: str) -> int:
    return int(_query(url, select(func.count()).select_from(escalations))[0][0])


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # waiting for another process, not for time to pass
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.postgres
def test_a_standby_takes_over_from_a_killed_scheduler_and_every_level_fires_exactly_once(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    postgres = request.getfixturevalue("_postgres")
    postgres.truncate()
    url = async_database_url(postgres.url)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copyfile(DATA / "ladder-mini.yaml", bundle / "ladder-mini.yaml")
    project_ids = _setup(url, bundle)
    total = PROJECTS * LEVELS

    env = {
        **os.environ,
        "LIFECYCLE_DATABASE_URL": url,
        "LIFECYCLE_WORKFLOWS_DIR": str(bundle),
        "LIFECYCLE_LOG_LEVEL": "INFO",
    }
    command = [sys.executable, "-m", "lifecycle.cli", "scheduler", "--interval", "0.3", "--max-fires", "6"]
    logs = [tmp_path / "scheduler-a.log", tmp_path / "scheduler-b.log"]
    processes = []
    for log in logs:
        with log.open("wb") as out:
            processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:

        def active() -> list[int]:
            return [int(m) for log in logs for m in ACTIVE.findall(log.read_text(encoding="utf-8", errors="replace"))]

        (leader_pid,) = _wait(active, 60, "a scheduler to become active")
        leader = next(p for p in processes if p.pid == leader_pid)
        standby = next(p for p in processes if p.pid != leader_pid)
        at_kill = _wait(lambda: _count(url) or None, 60, "the active scheduler to start firing")
        os.kill(leader.pid, signal.SIGKILL)
        leader.wait(timeout=30)
        assert 0 < at_kill < total, f"killed at {at_kill} of {total}: not in the middle"

        _wait(lambda: standby.pid in active(), 60, "the standby to take over")
        _wait(lambda: _count(url) == total, 120, "every level to fire")
        assert standby.poll() is None, "the standby died"
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    rows = _query(url, select(escalations.c.project_id, escalations.c.deadline_id, escalations.c.level))
    assert len(rows) == total
    assert sorted(rows) == sorted(
        (pid, f"{pid}/permitting_limit/1", level) for pid in project_ids for level in (1, 2, 3, 4)
    )
    fired_events = _query(url, select(func.count()).select_from(events).where(events.c.kind == "deadline.escalated"))
    assert fired_events[0][0] == total
    levels = _query(url, select(deadlines.c.level).where(deadlines.c.clock == "permitting_limit"))
    assert sorted(level for (level,) in levels) == [LEVELS] * PROJECTS
    survivor_log = next(log for log, p in zip(logs, processes, strict=True) if p.pid == standby.pid)
    assert "Traceback" not in survivor_log.read_text(encoding="utf-8", errors="replace")
