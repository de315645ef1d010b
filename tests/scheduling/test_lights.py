"""Traffic lights (红黄绿灯): computed with every change, refreshed once a day as time alone moves the
measures, stored with their reasons, filterable in the project list."""

from __future__ import annotations

import pytest

from lifecycle.services import ProjectFilters
from tests.scheduling.conftest import DISPATCHER, Clockwork, as_, local

pytestmark = pytest.mark.anyio


async def test_time_alone_turns_a_project_behind_schedule_red_at_the_daily_refresh(clockwork: Clockwork) -> None:
    fields = {"annual_plan": "1200", "completed_this_year": "300"}
    project_id = await clockwork.seed("ladder-mini", "building", local(2026, 3, 2, 9), fields=fields)
    services = clockwork.services
    view = await services.get_project(as_(DISPATCHER), project_id)
    assert (view.light, view.light_reasons) == ("green", [])  # March: 300 of 1200 is exactly 3/12

    scheduling = clockwork.scheduling
    assert await scheduling.refresh_lights(local(2026, 3, 2, 23)) == 0  # computed today already
    july = local(2026, 7, 1, 9)
    assert await scheduling.refresh_lights(july, dry_run=True) >= 1
    assert (await services.get_project(as_(DISPATCHER), project_id)).light == "green"  # a dry run writes nothing
    assert await scheduling.refresh_lights(july) >= 1

    view = await services.get_project(as_(DISPATCHER), project_id)
    assert view.light == "red"
    # 序时进度 in July is 7/12 = 58.3 %; 300 of 1200 is 25 %: 33.3 points behind.
    assert [(r.measure, r.value, r.color) for r in view.light_reasons] == [
        ("progress_gap_pp", "33.3", "red"),
        ("progress_gap_pp", "33.3", "yellow"),
    ]
    assert view.light_reasons[0].title == "滞后序时进度30个百分点以上"
    assert await scheduling.refresh_lights(local(2026, 7, 1, 18)) == 0
    page = await services.list_projects(as_(DISPATCHER), ProjectFilters(light="red"))
    assert [p.id for p in page.items] == [project_id]
