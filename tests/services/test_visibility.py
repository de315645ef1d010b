"""Who sees which projects, and who may change them: units see their own, departments the projects with
their items, county-wide roles everything; invisible is NotFound, visible-but-not-yours is Forbidden."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from lifecycle.errors import Forbidden, NotFound, RoleRefused
from lifecycle.services import Principal, ProjectChanges, ProjectView, Services

from .conftest import (
    DISPATCHER,
    HOUSING,
    LEADER,
    PLANNING,
    UNIT_A,
    UNIT_B,
    VIEWER,
    as_,
    into_permitting,
)

pytestmark = pytest.mark.anyio

Create = Callable[..., Awaitable[ProjectView]]

UNIT_C = Principal("owner-c", "乡镇丙", unit_id="unit_c", roles=frozenset({"unit"}))
INTEGRATOR = Principal("sys", "县审批系统", roles=frozenset({"integrator"}))
OTHER_DEPARTMENT = Principal("water", "县水利局", unit_id="water_bureau", roles=frozenset({"department"}))


async def _ids(services: Services, principal: Principal) -> set[str]:
    return {p.id for p in (await services.list_projects(as_(principal))).items}


async def test_each_role_sees_its_projects(services: Services, create: Create) -> None:
    led_by_a = await create(name="甲牵头")
    implemented_by_b = await create(name="甲牵头乙实施", implementing_unit="unit_b")
    led_by_c = await create(by=UNIT_C, name="丙牵头", lead_unit="unit_c")
    in_permitting = await into_permitting(services, led_by_a)  # opens items for planning and housing

    everything = {led_by_a.id, implemented_by_b.id, led_by_c.id}
    for county_wide in (DISPATCHER, VIEWER, LEADER, INTEGRATOR):
        assert await _ids(services, county_wide) == everything
    assert await _ids(services, UNIT_A) == {led_by_a.id, implemented_by_b.id}
    assert await _ids(services, UNIT_B) == {implemented_by_b.id}
    assert await _ids(services, UNIT_C) == {led_by_c.id}
    assert await _ids(services, PLANNING) == {in_permitting.id}
    assert await _ids(services, HOUSING) == {in_permitting.id}
    assert await _ids(services, OTHER_DEPARTMENT) == set()
    assert await _ids(services, Principal("nobody", "无角色")) == set()

    # Reading one project follows the same rules; an invisible project is simply not found.
    assert (await services.get_project(as_(PLANNING), led_by_a.id)).id == led_by_a.id
    assert (await services.get_project(as_(UNIT_B), implemented_by_b.id)).id == implemented_by_b.id
    for principal, project in (
        (UNIT_B, led_by_a),
        (UNIT_C, led_by_a),
        (PLANNING, led_by_c),
        (OTHER_DEPARTMENT, led_by_a),
    ):
        with pytest.raises(NotFound):
            await services.get_project(as_(principal), project.id)
        with pytest.raises(NotFound):
            await services.list_tasks(as_(principal), project.id)
        with pytest.raises(NotFound):
            await services.history(as_(principal), project.id)
        with pytest.raises(NotFound):
            await services.fire(as_(principal), project.id, None, "hold")
        with pytest.raises(NotFound):
            await services.update_project(as_(principal), project.id, None, ProjectChanges(name="x"))
    with pytest.raises(NotFound):
        await services.get_project(as_(DISPATCHER), "no-such-project")


async def test_visible_but_not_yours_is_forbidden(services: Services, create: Create) -> None:
    project = await into_permitting(services, await create(implementing_unit="unit_b"))
    # Departments see the project through their items but may not edit it or move it.
    with pytest.raises(Forbidden):
        await services.update_project(as_(PLANNING), project.id, project.version, ProjectChanges(name="x"))
    with pytest.raises(Forbidden):
        await services.fire(as_(PLANNING), project.id, project.version, "start_building")
    # Read-only county roles may see everything and change nothing.
    for principal in (VIEWER, LEADER):
        with pytest.raises(Forbidden):
            await services.update_project(as_(principal), project.id, project.version, ProjectChanges(name="x"))
        with pytest.raises(RoleRefused):
            await services.fire(as_(principal), project.id, project.version, "hold")
    # The implementing unit edits the description, but the county assigns units and leaders.
    renamed = await services.update_project(as_(UNIT_B), project.id, project.version, ProjectChanges(name="新名称"))
    assert renamed.name == "新名称"
    for change in (ProjectChanges(lead_unit="unit_b"), ProjectChanges(lead_leader="县领导乙")):
        with pytest.raises(Forbidden):
            await services.update_project(as_(UNIT_B), project.id, renamed.version, change)
    reassigned = await services.update_project(
        as_(DISPATCHER), project.id, renamed.version, ProjectChanges(lead_unit="unit_c")
    )
    assert reassigned.lead_unit == "unit_c"
    assert await _ids(services, UNIT_A) == set()
    assert await _ids(services, UNIT_C) == {project.id}


async def test_departments_act_only_on_their_own_items(services: Services, create: Create) -> None:
    project = await into_permitting(services, await create())
    planning = "permits.planning_permit"
    submitted = await services.fire_task(as_(UNIT_A), project.id, planning, 1, "submit")
    with pytest.raises(Forbidden):
        await services.fire_task(as_(HOUSING), project.id, planning, submitted.version, "accept")
    accepted = await services.fire_task(as_(PLANNING), project.id, planning, submitted.version, "accept")
    assert accepted.state == "accepted"
    # A dispatcher who is also a department is not bound to its own items by the services
    # (the engine still applies each transition's roles).
    both = Principal("both", "兼任", unit_id="housing_bureau", roles=frozenset({"department", "dispatcher"}))
    with pytest.raises(RoleRefused):
        await services.fire_task(as_(both), project.id, planning, accepted.version, "approve")


async def test_only_editors_and_own_units_create_projects(services: Services, create: Create) -> None:
    with pytest.raises(Forbidden):
        await create(by=UNIT_B)  # a project led by unit_a, created by unit_b
    for principal in (VIEWER, LEADER, PLANNING):
        with pytest.raises(Forbidden):
            await create(by=principal)
    assert (await create(by=UNIT_B, implementing_unit="unit_b")).implementing_unit == "unit_b"
    assert (await create(by=DISPATCHER, lead_unit="unit_c")).lead_unit == "unit_c"
    assert (await create(by=INTEGRATOR)).created_by == INTEGRATOR.id
