"""Helpers for the service tests: typical callers and a quick way to create a ``mini`` project."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lifecycle.services import CallContext, CreateProject, Principal, ProjectView, Services

UNIT_A = Principal("owner-a", "乡镇甲", unit_id="unit_a", unit_kind="township", roles=frozenset({"unit"}))
UNIT_B = Principal("owner-b", "县属国企乙", unit_id="unit_b", unit_kind="enterprise", roles=frozenset({"unit"}))
PLANNING = Principal("planner", "县规划自然资源局", unit_id="planning_bureau", roles=frozenset({"department"}))
HOUSING = Principal("builder", "县住房城乡建委", unit_id="housing_bureau", roles=frozenset({"department"}))
DISPATCHER = Principal("dispatch", "重点项目事务中心", roles=frozenset({"dispatcher"}))
VIEWER = Principal("viewer", "观察员", roles=frozenset({"viewer"}))
LEADER = Principal("leader", "县领导", roles=frozenset({"leader"}))
ADMIN = Principal("admin", "管理员", roles=frozenset({"admin"}))


def as_(principal: Principal) -> CallContext:
    """The call context of ``principal``."""
    return CallContext(principal)


def new_project_data(**overrides: Any) -> CreateProject:
    """A valid new ``mini`` project led by unit_a; ``overrides`` replace any attribute."""
    values: dict[str, Any] = {
        "definition_key": "mini",
        "name": "巫山县某康养文旅项目",
        "source_category": "规划项目",
        "lead_unit": "unit_a",
        "lead_leader": "县领导甲",
        "fields": {"investment": "150"},
    }
    values.update(overrides)
    return CreateProject(**values)


@pytest.fixture
def create(services: Services) -> Callable[..., Awaitable[ProjectView]]:
    """``await create(by=UNIT_A, **overrides)`` -> a new project."""

    async def make(by: Principal = UNIT_A, **overrides: Any) -> ProjectView:
        return await services.create_project(as_(by), new_project_data(**overrides))

    return make


async def into_permitting(services: Services, project: ProjectView, by: Principal = UNIT_A) -> ProjectView:
    """Fire ``start_permitting`` as the owner ``by``: the permits group opens."""
    data = {"approval_no": "巫发改〔2026〕1号"}
    return await services.fire(as_(by), project.id, project.version, "start_permitting", data)
