"""``Idempotency-Key`` on the item and notice triggers, ``POST …/tasks/{task_id}/transitions`` and
``POST …/notices/{notice_id}/transitions``: as for a project trigger (``test_idempotency_answers.py``,
``test_idempotency_claimed_in_change.py``), the answer (:func:`api.schemas.tasks.item_answer`: 200, the item or
notice as JSON, its ETag) is stored in the change's own transaction, exactly as sent, and replayed byte for
byte; the middleware stores nothing more for it. On PostgreSQL the change also claims the key itself (the key's
advisory lock taken by the statement that locks the project, the completed record inserted with the change's
writes); on SQLite the key is claimed up front and the answer stored on its running record, in the change's
transaction. Refusals are stored by the middleware and replayed; a change that fails stores nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import anyio
import httpx
import pytest
from sqlalchemy import text

from api.idempotency import request_hash
from lifecycle.services import Principal, Services
from lifecycle.store.idempotency import claim_lock_key

from .conftest import HOUSING, PLANNING, PLANNING_PERMIT, UNIT_A, Api, problem
from .test_idempotency_answers import (
    ONLY_POSTGRESQL,
    PROJECTS,
    Gate,
    Settlements,
    events_of,
    record_count,
    stored,
)
from .test_idempotency_claimed_in_change import (
    Failing,
    advisory_lock_holders,
    exchanges,
    names_records,
    the_transaction,
)

pytestmark = pytest.mark.anyio

KINDS = ["item", "notice"]

SUBMIT: dict[str, Any] = {"trigger": "submit", "data": {}, "comment": None}
READ: dict[str, Any] = {"trigger": "read", "comment": None}


@dataclass(frozen=True)
class Subject:
    """An item or a notice of a new project, and the keyed trigger the tests fire on it (at version 1)."""

    kind: str
    project_id: str
    id: str
    path: str
    """Where the item or notice reads (GET), its ETag included."""
    body: dict[str, Any]
    by: Principal
    to_state: str
    event_kind: str

    @property
    def transitions(self) -> str:
        return f"{self.path}/transitions"


async def subject_of(api: Api, kind: str, **overrides: Any) -> Subject:
    """A project in permitting with its planning permit pending (``item``: submit it), or with a notice issued
    on its planning permit (``notice``: read it)."""
    if kind == "item":
        project = await api.into_permitting(**overrides)
        pid = project["id"]
        path = f"{PROJECTS}/{pid}/tasks/{PLANNING_PERMIT}"
        return Subject(kind, pid, PLANNING_PERMIT, path, SUBMIT, UNIT_A, "submitted", "task.transition")
    project, notice_id = await api.with_notice(**overrides)
    pid = project["id"]
    path = f"{PROJECTS}/{pid}/notices/{quote(notice_id, safe='')}"
    return Subject(kind, pid, notice_id, path, READ, UNIT_A, "read", "notice.transition")


async def trigger(
    api: Api,
    subject: Subject,
    if_match: str | None,
    key: str | None,
    body: dict[str, Any] | None = None,
    by: Principal | None = None,
) -> httpx.Response:
    """POST a trigger of ``subject`` with exactly ``body`` (its own trigger by default), serialised once, so that
    a retry sends the same bytes."""
    headers = {"Content-Type": "application/json"}
    if if_match is not None:
        headers["If-Match"] = if_match
    if key is not None:
        headers["Idempotency-Key"] = key
    content = json.dumps(subject.body if body is None else body)
    return await api.request("POST", subject.transitions, by or subject.by, content=content, headers=headers)


def fingerprint(subject: Subject, if_match: str | None, body: dict[str, Any] | None = None) -> str:
    """The request hash :func:`trigger` sends (the path as the server sees it: percent-decoded)."""
    raw = json.dumps(subject.body if body is None else body).encode()
    return request_hash("POST", unquote(subject.transitions), b"", if_match, raw)


async def read(api: Api, subject: Subject) -> httpx.Response:
    response = await api.get(subject.path)
    assert response.status_code == 200, response.text
    return response


async def fired(api: Api, subject: Subject) -> list[tuple[str, str]]:
    """The triggers fired on ``subject``, oldest first, by the project's history: (trigger, to_state)."""
    return [
        (e["trigger"], e["to_state"])
        for e in await events_of(api, subject.project_id)
        if e["kind"] == subject.event_kind and e["subject_id"] == subject.id
    ]


async def move_on(api: Api, subject: Subject) -> tuple[str, str]:
    """Move the item or notice on past the keyed trigger's answer (no key); the (trigger, to_state) fired."""
    if subject.kind == "item":
        moved = await api.fire_task(subject.project_id, subject.id, "accept", PLANNING)
        expected = ("accept", "accepted")
    else:
        moved = await api.fire_notice(subject.project_id, subject.id, "supply", UNIT_A)
        expected = ("supply", "cured")
    assert moved.status_code == 200, moved.text
    assert moved.json()["state"] == expected[1]
    return expected


