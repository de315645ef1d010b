"""Read-only references: published workflow definitions (YAML, summary, Mermaid) and the working-day calendar."""

from __future__ import annotations

import pytest

from .conftest import UNIT_A, VIEWER, Api, problem

pytestmark = pytest.mark.anyio


async def test_workflows_list_and_active_summary(api: Api) -> None:
    [mini] = (await api.get("/api/v1/workflows", VIEWER)).json()
    assert (mini["key"], mini["title"], mini["versions"]) == ("mini", "测试流程", 1)
    active = mini["active"]
    assert (active["version"], active["active"], active["initial"]) == (1, True, "draft")
    assert active["counts"] == {
        "states": 6,
        "transitions": 6,
        "gates": 2,
        "groups": 1,
        "items": 2,
        "task_machines": 2,
        "clocks": 2,
        "ladders": 0,
        "obligations": 0,
    }
    assert [(p["id"], p["title"]) for p in active["phases"]] == [("early", "前期"), ("late", "后期")]
    assert active["content_hash"].startswith("sha256:")
    one = (await api.get("/api/v1/workflows/mini", UNIT_A)).json()
    assert one == mini


async def test_workflow_versions_and_one_version_with_yaml_and_mermaid(api: Api) -> None:
    versions = (await api.get("/api/v1/workflows/mini/versions")).json()
    assert [(v["version"], v["active"], v["published_by"]) for v in versions] == [(1, True, "system")]
    detail = (await api.get("/api/v1/workflows/mini/versions/1")).json()
    assert detail["yaml"].startswith("# A small but complete definition") and "key: mini" in detail["yaml"]
    assert detail["mermaid"].startswith("stateDiagram-v2")
    assert "开工" in detail["mermaid"]
    assert detail["counts"]["transitions"] == 6
    english = (await api.get("/api/v1/workflows/mini/versions/1", headers={"Accept-Language": "en"})).json()
    assert english["mermaid"].startswith("stateDiagram-v2")


async def test_unknown_workflows_and_versions_are_404(api: Api) -> None:
    problem(await api.get("/api/v1/workflows/nothing"), 404, "not_found")
    problem(await api.get("/api/v1/workflows/nothing/versions"), 404, "not_found")
    body = problem(await api.get("/api/v1/workflows/mini/versions/9"), 404, "not_found")
    assert body["id"] == "mini@9"
    bad = await api.get("/api/v1/workflows/mini/versions/zero")
    assert problem(bad, 422, "api.request_invalid")["errors"][0]["loc"] == ["path", "version"]


async def test_calendar_days(api: Api) -> None:
    national_day = (await api.get("/api/v1/calendar/days/2026-10-01", VIEWER)).json()
    assert national_day == {
        "date": "2026-10-01",
        "working": False,
        "estimated": False,
        "source": "chinesecalendar",
        "holiday_name": "国庆节",
    }
    # 2026-09-20 is a Sunday worked in exchange for the National Day holiday (调休上班).
    swapped = (await api.get("/api/v1/calendar/days/2026-09-20")).json()
    assert (swapped["working"], swapped["holiday_name"]) == (True, None)
    guessed = (await api.get("/api/v1/calendar/days/2031-03-03")).json()
    assert (guessed["working"], guessed["estimated"], guessed["source"]) == (True, True, "weekday-estimate")
    for bad in ("2026-02-30", "tomorrow", "20261001"):
        response = await api.get(f"/api/v1/calendar/days/{bad}")
        assert problem(response, 422, "api.request_invalid")["errors"][0]["loc"] == ["path", "day"], bad


async def test_calendar_adds_working_days(api: Api) -> None:
    # 10 working days after Wed 2026-09-23: 9-24, (中秋 9-25..27), 9-28..30, (国庆 10-1..7), 10-8, 10-9,
    # the 调休 Saturday 10-10, 10-12, 10-13, 10-14.
    answer = (await api.get("/api/v1/calendar/add-working-days", params={"start": "2026-09-23", "days": 10})).json()
    assert answer == {"start": "2026-09-23", "days": 10, "date": "2026-10-14", "estimated": False}
    back = (await api.get("/api/v1/calendar/add-working-days", params={"start": "2026-10-14", "days": -10})).json()
    assert back["date"] == "2026-09-23"
    future = (await api.get("/api/v1/calendar/add-working-days", params={"start": "2026-12-30", "days": 5})).json()
    assert future["estimated"] is True
    for params in ({"start": "2026-09-23"}, {"start": "x", "days": 1}, {"start": "2026-09-23", "days": 10**9}):
        problem(await api.get("/api/v1/calendar/add-working-days", params=params), 422, "api.request_invalid")


async def test_project_diagram_highlights_the_state_and_open_items(api: Api) -> None:
    project = await api.into_permitting()
    diagram = (await api.get(f"/api/v1/projects/{project['id']}/diagram", UNIT_A)).json()
    assert (diagram["definition_key"], diagram["definition_version"], diagram["state"]) == ("mini", 1, "permitting")
    assert sorted(diagram["open_tasks"]) == ["permits.construction_permit", "permits.planning_permit"]
    assert diagram["mermaid"].startswith("stateDiagram-v2")
    assert "    class permitting current" in diagram["mermaid"].splitlines()
    assert "办理中" in diagram["mermaid"] and "建设工程规划许可证" in diagram["mermaid"]
    problem(await api.get("/api/v1/projects/nothing/diagram"), 404, "not_found")
