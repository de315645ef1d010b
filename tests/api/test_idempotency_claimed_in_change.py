"""``Idempotency-Key`` on ``POST /api/v1/projects/{id}/transitions`` claimed by the transition's own transaction
(PostgreSQL; :mod:`lifecycle.services.answers`, :meth:`api.idempotency.IdempotencyMiddleware._run_claiming`).

Nothing is claimed up front: the statement that locks the project takes the key's transaction-level advisory
lock (:func:`~lifecycle.store.idempotency.claim_lock_key`, tried without waiting) and reads the key's record;
the completed record is inserted with the change's writes. So while the change runs there is no record of the
key, a duplicate is refused at once by the advisory lock, a record stored meanwhile (an up-front claim for
another route) rolls the change back, an expired record is taken over, and a change that fails leaves nothing.
Refusals are stored by the middleware, claim and completion in one statement
(:meth:`lifecycle.services.Services.idempotency_record`). What must hold on SQLite too (where the key is still
claimed up front) runs on both databases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from api.idempotency import request_hash
from lifecycle.services import Services
from lifecycle.services.hooks import Change
from lifecycle.store.idempotency import IdempotencyRepository, claim_lock_key
from lifecycle.store.models import idempotency_records
from lifecycle.store.projects import ProjectRepository

from .conftest import DISPATCHER, UNIT_A, UNIT_B, Api, problem
from .test_idempotency_answers import (
    ONLY_POSTGRESQL,
    PROJECTS,
    START,
    Gate,
    fire,
    lock_waits,
    record_count,
    stored,
    transitions,
    transitions_fired,
    wait_until,
)

pytestmark = pytest.mark.anyio

HOLD: dict[str, Any] = {"trigger": "hold", "data": {}, "comment": None}
BUILD: dict[str, Any] = {"trigger": "start_building", "data": {}, "comment": None}


def fingerprint(project_id: str, if_match: str | None, body: dict[str, Any]) -> str:
    """The request hash :func:`fire` sends for ``body`` (serialised as it serialises it)."""
    return request_hash("POST", transitions(project_id), b"", if_match, json.dumps(body).encode())


async def project_state(api: Api, project_id: str) -> tuple[str, int]:
    read = await api.get(f"{PROJECTS}/{project_id}")
    assert read.status_code == 200, read.text
    return read.json()["state"], read.json()["version"]


async def advisory_lock_holders(services: Services, lock_key: int) -> int:
    """How many backends hold the (bigint) advisory lock ``lock_key``: pg_locks shows its high and low 32 bits
    as ``classid`` and ``objid`` (``objsubid`` 1 for a single-bigint key)."""
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
    )
    unsigned = lock_key & 0xFFFF_FFFF_FFFF_FFFF
    async with services.database.autocommit() as connection:
        params = {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF}
        return int((await connection.execute(query, params)).scalar_one())


@dataclass
class KeyCalls:
    """Which of the services' idempotency statements the middleware called, by name, in order."""

    calls: list[str] = field(default_factory=list)

    @classmethod
    def spying(cls, services: Services, monkeypatch: pytest.MonkeyPatch) -> KeyCalls:
        spy = cls()
        for name in (
            "idempotency_begin",
            "idempotency_record",
            "idempotency_complete",
            "idempotency_release",
            "idempotency_live",
        ):
            real = getattr(services, name)

            def calling(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                spy.calls.append(_name)
                return _real(*args, **kwargs)

            monkeypatch.setattr(services, name, calling)
        return spy


class Failing:
    """A change hook whose write fails: in Python, or in the database (a statement on a table that is not)."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.writes = 0

    def derive(self, change: Change) -> None:
        pass

    async def write(self, session: AsyncSession, changes: Sequence[Change]) -> None:
        self.writes += 1
        if self.how == "python":
            raise RuntimeError("the hook's write failed")
        await session.execute(text("SELECT * FROM no_such_table"))


# --- the advisory lock is the claim ---------------------------------------------------------------------------


@ONLY_POSTGRESQL
async def test_a_request_whose_key_another_transaction_holds_is_409_at_once_and_runs_once_it_is_free(
    api: Api, services: Services
) -> None:
    project = await api.create()
    pid = project["id"]
    lock_key = claim_lock_key(UNIT_A.id, "held-1")
    async with services.database.engine.connect() as other:
        await other.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key})
        assert await advisory_lock_holders(services, lock_key) == 1
        with anyio.fail_after(5):  # pg_try_advisory_xact_lock: no wait for the other transaction
            duplicate = await fire(api, pid, START, 'W/"1"', "held-1")
        problem(duplicate, 409, "api.idempotency_in_flight")
        assert duplicate.headers["Retry-After"] == "1"
        assert "Idempotent-Replayed" not in duplicate.headers
        assert await stored(services, UNIT_A.id, "held-1") is None
        assert await transitions_fired(api, pid) == []
        assert await project_state(api, pid) == ("draft", 1)
        # The same principal's other keys, and another principal's same key, are not held: they run (and are
        # refused, their If-Match being stale, so that the project stays as it is).
        problem(await fire(api, pid, START, 'W/"9"', "held-2"), 412, "stale_version")
        problem(await fire(api, pid, START, 'W/"9"', "held-1", by=DISPATCHER), 412, "stale_version")
        await other.rollback()
    assert await advisory_lock_holders(services, lock_key) == 0

    first = await fire(api, pid, START, 'W/"1"', "held-1")
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    record = await stored(services, UNIT_A.id, "held-1")
    assert record is not None and record.state == "completed" and record.status == 200
    assert record.request_hash == fingerprint(pid, 'W/"1"', START)
    assert record.body == first.content
    assert record.headers == (("content-type", first.headers["Content-Type"]), ("etag", first.headers["ETag"]))
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]


@ONLY_POSTGRESQL
async def test_while_the_transition_runs_its_key_has_no_record_only_its_advisory_lock(
    api: Api, services: Services
) -> None:
    project = await api.create()
    pid = project["id"]
    lock_key = claim_lock_key(UNIT_A.id, "gated-1")
    gate = Gate()
    services.hooks.append(gate)
    answers: dict[str, httpx.Response] = {}
    try:
        async with anyio.create_task_group() as group:

            async def first() -> None:
                answers["first"] = await fire(api, pid, START, 'W/"1"', "gated-1")

            group.start_soon(first)
            with anyio.fail_after(10):
                await gate.entered.wait()  # inside the transition's transaction: its writes sent, not committed
            assert await stored(services, UNIT_A.id, "gated-1") is None
            assert await record_count(services) == 0
            assert await advisory_lock_holders(services, lock_key) == 1
            with anyio.fail_after(5):
                duplicate = await fire(api, pid, START, 'W/"1"', "gated-1")
            problem(duplicate, 409, "api.idempotency_in_flight")
            assert duplicate.headers["Retry-After"] == "1"
            # Any request with that key, whatever its body, is in flight until the first has answered.
            with anyio.fail_after(5):
                other_body = await fire(api, pid, {**START, "comment": "另一个请求"}, 'W/"1"', "gated-1")
            problem(other_body, 409, "api.idempotency_in_flight")
            assert await stored(services, UNIT_A.id, "gated-1") is None
            gate.release.set()
    finally:
        services.hooks.remove(gate)
    original = answers["first"]
    assert original.status_code == 200, original.text
    assert await advisory_lock_holders(services, lock_key) == 0  # gone with the commit
    record = await stored(services, UNIT_A.id, "gated-1")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 200, original.content)

    replay = await fire(api, pid, START, 'W/"1"', "gated-1")
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == original.content
    assert replay.headers["ETag"] == original.headers["ETag"] == 'W/"2"'
    assert replay.headers["Content-Type"] == original.headers["Content-Type"]
    reused = await fire(api, pid, {**START, "comment": "另一个请求"}, 'W/"1"', "gated-1")
    problem(reused, 422, "api.idempotency_key_reused")
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]


@asynccontextmanager
async def transition_waiting_for_its_lock(
    api: Api, services: Services, project_id: str, body: dict[str, Any], if_match: str, key: str
) -> AsyncIterator[dict[str, httpx.Response]]:
    """Fire a keyed transition while another transaction holds the project's row lock; the block runs once the
    transition waits for it, having taken its key's advisory lock but sent no record yet (its writes come after
    the lock). The lock is let go as the block ends; the dict then holds the answer under ``"first"``."""
    answers: dict[str, httpx.Response] = {}

    async def first() -> None:
        answers["first"] = await fire(api, project_id, body, if_match, key)

    async with anyio.create_task_group() as group, services.database.transaction() as session:
        assert await ProjectRepository(session).lock(project_id) is not None
        group.start_soon(first)
        await wait_until(lambda: lock_waits(services, "projects"), "the transition waits for the project's lock")
        assert await advisory_lock_holders(services, claim_lock_key(UNIT_A.id, key)) == 1
        yield answers
    assert "first" in answers


async def store_record_past_the_key_lock(services: Services, key: str, request_hash: str) -> None:
    """Store a running record of ``key`` as no request path can while a change holds the key (every claim
    statement tries the key's advisory lock first): the race the change's own plain INSERT still guards against
    (a claim committed between the snapshot of the change's locking statement and its taking the lock)."""
    now = services.now()
    async with services.database.autocommit() as connection:
        await connection.execute(
            idempotency_records.insert().values(
                principal_id=UNIT_A.id,
                key=key,
                request_hash=request_hash,
                state="running",
                created_at=now,
                expires_at=now + services.idempotency_ttl,
            )
        )


@ONLY_POSTGRESQL
async def test_an_up_front_claim_while_the_transition_waits_for_its_lock_is_in_flight_and_the_transition_fires(
    api: Api, services: Services
) -> None:
    # A request to another route with the same key, while the transition holds the key (by its advisory lock,
    # with no record yet) and waits for the project: the claim takes nothing and says "in flight" at once, and
    # the transition fires. Before claims looked at the advisory lock, the claim won and the transition was lost.
    project = await api.create()
    pid = project["id"]
    async with transition_waiting_for_its_lock(api, services, pid, START, 'W/"1"', "shared-0") as answers:
        with anyio.fail_after(5):
            claimed = await services.idempotency_begin(UNIT_A.id, "shared-0", "other-hash")
        assert claimed is not None and (claimed.state, claimed.status) == ("running", None)
        assert await stored(services, UNIT_A.id, "shared-0") is None
    assert answers["first"].status_code == 200, answers["first"].text
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]
    record = await stored(services, UNIT_A.id, "shared-0")
    assert record is not None and record.request_hash == fingerprint(pid, 'W/"1"', START)
    assert (record.state, record.status, record.body) == ("completed", 200, answers["first"].content)


@ONLY_POSTGRESQL
async def test_a_record_stored_meanwhile_rolls_the_transition_back(api: Api, services: Services) -> None:
    # The transition's record insert fails on the key's primary key: it must not commit anything, and it answers
    # from the record it met (another request's: 422).
    project = await api.create()
    pid = project["id"]
    async with transition_waiting_for_its_lock(api, services, pid, START, 'W/"1"', "shared-1") as answers:
        await store_record_past_the_key_lock(services, "shared-1", "other-hash")
    problem(answers["first"], 422, "api.idempotency_key_reused")
    assert "Idempotent-Replayed" not in answers["first"].headers
    assert await transitions_fired(api, pid) == []
    assert await project_state(api, pid) == ("draft", 1)
    history = (await api.get(f"{PROJECTS}/{pid}/history", params={"limit": 200})).json()["items"]
    assert [e["kind"] for e in history] == ["project.created"]
    record = await stored(services, UNIT_A.id, "shared-1")
    assert record is not None
    assert (record.state, record.request_hash, record.status, record.body) == ("running", "other-hash", None, None)
    assert await record_count(services) == 1
    # A retry of the transition is still refused: the key is the other request's.
    again = await fire(api, pid, START, 'W/"1"', "shared-1")
    problem(again, 422, "api.idempotency_key_reused")
    assert await project_state(api, pid) == ("draft", 1)


@ONLY_POSTGRESQL
async def test_a_record_of_the_same_request_stored_meanwhile_makes_the_transition_409(
    api: Api, services: Services
) -> None:
    # The same race, the record being for this very request (another worker's): 409, nothing fired.
    project = await api.create()
    pid = project["id"]
    async with transition_waiting_for_its_lock(api, services, pid, START, 'W/"1"', "shared-2") as answers:
        await store_record_past_the_key_lock(services, "shared-2", fingerprint(pid, 'W/"1"', START))
    problem(answers["first"], 409, "api.idempotency_in_flight")
    assert answers["first"].headers["Retry-After"] == "1"
    assert await project_state(api, pid) == ("draft", 1)
    assert await transitions_fired(api, pid) == []
    record = await stored(services, UNIT_A.id, "shared-2")
    assert record is not None and record.state == "running"


@ONLY_POSTGRESQL
async def test_an_up_front_claim_while_the_transition_holds_its_key_is_in_flight_at_once(
    api: Api, services: Services
) -> None:
    # Held at the Gate, the transition has already sent its writes, its record's INSERT among them (uncommitted).
    # An up-front claim of the key (another route) must neither take the key nor wait on the key's unique index
    # for the transition's commit: its statement tries the key's advisory lock first (_claim_statement), finds it
    # held and answers "in flight" at once. The transition then commits its own answer.
    project = await api.create()
    pid = project["id"]
    gate = Gate()
    services.hooks.append(gate)
    answers: dict[str, httpx.Response] = {}
    try:
        async with anyio.create_task_group() as group:

            async def first() -> None:
                answers["first"] = await fire(api, pid, START, 'W/"1"', "shared-3")

            group.start_soon(first)
            with anyio.fail_after(10):
                await gate.entered.wait()
            try:
                with anyio.fail_after(5):
                    found = await services.idempotency_begin(UNIT_A.id, "shared-3", "other-hash")
            finally:
                gate.release.set()
    finally:
        services.hooks.remove(gate)
    assert found is not None and (found.state, found.status, found.body) == ("running", None, None)
    original = answers["first"]
    assert original.status_code == 200, original.text
    record = await stored(services, UNIT_A.id, "shared-3")
    assert record is not None and record.request_hash == fingerprint(pid, 'W/"1"', START)
    assert (record.state, record.status, record.body) == ("completed", 200, original.content)
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]
    # Once the transition has answered, the other request learns its key was used for another act.
    assert await services.idempotency_begin(UNIT_A.id, "shared-3", "other-hash") == record


