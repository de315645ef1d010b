"""The scheduling endpoints over HTTP on SQLite and PostgreSQL: escalation notices (list, filters,
visibility, acknowledgement by the recipient only), obligation reports, deadlines, and the traffic light
in the project list and view. Time moves by the frozen clock and a scheduler tick, never by sleeping."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lifecycle.clock import FrozenClock
from lifecycle.scheduler.sweep import Sweeper
from lifecycle.services import Services
from tests.api.conftest import (
    CONSTRUCTION_PERMIT,
    DISPATCHER,
    HOUSING,
    LEADER,
    PLANNING,
    PLANNING_PERMIT,
    TASK_FORCE,
    UNIT_A,
    UNIT_B,
    Api,
    problem,
)
from tests.api.test_idempotency_answers import Settlements, stored

pytestmark = pytest.mark.anyio

DATA = Path(__file__).resolve().parents[1] / "data"
LATE = datetime(2026, 6, 30, 1, 0, tzinfo=UTC)  # every level of a limit started on 2 March has come due


@pytest.fixture
async def ladder_api(api: Api, services: Services, tmp_path: Path) -> Api:
    """The API with the ``ladder-mini`` definition (a four-level ladder, a weekly report) published."""
    folder = tmp_path / "ladder"
    folder.mkdir()
    shutil.copyfile(DATA / "ladder-mini.yaml", folder / "ladder-mini.yaml")
    await services.publish_bundled(folder)
    return api


async def overdue_project(api: Api, services: Services, clock: FrozenClock) -> dict[str, Any]:
    """A ladder-mini project whose permitting limit passed long ago, after one scheduler tick."""
    project = await api.into_permitting(
        definition_key="ladder-mini", implementing_unit="unit_b", lead_leader="leader", code="2026-500237-48-01-000009"
    )
    clock.set(LATE)
    report = await Sweeper(services).tick()
    assert report.errors == []
    return project


async def test_notices_are_listed_filtered_and_shown_to_their_recipients_only(
    ladder_api: Api, services: Services, clock: FrozenClock
) -> None:
    api = ladder_api
    project = await overdue_project(api, services, clock)
    pid = project["id"]

    everything = (await api.get("/api/v1/notices", DISPATCHER, params={"project": pid})).json()
    recipients = {(n["level"], n["recipient_kind"], n["recipient_id"]) for n in everything["items"]}
    assert recipients == {
        (1, "unit", "unit_a"), (1, "unit", "unit_b"),
        (2, "leader", "leader"), (2, "unit", "unit_a"),
        (3, "role", "task_force"), (3, "role", "dispatcher"), (3, "leader", "leader"),
        (4, "role", "leading_group"), (4, "role", "task_force"), (4, "leader", "leader"),
    }  # fmt: skip
    first = everything["items"][0]
    assert first["project_name"] == project["name"] and first["project_code"] == "2026-500237-48-01-000009"
    assert first["acknowledged"] is False and first["text"]

    level3 = (await api.get("/api/v1/notices", DISPATCHER, params={"level": 3, "kind": "督办函"})).json()["items"]
    assert {n["recipient_id"] for n in level3} == {"task_force", "dispatcher", "leader"}
    mine = (await api.get("/api/v1/notices", UNIT_A)).json()["items"]
    assert {(n["level"], n["recipient_id"]) for n in mine} == {(1, "unit_a"), (2, "unit_a")}
    theirs = (await api.get("/api/v1/notices", UNIT_B)).json()["items"]
    assert [(n["level"], n["recipient_id"]) for n in theirs] == [(1, "unit_b")]
    assert (await api.get("/api/v1/notices", PLANNING)).json()["items"] == []
    by_recipient = (await api.get("/api/v1/notices", DISPATCHER, params={"recipient": "unit_a"})).json()["items"]
    assert len(by_recipient) == 2

    page = (await api.get("/api/v1/notices", DISPATCHER, params={"limit": 4})).json()
    second = (await api.get("/api/v1/notices", DISPATCHER, params={"limit": 4, "cursor": page["next_cursor"]})).json()
    third = (await api.get("/api/v1/notices", DISPATCHER, params={"limit": 4, "cursor": second["next_cursor"]})).json()
    ids = [n["id"] for n in page["items"] + second["items"] + third["items"]]
    assert len(ids) == len(set(ids)) == 10 and third["next_cursor"] is None

    unit_b_notice = theirs[0]["id"]
    problem(await api.get(f"/api/v1/notices/{unit_b_notice}", UNIT_A), 404, "not_found")
    shown = (await api.get(f"/api/v1/notices/{unit_b_notice}", UNIT_B)).json()
    assert shown["recipient_title"] == "unit_b" and shown["subject"] == "审批总时限"
    problem(await api.get("/api/v1/notices", DISPATCHER, params={"cursor": "garbage!"}), 422, "input.invalid")


async def test_only_the_recipient_acknowledges_a_notice_and_the_history_says_so(
    ladder_api: Api, services: Services, clock: FrozenClock
) -> None:
    api = ladder_api
    pid = (await overdue_project(api, services, clock))["id"]
    notices = (await api.get("/api/v1/notices", DISPATCHER, params={"project": pid})).json()["items"]

    def notice(level: int, recipient: str) -> str:
        return next(n["id"] for n in notices if n["level"] == level and n["recipient_id"] == recipient)

    to_unit_a = notice(1, "unit_a")
    problem(await api.request("POST", f"/api/v1/notices/{to_unit_a}/acknowledge", DISPATCHER), 403, "forbidden")
    problem(await api.request("POST", f"/api/v1/notices/{to_unit_a}/acknowledge", UNIT_B), 404, "not_found")
    done = await api.request("POST", f"/api/v1/notices/{to_unit_a}/acknowledge", UNIT_A)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["acknowledged"] is True and body["acknowledged_by"] == UNIT_A.id
    again = (await api.request("POST", f"/api/v1/notices/{to_unit_a}/acknowledge", UNIT_A)).json()
    assert again["acknowledged_at"] == body["acknowledged_at"]

    for level, recipient, who in ((3, "task_force", TASK_FORCE), (4, "leading_group", LEADER), (2, "leader", LEADER)):
        response = await api.request("POST", f"/api/v1/notices/{notice(level, recipient)}/acknowledge", who)
        assert response.status_code == 200, response.text
    problem(
        await api.request("POST", f"/api/v1/notices/{notice(3, 'dispatcher')}/acknowledge", TASK_FORCE),
        403,
        "forbidden",
    )

    open_ones = (await api.get("/api/v1/notices", DISPATCHER, params={"acknowledged": "false"})).json()["items"]
    assert len(open_ones) == 6
    history = (await api.get(f"/api/v1/projects/{pid}/history", DISPATCHER, params={"limit": 200})).json()["items"]
    acknowledged = [e for e in history if e["kind"] == "escalation_notice.acknowledged"]
    assert [e["data"]["notice"] for e in acknowledged][:1] == [to_unit_a] and len(acknowledged) == 4


async def test_the_light_is_in_the_view_with_its_reasons_and_filters_the_list(
    ladder_api: Api, services: Services, clock: FrozenClock
) -> None:
    api = ladder_api
    calm = await api.create(definition_key="ladder-mini", name="按期项目")
    assert calm["light"] == "green" and calm["light_reasons"] == []
    late = await overdue_project(api, services, clock)

    view = (await api.get(f"/api/v1/projects/{late['id']}")).json()
    assert view["light"] == "red"
    assert [(r["measure"], r["color"], r["title"]) for r in view["light_reasons"]] == [
        ("escalation_level", "red", "已提请县工作专班调度"),
        ("overdue_deadlines", "yellow", "存在逾期未办结事项"),
    ]
    assert view["light_reasons"][0]["value"] == "4"
    red = (await api.get("/api/v1/projects", params={"light": "red"})).json()["items"]
    assert [p["id"] for p in red] == [late["id"]]
    green = (await api.get("/api/v1/projects", params={"light": "green"})).json()["items"]
    assert calm["id"] in {p["id"] for p in green} and late["id"] not in {p["id"] for p in green}

    deadlines = (await api.get(f"/api/v1/projects/{late['id']}/deadlines")).json()
    limit = next(d for d in deadlines["deadlines"] if d["clock"] == "permitting_limit")
    assert limit["level"] == 4 and limit["overdue"] is True
    assert [e["level"] for e in deadlines["escalations"] if e["deadline_id"] == limit["id"]] == [1, 2, 3, 4]


async def building_project(api: Api, clock: FrozenClock) -> dict[str, Any]:
    """A ladder-mini project under construction since Monday 2 March 2026 (both permits approved)."""
    project = await api.into_permitting(definition_key="ladder-mini")
    pid = project["id"]
    for task, department in ((PLANNING_PERMIT, PLANNING), (CONSTRUCTION_PERMIT, HOUSING)):
        for trigger, who in (("submit", UNIT_A), ("accept", department), ("approve", department)):
            response = await api.fire_task(pid, task, trigger, who)
            assert response.status_code == 200, response.text
    response = await api.fire(pid, "start_building", UNIT_A, {})
    assert response.status_code == 200, response.text
    return dict(response.json())


REPORT = {"progress_text": "基础施工完成", "invested_this_week": "50", "invested_this_year": "300"}


async def test_reports_are_filed_validated_and_their_periods_listed(
    ladder_api: Api, services: Services, clock: FrozenClock
) -> None:
    api = ladder_api
    project = await building_project(api, clock)
    pid = project["id"]
    path = f"/api/v1/projects/{pid}/obligations/weekly_progress/reports"

    invalid = problem(
        await api.request("POST", path, UNIT_A, json={"data": {"progress_text": "x", "invested_this_week": "很多"}}),
        422,
        "input.invalid",
    )
    assert {tuple(e["loc"]) for e in invalid["errors"]} == {
        ("body", "data", "invested_this_week"),
        ("body", "data", "invested_this_year"),
    }
    problem(await api.request("POST", path, PLANNING, json={"data": REPORT}), 403, "forbidden")
    problem(
        await api.request("POST", f"/api/v1/projects/{pid}/obligations/nope/reports", UNIT_A, json={}), 404, "not_found"
    )

    filed = await api.request("POST", path, UNIT_A, json={"period": "2026-W10", "data": REPORT})
    assert filed.status_code == 201, filed.text
    assert filed.json()["period"] == "2026-W10" and filed.json()["late"] is False
    duplicate = problem(
        await api.request("POST", path, UNIT_A, json={"data": REPORT}), 409, "obligation.already_reported"
    )
    assert "2026-W10" in duplicate["detail"]
    assert (await api.get(f"/api/v1/projects/{pid}")).json()["fields"]["completed_this_year"] == "300"

    clock.set(datetime(2026, 3, 17, 2, 0, tzinfo=UTC))  # Tuesday of week 12: weeks 11 and 12 are missing
    await Sweeper(services).tick()
    status = (await api.get(path, UNIT_A)).json()
    assert [(p["period"], p["status"], p["level"]) for p in status["periods"]] == [
        ("2026-W13", "due", 0),
        ("2026-W12", "missing", 1),
        ("2026-W11", "missing", 2),  # five working days after 9 March: level 2
        ("2026-W10", "reported", 0),
    ]
    late = await api.request("POST", path, UNIT_A, json={"period": "2026-W11", "data": REPORT})
    assert late.status_code == 201 and late.json()["late"] is True
    listed = (await api.get(f"/api/v1/projects/{pid}/obligations", DISPATCHER)).json()
    assert [o["obligation"] for o in listed] == ["weekly_progress"]
    assert [(p["period"], p["status"]) for p in listed[0]["periods"]][1:] == [
        ("2026-W12", "missing"),
        ("2026-W11", "late"),
        ("2026-W10", "reported"),
    ]


@pytest.mark.parametrize("middleware_dies", [False, True])
async def test_a_keyed_report_stores_its_answer_with_the_report_and_a_retry_replays_it(
    ladder_api: Api, services: Services, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, middleware_dies: bool
) -> None:
    # The answer (201, the report, Location) is stored in the report's own transaction: whatever the middleware
    # would do after the route (here, with middleware_dies, failing as in a process that died right after the
    # commit), a retry replays it rather than getting 409 "already reported" or "still running".
    api = ladder_api
    pid = (await building_project(api, clock))["id"]
    path = f"/api/v1/projects/{pid}/obligations/weekly_progress/reports"
    settlements = Settlements(services, monkeypatch, fail=middleware_dies)
    headers = {"Idempotency-Key": "report-w10", "Content-Type": "application/json"}
    body = json.dumps({"period": "2026-W10", "data": REPORT}).encode()  # the same bytes each time
    filed = await api.request("POST", path, UNIT_A, content=body, headers=headers)
    assert filed.status_code == 201, filed.text
    assert filed.headers["Location"] == path and "Idempotent-Replayed" not in filed.headers
    assert settlements.completed == [] and settlements.released == []
    record = await stored(services, UNIT_A.id, "report-w10")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 201, filed.content)
    assert dict(record.headers or ()) == {"content-type": filed.headers["Content-Type"], "location": path}

    again = await api.request("POST", path, UNIT_A, content=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == filed.content and again.headers["Location"] == path
    reports = (await api.get(path, UNIT_A)).json()["reports"]
    assert [r["id"] for r in reports] == [filed.json()["id"]]
