"""An ``Idempotency-Key``'s answer stored in the transaction of the change it answers
(:mod:`lifecycle.services.answers`), through :meth:`Services.fire`: rendered once from the view the call
returns, committed with the change (so a process dying after the commit leaves a replayable answer, not a
claim stuck ``running``), and never stored when the change does not commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.clock import FrozenClock
from lifecycle.engine.core import Engine
from lifecycle.errors import (
    GateNotSatisfied,
    InvalidInput,
    InvalidTransition,
    LifecycleError,
    NotFound,
    RoleRefused,
    StaleVersion,
)
from lifecycle.services import Principal, ProjectView, Services
from lifecycle.services.answers import KeyClaim, RenderedAnswer, StoredAnswer
from lifecycle.services.hooks import Change
from lifecycle.services.views import HistoryEntry
from lifecycle.store import Database
from lifecycle.store.idempotency import IdempotencyEntry, IdempotencyRepository
from lifecycle.store.models import idempotency_records

from .conftest import DISPATCHER, UNIT_A, UNIT_B, as_, into_permitting

pytestmark = pytest.mark.anyio

Create = Callable[..., Awaitable[ProjectView]]

APPROVAL = {"approval_no": "巫发改〔2026〕1号"}


class Renderer:
    """A ``render`` for :class:`StoredAnswer` that remembers every view it was called with."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.views: list[ProjectView] = []

    def __call__(self, view: ProjectView) -> RenderedAnswer:
        self.views.append(view)
        headers = (("content-type", "application/vnd.test+json"), ("etag", view.etag), ("x-state", view.state))
        return self.status, headers, f'{{"state": "{view.state}", "version": {view.version}}}'.encode()


async def claim_key(services: Services, principal: Principal, key: str, request_hash: str = "hash") -> KeyClaim:
    """Claim ``key`` as the API's middleware does; the claim to hand to the change."""
    assert await services.idempotency_begin(principal.id, key, request_hash) is None
    return KeyClaim(principal.id, key)


async def record_of(services: Services, principal: Principal, key: str) -> IdempotencyEntry:
    async with services.database.autocommit() as connection:
        found = await IdempotencyRepository(connection).get(principal.id, key)
    assert found is not None
    return found


async def record_count(services: Services) -> int:
    async with services.database.reader() as session:
        return int((await session.execute(select(func.count()).select_from(idempotency_records))).scalar_one())


async def history(services: Services, project_id: str) -> list[HistoryEntry]:
    return list((await services.history(as_(DISPATCHER), project_id, 0, 200)).items)


async def assert_unchanged(services: Services, before: ProjectView, events_before: Sequence[HistoryEntry]) -> None:
    """Nothing of a failed change was written: the project as it was, no new event."""
    now = await services.get_project(as_(DISPATCHER), before.id)
    assert (now.version, now.state, now.updated_at) == (before.version, before.state, before.updated_at)
    assert [e.event_id for e in await history(services, before.id)] == [e.event_id for e in events_before]


async def assert_still_running(services: Services, claim: KeyClaim, request_hash: str = "hash") -> None:
    """The claim was left as it was: the record is ``running``, with no answer."""
    assert claim.committed is False and claim.answer() is None
    record = await record_of(services, UNIT_A, claim.key)
    assert record.state == "running" and record.request_hash == request_hash
    assert (record.status, record.headers, record.body, record.completed_at) == (None, None, None, None)


@pytest.fixture(autouse=True)
async def _stored_caller(services: Services) -> None:
    """Idempotency records belong to a stored principal (a foreign key): store the one that claims keys."""
    await services.add_principal(
        UNIT_A.id, UNIT_A.name, sorted(UNIT_A.roles), unit_id=UNIT_A.unit_id, unit_kind=UNIT_A.unit_kind
    )


# --- success ------------------------------------------------------------------------------------------------


