"""``Idempotency-Key`` on ``POST /api/v1/projects``: the key is claimed up front (on both databases), and the
answer — 201, the project, its ETag and ``Location`` — is stored in the creation's own transaction, so a
process dying after the commit leaves a replayable answer, never a key stuck "running" that would, once
expired, let a retry create the project a second time. Refusals are still stored by the middleware."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from lifecycle.services import Services

from .conftest import UNIT_A, UNIT_B, Api, new_project, problem
from .test_idempotency_answers import Settlements, stored

pytestmark = pytest.mark.anyio

PROJECTS = "/api/v1/projects"


async def create(api: Api, body: dict[str, Any], key: str, by: Any = UNIT_A) -> httpx.Response:
    """POST a new project with exactly ``body`` (serialised once, so a retry sends the same bytes)."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    return await api.request("POST", PROJECTS, by, content=json.dumps(body), headers=headers)


async def names(api: Api) -> list[str]:
    return [p["name"] for p in (await api.get(PROJECTS, params={"limit": 200})).json()["items"]]


async def test_the_creation_stores_exactly_the_answer_it_sends_in_its_own_transaction(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    settlements = Settlements(services, monkeypatch)
    first = await create(api, new_project(name="甲"), "create-1")
    assert first.status_code == 201, first.text
    location = first.headers["Location"]
    assert location == f"{PROJECTS}/{first.json()['id']}" and first.headers["ETag"] == 'W/"1"'
    record = await stored(services, UNIT_A.id, "create-1")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 201, first.content)
    assert dict(record.headers or ()) == {
        "content-type": first.headers["Content-Type"],
        "etag": 'W/"1"',
        "location": location,
    }
    # Stored by the creation's transaction: the middleware neither completed nor released anything.
    assert settlements.completed == [] and settlements.released == []
    # The answer is the project as a read of it answers.
    read = await api.get(location)
    assert read.content == first.content and read.headers["ETag"] == first.headers["ETag"]


async def test_a_retry_after_the_middleware_died_replays_and_creates_nothing_more(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever the middleware would do after the route fails, as in a process that died right after the commit.
    settlements = Settlements(services, monkeypatch, fail=True)
    body = new_project(name="乙")
    first = await create(api, body, "create-2")
    assert first.status_code == 201, first.text
    assert settlements.completed == [] and settlements.released == []
    again = await create(api, body, "create-2")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert (again.headers["Location"], again.headers["ETag"]) == (first.headers["Location"], first.headers["ETag"])
    assert await names(api) == ["乙"]


async def test_a_refused_creation_is_stored_by_the_middleware_and_replayed(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    settlements = Settlements(services, monkeypatch)
    # unit_b may not create a project led by unit_a: 403, the outcome of the request, stored and replayed.
    refused = await create(api, new_project(name="丙"), "create-3", by=UNIT_B)
    problem(refused, 403, "forbidden")
    assert [status for key, status in settlements.completed if key == "create-3"] == [403]
    record = await stored(services, UNIT_B.id, "create-3")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 403, refused.content)
    again = await create(api, new_project(name="丙"), "create-3", by=UNIT_B)
    assert again.status_code == 403 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == refused.content
    assert await names(api) == []


async def test_a_creation_that_fails_in_its_transaction_stores_no_answer_and_a_retry_creates_once(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The project code is taken by the time the creation writes: its transaction fails (422), and the answer it
    # would have stored with the project is gone with it; the middleware stores the refusal instead.
    taken = await create(api, new_project(name="丁", code="2026-500237-04-01-000001"), "create-4")
    assert taken.status_code == 201, taken.text
    clash = await create(api, new_project(name="戊", code="2026-500237-04-01-000001"), "create-5")
    problem(clash, 422, "input.invalid")
    record = await stored(services, UNIT_A.id, "create-5")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 422, clash.content)
    assert await names(api) == ["丁"]