# --- an expired record is taken over -------------------------------------------------------------------------


@pytest.mark.parametrize("old_state", ["running", "completed"])
@pytest.mark.parametrize("outcome", ["fires", "refused"])
async def test_an_expired_record_of_the_key_is_taken_over(
    api: Api, services: Services, old_state: str, outcome: str
) -> None:
    project = await api.create()
    pid = project["id"]
    now, ttl = services.now(), services.idempotency_ttl
    claimed_at = now - ttl - timedelta(hours=1)  # expired an hour ago
    async with services.database.autocommit() as connection:
        records = IdempotencyRepository(connection)
        assert await records.begin(UNIT_A.id, "old-1", "old-hash", claimed_at, ttl) is None
        if old_state == "completed":
            assert await records.complete(UNIT_A.id, "old-1", 201, [("etag", 'W/"9"')], b"old answer", claimed_at)
    old = await stored(services, UNIT_A.id, "old-1")
    assert old is not None and old.state == old_state and old.expires_at < now

    if_match = 'W/"1"' if outcome == "fires" else 'W/"7"'
    answer = await fire(api, pid, START, if_match, "old-1")
    assert "Idempotent-Replayed" not in answer.headers
    if outcome == "fires":
        assert answer.status_code == 200, answer.text
        assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]
    else:
        problem(answer, 412, "stale_version")
        assert await transitions_fired(api, pid) == []
    record = await stored(services, UNIT_A.id, "old-1")
    assert record is not None
    assert (record.state, record.status, record.body) == ("completed", answer.status_code, answer.content)
    assert record.request_hash == fingerprint(pid, if_match, START)
    assert (record.created_at, record.expires_at) == (now, now + ttl)
    assert ("etag", answer.headers["ETag"]) in (record.headers or ())
    assert await record_count(services) == 1

    replay = await fire(api, pid, START, if_match, "old-1")
    assert replay.status_code == answer.status_code and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == answer.content


