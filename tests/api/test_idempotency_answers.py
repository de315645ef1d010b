"""``Idempotency-Key`` on ``POST /api/v1/projects/{id}/transitions``: the answer is stored in the transition's
own transaction (:mod:`lifecycle.services.answers`), exactly as it was sent, and replayed byte for byte; the
middleware stores nothing more for it. Refusals (409, 412…) are still stored by the middleware and replayed;
a duplicate in flight and a key reused for another request are still refused; without a key the endpoint
answers as before."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api.idempotency import request_hash
from lifecycle.services import Services
from lifecycle.services.hooks import Change
from lifecycle.store.idempotency import IdempotencyEntry, IdempotencyRepository
from lifecycle.store.models import idempotency_records
from lifecycle.store.projects import ProjectRepository

from .conftest import DISPATCHER, UNIT_A, UNIT_B, Api, problem

pytestmark = pytest.mark.anyio

PROJECTS = "/api/v1/projects"
START = {"trigger": "start_permitting", "data": {"approval_no": "巫发改〔2026〕1号"}, "comment": None}


def transitions(project_id: str) -> str:
    return f"{PROJECTS}/{project_id}/transitions"


async def fire(
    api: Api, project_id: str, body: dict[str, Any], if_match: str | None, key: str | None, by: Any = UNIT_A
) -> httpx.Response:
    """POST a transition with exactly ``body`` (serialised once, so a retry sends the same bytes)."""
    headers = {"Content-Type": "application/json"}
    if if_match is not None:
        headers["If-Match"] = if_match
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.request("POST", transitions(project_id), by, content=json.dumps(body), headers=headers)


async def stored(services: Services, principal_id: str, key: str) -> IdempotencyEntry | None:
    async with services.database.autocommit() as connection:
        return await IdempotencyRepository(connection).get(principal_id, key)


async def record_count(services: Services) -> int:
    async with services.database.reader() as session:
        return int((await session.execute(select(func.count()).select_from(idempotency_records))).scalar_one())


async def events_of(api: Api, project_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"{PROJECTS}/{project_id}/history", params={"limit": 200})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def transitions_fired(api: Api, project_id: str) -> list[tuple[str, str]]:
    return [
        (e["trigger"], e["to_state"]) for e in await events_of(api, project_id) if e["kind"] == "project.transition"
    ]


class Settlements:
    """Records the middleware's own completions and releases (and lets them fail, as a dying process would
    never run them), delegating to the real services otherwise."""

    def __init__(self, services: Services, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
        self.completed: list[tuple[str, int]] = []
        self.released: list[str] = []
        complete, release = services.idempotency_complete, services.idempotency_release
        record = services.idempotency_record

        async def completing(
            principal_id: str, key: str, status: int, headers: Sequence[tuple[str, str]], body: bytes
        ) -> bool:
            self.completed.append((key, status))
            if fail:
                raise ConnectionError("the process died before completing the record")
            return await complete(principal_id, key, status, headers, body)

        async def releasing(principal_id: str, key: str) -> bool:
            self.released.append(key)
            if fail:
                raise ConnectionError("the process died before releasing the record")
            return await release(principal_id, key)

        async def recording(
            principal_id: str, key: str, request_hash: str, answer: tuple[int, Sequence[tuple[str, str]], bytes]
        ) -> IdempotencyEntry | None:
            # On PostgreSQL the transition claims its key in its own transaction: a refusal's answer is then
            # stored by the middleware as claim and completion in one.
            self.completed.append((key, answer[0]))
            if fail:
                raise ConnectionError("the process died before storing the record")
            return await record(principal_id, key, request_hash, answer)

        monkeypatch.setattr(services, "idempotency_record", recording)
        monkeypatch.setattr(services, "idempotency_complete", completing)
        monkeypatch.setattr(services, "idempotency_release", releasing)


# --- the answer stored with the change ----------------------------------------------------------------------


async def test_the_stored_record_is_exactly_the_answer_that_was_sent(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await api.create()
    settlements = Settlements(services, monkeypatch)
    first = await fire(api, project["id"], START, 'W/"1"', "fire-0001")
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert first.headers["ETag"] == 'W/"2"' and first.headers["Content-Type"] == "application/json"
    assert first.json()["state"] == "permitting" and first.json()["version"] == 2

    record = await stored(services, UNIT_A.id, "fire-0001")
    assert record is not None and record.state == "completed"
    assert record.status == 200
    assert record.headers == (("content-type", first.headers["Content-Type"]), ("etag", first.headers["ETag"]))
    assert record.body == first.content
    # Stored by the transition's own transaction: the middleware neither completed nor released anything.
    assert settlements.completed == [] and settlements.released == []


async def test_a_retry_gets_the_same_bytes_and_etag_and_the_transition_fires_once(api: Api) -> None:
    project = await api.create()
    pid = project["id"]
    first = await fire(api, pid, START, 'W/"1"', "fire-0002")
    assert first.status_code == 200, first.text

    again = await fire(api, pid, START, 'W/"1"', "fire-0002")
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again.headers["ETag"] == first.headers["ETag"] == 'W/"2"'
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]
    assert (await api.get(f"{PROJECTS}/{pid}")).json()["version"] == 2

    # The project moves on; a late retry still gets the answer of its own request, not today's project.
    held = await fire(api, pid, {"trigger": "hold", "data": {}, "comment": None}, 'W/"2"', None, by=DISPATCHER)
    assert held.status_code == 200 and held.headers["ETag"] != first.headers["ETag"]
    late = await fire(api, pid, START, 'W/"1"', "fire-0002")
    assert late.status_code == 200 and late.headers["Idempotent-Replayed"] == "true"
    assert late.content == first.content and late.headers["ETag"] == 'W/"2"'
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting"), ("hold", "on_hold")]


async def test_the_answer_is_replayable_even_if_the_middleware_never_completes_it(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever the middleware would do after the route (complete or release the record) fails, as it would in a
    # process that died right after the transition's commit: the retry still gets the answer, not a 409.
    project = await api.create()
    settlements = Settlements(services, monkeypatch, fail=True)
    first = await fire(api, project["id"], START, 'W/"1"', "fire-0003")
    assert first.status_code == 200, first.text
    assert settlements.completed == [] and settlements.released == []
    again = await fire(api, project["id"], START, 'W/"1"', "fire-0003")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content and again.headers["ETag"] == first.headers["ETag"]
    assert await transitions_fired(api, project["id"]) == [("start_permitting", "permitting")]


async def test_the_stored_body_is_the_project_as_the_transition_left_it(api: Api) -> None:
    project = await api.create()
    first = await fire(api, project["id"], START, 'W/"1"', "fire-0004")
    assert first.status_code == 200, first.text
    read = await api.get(f"{PROJECTS}/{project['id']}")
    assert first.json() == read.json()
    assert first.headers["ETag"] == read.headers["ETag"]


# --- refusals are stored by the middleware, as before ------------------------------------------------------


async def test_a_gate_refusal_with_a_key_is_stored_by_the_middleware_and_replayed(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await api.into_permitting()
    pid = project["id"]
    settlements = Settlements(services, monkeypatch)
    body: dict[str, Any] = {"trigger": "start_building", "data": {}, "comment": None}
    refused = await fire(api, pid, body, 'W/"2"', "build-1", by=DISPATCHER)
    problem(refused, 409, "engine.gate_not_satisfied")
    assert settlements.completed == [("build-1", 409)]

    record = await stored(services, DISPATCHER.id, "build-1")
    assert record is not None and record.state == "completed" and record.status == 409
    assert record.body == refused.content
    assert dict(record.headers or ())["content-type"] == refused.headers["Content-Type"]

    again = await fire(api, pid, body, 'W/"2"', "build-1", by=DISPATCHER)
    assert again.status_code == 409 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == refused.content
    assert settlements.completed == [("build-1", 409)]  # the replay ran nothing
    after = (await api.get(f"{PROJECTS}/{pid}")).json()
    assert (after["state"], after["version"]) == ("permitting", 2)


async def test_an_invalid_transition_with_a_key_is_409_and_replayed(api: Api, services: Services) -> None:
    project = await api.create()
    body: dict[str, Any] = {"trigger": "finish", "data": {}, "comment": None}
    refused = await fire(api, project["id"], body, 'W/"1"', "finish-1", by=DISPATCHER)
    problem(refused, 409, "engine.invalid_transition")
    again = await fire(api, project["id"], body, 'W/"1"', "finish-1", by=DISPATCHER)
    assert again.status_code == 409 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == refused.content
    record = await stored(services, DISPATCHER.id, "finish-1")
    assert record is not None and (record.state, record.status) == ("completed", 409)
    assert await transitions_fired(api, project["id"]) == []


async def test_a_stale_if_match_with_a_key_is_412_and_replayed(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await api.into_permitting()  # version 2
    pid = project["id"]
    settlements = Settlements(services, monkeypatch)
    hold: dict[str, Any] = {"trigger": "hold", "data": {}, "comment": None}
    stale = await fire(api, pid, hold, 'W/"1"', "hold-1", by=DISPATCHER)
    body = problem(stale, 412, "stale_version")
    assert body["current_etag"] == 'W/"2"' and stale.headers["ETag"] == 'W/"2"'
    assert settlements.completed == [("hold-1", 412)]
    record = await stored(services, DISPATCHER.id, "hold-1")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 412, stale.content)
    assert ("etag", 'W/"2"') in (record.headers or ())

    # Even once the project has moved on, the retry gets the first answer, with its ETag.
    assert (await fire(api, pid, hold, 'W/"2"', None, by=DISPATCHER)).status_code == 200
    again = await fire(api, pid, hold, 'W/"1"', "hold-1", by=DISPATCHER)
    assert again.status_code == 412 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == stale.content and again.headers["ETag"] == 'W/"2"'
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting"), ("hold", "on_hold")]


async def test_a_refusal_then_a_new_key_fires(api: Api, services: Services) -> None:
    # The refusal is the outcome of its key's request; a corrected request under a new key runs.
    project = await api.create()
    pid = project["id"]
    wrong = await fire(api, pid, START, 'W/"7"', "try-1")
    problem(wrong, 412, "stale_version")
    right = await fire(api, pid, START, 'W/"1"', "try-2")
    assert right.status_code == 200 and "Idempotent-Replayed" not in right.headers
    first, second = await stored(services, UNIT_A.id, "try-1"), await stored(services, UNIT_A.id, "try-2")
    assert first is not None and second is not None
    assert (first.status, second.status, second.body) == (412, 200, right.content)


async def test_an_invisible_project_with_a_key_is_404_and_replayed(api: Api, services: Services) -> None:
    project = await api.create()
    refused = await fire(api, project["id"], START, 'W/"1"', "elsewhere", by=UNIT_B)
    problem(refused, 404, "not_found")
    again = await fire(api, project["id"], START, 'W/"1"', "elsewhere", by=UNIT_B)
    assert again.status_code == 404 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == refused.content
    assert await transitions_fired(api, project["id"]) == []


# --- in flight, reused keys -------------------------------------------------------------------------------


async def test_a_duplicate_of_a_transition_still_running_is_409(app: FastAPI, api: Api, services: Services) -> None:
    project = await api.create()
    pid = project["id"]
    raw = json.dumps(START).encode()
    await api.auth(UNIT_A)
    # Another worker claimed the key for this very request (same body, same If-Match) and has not answered.
    fingerprint = request_hash("POST", transitions(pid), b"", 'W/"1"', raw)
    assert await services.idempotency_begin(UNIT_A.id, "busy-1", fingerprint) is None
    duplicate = await fire(api, pid, START, 'W/"1"', "busy-1")
    problem(duplicate, 409, "api.idempotency_in_flight")
    assert duplicate.headers["Retry-After"]
    assert await transitions_fired(api, pid) == []
    record = await stored(services, UNIT_A.id, "busy-1")
    assert record is not None and record.state == "running" and record.status is None


async def lock_waits(services: Services, table: str) -> bool:
    """Whether a backend of the test database waits for a lock in a statement naming ``table`` (PostgreSQL)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND wait_event_type = 'Lock' AND query ILIKE :table"
    )
    async with services.database.autocommit() as connection:
        return int((await connection.execute(query, {"table": f"%{table}%"})).scalar_one()) > 0


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str, seconds: float = 10) -> None:
    """Poll ``condition`` until it holds; fail (saying ``what`` was awaited) after ``seconds``."""
    with anyio.move_on_after(seconds):
        while not await condition():
            await anyio.sleep(0.02)
        return
    pytest.fail(f"timed out waiting until {what}")


