"""Definitions, principals with their tokens, and idempotency records in the store."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from lifecycle.clock import FrozenClock
from lifecycle.store import Database, DefinitionRepository, IdempotencyRepository, PrincipalRepository
from lifecycle.store.models import api_tokens
from lifecycle.store.principals import token_hash

pytestmark = pytest.mark.anyio

TTL = timedelta(hours=24)


async def test_definition_versions(database: Database, clock: FrozenClock) -> None:
    now = clock.now()
    async with database.transaction() as session:
        repository = DefinitionRepository(session)
        assert await repository.next_version("demo") == 1
        await repository.add("demo", 1, "sha256:a", "key: demo\n", "示例", "admin", None, True, now)
        await repository.add("demo", 2, "sha256:b", "key: demo # 2\n", "示例二", "admin", "改时限", True, now)
        await repository.add("other", 1, "sha256:c", "key: other\n", "其他", "admin", None, True, now)
    async with database.reader() as session:
        repository = DefinitionRepository(session)
        assert await repository.next_version("demo") == 3
        assert await repository.list_keys() == ["demo", "other"]
        assert [r.version for r in await repository.list_versions("demo")] == [1, 2]
        active = await repository.active("demo")
        assert active is not None and active.version == 2 and active.change_note == "改时限"
        first = await repository.get("demo", 1)
        assert first is not None and not first.active and first.yaml_text == "key: demo\n"
        assert first.published_at == now
        found = await repository.by_hash("demo", "sha256:b")
        assert found is not None and found.version == 2
        assert await repository.by_hash("demo", "sha256:c") is None
        assert await repository.get("demo", 9) is None


async def test_the_database_allows_one_active_version_per_key(database: Database, clock: FrozenClock) -> None:
    async with database.transaction() as session:
        await DefinitionRepository(session).add("demo", 1, "sha256:a", "x", "t", "admin", None, True, clock.now())
    with pytest.raises(IntegrityError):
        async with database.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO definitions (key, version, content_hash, yaml_text, title, published_at, "
                    "published_by, active) VALUES ('demo', 2, 'sha256:b', 'y', 't', :at, 'admin', :active)"
                ),
                {"at": clock.now(), "active": True},
            )


async def test_tokens_are_stored_hashed_and_can_be_revoked(database: Database, clock: FrozenClock) -> None:
    async with database.transaction() as session:
        repository = PrincipalRepository(session)
        await repository.add(
            "dep-1", "县住房城乡建委", ["department"], clock.now(), unit_id="housing_bureau", unit_kind="department"
        )
        token_id, plain = await repository.create_token("dep-1", "审批系统对接", clock.now())
    assert plain.startswith("lc_") and len(plain) == 46

    async with database.reader() as session:
        repository = PrincipalRepository(session)
        principal = await repository.authenticate(plain)
        assert principal is not None
        assert (principal.id, principal.unit_id, principal.roles) == ("dep-1", "housing_bureau", {"department"})
        assert await repository.authenticate(plain[:-1] + ("A" if plain[-1] != "A" else "B")) is None
        assert await repository.authenticate("not a token") is None
        stored = (await session.execute(select(api_tokens.c.token_hash, api_tokens.c.prefix))).one()
        assert stored.token_hash == token_hash(plain) and plain not in stored
        assert stored.prefix == plain[:11]
        [listed] = await repository.list_tokens("dep-1")
        assert (listed.id, listed.description, listed.revoked_at) == (token_id, "审批系统对接", None)

    async with database.transaction() as session:
        assert await PrincipalRepository(session).revoke(token_id, clock.now())
        assert not await PrincipalRepository(session).revoke(token_id, clock.now())
    async with database.reader() as session:
        assert await PrincipalRepository(session).authenticate(plain) is None
        [listed] = await PrincipalRepository(session).list_tokens()
        assert listed.revoked_at == clock.now()


def _statements(database: Database, how: str) -> AbstractAsyncContextManager[AsyncSession | AsyncConnection]:
    """Where idempotency statements run: a session's transaction, or an autocommit connection (what the
    services use; on PostgreSQL the repository then sends its hot statements to asyncpg directly)."""
    return database.transaction() if how == "transaction" else database.autocommit()


@pytest.mark.parametrize("how", ["transaction", "autocommit"])
async def test_idempotency_record_lifecycle(database: Database, clock: FrozenClock, how: str) -> None:
    async with database.transaction() as session:
        for principal in ("alice", "bob"):
            await PrincipalRepository(session).add(principal, principal, ["unit"], clock.now())

    async def begin(principal: str, key: str, request_hash: str) -> object:
        async with _statements(database, how) as executor:
            return await IdempotencyRepository(executor).begin(principal, key, request_hash, clock.now(), TTL)

    assert await begin("alice", "k1", "h1") is None  # claimed
    running = await begin("alice", "k1", "h1")  # a retry while the first still runs
    assert running is not None and running.state == "running" and running.request_hash == "h1"  # type: ignore[attr-defined]
    assert await begin("bob", "k1", "h9") is None  # keys are scoped per principal

    async with _statements(database, how) as executor:
        repository = IdempotencyRepository(executor)
        assert await repository.complete(
            "alice", "k1", 201, [("content-type", "application/json"), ("etag", 'W/"1"')], b'{"id":"p1"}', clock.now()
        )
        assert not await repository.complete("alice", "k1", 500, [], b"", clock.now())  # not running any more
    replay = await begin("alice", "k1", "h2")
    assert replay is not None
    assert (replay.state, replay.status, replay.body, replay.request_hash) == ("completed", 201, b'{"id":"p1"}', "h1")  # type: ignore[attr-defined]
    assert replay.headers == (("content-type", "application/json"), ("etag", 'W/"1"'))  # type: ignore[attr-defined]
    assert replay.expires_at == clock.now() + TTL  # type: ignore[attr-defined]

    # A running claim can be released (the request failed before answering): the key is free again.
    async with _statements(database, how) as executor:
        assert await IdempotencyRepository(executor).release("bob", "k1")
        assert not await IdempotencyRepository(executor).release("bob", "k1")  # nothing running any more
    assert await begin("bob", "k1", "h9") is None

    # After the TTL a key is forgotten: begin claims it afresh, and purge removes what expired.
    clock.advance(TTL + timedelta(seconds=1))
    assert await begin("alice", "k1", "h3") is None
    async with database.transaction() as session:
        repository = IdempotencyRepository(session)
        assert await repository.purge_expired(clock.now()) == 1  # bob's k1
        assert await repository.get("bob", "k1") is None
        fresh = await repository.get("alice", "k1")
        assert fresh is not None and fresh.request_hash == "h3" and fresh.state == "running"


@pytest.mark.parametrize("how", ["transaction", "autocommit"])
async def test_an_expired_answer_is_taken_over_whole(database: Database, clock: FrozenClock, how: str) -> None:
    async with database.transaction() as session:
        await PrincipalRepository(session).add("alice", "alice", ["unit"], clock.now())
    async with _statements(database, how) as executor:
        repository = IdempotencyRepository(executor)
        assert await repository.begin("alice", "k", "h1", clock.now(), TTL) is None
        assert await repository.complete("alice", "k", 201, [("etag", 'W/"1"')], b"first", clock.now())
    clock.advance(TTL)  # expires_at <= now: expired
    async with _statements(database, how) as executor:
        assert await IdempotencyRepository(executor).begin("alice", "k", "h2", clock.now(), TTL) is None
    async with database.reader() as session:
        record = await IdempotencyRepository(session).get("alice", "k")
        row = (await session.execute(text("SELECT response_headers IS NULL FROM idempotency_records"))).scalar()
    assert record is not None
    assert (record.state, record.request_hash, record.created_at) == ("running", "h2", clock.now())
    assert (record.status, record.headers, record.body, record.completed_at) == (None, None, None, None)
    assert row  # SQL NULL, not the JSON document null


@pytest.mark.parametrize("how", ["transaction", "autocommit"])
async def test_a_claim_lost_to_a_record_released_before_it_is_read_is_tried_again(
    database: Database, clock: FrozenClock, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with database.transaction() as session:
        await PrincipalRepository(session).add("alice", "alice", ["unit"], clock.now())
    real_claim = IdempotencyRepository._claim
    attempts = 0

    async def claim_losing_once(self: IdempotencyRepository, *args: Any) -> bool:
        nonlocal attempts
        attempts += 1
        return False if attempts == 1 else await real_claim(self, *args)  # first: as if a record was there

    monkeypatch.setattr(IdempotencyRepository, "_claim", claim_losing_once)
    async with _statements(database, how) as executor:
        assert await IdempotencyRepository(executor).begin("alice", "k", "h", clock.now(), TTL) is None
    assert attempts == 2
    async with database.reader() as session:
        record = await IdempotencyRepository(session).get("alice", "k")
    assert record is not None and record.state == "running"


# Only PostgreSQL's idempotency statements go to the driver directly: the test runs there alone.
@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_a_connection_the_driver_found_dead_is_not_pooled_again(db_url: str, clock: FrozenClock) -> None:
    database = Database(db_url, pool_size=1, max_overflow=0)  # one connection: the next checkout gets it again
    try:
        async with database.transaction() as session:
            await PrincipalRepository(session).add("alice", "alice", ["unit"], clock.now())
        with pytest.raises(DBAPIError) as raised:  # SQLAlchemy's shape, as for its own statements
            async with database.autocommit() as connection:
                await (await connection.get_raw_connection()).driver_connection.close()  # the server went away
                await IdempotencyRepository(connection).begin("alice", "k", "h", clock.now(), TTL)
        assert isinstance(raised.value.orig, asyncpg.InterfaceError)
        async with database.autocommit() as connection:  # a fresh connection, not the dead one
            assert await IdempotencyRepository(connection).begin("alice", "k", "h", clock.now(), TTL) is None
    finally:
        await database.dispose()
