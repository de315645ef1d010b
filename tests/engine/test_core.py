"""The engine on a small definition: gates, refusals, 容缺 and the one-time notice, clocks, hold and resume."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from lifecycle.engine.core import Engine
from lifecycle.engine.instance import SYSTEM_ACTOR, ProjectInstance
from lifecycle.errors import (
    GateNotSatisfied,
    InvalidInput,
    InvalidTransition,
    NotFound,
    OneTimeNoticeBreach,
    RoleRefused,
)

from .conftest import DISPATCHER, HOUSING, PLANNING, UNIT, local

PLANNING_PERMIT = "permits.planning_permit"
CONSTRUCTION_PERMIT = "permits.construction_permit"
NOW = local(2026, 9, 1)


def started(engine: Engine, **fields: object) -> ProjectInstance:
    project, _ = engine.start("mini", 1, "P1", UNIT, NOW, fields={"investment": "50", **fields})
    engine.fire(project, "start_permitting", UNIT, NOW, data={"approval_no": "巫发改〔2026〕1号"})
    return project


def test_start_enters_the_initial_state_and_records_creation(engine: Engine) -> None:
    project, result = engine.start("mini", 1, "P1", UNIT, NOW, fields={"investment": 120})
    assert project.state == "draft"
    assert [e.kind for e in result.events] == ["project.created"]
    assert str(project.fields["investment"]) == "120"


def test_start_refuses_unknown_fields_and_bad_values_all_at_once(engine: Engine) -> None:
    with pytest.raises(InvalidInput) as refused:
        engine.start("mini", 1, "P1", UNIT, NOW, fields={"investment": "lots", "colour": "red"})
    assert sorted(p.code for p in refused.value.problems()) == ["field.type", "field.unknown"]


def test_unknown_definition_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        engine.start("nope", 1, "P1", UNIT, NOW)


def test_required_field_may_come_with_the_trigger(engine: Engine) -> None:
    project, _ = engine.start("mini", 1, "P1", UNIT, NOW)
    with pytest.raises(GateNotSatisfied) as refused:
        engine.fire(project, "start_permitting", UNIT, NOW)
    assert [u.code for u in refused.value.unmet] == ["condition.field_present"]
    assert project.state == "draft"
    result = engine.fire(project, "start_permitting", UNIT, NOW, data={"approval_no": "A-1"})
    assert project.state == "permitting"
    assert result.tasks_opened == [PLANNING_PERMIT, CONSTRUCTION_PERMIT]
    assert result.fields_changed == ["approval_no"]


def test_trigger_data_may_only_set_the_fields_it_accepts(engine: Engine) -> None:
    project, _ = engine.start("mini", 1, "P1", UNIT, NOW)
    with pytest.raises(InvalidInput) as refused:
        engine.fire(project, "start_permitting", UNIT, NOW, data={"approval_no": "A", "investment": 1})
    assert [p.code for p in refused.value.problems()] == ["field.not_accepted"]


def test_gate_lists_every_unmet_condition_and_changes_nothing(engine: Engine) -> None:
    project = started(engine)
    version = project.version
    with pytest.raises(GateNotSatisfied) as refused:
        engine.fire(project, "start_building", DISPATCHER, NOW)
    error = refused.value
    assert error.gate == "before_building"
    assert error.gate_title == "开工前"
    assert [u.code for u in error.unmet] == ["condition.group_done", "condition.field_compare"]
    assert "建设工程规划许可证" in error.unmet[0].zh and "施工许可证" in error.unmet[0].zh
    assert error.unmet[0].en and error.unmet[1].en
    assert project.state == "permitting" and project.version == version


def test_invalid_transition_lists_the_triggers_allowed_here(engine: Engine) -> None:
    project = started(engine)
    with pytest.raises(InvalidTransition) as refused:
        engine.fire(project, "finish", DISPATCHER, NOW)
    assert refused.value.allowed == ["hold", "start_building", "stop"]
    with pytest.raises(InvalidTransition):
        engine.fire(project, "no_such_trigger", DISPATCHER, NOW)


def test_roles_come_from_the_yaml(engine: Engine) -> None:
    project = started(engine)
    with pytest.raises(RoleRefused) as refused:
        engine.fire(project, "hold", UNIT, NOW)
    assert refused.value.roles_allowed == ["dispatcher"]


def test_comment_required(engine: Engine) -> None:
    project = started(engine)
    with pytest.raises(InvalidInput):
        engine.fire(project, "stop", DISPATCHER, NOW)
    engine.fire(project, "stop", DISPATCHER, NOW, comment="项目取消")
    assert project.state == "stopped"


def test_department_acts_only_on_its_own_items(engine: Engine) -> None:
    project = started(engine)
    engine.fire_task(project, CONSTRUCTION_PERMIT, "submit", UNIT, NOW)
    with pytest.raises(RoleRefused) as refused:
        engine.fire_task(project, CONSTRUCTION_PERMIT, "accept", PLANNING, NOW)
    assert refused.value.reason == "department"
    engine.fire_task(project, CONSTRUCTION_PERMIT, "accept", HOUSING, NOW)
    assert project.tasks[CONSTRUCTION_PERMIT].state == "accepted"


def test_available_triggers_say_why_not(engine: Engine) -> None:
    project = started(engine)
    options = {o.trigger: o for o in engine.available_triggers(project, UNIT, NOW)}
    assert set(options) == {"start_building", "hold", "stop"}
    assert not options["hold"].may_fire
    assert options["hold"].reasons[0][0] == "engine.role_refused"
    codes = [r[0] for r in options["start_building"].reasons]
    assert codes == ["condition.group_done", "condition.field_compare"]
    task_options = {o.trigger: o for o in engine.available_task_triggers(project, PLANNING_PERMIT, UNIT, NOW)}
    assert task_options["submit"].may_fire


def approve_all(engine: Engine, project: ProjectInstance) -> None:
    for task_id, department in ((PLANNING_PERMIT, PLANNING), (CONSTRUCTION_PERMIT, HOUSING)):
        engine.fire_task(project, task_id, "submit", UNIT, NOW)
        engine.fire_task(project, task_id, "accept", department, NOW)
        engine.fire_task(project, task_id, "approve", department, NOW)


def test_gate_opens_when_group_done_and_field_high_enough(engine: Engine) -> None:
    project = started(engine)
    approve_all(engine, project)
    with pytest.raises(GateNotSatisfied) as refused:
        engine.fire(project, "start_building", DISPATCHER, NOW)
    assert [u.code for u in refused.value.unmet] == ["condition.field_compare"]
    engine.update_fields(project, {"investment": "100"}, DISPATCHER, NOW)
    engine.fire(project, "start_building", DISPATCHER, NOW)
    assert project.state == "building"


def test_item_clock_starts_on_acceptance_with_its_time_limit(engine: Engine) -> None:
    project = started(engine)
    engine.fire_task(project, PLANNING_PERMIT, "submit", UNIT, NOW)
    result = engine.fire_task(project, PLANNING_PERMIT, "accept", PLANNING, NOW)
    [deadline_id] = result.deadlines_opened
    deadline = project.deadlines[deadline_id]
    # 20 working days from Tue 2026-09-01: September has 21 working days (9/20 调休 Sunday counts), 9/29 is
    # the 20th after 9/1.
    assert deadline.due_date == date(2026, 9, 29)
    assert not deadline.estimated
    approved = engine.fire_task(project, PLANNING_PERMIT, "approve", PLANNING, NOW)
    assert approved.deadlines_closed == [deadline_id]


def test_expert_review_does_not_count(engine: Engine) -> None:
    """行政许可法 Art. 45: the clock pauses during expert review and the due date moves by the pause."""
    project = started(engine)
    engine.fire_task(project, PLANNING_PERMIT, "submit", UNIT, NOW)
    result = engine.fire_task(project, PLANNING_PERMIT, "accept", PLANNING, NOW)
    deadline = project.deadlines[result.deadlines_opened[0]]
    assert deadline.due_date == date(2026, 9, 29)
    engine.fire_task(project, PLANNING_PERMIT, "start_expert_review", PLANNING, local(2026, 9, 7))
    assert deadline.paused and deadline.is_open
    result = engine.fire_task(project, PLANNING_PERMIT, "finish_expert_review", PLANNING, local(2026, 9, 10))
    assert result.deadlines_changed == [deadline.id]
    # Mon 9/7 to Thu 9/10: three working days (7, 8, 9) did not count; 9/29 + 3 working days → 10/9, since
    # 9/30 counts and 10/1–7 is the National Day holiday: 9/30, 10/8, 10/9.
    assert not deadline.paused
    assert deadline.due_date == date(2026, 10, 9)


def test_hold_returns_to_where_it_was_and_pauses_the_project_clock(engine: Engine) -> None:
    project = started(engine)
    [deadline] = [d for d in project.deadlines.values() if d.clock == "permitting_limit"]
    due_before = deadline.due_date
    engine.fire(project, "hold", DISPATCHER, local(2026, 9, 7))
    assert project.state == "on_hold" and project.held_from == "permitting"
    assert deadline.paused
    engine.fire(project, "resume", DISPATCHER, local(2026, 9, 14))
    assert project.state == "permitting" and project.held_from is None
    assert not deadline.paused and deadline.closed_at is None
    # Held Mon 9/7 to Mon 9/14: five working days did not count.
    assert engine.calendar.working_days_between(due_before, deadline.due_date).days == 5


def test_resume_without_hold_is_invalid(engine: Engine) -> None:
    project = started(engine)
    with pytest.raises(InvalidTransition):
        engine.fire(project, "resume", DISPATCHER, NOW)


def test_field_date_clock_opens_when_the_date_is_set(engine: Engine) -> None:
    project = started(engine)
    assert not [d for d in project.deadlines.values() if d.clock == "start_by"]
    result = engine.update_fields(project, {"planned_start": "2026-10-15"}, DISPATCHER, NOW)
    [opened] = result.deadlines_opened
    assert project.deadlines[opened].due_date == date(2026, 10, 15)
    result = engine.update_fields(project, {"planned_start": "2026-11-02"}, DISPATCHER, NOW)
    assert result.deadlines_closed == [opened]
    [reopened] = result.deadlines_opened
    assert project.deadlines[reopened].due_date == date(2026, 11, 2)


# --- 容缺受理, the one-time notice, cure, suspension and 退件 ---------------------------------------------


def accept_with_deficiencies(engine: Engine, project: ProjectInstance, **data: object) -> str:
    engine.fire_task(project, PLANNING_PERMIT, "submit", UNIT, NOW)
    result = engine.fire_task(
        project, PLANNING_PERMIT, "accept_with_deficiencies", PLANNING, NOW, data={"missing": ["photos"], **data}
    )
    [notice_id] = result.notices_opened
    return notice_id


def test_deficiency_notice_lists_the_missing_and_a_default_cure_date(engine: Engine) -> None:
    project = started(engine)
    notice_id = accept_with_deficiencies(engine, project, missing=["photos", "contract_copy", "photos"])
    notice = project.notices[notice_id]
    assert notice.missing == ["photos", "contract_copy"]
    # cure period 5 working days from Tue 9/1 → Tue 9/8, within the item's due date 9/29.
    assert notice.cure_date == date(2026, 9, 8)
    assert project.tasks[PLANNING_PERMIT].state == "accepted_with_deficiencies"
    cure = [d for d in project.deadlines.values() if d.subject_id == notice_id]
    assert [d.due_date for d in cure] == [date(2026, 9, 8)]


def test_only_non_core_materials_may_be_missing(engine: Engine) -> None:
    project = started(engine)
    engine.fire_task(project, PLANNING_PERMIT, "submit", UNIT, NOW)
    with pytest.raises(InvalidInput) as refused:
        engine.fire_task(
            project,
            PLANNING_PERMIT,
            "accept_with_deficiencies",
            PLANNING,
            NOW,
            data={"missing": ["site_plan", "photos", "ghost"]},
        )
    assert [p.code for p in refused.value.problems()] == ["deficiency.not_allowed", "deficiency.unknown_material"]
    assert project.tasks[PLANNING_PERMIT].state == "submitted" and not project.notices


def test_cure_date_may_not_pass_the_items_due_date(engine: Engine) -> None:
    project = started(engine)
    engine.fire_task(project, PLANNING_PERMIT, "submit", UNIT, NOW)
    with pytest.raises(InvalidInput) as refused:
        engine.fire_task(
            project,
            PLANNING_PERMIT,
            "accept_with_deficiencies",
            PLANNING,
            NOW,
            data={"missing": ["photos"], "cure_date": "2026-12-31"},
        )
    assert [p.code for p in refused.value.problems()] == ["deficiency.cure_after_due"]


def test_a_second_notice_for_the_same_submission_is_a_breach(engine: Engine) -> None:
    project = started(engine)
    accept_with_deficiencies(engine, project)
    # Put the item back in a state where the trigger exists, as a buggy or hostile caller might.
    project.tasks[PLANNING_PERMIT].state = "submitted"
    with pytest.raises(OneTimeNoticeBreach) as refused:
        engine.fire_task(
            project, PLANNING_PERMIT, "accept_with_deficiencies", PLANNING, NOW, data={"missing": ["contract_copy"]}
        )
    assert refused.value.notice_id == f"{PLANNING_PERMIT}#n1"
    assert len(project.notices) == 1


def test_supply_resumes_processing(engine: Engine) -> None:
    project = started(engine)
    notice_id = accept_with_deficiencies(engine, project)
    engine.fire_notice(project, notice_id, "read", UNIT, NOW)
    result = engine.fire_notice(project, notice_id, "supply", UNIT, NOW + timedelta(days=2))
    assert project.notices[notice_id].state == "cured"
    assert project.notices[notice_id].closed_at is not None
    assert project.tasks[PLANNING_PERMIT].state == "accepted"
    assert [e.kind for e in result.events] == ["notice.transition", "task.transition"]
    assert [d for d in result.deadlines_closed if d.startswith(notice_id)]


def test_missed_cure_date_suspends_then_returns_after_fifteen_working_days(engine: Engine) -> None:
    project = started(engine)
    notice_id = accept_with_deficiencies(engine, project)
    [cure] = [d for d in project.deadlines.values() if d.subject_id == notice_id]
    with pytest.raises(InvalidInput):
        engine.expire(project, cure.id, NOW)  # not due yet
    after_cure = cure.due_at + timedelta(minutes=1)
    engine.expire(project, cure.id, after_cure)
    assert project.notices[notice_id].state == "lapsed"
    assert project.tasks[PLANNING_PERMIT].state == "suspended"
    [returning] = [d for d in project.deadlines.values() if d.clock == "return_period" and d.is_open]
    # Suspended on Wed 9/9 (the day after cure date 9/8); 15 working days later is Wed 9/30.
    assert returning.due_date == date(2026, 9, 30)
    engine.expire(project, returning.id, returning.due_at)
    assert project.tasks[PLANNING_PERMIT].state == "returned"
    # Materials after 退件 are refused: the item cannot resume.
    with pytest.raises(InvalidTransition):
        engine.fire_notice(project, notice_id, "supply", UNIT, returning.due_at)


def test_supply_within_the_return_period_resumes(engine: Engine) -> None:
    project = started(engine)
    notice_id = accept_with_deficiencies(engine, project)
    [cure] = [d for d in project.deadlines.values() if d.subject_id == notice_id]
    engine.expire(project, cure.id, cure.due_at)
    result = engine.fire_notice(project, notice_id, "supply", UNIT, cure.due_at + timedelta(days=3))
    assert project.tasks[PLANNING_PERMIT].state == "accepted"
    assert any(d.endswith("return_period/1") for d in result.deadlines_closed)


def test_resubmission_after_return_may_get_its_own_notice(engine: Engine) -> None:
    project = started(engine)
    notice_id = accept_with_deficiencies(engine, project)
    [cure] = [d for d in project.deadlines.values() if d.subject_id == notice_id]
    engine.expire(project, cure.id, cure.due_at)
    [returning] = [d for d in project.deadlines.values() if d.clock == "return_period" and d.is_open]
    later = returning.due_at
    engine.expire(project, returning.id, later)
    engine.fire_task(project, PLANNING_PERMIT, "resubmit", UNIT, later)
    assert project.tasks[PLANNING_PERMIT].submission == 2
    result = engine.fire_task(
        project, PLANNING_PERMIT, "accept_with_deficiencies", PLANNING, later, data={"missing": ["photos"]}
    )
    assert result.notices_opened == [f"{PLANNING_PERMIT}#n2"]


def test_system_triggers_are_the_schedulers_alone(engine: Engine) -> None:
    project = started(engine)
    notice_id = accept_with_deficiencies(engine, project)
    with pytest.raises(RoleRefused):
        engine.fire_notice(project, notice_id, "lapse", DISPATCHER, NOW)
    engine.fire_notice(project, notice_id, "lapse", SYSTEM_ACTOR, NOW)
    assert project.tasks[PLANNING_PERMIT].state == "suspended"


# --- 承诺制 --------------------------------------------------------------------------------------------


def test_commitments_must_be_verified_before_the_gate(engine: Engine) -> None:
    project = started(engine, investment="150")
    engine.fire_task(project, CONSTRUCTION_PERMIT, "submit", UNIT, NOW)
    with pytest.raises(InvalidInput):
        engine.fire_task(project, CONSTRUCTION_PERMIT, "record_commitment", UNIT, NOW, data={"text": " "})
    engine.fire_task(project, CONSTRUCTION_PERMIT, "record_commitment", UNIT, NOW, data={"text": "开工前补齐图审"})
    approve_all_but_submit(engine, project)
    engine.fire(project, "start_building", DISPATCHER, NOW)
    with pytest.raises(GateNotSatisfied) as refused:
        engine.fire(project, "finish", DISPATCHER, NOW)
    assert [u.code for u in refused.value.unmet] == ["condition.commitments_verified"]
    result = engine.fire_task(project, CONSTRUCTION_PERMIT, "verify_commitment", HOUSING, NOW)
    assert [e.kind for e in result.events] == ["commitment.verified", "task.transition"]
    engine.fire(project, "finish", DISPATCHER, NOW)
    assert project.state == "done"


def approve_all_but_submit(engine: Engine, project: ProjectInstance) -> None:
    engine.fire_task(project, PLANNING_PERMIT, "submit", UNIT, NOW)
    engine.fire_task(project, PLANNING_PERMIT, "accept", PLANNING, NOW)
    engine.fire_task(project, PLANNING_PERMIT, "approve", PLANNING, NOW)
    engine.fire_task(project, CONSTRUCTION_PERMIT, "accept", HOUSING, NOW)
    engine.fire_task(project, CONSTRUCTION_PERMIT, "approve", HOUSING, NOW)


# --- sharing ------------------------------------------------------------------------------------------


def test_one_machine_per_definition_version_shared_by_every_instance(engine: Engine) -> None:
    compiled = engine.compiled("mini", 1)
    projects = [engine.start("mini", 1, f"P{i}", UNIT, NOW)[0] for i in range(5)]
    for project in projects:
        engine.fire(project, "start_permitting", UNIT, NOW, data={"approval_no": "x"})
    assert engine.compiled("mini", 1).machine is compiled.machine
    assert compiled.machine.models == []  # the shared machine never holds an instance
    assert all(not hasattr(p, "start_permitting") for p in projects)
