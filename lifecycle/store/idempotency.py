"""Idempotency records: what a request sent with an ``Idempotency-Key`` did, so a retry gets the same answer.

The key is scoped to the principal that sent it (two callers may use the same key), and remembered until
``expires_at`` (24 hours by default). The lifecycle of a record:

1. :meth:`IdempotencyRepository.begin` — in its own short transaction, before the request runs: inserts a
   ``running`` record, or returns the record already there (a retry, or a concurrent duplicate). The
   insert is ``INSERT … ON CONFLICT DO NOTHING`` so two concurrent firsts cannot both win.
2. :meth:`IdempotencyRepository.complete` — stores the response (status, headers, body) to replay.
   :meth:`IdempotencyRepository.release` instead drops a running record whose request failed in a way
   worth retrying.
3. :meth:`IdempotencyRepository.purge_expired` — housekeeping.

The caller compares ``request_hash`` with the stored one: the same key with a different request is an
error, not a replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from .models import idempotency_records as records


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


class IdempotencyRepository:
    """Idempotency records within the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def begin(
        self, principal_id: str, key: str, request_hash: str, now: datetime, ttl: timedelta
    ) -> IdempotencyEntry | None:
        """Start a request: None if this call inserted the ``running`` record (go ahead), else the record
        already stored for (principal, key). An expired record is replaced as if it were not there."""
        where = (records.c.principal_id == principal_id, records.c.key == key)
        await self.session.execute(delete(records).where(*where, records.c.expires_at <= now))
        dialect = self.session.get_bind().dialect.name
        make_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = (
            make_insert(records)
            .values(
                principal_id=principal_id,
                key=key,
                request_hash=request_hash,
                state="running",
                created_at=now,
                expires_at=now + ttl,
            )
            .on_conflict_do_nothing(index_elements=["principal_id", "key"])
            .returning(records.c.key)
        )
        inserted = (await self.session.execute(statement)).first()
        if inserted is not None:
            return None
        row = (await self.session.execute(select(records).where(*where))).first()
        # The row cannot vanish in between: only begin (for expired rows) and release delete, and the
        # conflicting row is committed and not expired.
        assert row is not None
        return _entry(row)

    async def get(self, principal_id: str, key: str) -> IdempotencyEntry | None:
        """The record for (principal, key), expired or not, or None."""
        row = (
            await self.session.execute(
                select(records).where(records.c.principal_id == principal_id, records.c.key == key)
            )
        ).first()
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
        result = await self.session.execute(
            update(records)
            .where(records.c.principal_id == principal_id, records.c.key == key, records.c.state == "running")
            .values(
                state="completed",
                completed_at=now,
                response_status=status,
                response_headers=[[name, value] for name, value in headers],
                response_body=body,
            )
            .returning(records.c.key)
        )
        return result.first() is not None

    async def release(self, principal_id: str, key: str) -> bool:
        """Forget a running record (its request failed before producing an answer worth replaying)."""
        result = await self.session.execute(
            delete(records)
            .where(records.c.principal_id == principal_id, records.c.key == key, records.c.state == "running")
            .returning(records.c.key)
        )
        return result.first() is not None

    async def purge_expired(self, now: datetime) -> int:
        """Delete every record past its expiry; how many were deleted."""
        result = await self.session.execute(delete(records).where(records.c.expires_at <= now).returning(records.c.key))
        return len(result.all())
