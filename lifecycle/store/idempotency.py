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

Each step is one statement (two for a duplicate), atomic on its own: the service runs them on an autocommit
connection (:meth:`lifecycle.store.db.Database.autocommit`). Every request sent with a key pays for a claim and
a completion, so both are kept cheap: the statements are built once per dialect with bound parameters, and run
through :mod:`lifecycle.store.driver`, which on PostgreSQL hands them to asyncpg compiled once (SQLAlchemy's
execution path costs more CPU than the statement's round trip).

The caller compares ``request_hash`` with the stored one: the same key with a different request is an
error, not a replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal

from sqlalchemy import Insert, bindparam, delete, exists, literal, null, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from . import driver
from .models import idempotency_records as records

CLAIM_ATTEMPTS = 3
"""How often :meth:`IdempotencyRepository.begin` tries again when the record it lost to is released before it
could be read (the key is free again). More than one lost race in a row would take a release per attempt."""


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


@cache
def _claim_statement(dialect: str) -> Insert:
    """Insert a running record, or turn an expired one into it; RETURNING a row only when claimed.

    The row is inserted only when no live record is seen (``WHERE NOT EXISTS``), so a duplicate does not even
    try to insert. That matters: an insert that meets the key on the unique index waits for any transaction
    that has the existing row locked, and the request it duplicates stores its answer in its change's own
    transaction (:mod:`lifecycle.services.answers`). The duplicate would wait for that commit instead of
    getting its 409 at once. Two firsts at once both try to insert; the unique index makes one of them wait
    for the other's claim, which commits on its own at once."""
    make_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    live = select(records.c.key).where(*_THIS_RECORD, records.c.expires_at > bindparam("now"))
    fresh = make_insert(records).from_select(
        ["principal_id", "key", "request_hash", "state", "created_at", "expires_at"],
        select(
            bindparam("principal", type_=records.c.principal_id.type),
            bindparam("idem_key", type_=records.c.key.type),
            bindparam("hash", type_=records.c.request_hash.type),
            literal("running", records.c.state.type),
            bindparam("claimed_at", type_=records.c.created_at.type),
            bindparam("expires", type_=records.c.expires_at.type),
        ).where(~exists(live)),
    )
    taken_over = {
        "request_hash": fresh.excluded.request_hash,
        "state": "running",
        "created_at": fresh.excluded.created_at,
        "expires_at": fresh.excluded.expires_at,
        # null(), not None: None would be stored as the JSON document ``null`` in response_headers.
        "completed_at": null(),
        "response_status": null(),
        "response_headers": null(),
        "response_body": null(),
    }
    return fresh.on_conflict_do_update(
        index_elements=[records.c.principal_id, records.c.key],
        set_=taken_over,
        where=records.c.expires_at <= bindparam("now"),
    ).returning(records.c.key)


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
        this = {"principal": principal_id, "idem_key": key}
        for _ in range(CLAIM_ATTEMPTS):
            if await self._claim(principal_id, key, request_hash, now, now + ttl):
                return None
            found = await driver.rows(self.executor, _READ, this)
            if found:
                return _entry(found[0])
            # Released between the two statements (its request failed): the key is free, claim it again.
        raise RuntimeError(f"idempotency key of principal {principal_id} kept changing hands; not claimed")

    async def _claim(self, principal_id: str, key: str, request_hash: str, now: datetime, expires: datetime) -> bool:
        """Run the claim statement; whether it inserted or took over the record."""
        values = {
            "principal": principal_id,
            "idem_key": key,
            "hash": request_hash,
            "claimed_at": now,
            "expires": expires,
            "now": now,
        }
        statement = _claim_statement(_dialect_name(self.executor))
        return bool(await driver.rows(self.executor, statement, values))

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