# --- a change that fails stores nothing ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["python", "database"])
async def test_a_transition_that_fails_unexpectedly_stores_nothing_and_a_retry_runs_it(
    api: Api, services: Services, how: str
) -> None:
    project = await api.create()
    pid = project["id"]
    failing = Failing(how)
    services.hooks.append(failing)
    try:
        crashed = await fire(api, pid, START, 'W/"1"', "crash-1")
    finally:
        services.hooks.remove(failing)
    assert failing.writes == 1
    problem(crashed, 500, "api.internal_error")
    assert "Idempotent-Replayed" not in crashed.headers
    assert await stored(services, UNIT_A.id, "crash-1") is None
    assert await record_count(services) == 0
    assert await transitions_fired(api, pid) == []
    assert await project_state(api, pid) == ("draft", 1)
    if services.database.dialect == "postgresql":
        assert await advisory_lock_holders(services, claim_lock_key(UNIT_A.id, "crash-1")) == 0

    retry = await fire(api, pid, START, 'W/"1"', "crash-1")
    assert retry.status_code == 200, retry.text
    assert "Idempotent-Replayed" not in retry.headers
    record = await stored(services, UNIT_A.id, "crash-1")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 200, retry.content)
    again = await fire(api, pid, START, 'W/"1"', "crash-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == retry.content
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]