# --- the answer stored with the change -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_keyed_trigger_answers_what_the_item_then_reads_and_stores_exactly_that(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    subject = await subject_of(api, kind)
    settlements = Settlements(services, monkeypatch)
    first = await trigger(api, subject, 'W/"1"', "answer-1")
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert first.headers["ETag"] == 'W/"2"' and first.headers["Content-Type"] == "application/json"
    assert int(first.headers["Content-Length"]) == len(first.content)
    answered = first.json()
    assert (answered["id"], answered["state"], answered["version"]) == (subject.id, subject.to_state, 2)

    # The answer is the item (notice) as the change left it: what reading it gives, to the byte, and its ETag.
    after = await read(api, subject)
    assert first.content == after.content
    assert first.headers["ETag"] == after.headers["ETag"]

    record = await stored(services, subject.by.id, "answer-1")
    assert record is not None and record.state == "completed"
    assert record.status == 200
    assert record.headers == (("content-type", first.headers["Content-Type"]), ("etag", first.headers["ETag"]))
    assert record.body == first.content
    assert record.request_hash == fingerprint(subject, 'W/"1"')
    assert await record_count(services) == 1
    # Stored by the change's own transaction: the middleware stored, completed and released nothing.
    assert settlements.completed == [] and settlements.released == []


@pytest.mark.parametrize("kind", KINDS)
async def test_a_retry_replays_the_answer_byte_for_byte_and_the_trigger_fires_once(
    api: Api, services: Services, kind: str
) -> None:
    subject = await subject_of(api, kind)
    first = await trigger(api, subject, 'W/"1"', "retry-1")
    assert first.status_code == 200, first.text

    again = await trigger(api, subject, 'W/"1"', "retry-1")
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again.headers["ETag"] == first.headers["ETag"] == 'W/"2"'
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert await fired(api, subject) == [(subject.body["trigger"], subject.to_state)]
    assert (await read(api, subject)).headers["ETag"] == 'W/"2"'

    # The item moves on; a late retry still gets the answer of its own request, not the item as it is today.
    moved = await move_on(api, subject)
    assert (await read(api, subject)).headers["ETag"] == 'W/"3"'
    late = await trigger(api, subject, 'W/"1"', "retry-1")
    assert late.status_code == 200 and late.headers["Idempotent-Replayed"] == "true"
    assert late.content == first.content and late.headers["ETag"] == 'W/"2"'
    # The key, used for that request, is refused for another (here: the item's current ETag).
    problem(await trigger(api, subject, 'W/"3"', "retry-1"), 422, "api.idempotency_key_reused")
    assert await fired(api, subject) == [(subject.body["trigger"], subject.to_state), moved]
    record = await stored(services, subject.by.id, "retry-1")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 200, first.content)


