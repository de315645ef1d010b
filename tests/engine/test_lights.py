"""Traffic lights from bands: 序时进度 gaps, months not started, overdue deadlines and escalation levels."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from lifecycle.clock import end_of_local_day
from lifecycle.engine.instance import Deadline, ProjectInstance
from lifecycle.engine.lights import compute_light
from lifecycle.spec.models import Definition

from .conftest import local


def with_lights(mini: Definition) -> Definition:
    data = mini.model_dump(by_alias=True, exclude_none=True)
    data["traffic_lights"] = {
        "bands": [
            {"measure": "months_not_started", "at_least": 0, "color": "yellow", "title": "计划本月开工未开工"},
            {"measure": "months_not_started", "at_least": 3, "color": "red", "title": "计划开工3个月未开工"},
            {"measure": "progress_gap_pp", "at_least": 10, "color": "yellow", "title": "落后序时进度10个百分点"},
            {"measure": "progress_gap_pp", "at_least": 30, "color": "red", "title": "落后序时进度30个百分点"},
            {"measure": "overdue_deadlines", "at_least": 1, "color": "yellow", "title": "有逾期事项"},
            {"measure": "escalation_level", "at_least": 3, "color": "red", "title": "已升级至专班调度"},
        ],
        "not_started_states": ["permitting"],
        "progress_states": ["building"],
        "planned_start_field": "planned_start",
        "annual_plan_field": "investment",
        "completed_field": "approval_no",
    }
    return Definition.model_validate(data)


def project(state: str, **fields: object) -> ProjectInstance:
    return ProjectInstance(id="P", definition_key="mini", definition_version=1, state=state, fields=dict(fields))


def test_not_started_is_yellow_this_month_and_red_after_three(mini: Definition) -> None:
    definition = with_lights(mini)
    p = project("permitting", planned_start=date(2026, 6, 20))
    assert compute_light(definition, p, local(2026, 5, 30)).color == "green"
    light = compute_light(definition, p, local(2026, 6, 1))
    assert light.color == "yellow" and light.reasons[0].title == "计划本月开工未开工"
    assert compute_light(definition, p, local(2026, 9, 1)).color == "red"


def test_progress_against_pro_rata_schedule(mini: Definition) -> None:
    definition = with_lights(mini)
    # June: 序时进度 50%. 4,000 of 10,000 done → 10 points behind → yellow; 1,900 → 31 behind → red.
    assert compute_light(definition, project("building", investment=Decimal(10000), approval_no="4500"),
                         local(2026, 6, 15)).color == "green"  # fmt: skip
    light = compute_light(definition, project("building", investment=Decimal(10000), approval_no="4000"),
                          local(2026, 6, 15))  # fmt: skip
    assert light.color == "yellow" and light.reasons[0].value == Decimal("10.0")
    assert compute_light(definition, project("building", investment=Decimal(10000), approval_no="1900"),
                         local(2026, 6, 15)).color == "red"  # fmt: skip


def test_overdue_and_escalated_deadlines(mini: Definition) -> None:
    definition = with_lights(mini)
    p = project("draft")
    due = date(2026, 6, 1)
    p.deadlines["d"] = Deadline(
        id="d", subject_kind="project", subject_id="P", clock="c", title="时限", started_on=due, due_date=due,
        due_at=end_of_local_day(due), estimated=False,
    )  # fmt: skip
    assert compute_light(definition, p, local(2026, 6, 1)).color == "green"
    assert compute_light(definition, p, local(2026, 6, 2)).color == "yellow"
    p.deadlines["d"].level = 3
    light = compute_light(definition, p, local(2026, 6, 2))
    assert light.color == "red" and [r.measure for r in light.reasons] == ["escalation_level", "overdue_deadlines"]