# --- refusals are stored by the middleware, claim and answer in one -----------------------------------------


REFUSALS = ["gate", "stale", "invisible", "missing"]


@pytest.mark.parametrize("refusal", REFUSALS)
async def test_a_refusal_is_stored_with_its_status_and_replayed_byte_for_byte(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    project = await api.into_permitting()  # version 2
    pid = project["id"]
    target, by, body, if_match = pid, DISPATCHER, BUILD, 'W/"2"'
    status, code = 409, "engine.gate_not_satisfied"
    if refusal == "stale":
        body, if_match, status, code = HOLD, 'W/"1"', 412, "stale_version"
    elif refusal == "invisible":
        by, body, status, code = UNIT_B, START, 404, "not_found"
    elif refusal == "missing":
        target, status, code = "no-such-project", 404, "not_found"
    await api.auth(by)  # its token stored before the spy starts counting
    spy = KeyCalls.spying(services, monkeypatch)

    refused = await fire(api, target, body, if_match, "refused-1", by=by)
    problem(refused, status, code)
    assert "Idempotent-Replayed" not in refused.headers
    if services.database.dialect == "postgresql":
        assert spy.calls == ["idempotency_record"]  # claim and answer in one statement, after the change
    else:
        assert spy.calls == ["idempotency_begin", "idempotency_complete"]
    record = await stored(services, by.id, "refused-1")
    assert record is not None and (record.state, record.status) == ("completed", status)
    assert record.body == refused.content
    assert record.request_hash == fingerprint(target, if_match, body)
    assert dict(record.headers or ())["content-type"] == refused.headers["Content-Type"]

    spy.calls.clear()
    again = await fire(api, target, body, if_match, "refused-1", by=by)
    assert again.status_code == status and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == refused.content
    assert again.headers["Content-Type"] == refused.headers["Content-Type"]
    assert again.headers.get("ETag") == refused.headers.get("ETag")
    if services.database.dialect == "sqlite":
        assert spy.calls == ["idempotency_begin"]  # met the record: nothing ran
    elif refusal == "missing":
        assert spy.calls == ["idempotency_record"]  # no project to lock: the record met on storing the 404
    else:
        assert spy.calls == ["idempotency_live"]  # the lock's statement saw the record: nothing ran
    assert await project_state(api, pid) == ("permitting", 2)
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]