@pytest.mark.parametrize("kind", KINDS)
async def test_the_answer_is_replayed_even_if_the_middleware_dies_after_the_commit(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # Whatever the middleware would store or release after the route fails, as in a process that died right
    # after the change's commit: the answer committed with the change, and a retry gets it, not a 409.
    subject = await subject_of(api, kind)
    settlements = Settlements(services, monkeypatch, fail=True)
    first = await trigger(api, subject, 'W/"1"', "dies-1")
    assert first.status_code == 200, first.text
    assert settlements.completed == [] and settlements.released == []

    again = await trigger(api, subject, 'W/"1"', "dies-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content and again.headers["ETag"] == first.headers["ETag"]
    assert settlements.completed == [] and settlements.released == []
    assert await fired(api, subject) == [(subject.body["trigger"], subject.to_state)]
    record = await stored(services, subject.by.id, "dies-1")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 200, first.content)


@pytest.mark.parametrize("kind", KINDS)
async def test_without_a_key_the_answer_is_the_same_shape_and_nothing_is_stored(
    api: Api, services: Services, kind: str
) -> None:
    keyed, plain = await subject_of(api, kind), await subject_of(api, kind, name="不带键的项目")
    with_key = await trigger(api, keyed, 'W/"1"', "shape-1")
    assert with_key.status_code == 200, with_key.text
    without = await trigger(api, plain, 'W/"1"', None)
    assert without.status_code == 200, without.text
    assert without.headers["ETag"] == 'W/"2"' and without.headers["Content-Type"] == "application/json"
    assert "Idempotent-Replayed" not in without.headers
    assert without.content == (await read(api, plain)).content
    assert set(without.json()) == set(with_key.json())
    assert await record_count(services) == 1  # only the keyed request's
    # Without a key nothing is replayed: the same request runs again, and is refused (stale).
    problem(await trigger(api, plain, 'W/"1"', None), 412, "stale_version")
    assert await fired(api, plain) == [(plain.body["trigger"], plain.to_state)]


# --- refusals are stored by the middleware and replayed ------------------------------------------------------


REFUSALS = ["stale", "not-allowed", "other-department"]


@pytest.mark.parametrize("refusal", REFUSALS)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_refusal_with_a_key_is_stored_and_replayed_byte_for_byte_and_changes_nothing(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch, kind: str, refusal: str
) -> None:
    subject = await subject_of(api, kind)
    body, by, if_match = subject.body, subject.by, 'W/"1"'
    if refusal == "stale":
        if_match, status, code = 'W/"7"', 412, "stale_version"
    elif refusal == "not-allowed":
        status, code = 409, "engine.invalid_transition"
        if kind == "item":  # approve a pending item
            body, by = {"trigger": "approve", "data": {}, "comment": None}, PLANNING
        else:  # read a notice already read
            assert (await api.fire_notice(subject.project_id, subject.id, "read", UNIT_A)).status_code == 200
            if_match = 'W/"2"'
    else:  # the housing bureau sees the project (it has an item there), not the planning bureau's item
        status, code = 403, "forbidden"
        by = HOUSING
        if kind == "item":
            body = {"trigger": "accept", "data": {}, "comment": None}
    before = await read(api, subject)
    fired_before = await fired(api, subject)
    await api.auth(by)  # its token stored before the spy starts
    settlements = Settlements(services, monkeypatch)

    refused = await trigger(api, subject, if_match, "refused-1", body=body, by=by)
    problem(refused, status, code)
    assert "Idempotent-Replayed" not in refused.headers
    if refusal == "stale":
        assert refused.headers["ETag"] == before.headers["ETag"]
    assert settlements.completed == [("refused-1", status)] and settlements.released == []
    record = await stored(services, by.id, "refused-1")
    assert record is not None and (record.state, record.status) == ("completed", status)
    assert record.body == refused.content
    assert record.request_hash == fingerprint(subject, if_match, body)
    headers = dict(record.headers or ())
    assert headers["content-type"] == refused.headers["Content-Type"]
    assert headers.get("etag") == refused.headers.get("ETag")

    again = await trigger(api, subject, if_match, "refused-1", body=body, by=by)
    assert again.status_code == status and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == refused.content
    assert again.headers["Content-Type"] == refused.headers["Content-Type"]
    assert again.headers.get("ETag") == refused.headers.get("ETag")
    assert settlements.completed == [("refused-1", status)]  # the replay ran nothing
    after = await read(api, subject)
    assert (after.content, after.headers["ETag"]) == (before.content, before.headers["ETag"])
    assert await fired(api, subject) == fired_before


# --- the key claimed by the change's transaction (PostgreSQL) -------------------------------------------------


@ONLY_POSTGRESQL
@pytest.mark.parametrize("kind", KINDS)
async def test_a_request_whose_key_another_transaction_holds_is_409_at_once_and_fires_once_it_is_free(
    api: Api, services: Services, kind: str
) -> None:
    subject = await subject_of(api, kind)
    before = await read(api, subject)
    lock_key = claim_lock_key(subject.by.id, "held-1")
    async with services.database.engine.connect() as other:
        await other.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key})
        assert await advisory_lock_holders(services, lock_key) == 1
        with anyio.fail_after(5):  # the lock is tried, never waited for
            duplicate = await trigger(api, subject, 'W/"1"', "held-1")
        problem(duplicate, 409, "api.idempotency_in_flight")
        assert duplicate.headers["Retry-After"] == "1"
        assert "Idempotent-Replayed" not in duplicate.headers
        assert await stored(services, subject.by.id, "held-1") is None
        assert await record_count(services) == 0
        assert await fired(api, subject) == []
        assert (await read(api, subject)).content == before.content
        await other.rollback()
    assert await advisory_lock_holders(services, lock_key) == 0

    first = await trigger(api, subject, 'W/"1"', "held-1")
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert first.headers["ETag"] == 'W/"2"'
    record = await stored(services, subject.by.id, "held-1")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 200, first.content)
    assert record.request_hash == fingerprint(subject, 'W/"1"')
    assert await fired(api, subject) == [(subject.body["trigger"], subject.to_state)]


