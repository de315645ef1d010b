"""Walks through the bundled workflows as a county would live them, step by step.

major-project: all 11 steps of the work plan, with 容缺 and its cure, a missed cure date that suspends an
item and returns it (退件) 15 working days later, a resubmission, 暂缓 and resume, 承诺制, and refused gates
whose errors list exactly the unmet conditions. investment-attraction: the 招商引资 path through 核准.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from lifecycle.engine.core import Engine
from lifecycle.engine.instance import Actor, ProjectInstance
from lifecycle.errors import GateNotSatisfied, InvalidTransition, RoleRefused
from lifecycle.spec.loader import load_definition_file

from .conftest import local

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"

UNIT = Actor("unit-town", frozenset({"unit"}), "quyuan_town")
DISPATCHER = Actor("ndrc-dispatch", frozenset({"dispatcher"}), "ndrc")
LEADER = Actor("leader-1", frozenset({"leader"}), "county_leaders")


def dept(department: str) -> Actor:
    return Actor(f"dept-{department}", frozenset({"department"}), department)


@pytest.fixture(scope="module")
def major() -> Engine:
    engine = Engine()
    engine.register(load_definition_file(WORKFLOWS / "major-project.yaml").definition, 1)
    return engine


class Clock:
    """Local time that moves forward a day at a time (Asia/Shanghai, 10:00)."""

    def __init__(self) -> None:
        self.now = local(2026, 3, 2)

    def tick(self, days: int = 1) -> None:
        self.now += timedelta(days=days)


def approve(engine: Engine, project: ProjectInstance, task_id: str, now: object) -> None:
    """The ordinary path of an approval item: submitted, accepted, approved by its own department."""
    task = project.tasks[task_id]
    department = engine.compiled("major-project", 1).items[(task.group, task.item)].department
    engine.fire_task(project, task_id, "submit", UNIT, now)  # type: ignore[arg-type]
    engine.fire_task(project, task_id, "accept", dept(department), now)  # type: ignore[arg-type]
    engine.fire_task(project, task_id, "approve", dept(department), now)  # type: ignore[arg-type]


def test_major_project_walks_all_eleven_steps(major: Engine) -> None:
    definition = major.compiled("major-project", 1).definition
    clock = Clock()
    steps_seen: set[int] = set()

    def seen() -> None:
        steps_seen.update(definition.state(project.state).steps)

    project, _ = major.start("major-project", 1, "WS-1", UNIT, clock.now)
    seen()
    # Step 1 → 2: the unit proposes; the dispatcher sends it back once (退回修改), then admits it.
    major.fire(
        project,
        "propose_reserve",
        UNIT,
        clock.now,
        data={"project_class": "康养文旅", "total_investment": "52000", "construction_background": "神女景区提升"},
    )
    major.fire(project, "return_proposal", DISPATCHER, clock.now, comment="补充资金来源")
    assert project.state == "planning"
    major.fire(project, "propose_reserve", UNIT, clock.now)
    with pytest.raises(GateNotSatisfied) as refused:
        major.fire(project, "admit_reserve", DISPATCHER, clock.now, data={"reserve_quarter": "2026Q1"})
    assert [u.params.get("field_id") for u in refused.value.unmet] == [
        "maturity_grade",
        "funding_match_grade",
        "conversion_grade",
    ]
    major.fire(
        project,
        "admit_reserve",
        DISPATCHER,
        clock.now,
        data={
            "maturity_grade": "三级（待深化）",
            "funding_match_grade": "中",
            "conversion_grade": "中",
            "reserve_quarter": "2026Q1",
        },
    )
    seen()
    # Step 3: the annual plan; step 4: appraisal opens its parallel reviews.
    major.fire(
        project,
        "include_in_plan",
        DISPATCHER,
        clock.now,
        data={"plan_year": 2026, "annual_plan_amount": "12000", "planned_start": "2026-09-01"},
    )
    seen()
    result = major.fire(
        project,
        "start_appraisal",
        UNIT,
        clock.now,
        data={"prep_ledger": ["file://ledger.xlsx"], "prep_roadmap": "三月编制可研，六月批复"},
    )
    seen()
    appraisal = [t for t in result.tasks_opened if t.startswith("appraisal.")]
    assert len(appraisal) == len(definition.group("appraisal").items)

    # The gate 可研批复前 refused: every unmet condition, exactly.
    with pytest.raises(GateNotSatisfied) as refused:
        major.fire(
            project,
            "approve_feasibility",
            DISPATCHER,
            clock.now,
            data={"fsr_approval_no": "巫发改投〔2026〕12号", "fsr_approved_on": "2026-05-20"},
        )
    assert refused.value.gate_title == "可研批复前"
    assert [u.code for u in refused.value.unmet] == ["condition.group_done", "condition.field_compare"]
    assert len(refused.value.unmet[0].params["item_ids"]) == len(appraisal)
    assert "可行性研究报告" in refused.value.unmet[0].zh

    # 容缺受理 on the feasibility review: one notice for everything missing; cured in time.
    fsr = "appraisal.feasibility_study_review"
    major.fire_task(project, fsr, "submit", UNIT, clock.now)
    result = major.fire_task(
        project,
        fsr,
        "accept_with_deficiencies",
        dept("ndrc"),
        clock.now,
        data={"missing": ["power_of_attorney", "electronic_copy"]},
    )
    [notice] = result.notices_opened
    with pytest.raises(GateNotSatisfied):
        major.fire(project, "approve_feasibility", DISPATCHER, clock.now)
    clock.tick(2)
    major.fire_notice(project, notice, "supply", UNIT, clock.now)
    assert project.tasks[fsr].state == "accepted"
    major.fire_task(project, fsr, "approve", dept("ndrc"), clock.now)

    # A missed cure date: the item is suspended, then returned 15 working days later; a resubmission starts
    # afresh and may get its own notice.
    presite = "appraisal.land_presite"
    major.fire_task(project, presite, "submit", UNIT, clock.now)
    major.fire_task(
        project,
        presite,
        "accept_with_deficiencies",
        dept("planning_resources"),
        clock.now,
        data={"missing": ["power_of_attorney"]},
    )
    [cure] = [d for d in project.open_deadlines() if d.subject_id == f"{presite}#n1" and d.clock == "cure"]
    major.expire(project, cure.id, cure.due_at)
    assert project.tasks[presite].state == "suspended"
    [returning] = [d for d in project.open_deadlines() if d.subject_id == presite and d.clock == "return_period"]
    assert major.calendar.working_days_between(cure.due_date, returning.due_date).days == 16
    major.expire(project, returning.id, returning.due_at)
    assert project.tasks[presite].state == "returned"
    later = returning.due_at + timedelta(hours=1)
    major.fire_task(project, presite, "resubmit", UNIT, later)
    major.fire_task(project, presite, "accept", dept("planning_resources"), later)
    major.fire_task(project, presite, "approve", dept("planning_resources"), later)
    clock.now = later
    for task_id in appraisal:
        if project.tasks[task_id].state == "pending":
            approve(major, project, task_id, clock.now)

    # Still refused: the maturity grade is 三级. The dispatcher regrades it with the approval itself.
    with pytest.raises(GateNotSatisfied) as refused:
        major.fire(
            project,
            "approve_feasibility",
            DISPATCHER,
            clock.now,
            data={"fsr_approval_no": "巫发改投〔2026〕12号", "fsr_approved_on": "2026-05-20"},
        )
    assert [u.code for u in refused.value.unmet] == ["condition.field_compare"]
    result = major.fire(
        project,
        "approve_feasibility",
        DISPATCHER,
        clock.now,
        data={
            "fsr_approval_no": "巫发改投〔2026〕12号",
            "fsr_approved_on": "2026-05-20",
            "maturity_grade": "一级（成熟）",
        },
    )
    seen()
    # Steps 5–6: the permitting and special approvals open together, in parallel.
    assert {t.split(".")[0] for t in result.tasks_opened} == {"permitting", "special_approvals"}
    for task_id in [t for t in project.tasks if t.startswith(("permitting.", "special_approvals."))]:
        if task_id == "permitting.construction_permit":
            task = project.tasks[task_id]
            major.fire_task(project, task_id, "submit", UNIT, clock.now)
            major.fire_task(project, task_id, "accept", dept("housing_construction"), clock.now)
            major.fire_task(
                project,
                task_id,
                "approve_on_commitment",
                dept("housing_construction"),
                clock.now,
                data={"text": "开工前完成施工合同备案"},
            )
            assert task.state == "approved"
        else:
            approve(major, project, task_id, clock.now)
    major.fire(
        project,
        "complete_permitting",
        UNIT,
        clock.now,
        data={"construction_permit_no": "500237202606010101", "construction_permit_issued_on": "2026-06-01"},
    )

    # 暂缓 and resume: back where it was held.
    held = project.state
    major.fire(project, "suspend", LEADER, clock.now, comment="征地矛盾待化解")
    assert project.state == "on_hold"
    with pytest.raises(InvalidTransition):
        major.fire(project, "start_construction", UNIT, clock.now, data={"actual_start": "2026-06-10"})
    major.fire(project, "resume", LEADER, clock.now)
    assert project.state == held

    # Steps 7–8: construction; the 要素保障 items are coordinated.
    result = major.fire(project, "start_construction", UNIT, clock.now, data={"actual_start": "2026-06-10"})
    seen()
    for task_id in [t for t in result.tasks_opened if t.startswith("factor_support.")]:
        department = major.compiled("major-project", 1).items[tuple(task_id.split("."))].department  # type: ignore[index]
        major.fire_task(project, task_id, "start", dept(department), clock.now)
        major.fire_task(project, task_id, "resolve", dept(department), clock.now)
    major.fire(project, "apply_acceptance", UNIT, clock.now, data={"works_completed_on": "2026-11-30"})
    seen()
    # Step 9: 联合验收 in parallel; the acceptance gate wants the commitment verified.
    for task_id in [t for t in project.tasks if t.startswith("joint_acceptance.")]:
        department = major.compiled("major-project", 1).items[tuple(task_id.split("."))].department  # type: ignore[index]
        major.fire_task(project, task_id, "apply", UNIT, clock.now)
        major.fire_task(project, task_id, "accept", dept(department), clock.now)
        major.fire_task(project, task_id, "pass_inspection", dept(department), clock.now)
    acceptance = {
        "acceptance_passed_on": "2026-12-20",
        "custodian": "巫山县文旅集团",
        "custody_principle": "谁使用、谁管护",
    }
    with pytest.raises(GateNotSatisfied) as refused:
        major.fire(project, "pass_acceptance", dept("housing_construction"), clock.now, data=acceptance)
    assert [u.code for u in refused.value.unmet] == ["condition.commitments_verified"]
    major.fire_task(
        project, "permitting.construction_permit", "verify_commitment", dept("housing_construction"), clock.now
    )
    major.fire(project, "pass_acceptance", dept("housing_construction"), clock.now, data=acceptance)
    seen()
    # Steps 10–11: operation, then the performance evaluation.
    major.fire(project, "start_evaluation", UNIT, clock.now, data={"operation_started_on": "2027-01-05"})
    seen()
    major.fire(
        project,
        "submit_evaluation",
        UNIT,
        clock.now,
        data={
            "investment_intensity": "180",
            "capacity_realisation_rate": "85",
            "tax_contribution_rate": "92",
            "jobs_created": 120,
            "evaluation_report": ["file://eval.pdf"],
        },
    )
    with pytest.raises(RoleRefused):
        major.fire(project, "accept_evaluation", UNIT, clock.now, data={"evaluation_conclusion": "良好"})
    major.fire(project, "accept_evaluation", DISPATCHER, clock.now, data={"evaluation_conclusion": "良好"})
    assert project.state == "evaluated"
    assert steps_seen == set(range(1, 12))
    # Nothing is left running once the lifecycle has ended.
    assert not [d for d in project.open_deadlines() if d.subject_kind == "project"]


def test_investment_attraction_through_approval() -> None:
    engine = Engine()
    definition = load_definition_file(WORKFLOWS / "investment-attraction.yaml").definition
    engine.register(definition, 1)
    from tests.support.walker import walk

    project, plan = walk(engine, definition.key, 1, "ZS-1", local(2026, 3, 2))
    assert definition.state(project.state).terminal
    path = [s.trigger for s in plan.steps if s.task is None]
    assert path[:4] == ["shortlist", "start_pre_review", "sign_agreement", "apply_verification"]
    # The gate before signing refuses an enterprise below the 标准地 thresholds (投资强度 ≥150 万元/亩,
    # 亩均税收 ≥8 万元/亩), naming both, besides the pre-review items still open.
    centre = Actor("centre", frozenset({"investment_centre"}), "investment_promotion")
    fresh, _ = engine.start(definition.key, 1, "ZS-2", centre, local(2026, 3, 2))
    engine.fire(
        fresh,
        "shortlist",
        centre,
        local(2026, 3, 2),
        data={"enterprise_name": "重庆某文旅公司", "industry_chain": "康养文旅集群"},
    )
    engine.fire(
        fresh,
        "start_pre_review",
        centre,
        local(2026, 3, 2),
        data={
            "target_assessment": "资信良好",
            "total_investment": "30000",
            "land_area_mu": "120",
            "committed_investment_intensity": "140",
            "committed_tax_per_mu": "7.5",
        },
    )
    with pytest.raises(GateNotSatisfied) as refused:
        engine.fire(
            fresh,
            "sign_agreement",
            centre,
            local(2026, 3, 2),
            data={
                "agreement_no": "巫招〔2026〕3号",
                "agreement_signed_on": "2026-03-02",
                "planned_start": "2026-06-01",
            },
        )
    unmet = refused.value.unmet
    assert [u.code for u in unmet] == ["condition.group_done", "condition.field_compare", "condition.field_compare"]
    assert [u.params["field_id"] for u in unmet[1:]] == ["committed_investment_intensity", "committed_tax_per_mu"]
