"""Idempotency records: what a request sent with an ``Idempotency-Key`` did, so a retry gets the same answer.

The key is scoped to the principal that sent it (two callers may use the same key), and remembered until
``expires_at`` (24 hours by default). The lifecycle of a record:

1. :meth:`IdempotencyRepository.begin` — before the request runs: one ``INSERT … ON CONFLICT DO UPDATE …
   WHERE expired`` either inserts a ``running`` record, or takes over an expired one in place, or leaves the
   live record already there alone (a retry, or a concurrent duplicate), which a second statement then
   reads. The database decides on the key's unique index, so two concurrent firsts cannot both win.
2. :meth:`IdempotencyRepository.complete` — stores the response (status, headers, body) to replay.
   :meth:`IdempotencyRepository.release` instead drops a running record whose request failed in a way
   worth retrying.
3. :meth:`IdempotencyRepository.purge_expired` — housekeeping.

Each step is one statement (two for a duplicate), atomic on its own: the service runs them on an autocommit
connection (:meth:`lifecycle.store.db.Database.autocommit`). Every request sent with a key pays for a claim and
a completion, so both are kept cheap: the SQLAlchemy statements are built once per dialect with bound
parameters (no building or compiling per request), and on an autocommit PostgreSQL connection the claim,
completion and release go to the driver (asyncpg) as plain SQL, since SQLAlchemy's execution path costs more
CPU than the statement's round trip. The SQLAlchemy statements serve SQLite and callers inside a transaction.

The caller compares ``request_hash`` with the stored one: the same key with a different request is an
error, not a replay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal

from sqlalchemy import Insert, bindparam, delete, null, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

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


def _entry(row: Any) -> IdempotencyEntry:
    headers = row.response_headers
    return IdempotencyEntry(
        principal_id=row.principal_id,
        key=row.key,
        request_hash=row.request_hash,
        state=row.state,
        created_at=row.created_at,
        expires_at=row.expires_at,
        completed_at=row.completed_at,
        status=row.response_status,
        headers=tuple((str(name), str(value)) for name, value in headers) if headers is not None else None,
        body=bytes(row.response_body) if row.response_body is not None else None,
    )


# Bound parameter names differ from the column names: SQLAlchemy reserves those for the VALUES and SET clauses.
_THIS_RECORD = (records.c.principal_id == bindparam("principal"), records.c.key == bindparam("idem_key"))
_RUNNING = records.c.state == "running"


@cache
def _claim_statement(dialect: str) -> Insert:
    """Insert a running record, or turn an expired one into it; RETURNING a row only when claimed."""
    make_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    fresh = make_insert(records).values(
        principal_id=bindparam("principal"),
        key=bindparam("idem_key"),
        request_hash=bindparam("hash"),
        state="running",
        created_at=bindparam("claimed_at"),
        expires_at=bindparam("expires"),
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


_READ = select(records).where(*_THIS_RECORD)

_COMPLETE = (
    update(records)
    .where(*_THIS_RECORD, _RUNNING)
    .values(
        state="completed",
        completed_at=bindparam("now"),
        response_status=bindparam("status"),
        response_headers=bindparam("headers"),
        response_body=bindparam("body"),
    )
    .returning(records.c.key)
)

_RELEASE = delete(records).where(*_THIS_RECORD, _RUNNING).returning(records.c.key)


# The same three statements for asyncpg. The headers go in as JSON text cast to jsonb, so nothing depends on
# the jsonb codec SQLAlchemy installs on its connections.
_PG_CLAIM = """
INSERT INTO idempotency_records AS r (principal_id, key, request_hash, state, created_at, expires_at)
VALUES ($1, $2, $3, 'running', $4, $5)
ON CONFLICT (principal_id, key) DO UPDATE
SET request_hash = excluded.request_hash, state = 'running', created_at = excluded.created_at,
    expires_at = excluded.expires_at, completed_at = NULL, response_status = NULL, response_headers = NULL,
    response_body = NULL
