"""Items, deficiency notices, commitments and history over HTTP: ETags, If-Match, the one-time rule."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from api.app import create_app
from lifecycle.clock import FrozenClock
from lifecycle.services import Principal, Services
from lifecycle.settings import Settings

from .conftest import (
    CONSTRUCTION_PERMIT,
    DISPATCHER,
    HOUSING,
    PLANNING,
    PLANNING_PERMIT,
    UNIT_A,
    Api,
    problem,
    start_app,
)

Auth = Callable[[Principal], Awaitable[dict[str, str]]]

pytestmark = pytest.mark.anyio


async def test_tasks_list_and_read_with_etags(api: Api) -> None:
    project = await api.into_permitting()
    pid = project["id"]
    tasks = (await api.get(f"/api/v1/projects/{pid}/tasks", UNIT_A)).json()
    by_id = {t["id"]: t for t in tasks}
    assert set(by_id) == {PLANNING_PERMIT, CONSTRUCTION_PERMIT}
    planning = by_id[PLANNING_PERMIT]
    assert (planning["group_title"], planning["item_title"]) == ("并联审批", "建设工程规划许可证")
    assert (planning["department"], planning["state"], planning["outcome"]) == ("planning_bureau", "pending", "open")

    one = await api.get(f"/api/v1/projects/{pid}/tasks/{PLANNING_PERMIT}", UNIT_A)
    assert one.status_code == 200 and one.headers["ETag"] == f'W/"{planning["version"]}"'
    problem(await api.get(f"/api/v1/projects/{pid}/tasks/permits.nothing"), 404, "not_found")


async def test_task_triggers_say_who_may_fire_them(api: Api) -> None:
    project = await api.into_permitting()
    path = f"/api/v1/projects/{project['id']}/tasks/{PLANNING_PERMIT}/transitions"
    as_unit = {o["trigger"]: o for o in (await api.get(path, UNIT_A)).json()}
    assert as_unit["submit"]["may_fire"] is True and as_unit["submit"]["unmet"] == []
    as_planning = {o["trigger"]: o for o in (await api.get(path, PLANNING, headers={"Accept-Language": "en"})).json()}
    [reason] = as_planning["submit"]["unmet"]
    assert reason["code"] == "engine.role_refused" and reason["message"] == reason["message_en"]


async def test_firing_a_task_needs_its_own_etag(api: Api) -> None:
    project = await api.into_permitting()
    path = f"/api/v1/projects/{project['id']}/tasks/{PLANNING_PERMIT}/transitions"
    body = {"trigger": "submit"}
    problem(await api.request("POST", path, UNIT_A, json=body), 428, "api.if_match_required")
    # The project's ETag is not the item's: the item is at version 1, the project at 2.
    stale = await api.request("POST", path, UNIT_A, json=body, headers={"If-Match": 'W/"2"'})
    assert problem(stale, 412, "stale_version")["current_etag"] == 'W/"1"'
    fired = await api.request("POST", path, UNIT_A, json=body, headers={"If-Match": 'W/"1"'})
    assert fired.status_code == 200 and fired.json()["state"] == "submitted" and fired.headers["ETag"] == 'W/"2"'


async def test_invalid_task_transition_lists_the_allowed_triggers(api: Api) -> None:
    project = await api.into_permitting()
    refused = await api.fire_task(project["id"], PLANNING_PERMIT, "approve", PLANNING)
    body = problem(refused, 409, "engine.invalid_transition")
    assert (body["trigger"], body["state"], body["subject"]) == ("approve", "pending", "task")
    assert body["allowed_triggers"] == ["submit"]


async def test_role_and_department_refusals_are_403(api: Api) -> None:
    project = await api.into_permitting()
    pid = project["id"]
    body = problem(await api.fire_task(pid, PLANNING_PERMIT, "submit", DISPATCHER), 403, "engine.role_refused")
    assert body["roles_allowed"] == ["unit"]
    assert (await api.fire_task(pid, PLANNING_PERMIT, "submit", UNIT_A)).status_code == 200
    # The housing bureau sees the project (it has an item) but may not act on the planning bureau's item.
    problem(await api.fire_task(pid, PLANNING_PERMIT, "accept", HOUSING), 403, "forbidden")


async def test_bad_deficiency_data_is_422_with_paths(api: Api) -> None:
    project = await api.into_permitting()
    pid = project["id"]
    assert (await api.fire_task(pid, PLANNING_PERMIT, "submit", UNIT_A)).status_code == 200
    refused = await api.fire_task(
        pid, PLANNING_PERMIT, "accept_with_deficiencies", PLANNING, {"missing": ["site_plan", "ghost"]}
    )
    body = problem(refused, 422, "input.invalid")
    assert [(e["loc"], e["code"]) for e in body["errors"]] == [
        (["body", "data", "missing", 0], "deficiency.not_allowed"),
        (["body", "data", "missing", 1], "deficiency.unknown_material"),
    ]
    empty = await api.fire_task(pid, PLANNING_PERMIT, "accept_with_deficiencies", PLANNING, {"missing": []})
    assert [e["loc"] for e in problem(empty, 422, "input.invalid")["errors"]] == [["body", "data", "missing"]]
    late = await api.fire_task(
        pid, PLANNING_PERMIT, "accept_with_deficiencies", PLANNING, {"missing": ["photos"], "cure_date": "2099-01-01"}
    )
    assert [e["code"] for e in problem(late, 422, "input.invalid")["errors"]] == ["deficiency.cure_after_due"]


async def test_notice_lifecycle_and_the_one_time_rule(api: Api) -> None:
    project, notice_id = await api.with_notice()
    pid = project["id"]
    notices = (await api.get(f"/api/v1/projects/{pid}/notices", UNIT_A)).json()
    assert [n["id"] for n in notices] == [notice_id]
    notice = notices[0]
    assert [m["id"] for m in notice["missing"]] == ["photos", "contract_copy"]
    assert [m["title"] for m in notice["missing"]] == ["现场照片", "合同复印件"]
    assert (notice["task_id"], notice["state"], notice["submission"]) == (PLANNING_PERMIT, "issued", 1)

    path = f"/api/v1/projects/{pid}/notices/{quote(notice_id, safe='')}"
    read = await api.get(path, UNIT_A)
    assert read.status_code == 200 and read.headers["ETag"] == 'W/"1"'
    problem(
        await api.request("POST", f"{path}/transitions", UNIT_A, json={"trigger": "read"}), 428, "api.if_match_required"
    )
    marked = await api.request(
        "POST", f"{path}/transitions", UNIT_A, json={"trigger": "read"}, headers={"If-Match": 'W/"1"'}
    )
    assert marked.status_code == 200 and marked.json()["state"] == "read"
    stale = await api.request(
        "POST", f"{path}/transitions", UNIT_A, json={"trigger": "supply"}, headers={"If-Match": 'W/"1"'}
    )
    problem(stale, 412, "stale_version")
    extra = await api.request(
        "POST", f"{path}/transitions", UNIT_A, json={"trigger": "read", "data": {}}, headers={"If-Match": 'W/"2"'}
    )
    assert [e["loc"] for e in problem(extra, 422, "api.request_invalid")["errors"]] == [["body", "data"]]
    problem(await api.get(f"/api/v1/projects/{pid}/notices/nothing"), 404, "not_found")

    supplied = await api.fire_notice(pid, notice_id, "supply", UNIT_A)
    assert supplied.status_code == 200 and supplied.json()["outcome"] == "done"
    assert (await api.get(f"/api/v1/projects/{pid}/tasks/{PLANNING_PERMIT}")).json()["state"] == "accepted"


REISSUE_LINE = (
    "      - {trigger: reconsider, title: 重新审查受理, from: accepted_with_deficiencies, to: submitted, "
    "roles: [department]}\n"
)


@pytest.fixture
def reissue_definition(services: Services, bundle: Path) -> str:
    """A variant of mini whose item machine can go back to 已申报 without a new submission (as a careless
    edit of a definition might allow): the one-time rule must still refuse a second notice. (After
    ``services``, which fills the bundle; the app publishes the variant when it starts.)"""
    text = (bundle / "engine-mini.yaml").read_text(encoding="utf-8")
    anchor = "      - {trigger: start_expert_review,"
    assert anchor in text and "key: mini\n" in text
    text = text.replace("key: mini\n", "key: mini-reissue\n").replace(anchor, REISSUE_LINE + anchor)
    (bundle / "mini-reissue.yaml").write_text(text, encoding="utf-8")
    return "mini-reissue"


async def test_a_second_notice_for_the_same_submission_is_409(
    reissue_definition: str, services: Services, settings: Settings, auth: Auth
) -> None:
    async for app in start_app(create_app(settings, services=services)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            api = Api(http, auth)
            project = await api.create(definition_key=reissue_definition)
            pid = project["id"]
            assert (await api.fire(pid, "start_permitting", UNIT_A, {"approval_no": "A-1"})).status_code == 200
            assert (await api.fire_task(pid, PLANNING_PERMIT, "submit", UNIT_A)).status_code == 200
            first = await api.fire_task(
                pid, PLANNING_PERMIT, "accept_with_deficiencies", PLANNING, {"missing": ["photos"]}
            )
            assert first.status_code == 200, first.text
            [notice] = (await api.get(f"/api/v1/projects/{pid}/notices")).json()
            assert (await api.fire_task(pid, PLANNING_PERMIT, "reconsider", PLANNING)).status_code == 200

            breach = await api.fire_task(
                pid, PLANNING_PERMIT, "accept_with_deficiencies", PLANNING, {"missing": ["contract_copy"]}
            )
            body = problem(breach, 409, "engine.one_time_notice_breach")
            assert (body["task_id"], body["notice_id"]) == (PLANNING_PERMIT, notice["id"])
            assert "一次性告知" in body["detail"]
            english = await api.fire_task(
                pid,
                PLANNING_PERMIT,
                "accept_with_deficiencies",
                PLANNING,
                {"missing": ["contract_copy"]},
                headers={"Accept-Language": "en-US,en;q=0.9,zh;q=0.1"},
            )
            assert "one-time notice" in problem(english, 409, "engine.one_time_notice_breach")["detail"]
            assert len((await api.get(f"/api/v1/projects/{pid}/notices")).json()) == 1
            task = (await api.get(f"/api/v1/projects/{pid}/tasks/{PLANNING_PERMIT}")).json()
            assert task["state"] == "submitted"


async def test_commitments_are_listed_with_their_state(api: Api) -> None:
    project = await api.into_permitting()
    pid = project["id"]
    assert (await api.get(f"/api/v1/projects/{pid}/commitments")).json() == []
    assert (await api.fire_task(pid, CONSTRUCTION_PERMIT, "submit", UNIT_A)).status_code == 200
    recorded = await api.fire_task(
        pid, CONSTRUCTION_PERMIT, "record_commitment", UNIT_A, {"text": "开工前补齐图审", "due_date": "2026-06-30"}
    )
    assert recorded.status_code == 200, recorded.text
    [commitment] = (await api.get(f"/api/v1/projects/{pid}/commitments", UNIT_A)).json()
    assert (commitment["task_id"], commitment["state"], commitment["due_date"]) == (
        CONSTRUCTION_PERMIT,
        "recorded",
        "2026-06-30",
    )
    blank = await api.fire_task(pid, CONSTRUCTION_PERMIT, "record_commitment", UNIT_A, {"text": " "})
    assert [e["loc"] for e in problem(blank, 422, "input.invalid")["errors"]] == [["body", "data", "text"]]


async def test_history_pages_with_utc_and_shanghai_times(api: Api, clock: FrozenClock) -> None:
    project = await api.create()
    pid = project["id"]
    clock.advance(timedelta(hours=15))  # 2026-03-02 16:00 UTC is already 3 March in Shanghai
    await api.fire(pid, "start_permitting", UNIT_A, {"approval_no": "A-1"}, comment="启动")
    first = (await api.get(f"/api/v1/projects/{pid}/history", UNIT_A, params={"limit": 1})).json()
    assert [e["kind"] for e in first["items"]] == ["project.created"] and first["next_cursor"]
    rest = (await api.get(f"/api/v1/projects/{pid}/history", params={"cursor": first["next_cursor"]})).json()
    moved = next(e for e in rest["items"] if e["kind"] == "project.transition")
    assert (moved["trigger"], moved["from_state"], moved["to_state"]) == ("start_permitting", "draft", "permitting")
    assert (moved["actor"], moved["comment"]) == (UNIT_A.id, "启动")
    assert moved["at"] == "2026-03-02T16:00:00Z"
    assert moved["at_local"] == "2026-03-03T00:00:00+08:00"
    assert rest["next_cursor"] is None
    assert moved["prev_hash"] and moved["hash"]

    bad = await api.get(f"/api/v1/projects/{pid}/history", params={"cursor": "-3"})
    assert [e["loc"] for e in problem(bad, 422, "input.invalid")["errors"]] == [["query", "cursor"]]
    problem(await api.get("/api/v1/projects/nothing/history"), 404, "not_found")


async def test_unknown_project_is_404_on_every_sub_resource(api: Api) -> None:
    for path in ("tasks", "notices", "commitments", "transitions", f"tasks/{PLANNING_PERMIT}"):
        problem(await api.get(f"/api/v1/projects/nothing/{path}"), 404, "not_found")
    fire = await api.request(
        "POST",
        "/api/v1/projects/nothing/transitions",
        DISPATCHER,
        json={"trigger": "hold"},
        headers={"If-Match": 'W/"1"'},
    )
    problem(fire, 404, "not_found")


REVIEW_CLOCK_LINE = (
    "      - {id: review_limit, title: 评审时限, basis: duration, duration: {days: 10, unit: working_days}, "
    "runs_in: [expert_review]}\n"
)


@pytest.fixture
def review_clock_definition(services: Services, bundle: Path) -> str:
    """A variant of mini whose expert review runs a clock of its own beside the item's paused time limit."""
    text = (bundle / "engine-mini.yaml").read_text(encoding="utf-8")
    anchor = "      - {id: return_period, title: 退件期限,"
    assert anchor in text and "key: mini\n" in text
    text = text.replace("key: mini\n", "key: mini-review\n").replace(anchor, REVIEW_CLOCK_LINE + anchor)
    (bundle / "mini-review.yaml").write_text(text, encoding="utf-8")
    return "mini-review"