class Gate:
    """A change hook that holds a change inside its transaction (in its write) until released."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.release = anyio.Event()

    def derive(self, change: Change) -> None:
        pass

    async def write(self, session: AsyncSession, changes: Sequence[Change]) -> None:
        self.entered.set()
        with anyio.fail_after(20):  # never hang the suite
            await self.release.wait()


ONLY_POSTGRESQL = pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)], indirect=True
)
"""Concurrent requests: on SQLite a second writer waits for the first's write lock (the database's)."""


@ONLY_POSTGRESQL
async def test_a_duplicate_sent_while_the_transition_waits_for_its_lock_is_409(api: Api, services: Services) -> None:
    project = await api.create()
    pid = project["id"]
    answers: list[httpx.Response] = []

    async def first() -> None:
        answers.append(await fire(api, pid, START, 'W/"1"', "queued-1"))

    async with anyio.create_task_group() as group, services.database.transaction() as session:
        assert await ProjectRepository(session).lock(pid) is not None  # someone else is changing the project
        group.start_soon(first)
        await wait_until(lambda: lock_waits(services, "projects"), "the transition waits for the project's lock")
        duplicate = await fire(api, pid, START, 'W/"1"', "queued-1")
        problem(duplicate, 409, "api.idempotency_in_flight")
        # The first request holds the key by its transaction's advisory lock: no record until it commits.
        assert await stored(services, UNIT_A.id, "queued-1") is None
        # The lock is released as the block's transaction ends; the first request then fires.
    [original] = answers
    assert original.status_code == 200, original.text
    replay = await fire(api, pid, START, 'W/"1"', "queued-1")
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == original.content
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]


@ONLY_POSTGRESQL
async def test_a_duplicate_sent_while_the_transition_writes_is_409_not_held_up(api: Api, services: Services) -> None:
    # The documented contract (api/idempotency.py): while the first request runs, a duplicate gets 409 at once
    # and may retry later. The answer is now written inside the transition's transaction: the duplicate's claim
    # must not wait on that uncommitted write.
    project = await api.create()
    pid = project["id"]
    gate = Gate()
    services.hooks.append(gate)
    answers: dict[str, httpx.Response] = {}
    blocked = False
    try:
        async with anyio.create_task_group() as group:

            async def send(name: str) -> None:
                answers[name] = await fire(api, pid, START, 'W/"1"', "race-1")

            group.start_soon(send, "first")
            with anyio.fail_after(10):
                await gate.entered.wait()  # inside the transition's transaction, after its main writes
            group.start_soon(send, "duplicate")

            async def settled() -> bool:
                nonlocal blocked
                blocked = await lock_waits(services, "idempotency_records")
                return blocked or "duplicate" in answers

            await wait_until(settled, "the duplicate answered or waits for a lock")
            gate.release.set()
    finally:
        services.hooks.remove(gate)
    assert not blocked, (
        "the duplicate's claim waited for the transition's uncommitted write of the idempotency record "
        f"instead of answering 409 at once (it then answered {answers['duplicate'].status_code})"
    )
    problem(answers["duplicate"], 409, "api.idempotency_in_flight")
    assert answers["first"].status_code == 200, answers["first"].text
    replay = await fire(api, pid, START, 'W/"1"', "race-1")
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == answers["first"].content
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]


async def test_the_same_key_for_another_transition_request_is_422(api: Api, services: Services) -> None:
    project = await api.create()
    pid = project["id"]
    first = await fire(api, pid, START, 'W/"1"', "reuse-1")
    assert first.status_code == 200, first.text

    other_body = {**START, "comment": "不同的请求"}
    reused = await fire(api, pid, other_body, 'W/"1"', "reuse-1")
    problem(reused, 422, "api.idempotency_key_reused")
    other_tag = await fire(api, pid, START, 'W/"2"', "reuse-1")
    problem(other_tag, 422, "api.idempotency_key_reused")
    other_project = await api.create(name="另一个")
    elsewhere = await fire(api, other_project["id"], START, 'W/"1"', "reuse-1")
    problem(elsewhere, 422, "api.idempotency_key_reused")

    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]
    assert await transitions_fired(api, other_project["id"]) == []
    record = await stored(services, UNIT_A.id, "reuse-1")
    assert record is not None and record.body == first.content  # the refusals did not overwrite it


# --- without a key -----------------------------------------------------------------------------------------


async def test_without_a_key_the_answer_is_a_plain_200_with_its_etag(api: Api, services: Services) -> None:
    keyed, plain = await api.create(), await api.create(name="不带键的项目")
    with_key = await fire(api, keyed["id"], START, 'W/"1"', "shape-1")
    without = await fire(api, plain["id"], START, 'W/"1"', None)
    assert without.status_code == 200, without.text
    assert without.headers["ETag"] == 'W/"2"' and without.headers["Content-Type"] == "application/json"
    assert "Idempotent-Replayed" not in without.headers
    assert int(without.headers["Content-Length"]) == len(without.content)
    body = without.json()
    assert (body["id"], body["state"], body["version"]) == (plain["id"], "permitting", 2)
    # The same shape as with a key, and as the project reads afterwards.
    assert set(body) == set(with_key.json())
    assert body == (await api.get(f"{PROJECTS}/{plain['id']}")).json()
    assert await record_count(services) == 1  # only the keyed request's

    # And again: without a key nothing is replayed, the second request runs (and is refused: stale).
    twice = await fire(api, plain["id"], START, 'W/"1"', None)
    problem(twice, 412, "stale_version")
    assert await transitions_fired(api, plain["id"]) == [("start_permitting", "permitting")]