async def test_a_fire_stores_its_answer_in_its_own_transaction(
    services: Services, create: Create, clock: FrozenClock
) -> None:
    project = await create()
    claim = await claim_key(services, UNIT_A, "fire-1")
    render = Renderer()
    stored = StoredAnswer(claim, render)
    assert claim.answer() is None and claim.committed is False

    view = await services.fire(as_(UNIT_A), project.id, 1, "start_permitting", APPROVAL, answer=stored)

    assert view.state == "permitting" and view.version == 2
    # Rendered once, from the very view the call returns (the project as the change leaves it).
    assert len(render.views) == 1 and render.views[0] is view and stored.view is view
    expected = (
        200,
        (("content-type", "application/vnd.test+json"), ("etag", 'W/"2"'), ("x-state", "permitting")),
        b'{"state": "permitting", "version": 2}',
    )
    assert claim.committed is True
    assert claim.answer() == expected

    # Nobody called idempotency_complete: the change's own transaction completed the record.
    record = await record_of(services, UNIT_A, "fire-1")
    assert record.state == "completed" and record.request_hash == "hash"
    assert (record.status, record.headers, record.body) == expected
    assert record.completed_at == clock.now()

    # The change itself committed, once.
    assert (await services.get_project(as_(UNIT_A), project.id)).version == 2
    moved = [e for e in await history(services, project.id) if e.kind == "project.transition"]
    assert [(e.trigger, e.to_state) for e in moved] == [("start_permitting", "permitting")]


async def test_the_rendered_status_headers_and_body_are_stored_as_they_are(services: Services, create: Create) -> None:
    project = await create()
    claim = await claim_key(services, UNIT_A, "odd-answer")
    body = "状态 \x00 bytes \xff".encode() + bytes(range(256))
    headers = (("etag", 'W/"2"'), ("content-type", "application/octet-stream"), ("location", "/x?y=1"))

    def render(view: ProjectView) -> RenderedAnswer:
        return 201, headers, body

    await services.fire(as_(UNIT_A), project.id, 1, "start_permitting", APPROVAL, answer=StoredAnswer(claim, render))
    record = await record_of(services, UNIT_A, "odd-answer")
    assert (record.state, record.status, record.headers, record.body) == ("completed", 201, headers, body)
    assert claim.answer() == (201, headers, body)


async def test_a_process_dying_after_the_commit_leaves_a_replayable_answer(
    services: Services, create: Create, db_url: str, clock: FrozenClock
) -> None:
    project = await create()
    claim = await claim_key(services, UNIT_A, "crash-1", "the-request")
    await services.fire(
        as_(UNIT_A), project.id, 1, "start_permitting", APPROVAL, answer=StoredAnswer(claim, Renderer())
    )
    # The process dies here: the middleware never completes the record. Another process on the same database
    # (new connections, new services) sees the retry of the same request:
    other_database = Database(db_url)
    try:
        other = Services(other_database, engine=Engine(), clock=clock)
        existing = await other.idempotency_begin(UNIT_A.id, "crash-1", "the-request")
        assert existing is not None, "the key was free again: the retry would fire a second time"
        assert existing.state == "completed", "a claim left running: retries would get 409 until it expires"
        assert (existing.status, existing.headers, existing.body) == claim.answer()
        # A completion arriving late finds nothing running and changes nothing.
        assert await other.idempotency_complete(UNIT_A.id, "crash-1", 500, [], b"late") is False
    finally:
        await other_database.dispose()
    record = await record_of(services, UNIT_A, "crash-1")
    assert (record.status, record.body) == (200, b'{"state": "permitting", "version": 2}')
    assert len([e for e in await history(services, project.id) if e.kind == "project.transition"]) == 1


async def test_each_claim_stores_its_own_answer(services: Services, create: Create) -> None:
    first, second = await create(), await create(name="另一个项目")
    claim_1 = await claim_key(services, UNIT_A, "k-1")
    claim_2 = await claim_key(services, UNIT_A, "k-2")
    await services.fire(
        as_(UNIT_A), first.id, 1, "start_permitting", APPROVAL, answer=StoredAnswer(claim_1, Renderer(200))
    )
    view = await into_permitting(services, second)
    held = await services.fire(
        as_(DISPATCHER), second.id, view.version, "hold", answer=StoredAnswer(claim_2, Renderer(202))
    )
    one, two = await record_of(services, UNIT_A, "k-1"), await record_of(services, UNIT_A, "k-2")
    assert (one.status, one.body) == (200, b'{"state": "permitting", "version": 2}')
    assert (two.status, two.body) == (202, f'{{"state": "on_hold", "version": {held.version}}}'.encode())
    assert claim_1.answer() != claim_2.answer()