WHERE r.expires_at <= $4
RETURNING r.key
"""

_PG_COMPLETE = """
UPDATE idempotency_records
SET state = 'completed', completed_at = $3, response_status = $4, response_headers = $5::text::jsonb,
    response_body = $6
WHERE principal_id = $1 AND key = $2 AND state = 'running'
RETURNING key
"""

_PG_RELEASE = """
DELETE FROM idempotency_records WHERE principal_id = $1 AND key = $2 AND state = 'running' RETURNING key
"""


def _dialect_name(executor: AsyncSession | AsyncConnection) -> str:
    if isinstance(executor, AsyncConnection):
        return executor.dialect.name
    return executor.get_bind().dialect.name


async def _asyncpg_driver(executor: AsyncSession | AsyncConnection) -> tuple[AsyncConnection, Any] | None:
    """``executor`` and the asyncpg connection under it when it is a PostgreSQL connection in autocommit mode
    (a statement sent to the driver then runs alone, as it would through SQLAlchemy), else None."""
    if not isinstance(executor, AsyncConnection) or executor.dialect.name != "postgresql":
        return None
    connection = executor.sync_connection
    if connection is None or connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        return None
    return executor, (await executor.get_raw_connection()).driver_connection


async def _driver_returns_row(executor: AsyncConnection, driver: Any, sql: str, *args: Any) -> bool:
    """Run ``sql`` on the driver: whether it returned a row. A connection the driver found dead is
    invalidated, as SQLAlchemy does for its own statements, so that the pool does not hand it out again."""
    try:
        return await driver.fetchval(sql, *args) is not None
    except BaseException:
        if driver.is_closed():
            await executor.invalidate()
        raise


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
            row = (await self.executor.execute(_READ, this)).first()
            if row is not None:
                return _entry(row)
            # Released between the two statements (its request failed): the key is free, claim it again.
        raise RuntimeError(f"idempotency key of principal {principal_id} kept changing hands; not claimed")

    async def _claim(self, principal_id: str, key: str, request_hash: str, now: datetime, expires: datetime) -> bool:
        """Run the claim statement; whether it inserted or took over the record."""
        on_driver = await _asyncpg_driver(self.executor)
        if on_driver is not None:
            return await _driver_returns_row(*on_driver, _PG_CLAIM, principal_id, key, request_hash, now, expires)
        values = {
            "principal": principal_id,
            "idem_key": key,
            "hash": request_hash,
            "claimed_at": now,
            "expires": expires,
            "now": now,
        }
        statement = _claim_statement(_dialect_name(self.executor))
        return (await self.executor.execute(statement, values)).first() is not None

    async def get(self, principal_id: str, key: str) -> IdempotencyEntry | None:
        """The record for (principal, key), expired or not, or None."""
        row = (await self.executor.execute(_READ, {"principal": principal_id, "idem_key": key})).first()
        return _entry(row) if row else None

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
        stored = [[name, value] for name, value in headers]
        on_driver = await _asyncpg_driver(self.executor)
        if on_driver is not None:
            args = (principal_id, key, now, status, json.dumps(stored), body)
            return await _driver_returns_row(*on_driver, _PG_COMPLETE, *args)
        values = {
            "principal": principal_id,
            "idem_key": key,
            "now": now,
            "status": status,
            "headers": stored,
            "body": body,
        }
        return (await self.executor.execute(_COMPLETE, values)).first() is not None

    async def release(self, principal_id: str, key: str) -> bool:
        """Forget a running record (its request failed before producing an answer worth replaying)."""
        on_driver = await _asyncpg_driver(self.executor)
        if on_driver is not None:
            return await _driver_returns_row(*on_driver, _PG_RELEASE, principal_id, key)
        result = await self.executor.execute(_RELEASE, {"principal": principal_id, "idem_key": key})
        return result.first() is not None

    async def purge_expired(self, now: datetime) -> int:
        """Delete every record past its expiry; how many were deleted."""
        result = await self.executor.execute(
            delete(records).where(records.c.expires_at <= now).returning(records.c.key)
        )
        return len(result.all())