# --- answers that are not stored -----------------------------------------------------------------------------


async def test_without_if_match_the_answer_is_428_unstored_and_a_used_key_is_422(api: Api, services: Services) -> None:
    project = await api.create()
    pid = project["id"]
    blind = await fire(api, pid, START, None, "key-1")
    problem(blind, 428, "api.if_match_required")
    assert await stored(services, UNIT_A.id, "key-1") is None
    assert await record_count(services) == 0

    # Not stored: once the caller sends If-Match, the same key runs the request.
    first = await fire(api, pid, START, 'W/"1"', "key-1")
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers

    # A key used for a completed transition says so even in an answer that is not stored.
    reused = await fire(api, pid, START, None, "key-1")
    problem(reused, 422, "api.idempotency_key_reused")
    record = await stored(services, UNIT_A.id, "key-1")
    assert record is not None and record.request_hash == fingerprint(pid, 'W/"1"', START)
    assert (record.state, record.status, record.body) == ("completed", 200, first.content)  # not overwritten
    assert await record_count(services) == 1
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]


@ONLY_POSTGRESQL
@pytest.mark.parametrize("duplicate", ["malformed-body", "missing-project"])
async def test_a_duplicate_refused_before_the_lock_while_the_transition_runs_is_409_and_the_transition_fires(
    api: Api, services: Services, duplicate: str
) -> None:
    # The documented contract (api/idempotency.py, README): while such a transition runs, any request with its
    # key, whatever its body, gets 409 until the transition has answered.
    project = await api.create()
    pid = project["id"]
    async with transition_waiting_for_its_lock(api, services, pid, START, 'W/"1"', "busy-1") as answers:
        with anyio.fail_after(5):
            if duplicate == "malformed-body":
                other = await fire(api, pid, {"trigger": 5}, 'W/"1"', "busy-1")
            else:
                other = await fire(api, "no-such-project", START, 'W/"1"', "busy-1")
    # Asserted once the transition has answered (a failure inside the block would cancel it).
    problem(other, 409, "api.idempotency_in_flight")
    assert answers["first"].status_code == 200, answers["first"].text
    assert await transitions_fired(api, pid) == [("start_permitting", "permitting")]
    record = await stored(services, UNIT_A.id, "busy-1")
    assert record is not None and record.request_hash == fingerprint(pid, 'W/"1"', START)


