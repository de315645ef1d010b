"""Items, deficiency notices and commitments through the services: 容缺受理 with its one notice, supply,
承诺制, and the views' titles and clocks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta

import pytest
from sqlalchemy import text

from lifecycle.clock import FrozenClock
from lifecycle.errors import InvalidInput, NotFound, OneTimeNoticeBreach, StaleVersion
from lifecycle.services import ProjectView, Services

from .conftest import DISPATCHER, HOUSING, PLANNING, UNIT_A, as_, into_permitting

pytestmark = pytest.mark.anyio

Create = Callable[..., Awaitable[ProjectView]]
PLANNING_PERMIT = "permits.planning_permit"
CONSTRUCTION_PERMIT = "permits.construction_permit"


async def test_deficiency_notice_lifecycle_and_the_one_time_rule(
    services: Services, create: Create, clock: FrozenClock
) -> None:
    project = await into_permitting(services, await create())
    task = await services.get_task(as_(PLANNING), project.id, PLANNING_PERMIT)
    assert (task.item_title, task.group_title, task.department_title, task.state_title, task.outcome) == (
        "建设工程规划许可证",
        "并联审批",
        "县规划自然资源局",
        "待申报",
        "open",
    )
    task = await services.fire_task(as_(UNIT_A), project.id, PLANNING_PERMIT, task.version, "submit")
    assert task.submission == 1 and task.etag == f'W/"{task.version}"'
    task = await services.fire_task(
        as_(PLANNING),
        project.id,
        PLANNING_PERMIT,
        task.version,
        "accept_with_deficiencies",
        {"missing": ["photos", "contract_copy"]},
    )
    assert task.state == "accepted_with_deficiencies"
    assert [(d.clock, d.due_date, d.overdue, d.paused) for d in task.deadlines] == [
        ("time_limit", date(2026, 3, 30), False, False)
    ]

    [notice] = await services.list_notices(as_(UNIT_A), project.id)
    assert notice.id == f"{PLANNING_PERMIT}#n1" and notice.submission == 1
    assert [(m.id, m.title) for m in notice.missing] == [("photos", "现场照片"), ("contract_copy", "合同复印件")]
    assert (notice.state, notice.state_title, notice.outcome, notice.issued_by) == (
        "issued",
        "已告知",
        "open",
        PLANNING.id,
    )
    assert notice.cure_date == date(2026, 3, 9)
    assert await services.get_notice(as_(PLANNING), project.id, notice.id) == notice

    resumed = await services.fire_notice(as_(UNIT_A), project.id, notice.id, notice.version, "supply")
    assert resumed.state == "cured" and resumed.outcome == "done" and resumed.closed_at == services.now()
    task = await services.get_task(as_(UNIT_A), project.id, PLANNING_PERMIT)
    assert task.state == "accepted"  # then_parent: the item resumed

    # A new submission may get its own notice.
    task = await services.fire_task(
        as_(PLANNING), project.id, PLANNING_PERMIT, task.version, "reject", comment="总平面图不符合规划条件"
    )
    task = await services.fire_task(as_(UNIT_A), project.id, PLANNING_PERMIT, task.version, "resubmit")
    assert (task.state, task.submission) == ("submitted", 2)
    task = await services.fire_task(
        as_(PLANNING), project.id, PLANNING_PERMIT, task.version, "accept_with_deficiencies", {"missing": ["photos"]}
    )
    assert [n.id for n in await services.list_notices(as_(UNIT_A), project.id)] == [notice.id, f"{PLANNING_PERMIT}#n2"]

    # The same submission may not get a second one: 一次性告知. The definition offers no way back to
    # "submitted" without a new submission, so the row is put back by hand to try.
    async with services.database.transaction() as session:
        await session.execute(
            text("UPDATE tasks SET state = 'submitted' WHERE project_id = :p AND id = :t"),
            {"p": project.id, "t": PLANNING_PERMIT},
        )
    with pytest.raises(OneTimeNoticeBreach) as breach:
        await services.fire_task(
            as_(PLANNING),
            project.id,
            PLANNING_PERMIT,
            task.version,
            "accept_with_deficiencies",
            {"missing": ["contract_copy"]},
        )
    assert breach.value.notice_id == f"{PLANNING_PERMIT}#n2"
    assert len(await services.list_notices(as_(UNIT_A), project.id)) == 2

    kinds = [e.kind for e in (await services.history(as_(UNIT_A), project.id, after_seq=4)).items]
    assert kinds == [
        "task.transition",  # submit
        "notice.issued",
        "task.transition",  # accept_with_deficiencies
        "notice.transition",  # supply
        "task.transition",  # resume (then_parent)
        "task.transition",  # reject
        "task.transition",  # resubmit
        "notice.issued",
        "task.transition",  # accept_with_deficiencies
    ]


async def test_notice_lapses_when_time_runs_out(services: Services, create: Create, clock: FrozenClock) -> None:
    # The scheduler is another part; here time passing is seen through the views and the refusal after it.
    project = await into_permitting(services, await create())
    task = await services.fire_task(as_(UNIT_A), project.id, PLANNING_PERMIT, 1, "submit")
    await services.fire_task(
        as_(PLANNING), project.id, PLANNING_PERMIT, task.version, "accept_with_deficiencies", {"missing": ["photos"]}
    )
    clock.advance(timedelta(days=40))
    task = await services.get_task(as_(UNIT_A), project.id, PLANNING_PERMIT)
    assert [d.overdue for d in task.deadlines] == [True]
    overdue = await services.list_projects(as_(DISPATCHER))
    assert [p.id for p in overdue.items] == [project.id]


async def test_commitments_are_recorded_and_verified(services: Services, create: Create) -> None:
    project = await into_permitting(services, await create())
    task = await services.fire_task(as_(UNIT_A), project.id, CONSTRUCTION_PERMIT, 1, "submit")
    task = await services.fire_task(
        as_(UNIT_A),
        project.id,
        CONSTRUCTION_PERMIT,
        task.version,
        "record_commitment",
        {"text": "开工前补齐消防设计文件", "due_date": "2026-06-30"},
    )
    task = await services.fire_task(as_(HOUSING), project.id, CONSTRUCTION_PERMIT, task.version, "accept")
    task = await services.fire_task(as_(HOUSING), project.id, CONSTRUCTION_PERMIT, task.version, "approve")
    assert (task.outcome, task.closed_at) == ("done", services.now())
    [commitment] = await services.list_commitments(as_(PLANNING), project.id)
    assert (commitment.id, commitment.state, commitment.due_date) == (
        f"{CONSTRUCTION_PERMIT}#c1",
        "recorded",
        date(2026, 6, 30),
    )
    await services.fire_task(
        as_(HOUSING), project.id, CONSTRUCTION_PERMIT, task.version, "verify_commitment", {"note": "已核查"}
    )
    [commitment] = await services.list_commitments(as_(UNIT_A), project.id)
    assert (commitment.state, commitment.verified_by, commitment.note) == ("verified", HOUSING.id, "已核查")


async def test_available_transitions_say_why_not(services: Services, create: Create) -> None:
    project = await into_permitting(services, await create())
    options = {o.trigger: o for o in await services.available_transitions(as_(UNIT_A), project.id)}
    assert set(options) == {"start_building", "hold", "stop"}
    assert not options["start_building"].may_fire
    assert [r[0] for r in options["start_building"].reasons] == ["condition.group_done"]
    assert [r[0] for r in options["hold"].reasons] == ["engine.role_refused"]
    task_options = await services.available_task_transitions(as_(PLANNING), project.id, PLANNING_PERMIT)
    assert [(o.trigger, o.may_fire) for o in task_options] == [("submit", False)]
    task_options = await services.available_task_transitions(as_(UNIT_A), project.id, PLANNING_PERMIT)
    assert [(o.trigger, o.may_fire) for o in task_options] == [("submit", True)]


async def test_unknown_tasks_and_notices_are_not_found(services: Services, create: Create) -> None:
    project = await into_permitting(services, await create())
    for call in (
        services.get_task(as_(UNIT_A), project.id, "permits.nothing"),
        services.fire_task(as_(UNIT_A), project.id, "permits.nothing", None, "submit"),
        services.get_notice(as_(UNIT_A), project.id, "permits.nothing#n1"),
        services.fire_notice(as_(UNIT_A), project.id, "permits.nothing#n1", None, "read"),
        services.available_task_transitions(as_(UNIT_A), project.id, "permits.nothing"),
    ):
        with pytest.raises(NotFound):
            await call


async def test_task_and_notice_versions_are_their_own(services: Services, create: Create) -> None:
    project = await into_permitting(services, await create())
    planning = await services.fire_task(as_(UNIT_A), project.id, PLANNING_PERMIT, 1, "submit")
    # Changing one item does not make another item's ETag stale.
    construction = await services.fire_task(as_(UNIT_A), project.id, CONSTRUCTION_PERMIT, 1, "submit")
    assert construction.version == 2 and planning.version == 2
    await services.fire_task(
        as_(PLANNING),
        project.id,
        PLANNING_PERMIT,
        planning.version,
        "accept_with_deficiencies",
        {"missing": ["photos"]},
    )
    [notice] = await services.list_notices(as_(UNIT_A), project.id)
    with pytest.raises(StaleVersion):
        await services.fire_notice(as_(UNIT_A), project.id, notice.id, notice.version + 1, "read")
    construction = await services.fire_task(
        as_(HOUSING), project.id, CONSTRUCTION_PERMIT, construction.version, "accept"
    )
    with pytest.raises(InvalidInput):  # 不予许可 needs a written reason
        await services.fire_task(as_(HOUSING), project.id, CONSTRUCTION_PERMIT, construction.version, "reject")
    assert (await services.get_task(as_(HOUSING), project.id, CONSTRUCTION_PERMIT)).state == "accepted"
