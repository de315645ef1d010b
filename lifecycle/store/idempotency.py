"""Idempotency records: what a request sent with an ``Idempotency-Key`` did, so a retry gets the same answer.

The key is scoped to the principal that sent it (two callers may use the same key), and remembered until
``expires_at`` (24 hours by default). The lifecycle of a record:

1. :meth:`IdempotencyRepository.begin` — before the request runs: one ``INSERT … ON CONFLICT DO UPDATE …
   WHERE expired`` either inserts a ``running`` record, or takes over an expired one in place, or leaves the
   live record already there alone (a retry, or a concurrent duplicate), which a second statement then
   reads. The database decides on the key's unique index, so two concurrent firsts cannot both win.
2. :meth:`IdempotencyRepository.complete` — stores the response (status, headers, body) to replay; or
   :meth:`IdempotencyRepository.store_answer` does, in the transaction of the change it answers.
   :meth:`IdempotencyRepository.release` instead drops a running record whose request failed in a way
   worth retrying.
3. :meth:`IdempotencyRepository.purge_expired` — housekeeping.

On PostgreSQL a change may instead claim its request's key in its own transaction
(:mod:`lifecycle.services.answers`): the statement locking its project tries the key's advisory lock
(:data:`CLAIM_GUARD`) and reads the key's record (:data:`RECORD_SEEN`), and the change inserts the completed
record with its answer (:meth:`IdempotencyRepository.insert_answered`). Every claim statement tries that advisory
lock too, so no request takes a key such a change holds. A request whose change did not commit has its answer
stored by :meth:`IdempotencyRepository.record`, claim and completion in one.

Each step is one statement (two for a duplicate), atomic on its own: the service runs them on an autocommit
connection (:meth:`lifecycle.store.db.Database.autocommit`). Every request sent with a key pays for a claim and
a completion, so both are kept cheap: the statements are built once per dialect with bound parameters, and run
through :mod:`lifecycle.store.driver`, which on PostgreSQL hands them to asyncpg compiled once (SQLAlchemy's
execution path costs more CPU than the statement's round trip).

The caller compares ``request_hash`` with the stored one: the same key with a different request is an
error, not a replay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Final, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Insert,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from . import driver
from .models import idempotency_records as records

CLAIM_ATTEMPTS = 3
"""How often :meth:`IdempotencyRepository.begin` tries again when the record it lost to is released before it
could be read (the key is free again). More than one lost race in a row would take a release per attempt."""


StoredResponse = tuple[int, Sequence[tuple[str, str]], bytes]
"""A response as a record keeps it: status, headers (lower-case names), body."""


@dataclass(frozen=True)
class IdempotencyEntry:
    """A stored idempotency record. ``status``, ``headers`` and ``body`` are set once ``completed``."""

    principal_id: str
    key: str
    request_hash: str
    state: Literal["running", "completed"]
    created_at: datetime
    expires_at: datetime
    completed_at: datetime | None = None
    status: int | None = None
    headers: tuple[tuple[str, str], ...] | None = None
    body: bytes | None = None


_COLUMNS = (
    records.c.principal_id,
    records.c.key,
    records.c.request_hash,
    records.c.state,
    records.c.created_at,
    records.c.expires_at,
    records.c.completed_at,
    records.c.response_status,
    records.c.response_headers,
    records.c.response_body,
)
"""The columns :data:`_READ` selects, in the order :func:`_entry` reads them (rows are read by position)."""


def _entry(row: Sequence[Any]) -> IdempotencyEntry:
    principal_id, key, request_hash, state, created_at, expires_at, completed_at, status, headers, body = row
    return IdempotencyEntry(
        principal_id=principal_id,
        key=key,
        request_hash=request_hash,
        state=state,
        created_at=created_at,
        expires_at=expires_at,
        completed_at=completed_at,
        status=status,
        headers=tuple((str(name), str(value)) for name, value in headers) if headers is not None else None,
        body=bytes(body) if body is not None else None,
    )


# Bound parameter names differ from the column names: SQLAlchemy reserves those for the VALUES and SET clauses.
_THIS_RECORD = (records.c.principal_id == bindparam("principal"), records.c.key == bindparam("idem_key"))
_RUNNING = records.c.state == "running"


# --- the key claimed by a change's own transaction (PostgreSQL; lifecycle.services.answers) ---------------


def claim_lock_key(principal_id: str, key: str) -> int:
    """The advisory lock a change holds on (principal, key) while it claims the key in its own transaction: a
    signed 64-bit hash of the two (PostgreSQL's ``bigint`` advisory keys). Two different keys sharing a hash
    only make one of two requests running at the same instant wait for a retry (409)."""
    principal = principal_id.encode()
    named = len(principal).to_bytes(4, "big") + principal + key.encode()  # length first: no two pairs alike
    digest = hashlib.blake2b(named, digest_size=8, person=b"lc-idem-key").digest()
    return int.from_bytes(digest, "big", signed=True)


CLAIM_GUARD: Final[ColumnElement[bool]] = func.pg_try_advisory_xact_lock(bindparam("claim_lock", type_=BigInteger))
"""The condition a change claiming its key adds to the statement that locks its project: the key's advisory
lock, taken for the rest of the transaction. ``pg_try_…`` never waits: while another transaction holds it,
the project's row is filtered out before its lock is waited for, so a duplicate learns of it at once."""

RECORD_SEEN: Final[ColumnElement[Any]] = (
    select(case((records.c.expires_at > bindparam("now"), records.c.state), else_=literal("expired")))
    .where(*_THIS_RECORD)
    .scalar_subquery()
)
"""The key's record as the statement that locks the project sees it: its state while live (``running``,
``completed``), ``expired``, or NULL when there is none."""


@cache
def _claim_statement(dialect: str, answered: bool = False) -> Insert:
    """Insert a running record, or turn an expired one into it; RETURNING a row only when claimed. With
    ``answered``, the record inserted is a completed one holding its answer (:meth:`IdempotencyRepository.record`).

    The row is inserted only when no live record is seen (``WHERE NOT EXISTS``), so a duplicate does not even
    try to insert. That matters: an insert that meets the key on the unique index waits for any transaction
    that has the existing row locked, and the request it duplicates stores its answer in its change's own
    transaction (:mod:`lifecycle.services.answers`). The duplicate would wait for that commit instead of
    getting its 409 at once. Two firsts at once both try to insert; the unique index makes one of them wait
    for the other's claim, which commits on its own at once.

    On PostgreSQL, nothing is inserted either while a change's transaction holds the key by its advisory lock
    (:data:`CLAIM_GUARD`; :mod:`lifecycle.services.answers`): that change has no record until it commits, and
    its own insert would then fail on this one, losing a valid change to a duplicate. The lock is tried, never
    waited for, and is released as the statement commits."""
    make_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    live = select(records.c.key).where(*_THIS_RECORD, records.c.expires_at > bindparam("now"))
    columns = ["principal_id", "key", "request_hash", "state", "created_at", "expires_at"]
    values: list[Any] = [
        bindparam("principal", type_=records.c.principal_id.type),
        bindparam("idem_key", type_=records.c.key.type),
        bindparam("hash", type_=records.c.request_hash.type),
        literal("completed" if answered else "running", records.c.state.type),
        bindparam("claimed_at", type_=records.c.created_at.type),
        bindparam("expires", type_=records.c.expires_at.type),
    ]
    if answered:
        columns += ["completed_at", "response_status", "response_headers", "response_body"]
        values += [
            bindparam("claimed_at", type_=records.c.completed_at.type),
            bindparam("status", type_=records.c.response_status.type),
            bindparam("headers", type_=records.c.response_headers.type),
            bindparam("body", type_=records.c.response_body.type),
        ]
    chosen = select(*values).where(~exists(live))
    if dialect == "postgresql":
        # Not while a change's transaction holds the key (lifecycle.services.answers): it has no record yet.
        chosen = chosen.where(CLAIM_GUARD)
    fresh = make_insert(records).from_select(columns, chosen)
    taken_over = {
        "request_hash": fresh.excluded.request_hash,
        "state": fresh.excluded.state,
        "created_at": fresh.excluded.created_at,
        "expires_at": fresh.excluded.expires_at,
        "completed_at": fresh.excluded.completed_at,
        "response_status": fresh.excluded.response_status,
        "response_headers": fresh.excluded.response_headers,
        "response_body": fresh.excluded.response_body,
    }
    return fresh.on_conflict_do_update(
        index_elements=[records.c.principal_id, records.c.key],
        set_=taken_over,
        where=records.c.expires_at <= bindparam("now"),
    ).returning(records.c.key)


def claim_params(principal_id: str, key: str, now: datetime) -> dict[str, Any]:
    """The parameters of :data:`CLAIM_GUARD` and :data:`RECORD_SEEN`."""
    return {"principal": principal_id, "idem_key": key, "now": now, "claim_lock": claim_lock_key(principal_id, key)}


KEY_CONSTRAINT: Final = "pk_idempotency_records"
"""The primary key (principal, key), on which :data:`_INSERT_ANSWERED` fails when the key's record exists."""

_INSERT_ANSWERED = insert(records).values(
    principal_id=bindparam("principal"),
    key=bindparam("idem_key"),
    request_hash=bindparam("hash"),
    state=bindparam("state"),
    created_at=bindparam("now"),
    expires_at=bindparam("expires"),
    completed_at=bindparam("now"),
    response_status=bindparam("status"),
    response_headers=bindparam("headers"),
    response_body=bindparam("body"),
)
"""A completed record with its answer, as a plain ``INSERT``: a record of the key inserted meanwhile by anyone
fails it on the primary key (and the change with it). Nothing is read back, so it rides with the change."""

_DROP_EXPIRED = delete(records).where(*_THIS_RECORD, records.c.expires_at <= bindparam("now"))


_READ = select(*_COLUMNS).where(*_THIS_RECORD)

_STORE = (
    update(records)
    .where(*_THIS_RECORD, _RUNNING)
    .values(
        state="completed",
        completed_at=bindparam("now"),
        response_status=bindparam("status"),
        response_headers=bindparam("headers"),
        response_body=bindparam("body"),
    )
)
"""Store the answer of a running request. Reading nothing back, inside a change's transaction it may ride with
the change's own writes (:meth:`IdempotencyRepository.store_answer`)."""

_COMPLETE = _STORE.returning(records.c.key)

_RELEASE = delete(records).where(*_THIS_RECORD, _RUNNING).returning(records.c.key)


def _answer_values(
    principal_id: str, key: str, status: int, headers: Sequence[tuple[str, str]], body: bytes, now: datetime
) -> dict[str, Any]:
    """The parameters of :data:`_STORE` and :data:`_COMPLETE`."""
    return {
        "principal": principal_id,
        "idem_key": key,
        "now": now,
        "status": status,
        "headers": [[name, value] for name, value in headers],
        "body": body,
    }


def _claim_values(
    dialect: str, principal_id: str, key: str, request_hash: str, now: datetime, ttl: timedelta
) -> dict[str, Any]:
    """The parameters of :func:`_claim_statement` on ``dialect`` (without the answer's)."""
    values = {
        "principal": principal_id,
        "idem_key": key,
        "hash": request_hash,
        "claimed_at": now,
        "expires": now + ttl,
        "now": now,
    }
    if dialect == "postgresql":
        values["claim_lock"] = claim_lock_key(principal_id, key)
    return values


def _dialect_name(executor: AsyncSession | AsyncConnection) -> str:
    if isinstance(executor, AsyncConnection):
        return executor.dialect.name
    return executor.get_bind().dialect.name


class IdempotencyRepository:
    """Idempotency records, through a session (in its transaction) or a connection (e.g. in autocommit)."""

    def __init__(self, executor: AsyncSession | AsyncConnection) -> None:
        self.executor = executor

    async def begin(
        self, principal_id: str, key: str, request_hash: str, now: datetime, ttl: timedelta
    ) -> IdempotencyEntry | None:
        """Start a request: None if this call claimed (principal, key) with a ``running`` record (go ahead),
        else the live record already stored for it. An expired record is replaced as if it were not there."""
        dialect = _dialect_name(self.executor)
        values = _claim_values(dialect, principal_id, key, request_hash, now, ttl)
        return await self._claim_or_read(_claim_statement(dialect), values)

    async def record(
        self,
        principal_id: str,
        key: str,
        request_hash: str,
        answer: StoredResponse,
        now: datetime,
        ttl: timedelta,
    ) -> IdempotencyEntry | None:
        """Store the answer of a request whose key nothing claimed up front (its change was to claim it in its
        own transaction, and did not commit): None once stored, as a completed record; else the live record
        already stored for the key, which is the answer to give instead. Claim and completion in one."""
        status, headers, body = answer
        dialect = _dialect_name(self.executor)
        values = _claim_values(dialect, principal_id, key, request_hash, now, ttl)
        values.update(status=status, headers=[[name, value] for name, value in headers], body=body)
        return await self._claim_or_read(_claim_statement(dialect, answered=True), values)

    async def _claim_or_read(self, statement: Insert, values: dict[str, Any]) -> IdempotencyEntry | None:
        this = {"principal": values["principal"], "idem_key": values["idem_key"]}
        for _ in range(CLAIM_ATTEMPTS):
            if await self._claim(statement, values):
                return None
            found = await driver.rows(self.executor, _READ, this)
            if found:
                return _entry(found[0])
            # Released between the two statements (its request failed): the key is free, claim it again. Or,
            # on PostgreSQL, held by a change's transaction, which has no record yet.
        if "claim_lock" in values:
            # Held all along: in flight. Its request is not known until it answers, so it is taken to be this
            # one (a duplicate gets 409 now; one reusing the key for another request, 422 once it has answered).
            return IdempotencyEntry(
                values["principal"], values["idem_key"], values["hash"], "running", values["now"], values["expires"]
            )
        raise RuntimeError(f"idempotency key of principal {values['principal']} kept changing hands; not claimed")

    async def _claim(self, statement: Insert, values: dict[str, Any]) -> bool:
        """Run a claim statement; whether it inserted or took over the record."""
        return bool(await driver.rows(self.executor, statement, values))

    async def insert_answered(
        self,
        principal_id: str,
        key: str,
        request_hash: str,
        answer: StoredResponse,
        now: datetime,
        ttl: timedelta,
    ) -> None:
        """Insert the completed record of a key claimed by the executor's transaction, with its answer
        (:mod:`lifecycle.services.answers`). Held back to ride with the change's writes; a record of the key
        inserted meanwhile makes it fail with :class:`~sqlalchemy.exc.IntegrityError` on the primary key."""
        status, headers, body = answer
        values = _answer_values(principal_id, key, status, headers, body, now)
        values.update(hash=request_hash, state="completed", expires=now + ttl)
        await driver.execute(self.executor, _INSERT_ANSWERED, values)

    async def drop_expired(self, principal_id: str, key: str, now: datetime) -> None:
        """Delete the key's record if it has expired (before a change claiming the key inserts its own)."""
        await driver.execute(self.executor, _DROP_EXPIRED, {"principal": principal_id, "idem_key": key, "now": now})

    async def get(self, principal_id: str, key: str) -> IdempotencyEntry | None:
        """The record for (principal, key), expired or not, or None."""
        found = await driver.rows(self.executor, _READ, {"principal": principal_id, "idem_key": key})
        return _entry(found[0]) if found else None

    async def complete(
        self,
        principal_id: str,
        key: str,
        status: int,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        now: datetime,
    ) -> bool:
        """Store the response of a running request; False if there is no running record for it."""
        values = _answer_values(principal_id, key, status, headers, body, now)
        return bool(await driver.rows(self.executor, _COMPLETE, values))

    async def store_answer(
        self,
        principal_id: str,
        key: str,
        status: int,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        now: datetime,
    ) -> None:
        """Store the response of a running request in the executor's transaction, with the change it answers
        (:mod:`lifecycle.services.answers`). Nothing is read back, so the statement may be held and sent with
        the change's own (:func:`lifecycle.store.driver.deferred`). As with :meth:`complete`, a record that is
        no longer running is left alone; one taken over after it expired is running again, for its new request,
        so an answer stored more than the expiry (24 h) after its claim would land on it."""
        await driver.execute(self.executor, _STORE, _answer_values(principal_id, key, status, headers, body, now))

    async def release(self, principal_id: str, key: str) -> bool:
        """Forget a running record (its request failed before producing an answer worth replaying)."""
        return bool(await driver.rows(self.executor, _RELEASE, {"principal": principal_id, "idem_key": key}))

    async def purge_expired(self, now: datetime) -> int:
        """Delete every record past its expiry; how many were deleted."""
        result = await self.executor.execute(
            delete(records).where(records.c.expires_at <= now).returning(records.c.key)
        )
        return len(result.all())
