"""Moving running projects to a new definition version through the services: dry runs, runs, resuming,
and projects left on the old version (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lifecycle.clock import FrozenClock
from lifecycle.errors import Forbidden, InvalidInput, NotFound
from lifecycle.services import Services
from lifecycle.services.workflows import MigrationRequest, WorkflowAdmin

from .conftest import (
    ADMIN,
    DISPATCHER,
    HOUSING,
    PLANNING_PERMIT,
    UNIT_A,
    UNIT_B,
    VIEWER,
    as_,
    create,
    fire_task,
    in_building,
    in_permitting,
)
from .edits import mini_v2

pytestmark = pytest.mark.anyio

RENAME = {"building": "constructing"}


async def test_a_dry_run_says_who_can_move_and_why_not_and_stores_nothing(
    services: Services, admin: WorkflowAdmin
) -> None:
    draft = await create(services)
    permitting = await in_permitting(services)
    building = await in_building(services)
    await admin.publish(as_(ADMIN), mini_v2())

    unmapped = await admin.preview_migration(as_(ADMIN), "mini", MigrationRequest(from_version=1, to_version=2))
    verdicts = {item.project_id: item for item in unmapped.items}
    assert (unmapped.total, unmapped.movable, unmapped.blocked) == (3, 2, 1)
    assert verdicts[draft.id].movable and verdicts[draft.id].opened_tasks == []
    assert verdicts[permitting.id].movable and verdicts[permitting.id].opened_tasks == ["permits.fire_review"]
    assert [b.code for b in verdicts[building.id].blockers] == ["migration.state_removed"]
    assert unmapped.suggested_state_map == RENAME

    mapped = await admin.preview_migration(
        as_(ADMIN), "mini", MigrationRequest(from_version=1, to_version=2, state_map=RENAME)
    )
    blocked = {item.project_id: item for item in mapped.items}[building.id]
    assert blocked.to_state == "constructing" and not blocked.movable
    assert [b.code for b in blocked.blockers] == ["migration.gate_unmet"]
    assert "消防设计审查" in blocked.blockers[0].message_zh
    assert mapped.suggested_state_map == {}
    # Nothing was stored: every project is still on version 1.
    for project in (draft, permitting, building):
        assert (await services.get_project(as_(DISPATCHER), project.id)).definition_version == 1
    assert await admin.migrations(as_(ADMIN), "mini") == []


async def test_a_run_moves_the_movable_projects_and_leaves_the_others_working_on_v1(
    services: Services, admin: WorkflowAdmin, clock: FrozenClock
) -> None:
    permitting = await in_permitting(services)
    building = await in_building(services)
    old_tasks = {t.id: t for t in await services.list_tasks(as_(DISPATCHER), permitting.id)}
    old_limit = old_tasks[PLANNING_PERMIT].deadlines[0]
    await admin.publish(as_(ADMIN), mini_v2())
    clock.advance(timedelta(days=10))

    run = await admin.migrate(as_(ADMIN), "mini", MigrationRequest(from_version=1, state_map=RENAME))

    assert run.status == "finished" and run.to_version == 2  # to_version defaults to the active version
    assert run.counts == {"pending": 0, "migrated": 1, "blocked": 1, "skipped": 0}
    outcomes = {o.project_id: o for o in run.outcomes}
    assert outcomes[permitting.id].status == "migrated" and outcomes[permitting.id].to_state == "permitting"
    assert outcomes[permitting.id].detail["opened_tasks"] == ["permits.fire_review"]
    assert outcomes[building.id].status == "blocked"
    assert outcomes[building.id].blockers[0]["code"] == "migration.gate_unmet"

    moved = await services.get_project(as_(DISPATCHER), permitting.id)
    assert (moved.definition_version, moved.state, moved.version) == (2, "permitting", permitting.version + 1)
    tasks = {t.id: t for t in await services.list_tasks(as_(DISPATCHER), permitting.id)}
    assert set(tasks) == {PLANNING_PERMIT, "permits.construction_permit", "permits.fire_review"}
    assert (
        tasks["permits.fire_review"].state == "pending" and tasks["permits.fire_review"].department == "housing_bureau"
    )
    # The planning permit's limit is recomputed from its own start with the new 15 working days.
    limit = tasks[PLANNING_PERMIT].deadlines[0]
    assert limit.id == old_limit.id and limit.started_on == old_limit.started_on
    assert limit.due_date == services.engine.calendar.due_date(old_limit.started_on, 15, unit="working_days").date
    assert limit.due_date < old_limit.due_date
    history = (await services.history(as_(DISPATCHER), permitting.id)).items
    migrated = [e for e in history if e.kind == "project.migrated"]
    assert len(migrated) == 1 and migrated[0].actor == "admin"
    assert migrated[0].data["from_version"] == 1 and migrated[0].data["to_version"] == 2
    assert history[-1].kind == "task.opened" and history[-1].subject_id == "permits.fire_review"
    assert await services.audit(as_(ADMIN), permitting.id) == []  # the hash chain still verifies

    # The moved project runs on version 2; the blocked one keeps working on version 1.
    await fire_task(services, permitting.id, "permits.fire_review", "submit", UNIT_A)
    await fire_task(services, permitting.id, "permits.fire_review", "accept", HOUSING)
    stuck = await services.get_project(as_(DISPATCHER), building.id)
    assert (stuck.definition_version, stuck.state) == (1, "building")
    held = await services.fire(as_(DISPATCHER), building.id, stuck.version, "hold")
    assert (held.state, held.definition_version) == ("on_hold", 1)

    events = await admin.events(as_(ADMIN), "mini")
    assert [e.kind for e in events][-1] == "workflow.migrated"
    assert events[-1].data["counts"] == {"migrated": 1, "blocked": 1}


async def test_running_again_leaves_moved_projects_alone(services: Services, admin: WorkflowAdmin) -> None:
    permitting = await in_permitting(services)
    building = await in_building(services)
    await admin.publish(as_(ADMIN), mini_v2())
    request = MigrationRequest(from_version=1, to_version=2, state_map=RENAME)
    await admin.migrate(as_(ADMIN), "mini", request)
    version_after_first = (await services.get_project(as_(DISPATCHER), permitting.id)).version

    again = await admin.migrate(as_(ADMIN), "mini", request)
    assert [o.project_id for o in again.outcomes] == [building.id]  # only what is still on version 1
    assert again.counts["blocked"] == 1 and again.counts["migrated"] == 0
    assert (await services.get_project(as_(DISPATCHER), permitting.id)).version == version_after_first
    preview = await admin.preview_migration(as_(ADMIN), "mini", request)
    assert preview.already_on_target == 1 and preview.total == 1
    runs = await admin.migrations(as_(ADMIN), "mini")
    assert len(runs) == 2 and all(r.status == "finished" for r in runs)


async def test_a_run_can_be_resumed_and_a_crash_before_commit_leaves_the_project_untouched(
    services: Services, admin: WorkflowAdmin
) -> None:
    projects = [await in_permitting(services) for _ in range(3)]
    await admin.publish(as_(ADMIN), mini_v2())
    run = await admin.start_migration(as_(ADMIN), "mini", MigrationRequest(from_version=1, to_version=2))
    assert run.status == "running" and run.counts["pending"] == 3

    partial = await admin.run_migration(as_(ADMIN), "mini", run.id, limit=1)
    assert partial.status == "running" and partial.counts["migrated"] == 1 and partial.counts["pending"] == 2
    pending = [o.project_id for o in partial.outcomes if o.status == "pending"]  # in the run's order
    versions = {p.id: p.version for p in projects}

    class Crash(Exception):
        pass

    async def crash(project_id: str) -> None:
        raise Crash(project_id)

    with pytest.raises(Crash):
        await admin.run_migration(as_(ADMIN), "mini", run.id, before_commit=crash)
    progress = await admin.migration(as_(ADMIN), "mini", run.id)
    assert progress.counts["pending"] == 2  # the crashed project's move rolled back with its outcome
    crashed = await services.get_project(as_(DISPATCHER), pending[0])
    assert crashed.definition_version == 1 and crashed.version == versions[crashed.id]
    assert "permits.fire_review" not in {t.id for t in await services.list_tasks(as_(DISPATCHER), crashed.id)}

    seen: list[str] = []
    done = await admin.run_migration(as_(ADMIN), "mini", run.id, progress=lambda o: seen.append(o.project_id))
    assert done.status == "finished" and done.counts["migrated"] == 3
    assert seen == pending
    for project in projects:
        assert (await services.get_project(as_(DISPATCHER), project.id)).definition_version == 2


async def test_a_project_changed_meanwhile_is_skipped(services: Services, admin: WorkflowAdmin) -> None:
    project = await in_permitting(services)
    await admin.publish(as_(ADMIN), mini_v2())
    run = await admin.start_migration(as_(ADMIN), "mini", MigrationRequest(from_version=1, to_version=2))
    # Another run moves it first.
    await admin.migrate(as_(ADMIN), "mini", MigrationRequest(from_version=1, to_version=2, project_ids=[project.id]))
    finished = await admin.run_migration(as_(ADMIN), "mini", run.id)
    [outcome] = finished.outcomes
    assert outcome.status == "skipped" and outcome.detail["definition_version"] == 2


async def test_the_filter_selects_by_project_state_and_unit(services: Services, admin: WorkflowAdmin) -> None:
    a_draft = await create(services, UNIT_A)
    b_draft = await create(services, UNIT_B)
    a_permitting = await in_permitting(services, UNIT_A)
    await admin.publish(as_(ADMIN), mini_v2())

    async def chosen(**kw: object) -> set[str]:
        preview = await admin.preview_migration(as_(ADMIN), "mini", MigrationRequest(from_version=1, **kw))  # type: ignore[arg-type]
        return {item.project_id for item in preview.items}

    assert await chosen(units=["unit_b"]) == {b_draft.id}
    assert await chosen(states=["permitting"]) == {a_permitting.id}
    assert await chosen(project_ids=[a_draft.id, b_draft.id], units=["unit_a"]) == {a_draft.id}
    assert await chosen() == {a_draft.id, b_draft.id, a_permitting.id}


async def test_bad_requests(services: Services, admin: WorkflowAdmin) -> None:
    await admin.publish(as_(ADMIN), mini_v2())
    with pytest.raises(Forbidden):
        await admin.preview_migration(as_(DISPATCHER), "mini", MigrationRequest(from_version=1))
    with pytest.raises(Forbidden):
        await admin.migrations(as_(UNIT_A), "mini")
    await admin.migrations(as_(VIEWER), "mini")  # county-wide roles may read runs
    with pytest.raises(InvalidInput) as same:
        await admin.preview_migration(as_(ADMIN), "mini", MigrationRequest(from_version=2, to_version=2))
    assert [p.code for p in same.value.problems()] == ["workflow.same_versions"]
    with pytest.raises(InvalidInput) as mapping:
        await admin.start_migration(
            as_(ADMIN), "mini", MigrationRequest(from_version=1, state_map={"nope": "constructing", "draft": "gone"})
        )
    problems = mapping.value.problems()
    assert [p.code for p in problems] == ["workflow.map_unknown_from", "workflow.map_unknown_to"]
    assert problems[0].location is not None and problems[0].location.path == ("state_map", "nope")
    with pytest.raises(NotFound):
        await admin.preview_migration(as_(ADMIN), "mini", MigrationRequest(from_version=1, to_version=5))
    with pytest.raises(NotFound):
        await admin.migration(as_(ADMIN), "mini", "no-such-run")
    assert await admin.migrations(as_(ADMIN), "mini") == []


async def test_a_department_change_moves_the_items_visibility(services: Services, admin: WorkflowAdmin) -> None:
    from .edits import MINI_TEXT, replace

    project = await in_permitting(services)
    text = replace(MINI_TEXT, "        department: planning_bureau\n", "        department: housing_bureau\n")
    await admin.publish(as_(ADMIN), text)
    await admin.migrate(as_(ADMIN), "mini", MigrationRequest(from_version=1, to_version=2))
    tasks = {t.id: t for t in await services.list_tasks(as_(DISPATCHER), project.id)}
    assert tasks[PLANNING_PERMIT].department == "housing_bureau"
    visible = await services.list_projects(as_(HOUSING))
    assert project.id in {p.id for p in visible.items}


async def test_two_processes_resuming_one_run_move_each_project_once(services: Services, admin: WorkflowAdmin) -> None:
    import asyncio

    projects = [await in_permitting(services) for _ in range(6)]
    await admin.publish(as_(ADMIN), mini_v2())
    run = await admin.start_migration(as_(ADMIN), "mini", MigrationRequest(from_version=1, to_version=2))
    first, second = await asyncio.gather(
        admin.run_migration(as_(ADMIN), "mini", run.id),
        WorkflowAdmin(services).run_migration(as_(ADMIN), "mini", run.id),
    )
    assert first.counts["migrated"] == second.counts["migrated"] == 6
    for project in projects:
        kinds = [e.kind for e in (await services.history(as_(DISPATCHER), project.id)).items]
        assert kinds.count("project.migrated") == 1 and kinds.count("task.opened") == 3  # two at start, one now
        view = await services.get_project(as_(DISPATCHER), project.id)
        assert (view.definition_version, view.version) == (2, project.version + 1)
    events = [e for e in await admin.events(as_(ADMIN), "mini") if e.kind == "workflow.migrated"]
    assert len(events) == 1  # the run finished once
