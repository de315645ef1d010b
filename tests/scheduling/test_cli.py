"""``lifecycle sweep --as-of T [--dry-run]``: a dry run prints what would fire and writes nothing; the real
run fires it, once."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.clock import FrozenClock
from lifecycle.engine.core import Engine
from lifecycle.services import CreateProject, Services
from lifecycle.store import Database
from lifecycle.store.models_scheduling import escalations
from tests.conftest import T0
from tests.scheduling.conftest import DATA, UNIT_A, as_


def _prepare(db_url: str, bundle: Path) -> str:
    """A ladder-mini project in permitting since T0 (Monday 2 March 2026)."""

    async def work() -> str:
        services = Services(Database(db_url), engine=Engine(), clock=FrozenClock(T0))
        try:
            await services.publish_bundled(bundle)
            data = CreateProject(
                definition_key="ladder-mini", name="巫山县某文旅项目", source_category="规划项目", lead_unit="unit_a",
                lead_leader="县领导甲", fields={"investment": "150"},
            )  # fmt: skip
            project = await services.create_project(as_(UNIT_A), data)
            fired = await services.fire(
                as_(UNIT_A), project.id, project.version, "start_permitting", {"approval_no": "1"}
            )
            return fired.id
        finally:
            await services.close()

    return asyncio.run(work())


def _escalations(db_url: str) -> int:
    async def work() -> int:
        database = Database(db_url)
        try:
            async with database.reader() as session:
                return int(await session.scalar(select(func.count()).select_from(escalations)) or 0)
        finally:
            await database.dispose()

    return asyncio.run(work())


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copyfile(DATA / "ladder-mini.yaml", bundle / "ladder-mini.yaml")
    return {"LIFECYCLE_DATABASE_URL": db_url, "LIFECYCLE_WORKFLOWS_DIR": str(bundle), "LIFECYCLE_LOG_LEVEL": "WARNING"}


def test_sweep_dry_run_previews_then_the_real_sweep_fires_once(db_url: str, env: dict[str, str]) -> None:
    _prepare(db_url, Path(env["LIFECYCLE_WORKFLOWS_DIR"]))
    runner = CliRunner()

    preview = runner.invoke(app, ["sweep", "--as-of", "2026-06-30", "--dry-run"], env=env)
    assert preview.exit_code == 0, preview.output
    lines = preview.output.splitlines()
    assert lines[0].startswith("as of 2026-07-01T00:00:00+08:00") and lines[0].endswith("dry run")
    would = [line for line in lines if line.startswith("would fire")]
    assert len(would) == 4 and all("审批总时限" in line for line in would)
    assert "level 1  项目牵头部门一线调度" in would[0] and "level 4  县重大战略推进领导小组督导调度" in would[3]
    assert _escalations(db_url) == 0

    real = runner.invoke(app, ["sweep", "--as-of", "2026-06-30T23:59:59+08:00", "--json"], env=env)
    assert real.exit_code == 0, real.output
    report = json.loads(real.output)
    assert [f["level"] for f in report["fired"]] == [1, 2, 3, 4] and report["dry_run"] is False
    assert all(f["late_by_seconds"] >= 0 for f in report["fired"])
    assert _escalations(db_url) == 4

    again = runner.invoke(app, ["sweep", "--as-of", "2026-07-01"], env=env)
    assert again.exit_code == 0, again.output
    assert not [line for line in again.output.splitlines() if line.startswith("fire")]
    assert _escalations(db_url) == 4


def test_sweep_refuses_a_bad_instant(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["sweep", "--as-of", "yesterday"], env=env)
    assert result.exit_code == 2
    assert "--as-of" in result.output