async def test_an_items_answer_lists_its_clocks_as_a_read_of_it_does(
    review_clock_definition: str, services: Services, settings: Settings, auth: Auth
) -> None:
    # Accepted and sent to expert review the same day, the item has two open clocks started that day: the
    # time limit (opened first, now paused) and the review's. The trigger's answer lists them in the order a
    # read does (start day, then id), not in the order they were opened.
    async for app in start_app(create_app(settings, services=services)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            api = Api(http, auth)
            pid = (await api.create(definition_key=review_clock_definition))["id"]
            assert (await api.fire(pid, "start_permitting", UNIT_A, {"approval_no": "A-1"})).status_code == 200
            assert (await api.fire_task(pid, PLANNING_PERMIT, "submit", UNIT_A)).status_code == 200
            assert (await api.fire_task(pid, PLANNING_PERMIT, "accept", PLANNING)).status_code == 200
            answer = await api.fire_task(pid, PLANNING_PERMIT, "start_expert_review", PLANNING)
            assert answer.status_code == 200, answer.text
            clocks = [d["clock"] for d in answer.json()["deadlines"]]
            assert sorted(clocks) == ["review_limit", "time_limit"]
            read = await api.get(f"/api/v1/projects/{pid}/tasks/{PLANNING_PERMIT}")
            assert read.content == answer.content
