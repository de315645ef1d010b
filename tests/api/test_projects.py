"""Projects over HTTP: create, list with filters and cursor pages, read with an ETag, change with If-Match."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lifecycle.clock import FrozenClock

from .conftest import ADMIN, DISPATCHER, LEADER, UNIT_A, UNIT_B, Api, new_project, problem

pytestmark = pytest.mark.anyio


async def test_create_answers_201_with_location_etag_and_money_as_a_string(api: Api) -> None:
    response = await api.request(
        "POST",
        "/api/v1/projects",
        UNIT_A,
        json=new_project(
            code="2026-500237-48-01-00001A",
            total_investment=5000.5,
            implementing_unit="unit_b",
            township="龙门街道",
            planned_start="2026-05-01",
            planned_end="2027-12-31",
        ),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"] == f"/api/v1/projects/{body['id']}"
    assert body["total_investment"] == "5000.5000"
    assert isinstance(body["total_investment"], str)
    assert (body["state"], body["state_title"], body["phase"]) == ("draft", "谋划", "early")
    assert body["fields"] == {"investment": "150", "planned_start": "2026-05-01"}
    assert body["code"] == "2026-500237-48-01-00001A" and body["created_by"] == UNIT_A.id

    again = await api.get(f"/api/v1/projects/{body['id']}", UNIT_A)
    assert again.status_code == 200 and again.json() == body and again.headers["ETag"] == 'W/"1"'


async def test_money_keeps_every_digit_given_as_a_string(api: Api) -> None:
    project = await api.create(total_investment="12345678901.2345")
    assert project["total_investment"] == "12345678901.2345"


async def test_create_refuses_bad_input_with_every_field_path(api: Api) -> None:
    header = await api.request(
        "POST",
        "/api/v1/projects",
        UNIT_A,
        json=new_project(code="2026-500237-48-01-0001", source_category="其他项目", name=" "),
    )
    body = problem(header, 422, "input.invalid")
    assert sorted((tuple(e["loc"]), e["code"]) for e in body["errors"]) == [
        (("body", "code"), "project.code_format"),
        (("body", "name"), "project.text_required"),
        (("body", "source_category"), "project.source_category"),
    ]
    assert all(e["message"] == e["message_zh"] and e["message_en"] for e in body["errors"])

    fields = await api.request(
        "POST", "/api/v1/projects", UNIT_A, json=new_project(fields={"investment": "很多", "nonsense": 1})
    )
    body = problem(fields, 422, "input.invalid")
    assert sorted((tuple(e["loc"]), e["code"]) for e in body["errors"]) == [
        (("body", "fields", "investment"), "field.type"),
        (("body", "fields", "nonsense"), "field.unknown"),
    ]
    assert (await api.get("/api/v1/projects")).json()["items"] == []


async def test_request_validation_errors_are_problems_with_field_paths(api: Api) -> None:
    body = {**new_project(), "total_investment": "1.23456", "planned_start": "2026-13-01", "surprise": True}
    del body["name"]
    response = await api.request("POST", "/api/v1/projects", UNIT_A, json=body, headers={"Accept-Language": "en"})
    problem_body = problem(response, 422, "api.request_invalid")
    assert response.headers["Content-Language"] == "en"
    by_loc = {tuple(e["loc"]): e for e in problem_body["errors"]}
    assert set(by_loc) == {
        ("body", "name"),
        ("body", "total_investment"),
        ("body", "planned_start"),
        ("body", "surprise"),
    }
    assert by_loc[("body", "name")]["code"] == "request.missing"
    assert by_loc[("body", "surprise")]["message_zh"] == "不允许的字段"
    assert all(e["message"] == e["message_en"] for e in problem_body["errors"])


async def test_malformed_json_is_a_422_problem(api: Api) -> None:
    response = await api.request(
        "POST", "/api/v1/projects", UNIT_A, content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    body = problem(response, 422, "api.request_invalid")
    assert body["errors"][0]["code"] == "request.json_invalid" and body["errors"][0]["loc"][0] == "body"


async def test_unknown_definition_is_404(api: Api) -> None:
    response = await api.request("POST", "/api/v1/projects", UNIT_A, json=new_project(definition_key="nothing"))
    assert problem(response, 404, "not_found")["kind"] == "definition"


async def test_get_unknown_project_is_404(api: Api) -> None:
    body = problem(await api.get("/api/v1/projects/no-such-project"), 404, "not_found")
    assert (body["kind"], body["id"]) == ("project", "no-such-project")
    assert body["instance"] == "/api/v1/projects/no-such-project"


async def test_list_filters_and_pages_with_a_cursor(api: Api, clock: FrozenClock) -> None:
    ids = []
    for i in range(5):
        clock.advance(timedelta(minutes=1))  # the list is ordered by creation time
        ids.append((await api.create(name=f"项目{i}", lead_leader="县领导乙" if i % 2 else "县领导甲"))["id"])
    clock.advance(timedelta(minutes=1))
    await api.create(by=UNIT_B, lead_unit="unit_b", name="另一个单位的项目")
    permitting = await api.into_permitting(name="审批中的项目")

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/v1/projects", DISPATCHER, params=params)).json()
        assert len(page["items"]) <= 2
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and len(set(seen)) == 7 and seen[:5] == ids

    async def listed(by: object = DISPATCHER, **params: object) -> list[str]:
        response = await api.get("/api/v1/projects", by, params=params)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await listed(state="permitting") == [permitting["id"]]
    assert await listed(phase="early", step=2) == [permitting["id"]]
    assert len(await listed(unit="unit_b")) == 1
    assert len(await listed(leader="县领导乙")) == 2
    assert len(await listed(definition="mini")) == 7 and await listed(definition="other") == []
    assert await listed(q="审批中") == [permitting["id"]]
    assert await listed(overdue=True) == []
    # A unit sees only its own projects.
    assert len(await listed(UNIT_B)) == 1 and len(await listed(UNIT_A)) == 6


async def test_bad_cursor_and_limit_are_422_in_the_query(api: Api) -> None:
    body = problem(await api.get("/api/v1/projects", params={"cursor": "not a cursor"}), 422, "input.invalid")
    assert [e["loc"] for e in body["errors"]] == [["query", "cursor"]]
    body = problem(await api.get("/api/v1/projects", params={"limit": 0}), 422, "api.request_invalid")
    assert [e["loc"] for e in body["errors"]] == [["query", "limit"]]


async def test_patch_needs_if_match_and_refuses_stale_versions(api: Api) -> None:
    project = await api.create()
    path = f"/api/v1/projects/{project['id']}"
    missing = await api.request("PATCH", path, UNIT_A, json={"name": "新名称"})
    problem(missing, 428, "api.if_match_required")
    wildcard = await api.request("PATCH", path, UNIT_A, json={"name": "新名称"}, headers={"If-Match": "*"})
    problem(wildcard, 428, "api.if_match_required")
    garbage = await api.request("PATCH", path, UNIT_A, json={"name": "新名称"}, headers={"If-Match": "yesterday"})
    assert problem(garbage, 422, "api.if_match_invalid")["errors"][0]["loc"] == ["header", "If-Match"]

    changed = await api.request(
        "PATCH",
        path,
        UNIT_A,
        json={"name": "新名称", "planned_start": "2026-06-01", "fields": {"investment": "200"}},
        headers={"If-Match": 'W/"1"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] == 'W/"2"'
    assert changed.json()["name"] == "新名称" and changed.json()["fields"]["investment"] == "200"
    assert changed.json()["lead_leader"] == "县领导甲"  # not sent, not changed

    stale = await api.request("PATCH", path, UNIT_A, json={"name": "又一个名称"}, headers={"If-Match": 'W/"1"'})
    body = problem(stale, 412, "stale_version")
    assert body["current_etag"] == 'W/"2"' and stale.headers["ETag"] == 'W/"2"'
    assert (await api.get(path)).json()["name"] == "新名称"

    # A strong tag names the same version.
    cleared = await api.request("PATCH", path, ADMIN, json={"township": None}, headers={"If-Match": '"2"'})
    assert cleared.status_code == 200 and cleared.json()["township"] is None


async def test_patch_refusals(api: Api) -> None:
    project = await api.create()
    path = f"/api/v1/projects/{project['id']}"
    reassign = await api.request("PATCH", path, UNIT_A, json={"lead_unit": "unit_b"}, headers={"If-Match": 'W/"1"'})
    assert problem(reassign, 403, "forbidden")["detail"]
    not_editor = await api.request("PATCH", path, LEADER, json={"name": "x"}, headers={"If-Match": 'W/"1"'})
    problem(not_editor, 403, "forbidden")
    invisible = await api.request("PATCH", path, UNIT_B, json={"name": "x"}, headers={"If-Match": 'W/"1"'})
    problem(invisible, 404, "not_found")
    bad = await api.request(
        "PATCH", path, UNIT_A, json={"fields": {"planned_start": "soon"}}, headers={"If-Match": 'W/"1"'}
    )
    assert [e["loc"] for e in problem(bad, 422, "input.invalid")["errors"]] == [["body", "fields", "planned_start"]]
