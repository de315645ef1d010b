"""Concurrent writers: no lost update and no gap in a project's event seq; writers of different projects
never wait for each other (PostgreSQL row locks, no global sequence)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from lifecycle.services import ProjectChanges, ProjectView, Services
from lifecycle.store import ProjectRepository

from .conftest import ADMIN, DISPATCHER, UNIT_A, as_, into_permitting

pytestmark = pytest.mark.anyio

Create = Callable[..., Awaitable[ProjectView]]
CONSTRUCTION_PERMIT = "permits.construction_permit"


async def test_eight_concurrent_fires_on_one_project_lose_nothing(services: Services, create: Create) -> None:
    project = await into_permitting(services, await create())
    task = await services.fire_task(as_(UNIT_A), project.id, CONSTRUCTION_PERMIT, None, "submit")
    before = await services.get_project(as_(UNIT_A), project.id)
    events_before = len((await services.history(as_(UNIT_A), project.id, limit=200)).items)

    async def commit(n: int) -> None:
        # Each records one commitment; the engine numbers it from the commitments it loaded, so an update
        # made on a stale copy would reuse a number (and fail or overwrite).
        await services.fire_task(
            as_(UNIT_A), project.id, CONSTRUCTION_PERMIT, None, "record_commitment", {"text": f"承诺{n}"}
        )

    await asyncio.gather(*(commit(n) for n in range(8)))

    commitments = await services.list_commitments(as_(UNIT_A), project.id)
    assert sorted(c.id for c in commitments) == sorted(f"{CONSTRUCTION_PERMIT}#c{n}" for n in range(1, 9))
    assert sorted(c.text for c in commitments) == sorted(f"承诺{n}" for n in range(8))
    after = await services.get_project(as_(UNIT_A), project.id)
    assert after.version == before.version + 8
    assert (await services.get_task(as_(UNIT_A), project.id, CONSTRUCTION_PERMIT)).version == task.version + 8
    history = (await services.history(as_(UNIT_A), project.id, limit=200)).items
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert len(history) == events_before + 16  # commitment.recorded + task.transition, each
    assert await services.audit(as_(ADMIN), project.id) == []


async def test_concurrent_updates_of_one_project_with_if_match_let_exactly_one_win(
    services: Services, create: Create
) -> None:
    project = await create()
    results = await asyncio.gather(
        *(
            services.update_project(as_(UNIT_A), project.id, project.version, ProjectChanges(name=f"名称{n}"))
            for n in range(4)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, ProjectView)]
    assert len(winners) == 1, results
    assert all(type(r).__name__ == "StaleVersion" for r in results if not isinstance(r, ProjectView))
    assert (await services.get_project(as_(UNIT_A), project.id)).name == winners[0].name


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_writers_of_different_projects_do_not_wait_for_each_other(services: Services, create: Create) -> None:
    locked = await into_permitting(services, await create(name="被锁定的项目"))
    free = await into_permitting(services, await create(name="另一个项目"))

    async with services.database.transaction() as session:
        assert await ProjectRepository(session).lock(locked.id) is not None
        # Another project's writer goes straight through while this transaction holds the row lock...
        moved = await asyncio.wait_for(services.fire(as_(DISPATCHER), free.id, free.version, "hold"), timeout=5)
        assert moved.state == "on_hold"
        # ...while a writer of the locked project waits for it.
        blocked = asyncio.ensure_future(services.fire(as_(DISPATCHER), locked.id, locked.version, "hold"))
        done, _ = await asyncio.wait({blocked}, timeout=0.5)
        assert not done
    assert (await asyncio.wait_for(blocked, timeout=5)).state == "on_hold"
