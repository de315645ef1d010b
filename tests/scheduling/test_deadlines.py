"""Deadlines come due on the right working day, fire their expiry trigger once, and climb their ladder one
level at a time, on both dialects; time moves only by the frozen clock and ticks at chosen instants."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from lifecycle.calendar import default_calendar
from lifecycle.clock import end_of_local_day
from tests.scheduling.conftest import NDRC, PLANNING, UNIT_A, Clockwork, as_, local

pytestmark = pytest.mark.anyio

FSR = "appraisal.feasibility_study_review"


async def accepted_feasibility_review(clockwork: Clockwork) -> str:
    """A major project in appraisal whose 20-working-day feasibility review was accepted on Monday
    2026-09-28, before the 国庆 holiday."""
    accepted_on = local(2026, 9, 28, 10)
    project_id = await clockwork.seed(
        "major-project", "appraisal", local(2026, 9, 28, 9), code="2026-500237-48-01-000001"
    )
    services = clockwork.services
    clockwork.clock.set(accepted_on)
    task = await services.fire_task(as_(UNIT_A), project_id, FSR, None, "submit")
    await services.fire_task(as_(NDRC), project_id, FSR, task.version + 0, "accept")
    return project_id


async def test_a_twenty_working_day_item_started_before_national_day_is_due_on_30_october(
    clockwork: Clockwork,
) -> None:
    project_id = await accepted_feasibility_review(clockwork)
    deadline_id = f"{FSR}/time_limit/1"
    row = await clockwork.deadline(project_id, deadline_id)
    # 9/29, 9/30, then 国庆 (10/1–7), 10/8, 10/9, the 调休 Saturday 10/10, then three full weeks.
    assert row.due_date == date(2026, 10, 30)
    assert row.due_at == end_of_local_day(date(2026, 10, 30))
    assert row.estimated is False and row.ladder == "four_level_dispatch"
    assert row.next_fire_at == row.due_at  # level 1 (after 0 days) is due when the item is

    before = await clockwork.sweep(end_of_local_day(date(2026, 10, 30)) - timedelta(seconds=1))
    assert [f for f in before.fired if f.deadline_id == deadline_id] == []
    assert await clockwork.escalations(project_id, deadline_id) == []

    report = await clockwork.sweep(end_of_local_day(date(2026, 10, 30)))
    fired = [f for f in report.fired if f.deadline_id == deadline_id]
    assert [(f.action, f.level, f.late_by_seconds) for f in fired] == [("escalate", 1, 0)]
    (escalation,) = await clockwork.escalations(project_id, deadline_id)
    assert (escalation.level, escalation.title, escalation.outcome) == (1, "项目牵头部门一线调度", "fired")
    notices = [n for n in await clockwork.notices(project_id) if n.deadline_id == deadline_id]
    assert {(n.recipient_kind, n.recipient_id) for n in notices} == {
        ("unit", "unit_a"),
        ("unit", "unit_b"),
        ("department", "ndrc"),
    }
    assert sorted(escalation.notice_ids) == sorted(n.id for n in notices)
    ndrc = next(n for n in notices if n.recipient_kind == "department")
    assert ndrc.kind == "提示函" and ndrc.recipient_title == "县发展改革委（县重点项目事务中心）"
    assert ndrc.text.startswith(
        "县发展改革委（县重点项目事务中心）：\n巫山县某重大项目（项目代码：2026-500237-48-01-000001）"
    )
    assert "已于2026年10月30日到期" in ndrc.text and "四级调度·第1级·项目牵头部门一线调度" in ndrc.text
    row = await clockwork.deadline(project_id, deadline_id)
    assert row.level == 1 and row.next_fire_at == end_of_local_day(date(2026, 11, 6))  # +5 working days

    (event,) = [
        e for e in await clockwork.events(project_id, "deadline.escalated") if e.data["deadline"] == deadline_id
    ]
    assert event.subject_kind == "task" and event.subject_id == FSR and event.actor == "system"
    assert event.data["level"] == 1 and event.data["late_by_seconds"] == 0
    assert len(event.data["notices"]) == 3

    again = await clockwork.sweep(end_of_local_day(date(2026, 10, 30)))
    assert [f for f in again.fired if f.deadline_id == deadline_id] == []
    assert len(await clockwork.escalations(project_id, deadline_id)) == 1


async def test_after_downtime_each_level_due_meanwhile_fires_once_in_order_saying_how_late(
    clockwork: Clockwork,
) -> None:
    project_id = await accepted_feasibility_review(clockwork)
    deadline_id = f"{FSR}/time_limit/1"
    back_up = local(2026, 12, 31, 9)  # the scheduler was down from before 30 October

    report = await clockwork.sweep(back_up)

    fired = [f for f in report.fired if f.deadline_id == deadline_id]
    assert [f.level for f in fired] == [1, 2, 3, 4]
    calendar = default_calendar()
    due_days = [date(2026, 10, 30), *(calendar.add_working_days(date(2026, 10, 30), n).date for n in (5, 10, 20))]
    assert [f.due_at for f in fired] == [end_of_local_day(d) for d in due_days]
    assert [f.late_by_seconds for f in fired] == [
        int((back_up - end_of_local_day(d)).total_seconds()) for d in due_days
    ]
    rows = await clockwork.escalations(project_id, deadline_id)
    assert [(r.level, r.late_by_seconds) for r in rows] == [(f.level, f.late_by_seconds) for f in fired]
    events = [e for e in await clockwork.events(project_id, "deadline.escalated") if e.data["deadline"] == deadline_id]
    assert [e.data["level"] for e in events] == [1, 2, 3, 4]
    assert all(e.data["late_by_seconds"] > 0 for e in events)
    assert (await clockwork.deadline(project_id, deadline_id)).level == 4

    again = await clockwork.sweep(back_up + timedelta(days=30))
    assert [f for f in again.fired if f.deadline_id == deadline_id] == []
    assert len(await clockwork.escalations(project_id, deadline_id)) == 4


async def test_a_missed_cure_date_suspends_the_item_and_fifteen_working_days_later_returns_it(
    clockwork: Clockwork,
) -> None:
    services = clockwork.services
    project = await services.create_project(
        as_(UNIT_A),
        _mini(),
    )
    project = await services.fire(as_(UNIT_A), project.id, project.version, "start_permitting", {"approval_no": "1号"})
    task = "permits.planning_permit"
    view = await services.fire_task(as_(UNIT_A), project.id, task, None, "submit")
    view = await services.fire_task(
        as_(PLANNING), project.id, task, view.version, "accept_with_deficiencies", {"missing": ["photos"]}
    )
    (notice,) = await services.list_notices(as_(UNIT_A), project.id)
    calendar = default_calendar()
    assert notice.cure_date == calendar.add_working_days(date(2026, 3, 2), 5).date  # 2026-03-09

    quiet = await clockwork.sweep(end_of_local_day(notice.cure_date) - timedelta(seconds=1))
    assert quiet.fired == []

    lapsed = await clockwork.sweep(end_of_local_day(notice.cure_date))
    assert [(f.action, f.title, f.outcome) for f in lapsed.fired] == [("expire", "逾期", "fired")]
    assert (await services.get_task(as_(UNIT_A), project.id, task)).state == "suspended"
    assert (await services.get_notice(as_(UNIT_A), project.id, notice.id)).state == "lapsed"
    suspended_on = date(2026, 3, 10)
    return_row = await clockwork.deadline(project.id, f"{task}/return_period/1")
    assert return_row.started_on == suspended_on
    assert return_row.due_date == calendar.add_working_days(suspended_on, 15).date
    (expired,) = await clockwork.events(project.id, "deadline.expired")
    assert expired.trigger == "lapse" and expired.data["late_by_seconds"] == 0

    not_yet = await clockwork.sweep(end_of_local_day(return_row.due_date) - timedelta(seconds=1))
    assert not_yet.fired == []
    returned = await clockwork.sweep(end_of_local_day(return_row.due_date))
    assert [(f.action, f.title) for f in returned.fired] == [("expire", "退件")]
    assert (await services.get_task(as_(UNIT_A), project.id, task)).state == "returned"
    rows = await clockwork.escalations(project.id)
    assert [(r.deadline_id, r.level, r.outcome) for r in rows] == [
        (f"{notice.id}/cure/1", 0, "fired"),
        (f"{task}/return_period/1", 0, "fired"),
    ]
    assert (await clockwork.sweep(end_of_local_day(return_row.due_date) + timedelta(days=40))).fired == []


async def test_a_paused_clock_does_not_climb_and_resumes_with_a_later_due_date(clockwork: Clockwork) -> None:
    services = clockwork.services
    created = await services.create_project(as_(UNIT_A), _mini(definition_key="ladder-mini"))
    project = await services.fire(as_(UNIT_A), created.id, created.version, "start_permitting", {"approval_no": "1号"})
    task = "permits.planning_permit"
    view = await services.fire_task(as_(UNIT_A), project.id, task, None, "submit")
    view = await services.fire_task(as_(PLANNING), project.id, task, view.version, "accept")
    limit = await clockwork.deadline(project.id, f"{task}/time_limit/1")
    clockwork.clock.set(local(2026, 3, 10, 9))
    await services.fire_task(as_(PLANNING), project.id, task, view.version, "start_expert_review")
    paused = await clockwork.deadline(project.id, f"{task}/time_limit/1")
    assert paused.next_fire_at.year == 9999  # nothing to do while paused

    report = await clockwork.sweep(end_of_local_day(limit.due_date) + timedelta(days=2))
    assert [f for f in report.fired if f.deadline_id == limit.id] == []
    clockwork.clock.set(end_of_local_day(limit.due_date) + timedelta(days=3))
    current = await services.get_task(as_(UNIT_A), project.id, task)
    await services.fire_task(as_(PLANNING), project.id, task, current.version, "finish_expert_review")
    resumed = await clockwork.deadline(project.id, f"{task}/time_limit/1")
    assert resumed.due_date > limit.due_date and resumed.next_fire_at == resumed.due_at


def _mini(**overrides: object) -> object:
    from lifecycle.services import CreateProject

    values: dict[str, object] = {
        "definition_key": "mini",
        "name": "巫山县某康养文旅项目",
        "source_category": "规划项目",
        "lead_unit": "unit_a",
        "lead_leader": "县领导甲",
        "fields": {"investment": "150"},
    }
    values.update(overrides)
    return CreateProject(**values)  # type: ignore[arg-type]
