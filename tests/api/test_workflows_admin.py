"""Workflow administration over HTTP: publish (YAML or JSON), validate, diff, activate, diagrams, and
migrating running projects — with the whole story on the bundled major-project definition (SQLite and
PostgreSQL)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta
from typing import Any

import pytest

from lifecycle.clock import FrozenClock
from lifecycle.engine.instance import Deadline
from lifecycle.services import CallContext, Principal, Services
from lifecycle.services.webhooks import NewEndpoint, WebhookService
from lifecycle.store.projects import ProjectRepository
from lifecycle.webhooks.config import WebhookSettings
from tests.workflows.driver import advance, fields_for
from tests.workflows.edits import MAJOR_TEXT, MINI_TEXT, major_v2, mini_v2, replace

from .conftest import ADMIN, DISPATCHER, UNIT_A, UNIT_B, VIEWER, Api, problem

pytestmark = pytest.mark.anyio

YAML = {"Content-Type": "application/yaml"}


async def publish(api: Api, text: str, by: Principal = ADMIN, **params: Any) -> Any:
    return await api.request("POST", "/api/v1/workflows", by, content=text.encode(), headers=YAML, params=params)


# --- publishing ---------------------------------------------------------------------------------------------


async def test_publish_yaml_then_the_same_content_again(api: Api) -> None:
    created = await publish(api, mini_v2(), change_note="新增消防设计审查")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "published" and body["version"]["version"] == 2 and body["version"]["active"]
    assert body["version"]["change_note"] == "新增消防设计审查" and body["version"]["published_by"] == "admin"
    assert created.headers["Location"] == "/api/v1/workflows/mini/versions/2"
    assert body["diff"]["summary"]["items"] == {"added": 1, "removed": 0, "changed": 1}  # and a shorter limit

    again = await publish(api, mini_v2())
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    assert again.json()["version"]["version"] == 2
    versions = (await api.get("/api/v1/workflows/mini/versions")).json()
    assert [(v["version"], v["active"]) for v in versions] == [(1, False), (2, True)]


async def test_publish_as_json_staged_then_activated(api: Api, services: Services) -> None:
    response = await api.request(
        "POST", "/api/v1/workflows", ADMIN, json={"yaml": mini_v2(), "change_note": "暂存", "activate": False}
    )
    assert response.status_code == 201, response.text
    assert response.json()["version"]["active"] is False
    assert (await api.create())["definition_version"] == 1
    activated = await api.request("POST", "/api/v1/workflows/mini/versions/2/activate", ADMIN)
    assert activated.status_code == 200 and activated.json()["active"] is True
    assert (await api.create())["definition_version"] == 2
    events = (await api.get("/api/v1/workflows/mini/events", ADMIN)).json()
    assert [(e["kind"], e["version"]) for e in events] == [("workflow.published", 2), ("workflow.activated", 2)]
    problem(await api.request("POST", "/api/v1/workflows/mini/versions/2/activate", DISPATCHER), 403, "forbidden")
    problem(await api.request("POST", "/api/v1/workflows/mini/versions/9/activate", ADMIN), 404, "not_found")


async def test_validate_only_stores_nothing(api: Api) -> None:
    response = await publish(api, mini_v2(), validate_only="true")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "validated" and body["version"] is None and body["compared_with"] == 1
    assert body["summary"]["items"] == 3 and "permits.fire_review" in body["diff"]["text"]
    assert len((await api.get("/api/v1/workflows/mini/versions")).json()) == 1


async def test_invalid_yaml_returns_every_error_with_its_location_and_stores_nothing(api: Api) -> None:
    # Schema errors: every one, each with file, line, column and YAML path.
    broken = replace(MINI_TEXT, "time_limit: {days: 7, unit: calendar_days}", "time_limit: {days: -7, unit: weeks}")
    broken = replace(broken, "{id: done, title: 完成,", "{id: done, titel: 完成,")
    body = problem(await publish(api, broken, filename="mini-v2.yaml"), 422, "definition.invalid")
    errors = body["errors"]
    for error in errors:
        assert error["file"] == "mini-v2.yaml"
        assert error["line"] > 0 and error["column"] > 0 and error["path"]
        assert error["message_zh"] and error["message_en"] and error["code"]
    lines = broken.splitlines()
    state_line = 1 + next(n for n, line in enumerate(lines) if "{id: done, titel" in line)
    limit_line = 1 + next(n for n, line in enumerate(lines) if "days: -7" in line)
    located = {(e["path"], e["code"]): e["line"] for e in errors}
    assert located == {
        ("states[3].titel", "schema.extra_forbidden"): state_line,
        ("states[3].title", "schema.missing"): state_line,
        ("task_groups[0].items[1].time_limit.days", "schema.greater_than_equal"): limit_line,
        ("task_groups[0].items[1].time_limit.unit", "schema.literal_error"): limit_line,
    }
    # Static-check errors (references): every one too.
    unknown = replace(MINI_TEXT, "initial: draft", "initial: drafting")
    unknown = replace(unknown, "to: permitting, roles: [unit]", "to: permiting, roles: [unit]")
    checks = problem(await publish(api, unknown), 422, "definition.invalid")["errors"]
    assert {e["path"] for e in checks} >= {"initial", "transitions[0].to"}
    assert all(e["file"] == "workflow.yaml" and e["line"] > 0 for e in checks)
    # YAML that is not YAML.
    syntax = problem(await publish(api, "key: mini\ntitle: [unclosed\n"), 422, "definition.invalid")
    assert syntax["errors"][0]["line"] >= 1
    assert len((await api.get("/api/v1/workflows/mini/versions")).json()) == 1
    assert (await api.get("/api/v1/workflows/mini/events", ADMIN)).json() == []


async def test_publish_refusals(api: Api) -> None:
    problem(await publish(api, mini_v2(), by=DISPATCHER), 403, "forbidden")
    wrong = await api.request(
        "POST", "/api/v1/workflows", ADMIN, content=b"<xml/>", headers={"Content-Type": "application/xml"}
    )
    problem(wrong, 415, "api.unsupported_media_type")
    bad_json = await api.request("POST", "/api/v1/workflows", ADMIN, json={"yaml": 3})
    assert problem(bad_json, 422, "api.request_invalid")["errors"][0]["loc"] == ["body", "yaml"]
    problem(await api.request("POST", "/api/v1/workflows", None, content=b"x", headers=YAML), 401, "api.unauthorized")


# --- diff and diagrams ----------------------------------------------------------------------------------------


async def test_diff_between_versions(api: Api) -> None:
    await publish(api, mini_v2())
    response = await api.get("/api/v1/workflows/mini/diff", UNIT_A, params={"from": 1, "to": 2})
    assert response.status_code == 200, response.text
    diff = response.json()
    assert (diff["from_version"], diff["to_version"], diff["identical"]) == (1, 2, False)
    sections = {s["section"]: s for s in diff["sections"]}
    items = {e["id"]: e for e in sections["items"]["entries"]}
    added = items["permits.fire_review"]
    assert (added["op"], added["title"], added["parent"]) == ("added", "消防设计审查", "permits")
    [limit] = items["permits.planning_permit"]["changes"]
    assert (limit["label"], limit["before_text"], limit["after_text"]) == ("办理时限", "20 个工作日", "15 个工作日")
    clocks = {e["id"]: e for e in sections["clocks"]["entries"]}
    [duration] = clocks["permitting_limit"]["changes"]
    assert (duration["before_text"], duration["after_text"]) == ("30 个工作日", "20 个工作日")
    assert diff["state_renames"] == {"building": "constructing"}
    assert "【事项】" in diff["text"] and "+ 新增 permits.fire_review「消防设计审查」" in diff["text"]
    english = (await api.get("/api/v1/workflows/mini/diff", headers={"Accept-Language": "en"})).json()
    assert "[items]" in english["text"] and english["to_version"] == 2
    problem(await api.get("/api/v1/workflows/mini/diff", params={"from": 1, "to": 5}), 404, "not_found")


async def test_version_diagram_as_svg_and_mermaid(api: Api) -> None:
    svg = await api.get("/api/v1/workflows/mini/versions/1/diagram")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "审批" in svg.text and 'data-state="permitting"' in svg.text
    mermaid = await api.get("/api/v1/workflows/mini/versions/1/diagram", params={"format": "mermaid"})
    assert mermaid.headers["content-type"].startswith("text/plain") and mermaid.text.startswith("stateDiagram-v2")
    asked = await api.get("/api/v1/workflows/mini/versions/1/diagram", headers={"Accept": "text/vnd.mermaid"})
    assert asked.headers["content-type"].startswith("text/vnd.mermaid")
    by_accept = await api.get("/api/v1/workflows/mini/versions/1/diagram", headers={"Accept": "image/svg+xml"})
    assert by_accept.headers["content-type"].startswith("image/svg+xml")
    problem(await api.get("/api/v1/workflows/mini/versions/3/diagram"), 404, "not_found")
    bad = await api.get("/api/v1/workflows/mini/versions/1/diagram", params={"format": "png"})
    problem(bad, 422, "api.request_invalid")


async def test_project_diagram_highlights_its_state_and_open_items(api: Api) -> None:
    project = await api.into_permitting()
    path = f"/api/v1/projects/{project['id']}/diagram"
    svg = await api.get(path, UNIT_A, params={"format": "svg"})
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.text)
    current = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if "current" in (g.get("class") or "").split()]
    assert [g.get("data-state") for g in current] == ["permitting"]
    assert "办理中" in svg.text and "建设工程规划许可证" in svg.text
    by_accept = await api.get(path, UNIT_A, headers={"Accept": "image/svg+xml"})
    assert by_accept.headers["content-type"].startswith("image/svg+xml")
    mermaid = await api.get(path, UNIT_A, params={"format": "mermaid"})
    assert "class permitting current" in mermaid.text
    as_json = await api.get(path, UNIT_A)
    assert as_json.json()["state"] == "permitting" and as_json.json()["mermaid"].startswith("stateDiagram-v2")
    problem(await api.get(path, UNIT_B, params={"format": "svg"}), 404, "not_found")


# --- migrations on mini ---------------------------------------------------------------------------------------


async def test_migration_endpoints(api: Api) -> None:
    project = await api.into_permitting()
    await publish(api, mini_v2())
    base = "/api/v1/workflows/mini/migrations"
    dry = await api.request("POST", base, ADMIN, json={"from_version": 1, "to_version": 2, "dry_run": True})
    assert dry.status_code == 200, dry.text
    [item] = dry.json()["items"]
    assert item["project_id"] == project["id"] and item["movable"] and item["opened_tasks"] == ["permits.fire_review"]

    run = await api.request("POST", base, ADMIN, json={"from_version": 1, "filter": {"units": ["unit_a"]}})
    assert run.status_code == 201, run.text
    body = run.json()
    assert body["status"] == "finished" and body["counts"]["migrated"] == 1 and body["to_version"] == 2
    assert run.headers["Location"] == f"{base}/{body['id']}"
    assert body["selection"] == {"units": ["unit_a"]}
    read = await api.get(f"{base}/{body['id']}", VIEWER)
    assert read.status_code == 200 and read.json()["outcomes"][0]["status"] == "migrated"
    assert [r["id"] for r in (await api.get(base, ADMIN)).json()] == [body["id"]]
    resumed = await api.request("POST", f"{base}/{body['id']}/resume", ADMIN)
    assert resumed.status_code == 200 and resumed.json()["counts"]["migrated"] == 1
    moved = (await api.get(f"/api/v1/projects/{project['id']}")).json()
    assert moved["definition_version"] == 2

    refused = await api.request(
        "POST", base, ADMIN, json={"from_version": 1, "to_version": 2, "state_map": {"nope": "constructing"}}
    )
    assert problem(refused, 422, "input.invalid")["errors"][0]["loc"] == ["body", "state_map", "nope"]
    problem(await api.request("POST", base, DISPATCHER, json={"from_version": 1}), 403, "forbidden")
    problem(await api.get(f"{base}/{body['id']}", UNIT_A), 403, "forbidden")
    problem(await api.get(f"{base}/nope"), 404, "not_found")
    same = await api.request("POST", base, ADMIN, json={"from_version": 2, "to_version": 2})
    assert problem(same, 422, "input.invalid")["errors"][0]["loc"] == ["body", "to_version"]


# --- the whole story on major-project -----------------------------------------------------------------------

WATER = "permitting.water_supply_connection"


async def test_major_project_v2_diff_dry_run_run_webhooks_and_v1_projects_keep_working(
    api: Api, services: Services, clock: FrozenClock
) -> None:
    # Version 1 of the bundled procedure, published by an administrator.
    first = await publish(api, MAJOR_TEXT, filename="major-project.yaml")
    assert first.status_code == 201 and first.json()["version"]["version"] == 1
    # An integrator's endpoint for every event (the webhook outbox rows are written with each change).
    webhooks = WebhookService(services, WebhookSettings(allow_private=True))
    endpoint, _ = await webhooks.create_endpoint(
        CallContext(ADMIN), NewEndpoint(url="http://127.0.0.1:9/hooks", event_types=["*"])
    )

    fields = fields_for(await _definition(services, 1))

    async def new(name: str) -> str:
        body = {
            "definition_key": "major-project",
            "name": name,
            "source_category": "年度重大助推项目",
            "lead_unit": "unit_a",
            "lead_leader": "县领导甲",
            "fields": fields,
        }
        response = await api.request("POST", "/api/v1/projects", UNIT_A, json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    permitting_id, ready_id, reserve_id, planning_id = [await new(n) for n in ("报建中", "待开工", "储备中", "策划中")]
    await advance(services, permitting_id, "permitting", UNIT_A)
    await advance(services, ready_id, "ready_to_start", UNIT_A)
    await advance(services, reserve_id, "reserve", UNIT_A)
    # One permitting item under review: its time limit runs.
    owner = CallContext(UNIT_A)
    task = await services.get_task(owner, permitting_id, "permitting.land_use_planning_permit")
    await services.fire_task(owner, permitting_id, task.id, task.version, "submit")
    planner = Principal(
        "dept-planning", "县规划自然资源局", unit_id="planning_resources", roles=frozenset({"department"})
    )
    task = await services.get_task(owner, permitting_id, task.id)
    await services.fire_task(CallContext(planner), permitting_id, task.id, task.version, "accept")
    before = {d.clock: d for d in await _deadlines(services, permitting_id)}
    assert before["permitting_total"].started_on == date(2026, 3, 2)

    # Version 2: an item added to the permitting group, a state renamed, a clock shortened.
    second = await api.request(
        "POST", "/api/v1/workflows", ADMIN, json={"yaml": major_v2(), "change_note": "新增供水接入审批；储备状态更名"}
    )
    assert second.status_code == 201, second.text
    assert second.json()["version"]["version"] == 2 and second.json()["compared_with"] == 1

    # The diff reads right.
    diff = (await api.get("/api/v1/workflows/major-project/diff", params={"from": 1, "to": 2})).json()
    sections = {s["section"]: {e["id"]: e for e in s["entries"]} for s in diff["sections"]}
    assert sections["items"][WATER]["op"] == "added" and sections["items"][WATER]["title"] == "供水接入审批"
    assert sections["states"]["reserve"]["op"] == "removed" and sections["states"]["in_reserve"]["op"] == "added"
    assert diff["state_renames"] == {"reserve": "in_reserve"}
    assert sections["transitions"]["admit_reserve"]["changes"][0]["after_text"] == "in_reserve（已入储备库）"
    [duration] = sections["clocks"]["permitting_total"]["changes"]
    assert (duration["before_text"], duration["after_text"]) == ("90 个工作日", "60 个工作日")
    assert set(sections) == {"states", "transitions", "items", "clocks", "obligations"}
    assert "+ 新增 permitting.water_supply_connection「供水接入审批」" in diff["text"]
    assert (
        "− 删除 reserve「已入储备库」（所属阶段 decision（前期决策生成阶段）；步骤 2；疑为更名为 in_reserve）"
        in diff["text"]
    )

    # Dry runs: exactly who is blocked and who can move.
    base = "/api/v1/workflows/major-project/migrations"
    selection = {"states": ["permitting", "ready_to_start", "reserve"]}
    unmapped = await api.request(
        "POST", base, ADMIN, json={"from_version": 1, "to_version": 2, "filter": selection, "dry_run": True}
    )
    verdicts = {i["project_id"]: i for i in unmapped.json()["items"]}
    assert set(verdicts) == {permitting_id, ready_id, reserve_id}
    assert verdicts[permitting_id]["movable"] and verdicts[permitting_id]["opened_tasks"] == [WATER]
    assert [b["code"] for b in verdicts[reserve_id]["blockers"]] == ["migration.state_removed"]
    [gate] = verdicts[ready_id]["blockers"]
    assert gate["code"] == "migration.gate_unmet" and gate["details"]["gate"] == "before_construction"
    assert "供水接入审批" in gate["message_zh"] and "开工前" in gate["message_zh"]
    assert unmapped.json()["suggested_state_map"] == {"reserve": "in_reserve"}
    request = {"from_version": 1, "to_version": 2, "filter": selection, "state_map": {"reserve": "in_reserve"}}
    mapped = (await api.request("POST", base, ADMIN, json={**request, "dry_run": True})).json()
    assert {i["project_id"] for i in mapped["items"] if i["movable"]} == {permitting_id, reserve_id}
    assert {i["project_id"] for i in mapped["items"] if not i["movable"]} == {ready_id}
    assert (mapped["movable"], mapped["blocked"]) == (2, 1)

    # The real run, a while later: deadlines are recomputed from their own start, not restarted.
    clock.advance(timedelta(days=20))
    run = await api.request("POST", base, ADMIN, json=request)
    assert run.status_code == 201, run.text
    assert run.json()["counts"] == {"pending": 0, "migrated": 2, "blocked": 1, "skipped": 0}
    progress = (await api.get(run.headers["Location"], ADMIN)).json()
    assert progress["status"] == "finished"
    outcomes = {o["project_id"]: o for o in progress["outcomes"]}
    assert outcomes[ready_id]["status"] == "blocked" and outcomes[reserve_id]["to_state"] == "in_reserve"

    moved = (await api.get(f"/api/v1/projects/{permitting_id}")).json()
    assert (moved["definition_version"], moved["state"]) == (2, "permitting")
    tasks = {t["id"]: t for t in (await api.get(f"/api/v1/projects/{permitting_id}/tasks")).json()}
    assert tasks[WATER]["state"] == "pending" and tasks[WATER]["department"] == "housing_construction"
    after = {d.clock: d for d in await _deadlines(services, permitting_id)}
    total = after["permitting_total"]
    assert total.id == before["permitting_total"].id and total.started_on == date(2026, 3, 2)
    expected = services.engine.calendar.due_date(date(2026, 3, 2), 60, unit="working_days").date
    assert total.due_date == expected < before["permitting_total"].due_date
    # The item under review keeps its clock (its time limit did not change).
    assert after["time_limit"].due_date == before["time_limit"].due_date
    history = (await api.get(f"/api/v1/projects/{permitting_id}/history")).json()["items"]
    assert [e["kind"] for e in history][-2:] == ["project.migrated", "task.opened"]
    assert history[-2]["data"]["opened_tasks"] == [WATER] and history[-2]["actor"] == "admin"
    assert {r["id"] for r in history[-2]["data"]["deadlines_redated"]} == {total.id}
    renamed = (await api.get(f"/api/v1/projects/{reserve_id}")).json()
    assert (renamed["definition_version"], renamed["state"], renamed["state_title"]) == (2, "in_reserve", "已入储备库")

    # Projects left on version 1 keep working on version 1.
    stuck = (await api.get(f"/api/v1/projects/{ready_id}")).json()
    assert (stuck["definition_version"], stuck["state"]) == (1, "ready_to_start")
    postponed = await api.fire(ready_id, "postpone_start", UNIT_A, comment="征地未完成")
    assert postponed.status_code == 200, postponed.text
    assert (postponed.json()["state"], postponed.json()["definition_version"]) == ("start_extended_once", 1)
    proposed = await api.fire(planning_id, "propose_reserve", UNIT_A, _accepted(fields, "propose_reserve"))
    assert proposed.status_code == 200, proposed.text
    assert (proposed.json()["state"], proposed.json()["definition_version"]) == ("reserve_review", 1)
    # New projects start on version 2.
    assert (await _new_project(api, fields))["definition_version"] == 2

    # Webhooks: the outbox holds the definition events and each migrated project's events.
    deliveries = (await webhooks.list_deliveries(CallContext(ADMIN), endpoint.id, limit=200)).items
    kinds = [(d.event_type, d.project_id) for d in deliveries]
    assert ("workflow.published", None) in kinds and ("workflow.activated", None) in kinds
    assert ("workflow.migrated", None) in kinds
    assert ("project.migrated", permitting_id) in kinds and ("project.migrated", reserve_id) in kinds
    assert ("task.opened", permitting_id) in kinds
    assert ("project.migrated", ready_id) not in kinds


async def _definition(services: Services, version: int) -> Any:
    from lifecycle.services.workflows import WorkflowAdmin

    _, definition = await WorkflowAdmin(services).definition(CallContext(ADMIN), "major-project", version)
    return definition


async def _deadlines(services: Services, project_id: str) -> list[Deadline]:
    """The project's open deadlines, read from the database (the API shows only items' clocks)."""
    async with services.database.reader() as session:
        projects = ProjectRepository(session)
        record = await projects.get(project_id)
        assert record is not None
        definition = await services.registry.definition(session, record.definition_key, record.definition_version)
        instance = await projects.instance(record, definition)
    return [d for d in instance.deadlines.values() if d.closed_at is None]


def _accepted(fields: dict[str, Any], trigger: str) -> dict[str, Any]:
    wanted = {"propose_reserve": ["project_class", "total_investment", "construction_background", "site_area_mu"]}
    return {name: fields[name] for name in wanted[trigger] if name in fields}


async def _new_project(api: Api, fields: dict[str, Any]) -> dict[str, Any]:
    body = {
        "definition_key": "major-project",
        "name": "新项目",
        "source_category": "年度重大助推项目",
        "lead_unit": "unit_a",
        "fields": {"total_investment": fields["total_investment"]},
    }
    response = await api.request("POST", "/api/v1/projects", UNIT_A, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())
