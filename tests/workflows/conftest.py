"""Helpers for the workflow-administration tests: callers, ``mini`` projects driven into a given state through
the services, and the administration use cases on the suite's ``services`` fixture."""

from __future__ import annotations

from typing import Any

import pytest

from lifecycle.services import CallContext, CreateProject, Principal, ProjectView, Services
from lifecycle.services.workflows import WorkflowAdmin

ADMIN = Principal("admin", "管理员", roles=frozenset({"admin"}))
DISPATCHER = Principal("dispatch", "重点项目事务中心", roles=frozenset({"dispatcher"}))
UNIT_A = Principal("owner-a", "乡镇甲", unit_id="unit_a", unit_kind="township", roles=frozenset({"unit"}))
UNIT_B = Principal("owner-b", "县属国企乙", unit_id="unit_b", unit_kind="enterprise", roles=frozenset({"unit"}))
PLANNING = Principal("planner", "县规划自然资源局", unit_id="planning_bureau", roles=frozenset({"department"}))
HOUSING = Principal("builder", "县住房城乡建委", unit_id="housing_bureau", roles=frozenset({"department"}))
VIEWER = Principal("viewer", "观察员", roles=frozenset({"viewer"}))

PLANNING_PERMIT = "permits.planning_permit"
CONSTRUCTION_PERMIT = "permits.construction_permit"


def as_(principal: Principal) -> CallContext:
    return CallContext(principal)


@pytest.fixture
def admin(services: Services) -> WorkflowAdmin:
    """The workflow-administration use cases on the test services (``mini`` v1 published)."""
    return WorkflowAdmin(services)


async def create(services: Services, owner: Principal = UNIT_A, **overrides: Any) -> ProjectView:
    """A new ``mini`` project in ``draft``, led by ``owner``'s unit."""
    values: dict[str, Any] = {
        "definition_key": "mini",
        "name": "巫山县某康养文旅项目",
        "source_category": "规划项目",
        "lead_unit": owner.unit_id,
        "lead_leader": "县领导甲",
        "fields": {"investment": "150"},
    }
    values.update(overrides)
    return await services.create_project(as_(owner), CreateProject(**values))


async def task_version(services: Services, project_id: str, task_id: str) -> int:
    return (await services.get_task(as_(DISPATCHER), project_id, task_id)).version


async def fire_task(services: Services, project_id: str, task_id: str, trigger: str, by: Principal) -> None:
    version = await task_version(services, project_id, task_id)
    await services.fire_task(as_(by), project_id, task_id, version, trigger)


async def in_permitting(services: Services, owner: Principal = UNIT_A) -> ProjectView:
    """A project in permitting whose planning permit is accepted (its time limit running)."""
    project = await create(services, owner)
    project = await services.fire(as_(owner), project.id, project.version, "start_permitting", {"approval_no": "A-1"})
    await fire_task(services, project.id, PLANNING_PERMIT, "submit", owner)
    await fire_task(services, project.id, PLANNING_PERMIT, "accept", PLANNING)
    return await services.get_project(as_(DISPATCHER), project.id)


async def in_building(services: Services, owner: Principal = UNIT_A) -> ProjectView:
    """A project whose permits are all approved and that started building."""
    project = await in_permitting(services, owner)
    await fire_task(services, project.id, PLANNING_PERMIT, "approve", PLANNING)
    for trigger, by in (("submit", owner), ("accept", HOUSING), ("approve", HOUSING)):
        await fire_task(services, project.id, CONSTRUCTION_PERMIT, trigger, by)
    project = await services.get_project(as_(DISPATCHER), project.id)
    return await services.fire(as_(owner), project.id, project.version, "start_building")
