"""Principals, tokens and idempotency through the services (what the API's auth and idempotency
middleware call), and the test fixtures that make them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from lifecycle.clock import FrozenClock
from lifecycle.errors import InvalidInput, NotFound
from lifecycle.services import CallContext, Principal, Services

pytestmark = pytest.mark.anyio


async def test_principals_and_tokens(services: Services) -> None:
    principal = await services.add_principal("dep-1", "县住房城乡建委", ["department"], unit_id="housing_bureau")
    assert principal == Principal("dep-1", "县住房城乡建委", "housing_bureau", None, frozenset({"department"}))
    assert await services.get_principal("dep-1") == principal
    token_id, plain = await services.create_token("dep-1", "审批系统")
    assert await services.authenticate(plain) == principal
    assert [t.id for t in await services.list_tokens("dep-1")] == [token_id]
    assert await services.revoke_token(token_id)
    assert await services.authenticate(plain) is None
    assert not await services.revoke_token(token_id)

    with pytest.raises(InvalidInput):
        await services.add_principal("dep-1", "again", ["department"])
    with pytest.raises(InvalidInput) as bad:
        await services.add_principal("x", "x", ["department", "superuser"])
    assert "superuser" in str(bad.value)
    with pytest.raises(NotFound):
        await services.create_token("nobody")


async def test_idempotency_through_the_services(services: Services, clock: FrozenClock) -> None:
    await services.add_principal("sys", "县审批系统", ["integrator"])
    assert await services.idempotency_begin("sys", "key-1", "hash-1") is None
    running = await services.idempotency_begin("sys", "key-1", "hash-1")
    assert running is not None and running.state == "running"
    assert await services.idempotency_complete("sys", "key-1", 201, [("etag", 'W/"1"')], b"{}")
    done = await services.idempotency_begin("sys", "key-1", "hash-1")
    assert done is not None and (done.state, done.status, done.headers, done.body) == (
        "completed",
        201,
        (("etag", 'W/"1"'),),
        b"{}",
    )
    assert await services.idempotency_begin("sys", "key-2", "hash-2") is None
    assert await services.idempotency_release("sys", "key-2")
    clock.advance(timedelta(hours=25))
    assert await services.purge_idempotency() == 1
    assert await services.idempotency_begin("sys", "key-1", "hash-3") is None


async def test_principal_fixtures(
    services: Services,
    make_principal: Callable[..., Principal],
    make_ctx: Callable[..., CallContext],
    issue_token: Callable[..., Awaitable[str]],
) -> None:
    unit = make_principal("unit", unit="unit_a")
    assert unit.roles == {"unit"} and unit.unit_id == "unit_a"
    assert make_principal("unit").id != make_principal("unit").id
    ctx = make_ctx("dispatcher", lang="en")
    assert ctx.lang == "en" and ctx.principal.county_wide
    token = await issue_token(unit)
    assert await services.authenticate(token) == unit
    second = await issue_token(unit, "another")  # the principal is stored once
    assert second != token and await services.authenticate(second) == unit