async def test_without_an_answer_no_record_is_written(services: Services, create: Create) -> None:
    project = await create()
    view = await services.fire(as_(UNIT_A), project.id, 1, "start_permitting", APPROVAL)
    assert view.version == 2
    assert await record_count(services) == 0


# --- failures -----------------------------------------------------------------------------------------------


async def test_a_stale_version_stores_no_answer_and_changes_nothing(services: Services, create: Create) -> None:
    project = await create()
    moved = await into_permitting(services, project)
    events = await history(services, project.id)
    claim = await claim_key(services, UNIT_A, "stale")
    render = Renderer()
    with pytest.raises(StaleVersion):
        await services.fire(as_(DISPATCHER), project.id, project.version, "hold", answer=StoredAnswer(claim, render))
    assert render.views == []
    await assert_still_running(services, claim)
    await assert_unchanged(services, moved, events)


@pytest.mark.parametrize(
    ("by", "trigger", "data", "in_permitting", "error"),
    [
        pytest.param(UNIT_A, "start_building", None, False, InvalidTransition, id="invalid-transition"),
        pytest.param(DISPATCHER, "start_permitting", APPROVAL, False, RoleRefused, id="role-refused"),
        pytest.param(UNIT_A, "start_permitting", {**APPROVAL, "nonsense": 1}, False, InvalidInput, id="bad-input"),
        pytest.param(UNIT_A, "start_building", None, True, GateNotSatisfied, id="gate"),
        pytest.param(UNIT_B, "start_permitting", APPROVAL, False, NotFound, id="not-visible"),
    ],
)
async def test_a_refused_trigger_stores_no_answer_and_changes_nothing(
    services: Services,
    create: Create,
    by: Principal,
    trigger: str,
    data: dict[str, Any] | None,
    in_permitting: bool,
    error: type[LifecycleError],
) -> None:
    project = await create()
    if in_permitting:
        project = await into_permitting(services, project)
    events = await history(services, project.id)
    claim = await claim_key(services, UNIT_A, f"refused-{trigger}")
    render = Renderer()
    with pytest.raises(error):
        await services.fire(as_(by), project.id, project.version, trigger, data, answer=StoredAnswer(claim, render))
    assert render.views == []
    await assert_still_running(services, claim)
    await assert_unchanged(services, project, events)


class FailingWrite:
    """A change hook whose write fails (after the answer was rendered and held with the change's writes)."""

    def __init__(self) -> None:
        self.calls = 0

    def derive(self, change: Change) -> None:
        pass

    async def write(self, session: AsyncSession, changes: Sequence[Change]) -> None:
        self.calls += 1
        raise RuntimeError("the hook's rows cannot be written")


async def test_a_hook_whose_write_fails_rolls_the_answer_back_with_the_change(
    services: Services, create: Create
) -> None:
    project = await create()
    events = await history(services, project.id)
    claim = await claim_key(services, UNIT_A, "hook-fails")
    render = Renderer()
    failing = FailingWrite()
    services.hooks.append(failing)
    try:
        with pytest.raises(RuntimeError, match="cannot be written"):
            await services.fire(
                as_(UNIT_A), project.id, 1, "start_permitting", APPROVAL, answer=StoredAnswer(claim, render)
            )
    finally:
        services.hooks.remove(failing)
    assert failing.calls == 1
    assert len(render.views) == 1  # rendered inside the transaction, then rolled back with it
    await assert_still_running(services, claim)
    await assert_unchanged(services, project, events)

    # The claim is still the request's: the same call, once the hook is fixed, stores its answer.
    view = await services.fire(
        as_(UNIT_A), project.id, 1, "start_permitting", APPROVAL, answer=StoredAnswer(claim, render)
    )
    assert claim.committed and claim.answer() == render(view)
    assert (await record_of(services, UNIT_A, "hook-fails")).state == "completed"


async def test_a_render_that_raises_rolls_the_change_back(services: Services, create: Create) -> None:
    project = await create()
    events = await history(services, project.id)
    claim = await claim_key(services, UNIT_A, "render-fails")

    def render(view: ProjectView) -> RenderedAnswer:
        raise ValueError("cannot render")

    with pytest.raises(ValueError, match="cannot render"):
        await services.fire(
            as_(UNIT_A), project.id, 1, "start_permitting", APPROVAL, answer=StoredAnswer(claim, render)
        )
    await assert_still_running(services, claim)
    await assert_unchanged(services, project, events)
