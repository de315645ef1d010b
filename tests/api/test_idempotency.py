"""Idempotency-Key on POST: replay of the first answer, a key reused for another request, a request still
in flight, keys scoped per principal and forgotten after 24 hours, and answers that are not kept."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from api.idempotency import request_hash
from lifecycle.clock import FrozenClock

from .conftest import DISPATCHER, UNIT_A, Api, new_project, problem

pytestmark = pytest.mark.anyio

PROJECTS = "/api/v1/projects"


async def count_projects(api: Api) -> int:
    return len((await api.get(PROJECTS, params={"limit": 200})).json()["items"])


async def test_same_key_same_body_replays_the_first_answer(api: Api) -> None:
    body = new_project(name="只建一次的项目")
    key = {"Idempotency-Key": "create-0001"}
    first = await api.request("POST", PROJECTS, UNIT_A, json=body, headers=key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = await api.request("POST", PROJECTS, UNIT_A, json=body, headers=key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    for header in ("ETag", "Location", "Content-Type"):
        assert again.headers[header] == first.headers[header]
    assert await count_projects(api) == 1


async def test_same_key_different_body_is_422(api: Api) -> None:
    key = {"Idempotency-Key": "create-0002"}
    assert (await api.request("POST", PROJECTS, UNIT_A, json=new_project(name="甲"), headers=key)).status_code == 201
    other = await api.request("POST", PROJECTS, UNIT_A, json=new_project(name="乙"), headers=key)
    problem(other, 422, "api.idempotency_key_reused")
    # The same key on another path is another request too.
    elsewhere = await api.request("POST", f"{PROJECTS}/x/transitions", UNIT_A, json={"trigger": "t"}, headers=key)
    problem(elsewhere, 422, "api.idempotency_key_reused")
    assert await count_projects(api) == 1


async def test_a_request_still_running_makes_a_duplicate_409(app: FastAPI, api: Api) -> None:
    body = new_project(name="处理中")
    raw = json.dumps(body).encode()
    # Another worker has claimed the key for this very request and not answered yet.
    services = app.state.runtime.services
    await api.auth(UNIT_A)
    fingerprint = request_hash("POST", PROJECTS, b"", None, raw)
    assert await services.idempotency_begin(UNIT_A.id, "create-0003", fingerprint) is None
    duplicate = await api.request(
        "POST",
        PROJECTS,
        UNIT_A,
        content=raw,
        headers={"Idempotency-Key": "create-0003", "Content-Type": "application/json"},
    )
    problem(duplicate, 409, "api.idempotency_in_flight")
    assert duplicate.headers["Retry-After"]
    assert await count_projects(api) == 0


async def test_keys_are_scoped_per_principal(api: Api) -> None:
    key = {"Idempotency-Key": "shared-key"}
    mine = await api.request("POST", PROJECTS, UNIT_A, json=new_project(name="单位的项目"), headers=key)
    theirs = await api.request("POST", PROJECTS, DISPATCHER, json=new_project(name="调度的项目"), headers=key)
    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers and mine.json()["id"] != theirs.json()["id"]


async def test_keys_are_forgotten_after_24_hours(api: Api, clock: FrozenClock) -> None:
    key = {"Idempotency-Key": "daily"}
    body = new_project(name="每日")
    first = await api.request("POST", PROJECTS, UNIT_A, json=body, headers=key)
    clock.advance(timedelta(hours=23))
    assert (await api.request("POST", PROJECTS, UNIT_A, json=body, headers=key)).json()["id"] == first.json()["id"]
    clock.advance(timedelta(hours=2))
    later = await api.request("POST", PROJECTS, UNIT_A, json=body, headers=key)
    assert later.status_code == 201 and "Idempotent-Replayed" not in later.headers
    assert later.json()["id"] != first.json()["id"]


async def test_refusals_are_replayed_but_answers_that_could_not_run_are_not_kept(api: Api) -> None:
    project = await api.create()
    path = f"{PROJECTS}/{project['id']}/transitions"
    fire = {"trigger": "start_permitting", "data": {"approval_no": "A-1"}}
    # 428: the request could not run; the key stays free for the corrected request.
    no_precondition = await api.request("POST", path, UNIT_A, json=fire, headers={"Idempotency-Key": "fire-1"})
    problem(no_precondition, 428, "api.if_match_required")
    headers = {"Idempotency-Key": "fire-1", "If-Match": 'W/"1"'}
    fired = await api.request("POST", path, UNIT_A, json=fire, headers=headers)
    assert fired.status_code == 200 and fired.json()["state"] == "permitting"
    replayed = await api.request("POST", path, UNIT_A, json=fire, headers=headers)
    assert replayed.status_code == 200 and replayed.headers["Idempotent-Replayed"] == "true"
    assert (await api.get(f"{PROJECTS}/{project['id']}")).json()["version"] == 2  # fired once

    # A refusal is the outcome of the act: replayed, not re-run.
    gate = {"Idempotency-Key": "fire-2", "If-Match": 'W/"2"'}
    refused = await api.request("POST", path, DISPATCHER, json={"trigger": "start_building"}, headers=gate)
    problem(refused, 409, "engine.gate_not_satisfied")
    again = await api.request("POST", path, DISPATCHER, json={"trigger": "start_building"}, headers=gate)
    assert again.status_code == 409 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == refused.json()


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, "naïve-ключ"])
async def test_malformed_keys_are_422(api: Api, key: str) -> None:
    headers = {"Idempotency-Key": key.encode("utf-8")}  # raw bytes: what a careless client may send
    response = await api.request("POST", PROJECTS, UNIT_A, json=new_project(), headers=headers)
    body = problem(response, 422, "api.idempotency_key_invalid")
    assert body["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await count_projects(api) == 0


async def test_keys_without_a_token_are_401(api: Api) -> None:
    response = await api.client.post(PROJECTS, json=new_project(), headers={"Idempotency-Key": "anonymous"})
    problem(response, 401, "api.unauthorized")


async def test_huge_bodies_with_a_key_are_413(api: Api) -> None:
    body = new_project(name="大", fields={"investment": "1" * (2 * 1024 * 1024)})
    response = await api.request("POST", PROJECTS, UNIT_A, json=body, headers={"Idempotency-Key": "big"})
    problem(response, 413, "api.payload_too_large")


async def test_the_answer_is_stored_before_its_last_part_is_sent(app: FastAPI, api: Api) -> None:
    # A client that has the whole answer and retries at once must get the replay, not a 409.
    services = app.state.runtime.services
    raw = json.dumps(new_project(name="先存后答")).encode()
    headers = {**(await api.auth(UNIT_A)), "Idempotency-Key": "stored-first", "Content-Type": "application/json"}
    fingerprint = request_hash("POST", PROJECTS, b"", None, raw)
    seen: list[tuple[str, int | None]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            record = await services.idempotency_begin(UNIT_A.id, "stored-first", fingerprint)
            seen.append((record.state, record.status) if record else ("claimable", None))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PROJECTS,
        "raw_path": PROJECTS.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    assert seen == [("completed", 201)]