# --- the key costs no statement of its own -------------------------------------------------------------------


class Exchanges:
    """Every statement sent to PostgreSQL while active, by checkout of a pooled connection (a checkout serves one
    unit of work: a transaction, an autocommit block, a read), in the order each connection sent them. As in
    ``tests/services/test_lock_reads.py``: the statements the store hands to asyncpg directly (asyncpg's query
    logger, which also sees ``BEGIN``/``COMMIT``) and those SQLAlchemy runs (``before_cursor_execute``)."""

    def __init__(self) -> None:
        self.checkouts: list[list[str]] = []
        self._open: dict[int, tuple[list[str], Callable[[Any], None]]] = {}

    def _checkout(self, dbapi_connection: Any, *_: Any) -> None:
        statements: list[str] = []
        self.checkouts.append(statements)

        def log(record: Any) -> None:
            statements.append(" ".join(record.query.split()))

        self._open[id(dbapi_connection)] = (statements, log)
        dbapi_connection.driver_connection.add_query_logger(log)

    def _checkin(self, dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is not None and id(dbapi_connection) in self._open:
            _, log = self._open.pop(id(dbapi_connection))
            dbapi_connection.driver_connection.remove_query_logger(log)

    def _execute(self, connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        opened = self._open.get(id(connection.connection.dbapi_connection))
        if opened is not None:
            opened[0].append("[sqlalchemy] " + " ".join(statement.split()))

    @contextmanager
    def listening(self, services: Services) -> Iterator[None]:
        engine = services.database.engine.sync_engine
        listeners: list[tuple[str, Callable[..., None]]] = [
            ("checkout", self._checkout),
            ("checkin", self._checkin),
            ("before_cursor_execute", self._execute),
        ]
        for name, listener in listeners:
            event.listen(engine, name, listener)
        try:
            yield
        finally:
            for name, listener in listeners:
                event.remove(engine, name, listener)


@asynccontextmanager
async def exchanges(services: Services) -> AsyncIterator[Exchanges]:
    log = Exchanges()
    with log.listening(services):
        yield log
    for _ in range(5):  # asyncpg calls its query loggers soon after each statement, not at once
        await anyio.sleep(0)


def names_records(statement: str) -> bool:
    return "idempotency_records" in statement.lower()


def the_transaction(log: Exchanges) -> tuple[list[str], list[str]]:
    """The statements of the one checkout that ran a write transaction (``BEGIN`` … ``COMMIT``/``ROLLBACK``), and
    every statement sent on the other checkouts."""
    transactions = [c for c in log.checkouts if c and c[0] == "BEGIN"]
    assert len(transactions) == 1, log.checkouts
    [transaction] = transactions
    others = [s for c in log.checkouts if c is not transaction for s in c]
    return transaction, others


async def keyed_and_not(
    api: Api, services: Services, body: dict[str, Any], by: Any, key: str
) -> tuple[list[str], list[str], list[str]]:
    """Fire ``body`` on two new projects, with ``key`` and without: the keyed transaction's statements, the
    statements sent outside it, and the unkeyed transaction's statements."""
    keyed_project, plain_project = await api.create(), await api.create(name="不带键的项目")
    await api.get(f"{PROJECTS}/{keyed_project['id']}", by=by)  # the caller's token looked up (and cached) first
    async with exchanges(services) as log:
        keyed = await fire(api, keyed_project["id"], body, 'W/"1"', key, by=by)
    assert keyed.status_code == 200, keyed.text
    transaction, outside = the_transaction(log)
    async with exchanges(services) as log:
        plain = await fire(api, plain_project["id"], body, 'W/"1"', None, by=by)
    assert plain.status_code == 200, plain.text
    plain_transaction, _ = the_transaction(log)
    record = await stored(services, by.id, key)
    assert record is not None and (record.state, record.body) == ("completed", keyed.content)
    return transaction, outside, plain_transaction


@ONLY_POSTGRESQL
async def test_a_keyed_transition_is_begin_one_lock_one_read_one_write_commit(api: Api, services: Services) -> None:
    transaction, outside, plain = await keyed_and_not(api, services, HOLD, DISPATCHER, "count-1")
    assert not [s for s in outside if names_records(s)], outside
    assert not [s for s in transaction if s.startswith("[sqlalchemy]")], transaction  # all of it via the driver
    assert len(transaction) == 5, transaction
    begin, lock, children, write, commit = transaction
    assert (begin, commit) == ("BEGIN", "COMMIT")
    # The lock takes the key's advisory lock and reads its record, in the same statement.
    assert lock.startswith("SELECT projects.id") and lock.endswith("FOR UPDATE OF projects"), lock
    assert "pg_try_advisory_xact_lock(" in lock and "FROM idempotency_records" in lock, lock
    assert children.startswith("SELECT") and "FROM tasks" in children and not names_records(children), children
    # The record with its answer rides with the change's writes: one statement, ending in the checked update.
    assert write.startswith("WITH ") and "INSERT INTO idempotency_records" in write, write
    assert "INSERT INTO events" in write and "UPDATE projects SET" in write, write
    # Without a key, the same exchange: the key cost no statement.
    assert len(plain) == len(transaction) and not [s for s in plain if names_records(s)], plain


@ONLY_POSTGRESQL
async def test_the_key_costs_no_statement_even_when_the_transition_writes_in_several(
    api: Api, services: Services
) -> None:
    # start_permitting in the mini definition closes a step and opens others and tasks: its writes cannot all
    # share one statement (a step row deleted and inserted; see lifecycle/store/deferred.py), so its exchange is
    # longer than five statements, with or without a key. The key still adds none.
    transaction, outside, plain = await keyed_and_not(api, services, START, UNIT_A, "count-2")
    assert not [s for s in outside if names_records(s)], outside
    assert (transaction[0], transaction[-1]) == ("BEGIN", "COMMIT")
    assert len(transaction) == len(plain), (transaction, plain)
    lock = transaction[1]
    assert "pg_try_advisory_xact_lock(" in lock and "FROM idempotency_records" in lock, lock
    inserts = [s for s in transaction if "INSERT INTO idempotency_records" in s]
    assert len(inserts) == 1 and inserts[0].startswith("WITH "), inserts  # held, sent with another write
    assert [s for s in transaction if names_records(s)] == [lock, inserts[0]]


@ONLY_POSTGRESQL
async def test_a_refusals_record_costs_one_statement_after_the_rollback(api: Api, services: Services) -> None:
    project = await api.create()
    await api.get(f"{PROJECTS}/{project['id']}", by=UNIT_A)
    async with exchanges(services) as log:
        stale = await fire(api, project["id"], START, 'W/"7"', "count-3")
    problem(stale, 412, "stale_version")
    transactions = [c for c in log.checkouts if c and c[0] == "BEGIN"]
    assert len(transactions) == 1 and transactions[0][-1] == "ROLLBACK", log.checkouts
    after = [s for c in log.checkouts if c is not transactions[0] for s in c]
    assert len(after) == 1 and after[0].startswith("INSERT INTO idempotency_records"), after
    record = await stored(services, UNIT_A.id, "count-3")
    assert record is not None and (record.state, record.status, record.body) == ("completed", 412, stale.content)


# --- the advisory lock's key --------------------------------------------------------------------------------


def test_the_claim_lock_key_is_a_signed_64_bit_integer_fixed_for_a_principal_and_key() -> None:
    pairs = [
        ("owner-a", "key-1"),
        ("owner-a", "key-2"),
        ("owner-b", "key-1"),
        ("owner-a", "key-1 "),
        ("", "owner-akey-1"),
        ("owner-akey-1", ""),
        ("owner-a", "-key-1"),
        ("owner-a-", "key-1"),
        ("a", "b"),
        ("ab", ""),
        ("", "ab"),
    ]
    keys = [claim_lock_key(principal_id, key) for principal_id, key in pairs]
    assert keys == [claim_lock_key(principal_id, key) for principal_id, key in pairs]  # deterministic
    assert len(set(keys)) == len(pairs)
    for lock_key in keys:
        assert isinstance(lock_key, int) and -(2**63) <= lock_key < 2**63
    # Spread over the whole range, negative values included (PostgreSQL's bigint is signed).
    many = {claim_lock_key("owner-a", f"key-{n}") for n in range(2000)}
    assert len(many) == 2000
    assert any(k < 0 for k in many) and any(k >= 2**62 for k in many)


def test_the_claim_lock_key_tells_apart_pairs_that_join_into_the_same_text() -> None:
    # Keys are printable ASCII, but principal ids are not restricted: the pair must be encoded so that no two
    # pairs read alike.
    assert claim_lock_key("a", "b\nc") != claim_lock_key("a\nb", "c")
    assert claim_lock_key("a\n", "b") != claim_lock_key("a", "\nb")
