"""Recurring reports: a missing Monday report climbs the four-level ladder on the ladder's days and stops
when the report arrives; reports are validated, recorded as late when late, and update project fields."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from lifecycle.clock import end_of_local_day
from lifecycle.errors import Forbidden, InvalidInput, NotFound
from lifecycle.services.scheduling import ReportAlreadyFiled
from tests.scheduling.conftest import DISPATCHER, NDRC, UNIT_A, UNIT_B, Clockwork, as_, local

pytestmark = pytest.mark.anyio

W37 = "obligation:weekly_progress:2026-W37"
REPORT = {
    "progress_text": "主体结构施工至第8层",
    "invested_this_week": "120.5",
    "invested_this_year": "3600",
    "invested_to_date": "5200",
    "attachments": ["file://photos/2026-09-16/1.jpg"],
}


async def test_a_missed_monday_report_climbs_all_four_levels_and_stops_when_the_report_arrives(
    clockwork: Clockwork,
) -> None:
    silent = await clockwork.seed("major-project", "construction", local(2026, 9, 1, 9), name="甲项目")
    tardy = await clockwork.seed("major-project", "construction", local(2026, 9, 1, 9), name="乙项目",
                                 lead_unit="unit_b", implementing_unit=None)  # fmt: skip
    silent_w37, tardy_w37 = f"{silent}/{W37}/1", f"{tardy}/{W37}/1"

    # Monday 2026-09-07 17:59: the report is not due yet, no deadline exists.
    early = await clockwork.sweep(local(2026, 9, 7, 17, 59))
    assert [o for o in early.opened if o.period == "2026-W37"] == []
    # 18:00: due and missing: the period's deadline opens and level 1 fires at once.
    due = await clockwork.sweep(local(2026, 9, 7, 18))
    assert {(o.project_id, o.period) for o in due.opened if o.obligation == "weekly_progress"} == {
        (silent, "2026-W37"),
        (tardy, "2026-W37"),
    }
    row = await clockwork.deadline(silent, silent_w37)
    assert (row.subject_kind, row.clock, row.due_date, row.due_at) == (
        "project",
        W37,
        date(2026, 9, 7),
        local(2026, 9, 7, 18),
    )
    assert {(f.deadline_id, f.level) for f in due.fired if W37 in f.deadline_id} == {(silent_w37, 1), (tardy_w37, 1)}

    # Level 2: five working days after Monday, at the end of 9/14.
    await clockwork.sweep(end_of_local_day(date(2026, 9, 14)) - timedelta(seconds=1))
    assert len(await clockwork.escalations(silent, silent_w37)) == 1
    await clockwork.sweep(end_of_local_day(date(2026, 9, 14)))
    assert len(await clockwork.escalations(tardy, tardy_w37)) == 2

    # The tardy project files on Wednesday 9/16: late, the ladder stops, the field the light reads follows.
    clockwork.clock.set(local(2026, 9, 16, 10))
    report = await clockwork.scheduling.submit_report(as_(UNIT_B), tardy, "weekly_progress", REPORT, "2026-W37")
    assert report.late and report.late_by_seconds == int(
        (local(2026, 9, 16, 10) - local(2026, 9, 7, 18)).total_seconds()
    )
    closed = await clockwork.deadline(tardy, tardy_w37)
    assert closed.closed_at == local(2026, 9, 16, 10) and closed.level == 2
    project = await clockwork.services.get_project(as_(UNIT_B), tardy)
    assert project.fields["investment_completed_this_year"] == "3600"
    assert project.fields["investment_completed_to_date"] == "5200"
    (reported,) = await clockwork.events(tardy, "obligation.reported")
    assert reported.data["late"] is True and reported.data["level"] == 2 and reported.data["period"] == "2026-W37"

    # Level 3: ten working days, the tenth being the 调休 Sunday 9/20; level 4: twenty, across 中秋 (9/25) and
    # 国庆 (10/1–7), the twentieth being the 调休 Saturday 10/10.
    await clockwork.sweep(end_of_local_day(date(2026, 9, 20)) - timedelta(seconds=1))
    assert len(await clockwork.escalations(silent, silent_w37)) == 2
    await clockwork.sweep(end_of_local_day(date(2026, 9, 20)))
    await clockwork.sweep(end_of_local_day(date(2026, 10, 10)) - timedelta(seconds=1))
    assert len(await clockwork.escalations(silent, silent_w37)) == 3
    await clockwork.sweep(end_of_local_day(date(2026, 10, 10)))

    climbed = await clockwork.escalations(silent, silent_w37)
    assert [(e.level, e.title) for e in climbed] == [
        (1, "项目牵头部门一线调度"),
        (2, "县政府分管领导跟踪调度"),
        (3, "县工作专班定期调度"),
        (4, "县重大战略推进领导小组督导调度"),
    ]
    assert [e.due_at for e in climbed] == [
        local(2026, 9, 7, 18),
        end_of_local_day(date(2026, 9, 14)),
        end_of_local_day(date(2026, 9, 20)),
        end_of_local_day(date(2026, 10, 10)),
    ]
    assert all(e.late_by_seconds == 0 for e in climbed)
    assert [e.level for e in await clockwork.escalations(tardy, tardy_w37)] == [1, 2]

    notices = [n for n in await clockwork.notices(silent) if n.deadline_id == silent_w37]
    by_level = {
        level: {(n.recipient_kind, n.recipient_id) for n in notices if n.level == level} for level in (1, 2, 3, 4)
    }
    assert by_level == {
        1: {("unit", "unit_a"), ("unit", "unit_b")},  # no department for a project-level report
        2: {("leader", "县领导甲"), ("unit", "unit_a")},
        3: {("role", "task_force"), ("role", "dispatcher"), ("leader", "县领导甲")},
        4: {("role", "leading_group"), ("role", "task_force"), ("leader", "县领导甲")},
    }
    level4 = next(n for n in notices if n.level == 4 and n.recipient_id == "leading_group")
    assert level4.kind == "督办函" and level4.recipient_title == "县重大战略推进领导小组"
    assert "每周一报送形象进度和投资完成情况（2026-W37）已于2026年9月7日到期" in level4.text

    # Nothing fires twice, however often the scheduler ticks.
    await clockwork.sweep(end_of_local_day(date(2026, 11, 30)))
    assert len(await clockwork.escalations(silent, silent_w37)) == 4


async def test_a_monday_holiday_moves_the_report_to_the_next_working_day(clockwork: Clockwork) -> None:
    project = await clockwork.seed("major-project", "construction", local(2026, 9, 29, 9))
    await clockwork.sweep(local(2026, 9, 29, 10))
    # Week 41 starts on Monday 5 October, inside 国庆: the rule next_working_day makes it Thursday 8 October.
    await clockwork.sweep(local(2026, 10, 8, 17, 59))
    assert [d for d in await clockwork.deadlines(project) if "2026-W41" in d.id] == []
    report = await clockwork.sweep(local(2026, 10, 8, 18))
    (opened,) = [o for o in report.opened if o.period == "2026-W41"]
    assert opened.due_at == local(2026, 10, 8, 18)


async def test_a_project_that_was_not_under_construction_at_the_due_time_owes_nothing(
    clockwork: Clockwork,
) -> None:
    await clockwork.sweep(local(2026, 9, 7, 12))
    late_starter = await clockwork.seed("major-project", "construction", local(2026, 9, 8, 9))
    report = await clockwork.sweep(local(2026, 9, 8, 10))
    assert [o for o in report.opened if o.project_id == late_starter] == []
    status = await clockwork.scheduling.obligation(as_(DISPATCHER), late_starter, "weekly_progress")
    # Week 37's report was due on Monday, before the project started; week 38's is the next one due.
    assert [(p.period, p.status) for p in status.periods] == [("2026-W38", "due")]


async def test_reports_are_validated_filed_once_and_only_by_the_projects_unit(clockwork: Clockwork) -> None:
    project = await clockwork.seed("major-project", "construction", local(2026, 9, 1, 9))
    scheduling = clockwork.scheduling
    clockwork.clock.set(local(2026, 9, 7, 10))

    with pytest.raises(InvalidInput) as missing:
        await scheduling.submit_report(as_(UNIT_A), project, "weekly_progress", {"progress_text": "x", "bogus": 1})
    codes = {(p.code, p.location.path if p.location else None) for p in missing.value.problems()}
    assert ("field.unknown", ("data", "bogus")) in codes
    assert ("field.required", ("data", "invested_this_week")) in codes
    with pytest.raises(InvalidInput) as bad_type:
        await scheduling.submit_report(
            as_(UNIT_A), project, "weekly_progress", {**REPORT, "invested_this_week": "很多"}
        )
    assert [p.code for p in bad_type.value.problems()] == ["field.type"]
    with pytest.raises(InvalidInput):
        await scheduling.submit_report(as_(UNIT_A), project, "weekly_progress", REPORT, "2026-W99")
    with pytest.raises(InvalidInput):
        await scheduling.submit_report(as_(UNIT_A), project, "weekly_progress", REPORT, "2026-W40")  # the future
    with pytest.raises(NotFound):
        await scheduling.submit_report(as_(UNIT_A), project, "no_such_report", REPORT)
    with pytest.raises(Forbidden):
        await scheduling.submit_report(as_(NDRC), project, "weekly_progress", REPORT)
    with pytest.raises(NotFound):  # another unit's project is invisible
        await scheduling.submit_report(as_(UNIT_B.__class__("x", "x", unit_id="unit_z", roles=frozenset({"unit"}))),
                                       project, "weekly_progress", REPORT)  # fmt: skip

    on_time = await scheduling.submit_report(as_(UNIT_A), project, "weekly_progress", REPORT)
    assert (on_time.period, on_time.late, on_time.late_by_seconds) == ("2026-W37", False, 0)
    assert on_time.data["invested_this_week"] == "120.5" and on_time.data["attachments"] == REPORT["attachments"]
    with pytest.raises(ReportAlreadyFiled):
        await scheduling.submit_report(as_(UNIT_A), project, "weekly_progress", REPORT)

    report = await clockwork.sweep(local(2026, 9, 7, 18, 30))
    assert [o for o in report.opened if o.project_id == project and o.obligation == "weekly_progress"] == []
    status = await scheduling.obligation(as_(UNIT_A), project, "weekly_progress")
    assert status.applies_now and status.updates_fields["invested_this_year"] == "investment_completed_this_year"
    assert [(p.period, p.status, p.report_id) for p in status.periods] == [
        ("2026-W38", "due", None),
        ("2026-W37", "reported", on_time.id),
    ]


async def test_the_report_due_next_is_listed_as_due_and_past_ones_as_missing(clockwork: Clockwork) -> None:
    project = await clockwork.seed("major-project", "construction", local(2026, 9, 1, 9))
    await clockwork.sweep(local(2026, 9, 14, 10))  # Monday of week 38, before 18:00
    status = await clockwork.scheduling.obligation(as_(UNIT_A), project, "weekly_progress")
    assert [(p.period, p.status, p.level) for p in status.periods] == [
        ("2026-W38", "due", 0),
        ("2026-W37", "missing", 1),
    ]


async def test_reserve_reports_follow_the_yaml_holiday_rules_and_end_with_the_project(clockwork: Clockwork) -> None:
    project = await clockwork.seed("major-project", "reserve", local(2026, 9, 1, 9))
    await clockwork.sweep(local(2026, 9, 30, 12))
    # 每季度初: the 10th of the quarter's first month; 10 October 2026 is a Saturday but a 调休 working day.
    quarter = await clockwork.sweep(local(2026, 10, 10, 18))
    assert [(o.obligation, o.period, o.due_at) for o in quarter.opened if o.project_id == project] == [
        ("quarterly_reserve_update", "2026-Q4", local(2026, 10, 10, 18))
    ]
    # 10月底前: the 31st is a Saturday, and "before the end" moves it to the previous working day, Friday 30th.
    year = await clockwork.sweep(local(2026, 10, 30, 18))
    assert [(o.obligation, o.period, o.due_at) for o in year.opened if o.project_id == project] == [
        ("annual_reserve_list", "2026", local(2026, 10, 30, 18))
    ]
    assert {d.clock for d in await clockwork.deadlines(project) if d.closed_at is None} >= {
        "obligation:quarterly_reserve_update:2026-Q4",
        "obligation:annual_reserve_list:2026",
    }

    # A project that is terminated owes nothing more: the missing reports' ladders stop.
    clockwork.clock.set(local(2026, 11, 2, 10))
    view = await clockwork.services.get_project(as_(DISPATCHER), project)
    await clockwork.services.fire(as_(DISPATCHER), project, view.version, "terminate", comment="不再实施")
    assert [d.id for d in await clockwork.deadlines(project) if d.closed_at is None] == []
    before = len(await clockwork.escalations(project))
    await clockwork.sweep(local(2026, 12, 31, 10))
    assert len(await clockwork.escalations(project)) == before
