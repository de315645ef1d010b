"""Definitions: the bundled files published once at start-up, and loaded from the database into a fresh
engine on demand."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lifecycle.clock import FrozenClock
from lifecycle.engine.core import Engine
from lifecycle.errors import DefinitionError
from lifecycle.services import Services
from lifecycle.settings import BUNDLED_WORKFLOWS_DIR
from lifecycle.store import Database, DefinitionRepository

from .conftest import UNIT_A, as_, new_project_data

pytestmark = pytest.mark.anyio

ENGINE_MINI = Path(__file__).parents[1] / "data" / "engine-mini.yaml"


async def _versions(database: Database, key: str) -> list[tuple[int, bool]]:
    async with database.reader() as session:
        return [(r.version, r.active) for r in await DefinitionRepository(session).list_versions(key)]


async def test_bundled_files_are_published_once(services: Services, tmp_path: Path) -> None:
    bundle = tmp_path / "again"
    bundle.mkdir()
    shutil.copyfile(ENGINE_MINI, bundle / "mini.yaml")
    # The services fixture published it already: the same content again creates nothing.
    [outcome] = await services.publish_bundled(bundle)
    assert (outcome.key, outcome.version, outcome.status) == ("mini", 1, "unchanged")

    # Reformatting and comments do not change the content.
    text = ENGINE_MINI.read_text(encoding="utf-8")
    (bundle / "mini.yaml").write_text(
        "# 注释\n" + text.replace("title: 测试流程", "title:   测试流程"), encoding="utf-8"
    )
    [outcome] = await services.publish_bundled(bundle)
    assert outcome.status == "unchanged"

    # An edited file is not published silently.
    (bundle / "mini.yaml").write_text(text.replace("title: 测试流程", "title: 改过的测试流程"), encoding="utf-8")
    [outcome] = await services.publish_bundled(bundle)
    assert (outcome.version, outcome.status) == (None, "not_published")
    assert await _versions(services.database, "mini") == [(1, True)]


async def test_a_broken_bundled_file_stops_publication(services: Services, tmp_path: Path) -> None:
    bundle = tmp_path / "broken"
    bundle.mkdir()
    (bundle / "broken.yaml").write_text("key: broken\ntitle: 坏的\n", encoding="utf-8")
    with pytest.raises(DefinitionError):
        await services.publish_bundled(bundle)
    assert await _versions(services.database, "broken") == []


async def test_the_shipped_workflows_publish(services: Services) -> None:
    outcomes = await services.publish_bundled(BUNDLED_WORKFLOWS_DIR)
    assert outcomes and all(o.status == "published" and o.version == 1 for o in outcomes)
    assert "major-project" in {o.key for o in outcomes}
    again = await services.publish_bundled(BUNDLED_WORKFLOWS_DIR)
    assert {o.status for o in again} == {"unchanged"}


async def test_a_fresh_process_loads_definitions_from_the_database(
    services: Services, database: Database, clock: FrozenClock
) -> None:
    created = await services.create_project(
        as_(UNIT_A),
        new_project_data(),
    )
    # Another process: its own engine, nothing registered, the YAML files nowhere in sight.
    engine = Engine()
    other = Services(database, engine=engine, clock=clock)
    assert other.registry.loaded("mini", 1) is None
    project = await other.get_project(as_(UNIT_A), created.id)
    assert (project.state_title, project.phase_title) == ("谋划", "前期")
    compiled = other.registry.loaded("mini", 1)
    assert compiled is not None and compiled.definition.key == "mini"
    moved = await other.fire(as_(UNIT_A), created.id, project.version, "start_permitting", {"approval_no": "1"})
    assert moved.state == "permitting"
    assert other.registry.loaded("mini", 1) is compiled  # registered once, then reused
