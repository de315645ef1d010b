"""Definitions, principals with their tokens, and idempotency records in the store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

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


async def test_idempotency_record_lifecycle(database: Database, clock: FrozenClock) -> None:
    async with database.transaction() as session:
        for principal in ("alice", "bob"):
            await PrincipalRepository(session).add(principal, principal, ["unit"], clock.now())

    async def begin(principal: str, key: str, request_hash: str) -> object:
        async with database.transaction() as session:
            return await IdempotencyRepository(session).begin(principal, key, request_hash, clock.now(), TTL)

    assert await begin("alice", "k1", "h1") is None  # claimed
    running = await begin("alice", "k1", "h1")  # a retry while the first still runs
    assert running is not None and running.state == "running" and running.request_hash == "h1"  # type: ignore[attr-defined]
    assert await begin("bob", "k1", "h9") is None  # keys are scoped per principal

    async with database.transaction() as session:
        repository = IdempotencyRepository(session)
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
    async with database.transaction() as session:
        assert await IdempotencyRepository(session).release("bob", "k1")
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
