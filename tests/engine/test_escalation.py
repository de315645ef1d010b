"""Ladder levels come due on the ladder's days; notices render only the allowed placeholders."""

from __future__ import annotations

from datetime import date, timedelta

from lifecycle.calendar import default_calendar
from lifecycle.clock import end_of_local_day
from lifecycle.engine.escalation import levels_due, render_notice, working_days_late
from lifecycle.engine.instance import Deadline
from lifecycle.spec.models import Ladder

LADDER = Ladder.model_validate(
    {
        "id": "four_level_dispatch",
        "title": "四级调度",
        "levels": [
            {"level": 1, "title": "项目牵头部门一线调度", "after": {"days": 0, "unit": "working_days"},
             "notify": ["lead_unit"]},
            {"level": 2, "title": "县政府分管领导跟踪调度", "after": {"days": 5, "unit": "working_days"},
             "notify": ["lead_leader"]},
            {"level": 3, "title": "县工作专班定期调度", "after": {"days": 10, "unit": "working_days"},
             "notify": ["task_force"]},
            {"level": 4, "title": "县重大战略推进领导小组督导调度", "after": {"days": 20, "unit": "working_days"},
             "notify": ["leading_group"]},
        ],
    }
)  # fmt: skip


def deadline(due: date, level: int = 0) -> Deadline:
    return Deadline(
        id="P/x/1", subject_kind="project", subject_id="P", clock="x", title="周报", started_on=due,
        due_date=due, due_at=end_of_local_day(due), estimated=False, ladder=LADDER.id, level=level,
    )  # fmt: skip


def test_levels_climb_on_working_days_across_national_day() -> None:
    calendar = default_calendar()
    d = deadline(date(2026, 9, 28))  # Monday before 国庆
    assert levels_due(calendar, LADDER, d, end_of_local_day(date(2026, 9, 28)) - timedelta(seconds=1)) == []
    first = levels_due(calendar, LADDER, d, end_of_local_day(date(2026, 9, 28)))
    assert [x.level.level for x in first] == [1]
    # +5 working days: 9/29, 9/30, 10/8, 10/9, 10/10 (调休 Saturday).
    assert [x.due_on for x in levels_due(calendar, LADDER, d, end_of_local_day(date(2026, 10, 10)))] == [
        date(2026, 9, 28),
        date(2026, 10, 10),
    ]


def test_after_downtime_every_level_due_is_returned_once_in_order() -> None:
    calendar = default_calendar()
    d = deadline(date(2026, 3, 2))
    late = end_of_local_day(date(2026, 6, 1))
    assert [x.level.level for x in levels_due(calendar, LADDER, d, late)] == [1, 2, 3, 4]
    d.level = 2
    assert [x.level.level for x in levels_due(calendar, LADDER, d, late)] == [3, 4]


def test_working_days_late() -> None:
    calendar = default_calendar()
    d = deadline(date(2026, 9, 30))
    assert working_days_late(calendar, d, end_of_local_day(date(2026, 9, 30)) - timedelta(hours=1)) == 0
    assert working_days_late(calendar, d, end_of_local_day(date(2026, 10, 8)) - timedelta(hours=1)) == 1
    assert working_days_late(calendar, d, end_of_local_day(date(2026, 10, 8))) == 2


def test_render_notice_uses_only_allowed_placeholders() -> None:
    text = render_notice(
        "{recipient}：{project_name}{subject}逾期{days_late}个工作日。{{原文}} {level_title} {__class__} {x.y}",
        {"recipient": "县交通运输委", "project_name": "巫山港码头", "subject": "周报", "days_late": 3},
    )
    assert text == "县交通运输委：巫山港码头周报逾期3个工作日。{原文} — {__class__} {x.y}"