@ONLY_POSTGRESQL
@pytest.mark.parametrize("kind", KINDS)
async def test_while_the_trigger_runs_its_key_has_no_record_and_a_duplicate_is_409_at_once(
    api: Api, services: Services, kind: str
) -> None:
    subject = await subject_of(api, kind)
    lock_key = claim_lock_key(subject.by.id, "gated-1")
    gate = Gate()
    services.hooks.append(gate)
    answers: dict[str, httpx.Response] = {}
    try:
        async with anyio.create_task_group() as group:

            async def first() -> None:
                answers["first"] = await trigger(api, subject, 'W/"1"', "gated-1")

            group.start_soon(first)
            try:
                with anyio.fail_after(10):
                    await gate.entered.wait()  # inside the change's transaction: its writes sent, not committed
                assert await stored(services, subject.by.id, "gated-1") is None
                assert await advisory_lock_holders(services, lock_key) == 1
                with anyio.fail_after(5):
                    answers["duplicate"] = await trigger(api, subject, 'W/"1"', "gated-1")
            finally:
                gate.release.set()
    finally:
        services.hooks.remove(gate)
    problem(answers["duplicate"], 409, "api.idempotency_in_flight")
    original = answers["first"]
    assert original.status_code == 200, original.text
    assert await advisory_lock_holders(services, lock_key) == 0
    replay = await trigger(api, subject, 'W/"1"', "gated-1")
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == original.content and replay.headers["ETag"] == original.headers["ETag"]
    assert await fired(api, subject) == [(subject.body["trigger"], subject.to_state)]


@ONLY_POSTGRESQL
@pytest.mark.parametrize("kind", KINDS)
async def test_a_keyed_trigger_costs_no_statement_for_its_key(api: Api, services: Services, kind: str) -> None:
    keyed, plain = await subject_of(api, kind), await subject_of(api, kind, name="不带键的项目")
    await api.get(keyed.path, by=keyed.by)  # the caller's token looked up (and cached) first
    async with exchanges(services) as log:
        answered = await trigger(api, keyed, 'W/"1"', "count-1")
    assert answered.status_code == 200, answered.text
    transaction, outside = the_transaction(log)
    async with exchanges(services) as log:
        unkeyed = await trigger(api, plain, 'W/"1"', None)
    assert unkeyed.status_code == 200, unkeyed.text
    plain_transaction, plain_outside = the_transaction(log)

    # Nothing outside the change's transaction reads or writes the key's record.
    assert not [s for s in outside if names_records(s)], outside
    assert (transaction[0], transaction[-1]) == ("BEGIN", "COMMIT"), transaction
    # The lock takes the key's advisory lock and reads its record, in the same statement.
    lock = transaction[1]
    assert lock.startswith("SELECT projects.id") and lock.endswith("FOR UPDATE OF projects"), lock
    assert "pg_try_advisory_xact_lock(" in lock and "FROM idempotency_records" in lock, lock
    # The completed record rides with the change's writes, in a statement of theirs.
    inserts = [s for s in transaction if "INSERT INTO idempotency_records" in s]
    assert len(inserts) == 1, transaction
    assert inserts[0].startswith("WITH ") and "INSERT INTO events" in inserts[0], inserts
    assert [s for s in transaction if names_records(s)] == [lock, inserts[0]], transaction
    # Without a key, as many statements in the change's transaction, and as many outside it.
    assert not [s for s in plain_transaction + plain_outside if names_records(s)], plain_transaction
    assert len(transaction) == len(plain_transaction), (transaction, plain_transaction)
    assert len(outside) == len(plain_outside), (outside, plain_outside)
    record = await stored(services, keyed.by.id, "count-1")
    assert record is not None and (record.state, record.body) == ("completed", answered.content)


# --- a change that fails stores nothing ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["python", "database"])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_trigger_that_fails_inside_its_change_stores_nothing_and_a_retry_fires_once(
    api: Api, services: Services, kind: str, how: str
) -> None:
    subject = await subject_of(api, kind)
    before = await read(api, subject)
    failing = Failing(how)
    services.hooks.append(failing)
    try:
        crashed = await trigger(api, subject, 'W/"1"', "crash-1")
    finally:
        services.hooks.remove(failing)
    assert failing.writes == 1
    problem(crashed, 500, "api.internal_error")
    assert "Idempotent-Replayed" not in crashed.headers
    assert await stored(services, subject.by.id, "crash-1") is None
    assert await record_count(services) == 0
    assert await fired(api, subject) == []
    assert (await read(api, subject)).content == before.content
    if services.database.dialect == "postgresql":
        assert await advisory_lock_holders(services, claim_lock_key(subject.by.id, "crash-1")) == 0

    retry = await trigger(api, subject, 'W/"1"', "crash-1")
    assert retry.status_code == 200, retry.text
    assert "Idempotent-Replayed" not in retry.headers
    assert retry.content == (await read(api, subject)).content
    record = await stored(services, subject.by.id, "crash-1")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 200, retry.content)
    again = await trigger(api, subject, 'W/"1"', "crash-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == retry.content
    assert await fired(api, subject) == [(subject.body["trigger"], subject.to_state)]
