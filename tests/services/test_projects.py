"""Creating, reading, changing and moving projects through the services: one transaction each, views
back, history written, stale versions refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from decimal import Decimal

import pytest

from lifecycle.clock import FrozenClock
from lifecycle.errors import (
    Forbidden,
    GateNotSatisfied,
    InvalidInput,
    InvalidTransition,
    NotFound,
    RoleRefused,
    StaleVersion,
)
from lifecycle.services import ProjectChanges, ProjectView, Services

from .conftest import ADMIN, DISPATCHER, UNIT_A, as_, into_permitting

pytestmark = pytest.mark.anyio

Create = Callable[..., Awaitable[ProjectView]]


async def test_create_project_starts_in_the_initial_state_with_history(services: Services, create: Create) -> None:
    project = await create(
        code="2026-500237-48-01-00001A",
        implementing_unit="unit_b",
        township="龙门街道",
        total_investment=Decimal("5000.5"),
        planned_start=date(2026, 5, 1),
        planned_end=date(2027, 12, 31),
    )
    assert (project.state, project.state_title, project.phase, project.phase_title) == (
        "draft",
        "谋划",
        "early",
        "前期",
    )
    assert [(s.number, s.title) for s in project.steps] == [(1, "谋划")]
    assert project.version == 1 and project.etag == 'W/"1"'
    assert project.definition_key == "mini" and project.definition_version == 1
    assert project.total_investment == Decimal("5000.5000")
    # planned_start is also a field of the definition: one value in both places.
    assert project.fields == {"investment": "150", "planned_start": "2026-05-01"}
    assert project.created_by == UNIT_A.id and project.created_at == services.now()

    again = await services.get_project(as_(UNIT_A), project.id)
    assert again == project
    history = await services.history(as_(UNIT_A), project.id)
    assert [(e.seq, e.kind, e.to_state) for e in history.items] == [(1, "project.created", "draft")]
    assert history.next_cursor is None


@pytest.mark.parametrize(
    ("overrides", "codes"),
    [
        ({"code": "2026-500237-48-01-0001"}, ["project.code_format"]),
        ({"code": "2026-500237-48-01-00001a"}, ["project.code_format"]),
        ({"code": "1989-500237-48-01-000001"}, ["project.code_year"]),
        ({"source_category": "其他项目"}, ["project.source_category"]),
        ({"name": "  "}, ["project.text_required"]),
        (
            {"name": "长" * 201, "total_investment": Decimal("-1")},
            ["project.text_too_long", "project.investment_negative"],
        ),
        ({"planned_start": date(2026, 5, 1), "planned_end": date(2026, 4, 1)}, ["project.dates_order"]),
        ({"fields": {"investment": "很多", "nonsense": 1}}, ["field.type", "field.unknown"]),
        ({"planned_start": date(2026, 5, 1), "fields": {"planned_start": "2026-06-01"}}, ["project.field_conflict"]),
    ],
)
async def test_bad_new_projects_are_refused_with_every_problem(
    services: Services, create: Create, overrides: dict[str, object], codes: list[str]
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await create(**overrides)
    assert sorted(p.code for p in refused.value.problems()) == sorted(codes)
    page = await services.list_projects(as_(DISPATCHER))
    assert page.items == []


async def test_project_codes_are_unique(services: Services, create: Create) -> None:
    await create(code="2026-500237-48-01-00001A")
    with pytest.raises(InvalidInput) as refused:
        await create(code="2026-500237-48-01-00001A")
    assert [p.code for p in refused.value.problems()] == ["project.code_taken"]
    other = await create()
    with pytest.raises(InvalidInput):
        await services.update_project(
            as_(UNIT_A), other.id, other.version, ProjectChanges(code="2026-500237-48-01-00001A")
        )


async def test_unknown_definition_is_not_found(create: Create) -> None:
    with pytest.raises(NotFound):
        await create(definition_key="nothing")
    with pytest.raises(NotFound):
        await create(definition_version=2)


async def test_fire_moves_the_project_and_writes_what_the_engine_did(services: Services, create: Create) -> None:
    project = await create()
    moved = await into_permitting(services, project)
    assert (moved.state, moved.version, [s.number for s in moved.steps]) == ("permitting", 2, [2])
    assert moved.fields["approval_no"] == "巫发改〔2026〕1号"
    tasks = await services.list_tasks(as_(UNIT_A), project.id)
    assert {t.id: (t.state, t.department) for t in tasks} == {
        "permits.planning_permit": ("pending", "planning_bureau"),
        "permits.construction_permit": ("pending", "housing_bureau"),
    }
    kinds = [e.kind for e in (await services.history(as_(UNIT_A), project.id)).items]
    assert kinds == ["project.created", "project.transition", "task.opened", "task.opened"]

    with pytest.raises(GateNotSatisfied) as gate:
        await services.fire(as_(UNIT_A), project.id, moved.version, "start_building")
    assert [u.code for u in gate.value.unmet] == ["condition.group_done"]
    with pytest.raises(InvalidTransition):
        await services.fire(as_(UNIT_A), project.id, moved.version, "finish")
    with pytest.raises(RoleRefused):
        await services.fire(as_(UNIT_A), project.id, moved.version, "hold")
    assert (await services.get_project(as_(UNIT_A), project.id)).version == moved.version  # refusals wrote nothing

    held = await services.fire(as_(DISPATCHER), project.id, moved.version, "hold")
    assert (held.state, held.held, held.held_from, held.held_from_title, held.phase) == (
        "on_hold",
        True,
        "permitting",
        "审批",
        None,
    )
    back = await services.fire(as_(DISPATCHER), project.id, held.version, "resume")
    assert (back.state, back.held_from) == ("permitting", None)


async def test_stale_versions_are_refused_and_change_nothing(services: Services, create: Create) -> None:
    project = await create()
    await into_permitting(services, project)
    with pytest.raises(StaleVersion) as stale:
        await services.fire(as_(DISPATCHER), project.id, project.version, "hold")
    assert (stale.value.expected, stale.value.actual) == ("1", "2")
    with pytest.raises(StaleVersion):
        await services.update_project(as_(UNIT_A), project.id, 1, ProjectChanges(name="新名称"))
    task = (await services.list_tasks(as_(UNIT_A), project.id))[0]
    with pytest.raises(StaleVersion):
        await services.fire_task(as_(UNIT_A), project.id, task.id, task.version + 1, "submit")
    current = await services.get_project(as_(UNIT_A), project.id)
    assert (current.state, current.version, current.name) == ("permitting", 2, project.name)
    assert len((await services.history(as_(UNIT_A), project.id)).items) == 4
    # No If-Match at all (None) is accepted here: requiring one is the API's business.
    assert (await services.fire(as_(DISPATCHER), project.id, None, "hold")).state == "on_hold"


async def test_update_project_changes_header_and_fields_and_redates_clocks(
    services: Services, create: Create, clock: FrozenClock
) -> None:
    project = await into_permitting(services, await create(planned_start=date(2026, 4, 1)))
    tasks_before = await services.list_tasks(as_(UNIT_A), project.id)
    updated = await services.update_project(
        as_(UNIT_A),
        project.id,
        project.version,
        ProjectChanges(
            name="新名称", township="巫峡镇", planned_start=date(2026, 4, 20), fields={"investment": "99.5"}
        ),
    )
    assert (updated.name, updated.township, updated.planned_start) == ("新名称", "巫峡镇", date(2026, 4, 20))
    assert updated.fields["planned_start"] == "2026-04-20" and updated.fields["investment"] == "99.5"
    assert updated.version == project.version + 1
    events = (await services.history(as_(UNIT_A), project.id, after_seq=4)).items
    assert [(e.kind, e.data) for e in events] == [
        ("project.fields_updated", {"investment": "99.5", "planned_start": "2026-04-20"}),
        ("project.updated", {"name": "新名称", "township": "巫峡镇", "planned_start": "2026-04-20"}),
    ]
    assert await services.list_tasks(as_(UNIT_A), project.id) == tasks_before

    # Clearing a value: None given explicitly. Nothing given: nothing written.
    cleared = await services.update_project(as_(UNIT_A), project.id, updated.version, ProjectChanges(township=None))
    assert cleared.township is None and cleared.version == updated.version + 1
    same = await services.update_project(as_(UNIT_A), project.id, cleared.version, ProjectChanges(name="新名称"))
    assert same == cleared
    with pytest.raises(InvalidInput):
        await services.update_project(
            as_(UNIT_A), project.id, cleared.version, ProjectChanges(planned_end=date(2026, 1, 1))
        )


async def test_history_pages_by_seq(services: Services, create: Create) -> None:
    project = await into_permitting(services, await create())
    first = await services.history(as_(UNIT_A), project.id, limit=3)
    assert [e.seq for e in first.items] == [1, 2, 3] and first.next_cursor == "3"
    rest = await services.history(as_(UNIT_A), project.id, after_seq=int(first.next_cursor))
    assert [e.seq for e in rest.items] == [4] and rest.next_cursor is None
    assert rest.items[0].prev_hash == first.items[-1].hash
    with pytest.raises(InvalidInput):
        await services.history(as_(UNIT_A), project.id, limit=0)


async def test_audit_is_for_administrators(services: Services, create: Create, clock: FrozenClock) -> None:
    project = await create()
    clock.advance(timedelta(days=1))
    assert await services.audit(as_(ADMIN)) == []
    assert await services.audit(as_(ADMIN), project.id) == []
    with pytest.raises(Forbidden):
        await services.audit(as_(DISPATCHER))
