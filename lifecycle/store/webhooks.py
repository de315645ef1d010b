"""Webhook endpoints, the outbox (deliveries), the attempts log and the endpoint log.

The outbox is written by the services in the transaction of the change that caused each event, and read by
the dispatcher in three steps, each its own short transaction and none of them open while anything is sent:

1. :meth:`WebhookRepository.claim` — take up to *n* due deliveries and lease them for a while;
2. (send, outside any transaction);
3. :meth:`WebhookRepository.settle` — record the attempt and the delivery's new state, if the lease is still
   ours.

**The claim** picks pending rows that are due, not leased (or whose lease ran out: their dispatcher died),
of enabled endpoints, and that have **no earlier pending row of the same endpoint and project** — so the
events of one project reach an endpoint in the order they happened: the next one is not attempted while an
earlier one is waiting for a retry. (Rows of one project get increasing ids in event order: the writers of a
project are serialised by its row lock.) On PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED``:
several dispatchers claim at once without waiting for each other or taking the same row; the lease, not the
row lock, keeps the row theirs after the claim commits. On SQLite the claim is the same conditional
``UPDATE … RETURNING`` under the database's single write lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from . import driver
from .models_webhooks import webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_log


@dataclass(frozen=True, slots=True)
class Subscription:
    """What an enabled endpoint wants: the event types (patterns) and filters the outbox matches events
    against. Read on every change of a project, so it carries nothing else (no URL, no secrets)."""

    endpoint_id: str
    event_types: tuple[str, ...]
    filters: dict[str, Any]


@dataclass(frozen=True)
class EndpointRecord:
    """A stored endpoint. The secrets are left out of ``repr`` (and never leave the services but to sign)."""

    id: str
    owner: str
    url: str
    description: str
    event_types: list[str]
    filters: dict[str, Any]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    secret: str = field(repr=False)
    previous_secret: str | None = field(repr=False)
    previous_secret_expires_at: datetime | None
    failing_since: datetime | None
    last_success_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign a message sent at ``now``: the current one, and the previous one until it
        expires."""
        keys = [self.secret]
        expires = self.previous_secret_expires_at
        if self.previous_secret and expires is not None and now < expires:
            keys.append(self.previous_secret)
        return keys


@dataclass(frozen=True)
class DeliveryRecord:
    """An outbox row: one event for one endpoint, and where its sending stands."""

    id: int
    endpoint_id: str
    event_id: str
    event_type: str
    project_id: str | None
    body: str = field(repr=False)
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    claim: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    redelivery_of: int | None


@dataclass(frozen=True)
class AttemptRecord:
    """One HTTP attempt of a delivery."""

    id: int
    delivery_id: int
    number: int
    at: datetime
    duration_ms: int
    status_code: int | None
    response_excerpt: str | None
    error: str | None


@dataclass(frozen=True)
class LogRecord:
    """An entry of the endpoint log."""

    id: int
    endpoint_id: str | None
    kind: str
    at: datetime
    actor: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class NewDelivery:
    """An outbox row to write."""

    endpoint_id: str
    event_id: str
    event_type: str
    project_id: str | None
    body: str
    next_attempt_at: datetime
    redelivery_of: int | None = None


SUCCESS_RESOLUTION = timedelta(minutes=1)
"""How stale an endpoint's ``last_success_at`` may be (see :meth:`WebhookRepository.note_success`)."""

_ENDPOINT_COLUMNS = tuple(c.name for c in webhook_endpoints.columns)
_DELIVERY_COLUMNS = tuple(c.name for c in webhook_deliveries.columns)
_ATTEMPT_COLUMNS = tuple(c.name for c in webhook_attempts.columns)


def _endpoint(row: Any) -> EndpointRecord:
    # Every read of endpoints selects the whole table, in its column order; rows are read by position (the
    # driver's rows have no attributes: see .driver).
    values = dict(zip(_ENDPOINT_COLUMNS, row, strict=True))
    values["event_types"] = list(values["event_types"] or [])
    values["filters"] = dict(values["filters"] or {})
    return EndpointRecord(**values)


def _delivery(row: Any) -> DeliveryRecord:
    return DeliveryRecord(**{name: getattr(row, name) for name in _DELIVERY_COLUMNS})


def _attempt(row: Any) -> AttemptRecord:
    return AttemptRecord(**{name: getattr(row, name) for name in _ATTEMPT_COLUMNS})


_SUBSCRIPTIONS = (
    select(webhook_endpoints.c.id, webhook_endpoints.c.event_types, webhook_endpoints.c.filters)
    .where(webhook_endpoints.c.enabled.is_(True))
    .order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
)


SUBSCRIPTIONS_READ = (
    select(
        func.json_agg(
            aggregate_order_by(
                func.json_build_array(
                    webhook_endpoints.c.id, webhook_endpoints.c.event_types, webhook_endpoints.c.filters
                ),
                webhook_endpoints.c.created_at,
                webhook_endpoints.c.id,
            ),
            type_=JSON,
        )
    )
    .where(webhook_endpoints.c.enabled.is_(True))
    .scalar_subquery()
)
"""What :meth:`WebhookRepository.subscriptions` reads, as one JSON value (PostgreSQL): a scalar subquery another
statement can carry (the project's lock, :class:`lifecycle.services.hooks.LockRead`); read it with
:func:`subscriptions_of`."""


def subscriptions_of(value: Sequence[Sequence[Any]] | None) -> list[Subscription]:
    """The subscriptions in a value of :data:`SUBSCRIPTIONS_READ` (None: no enabled endpoint)."""
    return [
        Subscription(str(endpoint_id), tuple(event_types or ()), dict(filters or {}))
        for endpoint_id, event_types, filters in value or ()
    ]


_DELIVERY_VALUES = (
    "endpoint_id",
    "event_id",
    "event_type",
    "project_id",
    "body",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "redelivery_of",
)
_INSERT_DELIVERIES = webhook_deliveries.insert().from_select(
    list(_DELIVERY_VALUES),
    select(*(bindparam(name, type_=webhook_deliveries.c[name].type) for name in _DELIVERY_VALUES)).where(
        exists().where(webhook_endpoints.c.id == bindparam("endpoint_id"), webhook_endpoints.c.enabled.is_(True))
    ),
)
"""Outbox rows, each only while its endpoint exists and is enabled: the subscriptions a change matched were
read earlier in its transaction (with the project's lock, see :data:`SUBSCRIPTIONS_READ`), and an endpoint
deleted or disabled since then gets nothing, rather than failing the change on the foreign key or queueing a
delivery it no longer wants."""


class WebhookRepository:
    """Reads and writes the webhook tables within the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- endpoints ----------------------------------------------------------------------------------------

    async def add_endpoint(self, values: dict[str, Any]) -> EndpointRecord:
        """Insert an endpoint (every column given)."""
        await self.session.execute(webhook_endpoints.insert().values(**values))
        record = await self.endpoint(values["id"])
        assert record is not None
        return record

    async def endpoint(self, endpoint_id: str, *, for_update: bool = False) -> EndpointRecord | None:
        """The endpoint, or None; ``for_update`` locks its row (PostgreSQL) until the transaction ends."""
        query = select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        return _endpoint(row) if row else None

    async def endpoints(self, owner: str | None = None, *, enabled_only: bool = False) -> list[EndpointRecord]:
        """Endpoints (of one owner, or all), oldest first."""
        query = select(webhook_endpoints).order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
        if owner is not None:
            query = query.where(webhook_endpoints.c.owner == owner)
        if enabled_only:
            query = query.where(webhook_endpoints.c.enabled.is_(True))
        return [_endpoint(row) for row in await self.session.execute(query)]

    async def subscriptions(self) -> list[Subscription]:
        """What every enabled endpoint wants, oldest endpoint first (every change of a project asks this:
        a statement built once)."""
        return subscriptions_of(await driver.rows(self.session, _SUBSCRIPTIONS))

    async def update_endpoint(self, endpoint_id: str, values: dict[str, Any]) -> EndpointRecord:
        """Change columns of an endpoint and bump its version."""
        await self.session.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint_id)
            .values(**values, version=webhook_endpoints.c.version + 1)
        )
        record = await self.endpoint(endpoint_id)
        assert record is not None
        return record

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint with its deliveries and attempts (its log entries stay)."""
        await self.session.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))

    async def note_success(self, endpoint_id: str, now: datetime) -> None:
        """A 2xx answer: the endpoint's run of failures ends, and ``last_success_at`` moves on — at most once a
        minute. Every success writing the endpoint's row would make all concurrent dispatchers queue on that
        one row lock; this way a healthy endpoint's row is written about once a minute."""
        stale = now - SUCCESS_RESOLUTION
        await self.session.execute(
            update(webhook_endpoints)
            .where(
                webhook_endpoints.c.id == endpoint_id,
                or_(
                    webhook_endpoints.c.failing_since.is_not(None),
                    webhook_endpoints.c.last_success_at.is_(None),
                    webhook_endpoints.c.last_success_at < stale,
                ),
            )
            .values(failing_since=None, last_success_at=now)
        )

    async def note_failure(self, endpoint_id: str, now: datetime) -> datetime:
        """A failed attempt: start the run of failures if none is running; when the run started."""
        await self.session.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.failing_since.is_(None))
            .values(failing_since=now)
        )
        since = (
            await self.session.execute(
                select(webhook_endpoints.c.failing_since).where(webhook_endpoints.c.id == endpoint_id)
            )
        ).scalar_one_or_none()
        return since or now

    async def disable(self, endpoint_id: str, reason: str, now: datetime) -> bool:
        """Disable an enabled endpoint; False if it was already disabled (or is gone)."""
        result = await self.session.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.enabled.is_(True))
            .values(
                enabled=False,
                disabled_reason=reason,
                disabled_at=now,
                updated_at=now,
                version=webhook_endpoints.c.version + 1,
            )
        )
        return bool(getattr(result, "rowcount", 0))

    # --- outbox -------------------------------------------------------------------------------------------

    async def enqueue(self, rows: Sequence[NewDelivery], now: datetime) -> None:
        """Write outbox rows, in order (their ids increase in this order)."""
        if not rows:
            return
        await driver.execute_many(
            self.session,
            _INSERT_DELIVERIES,
            [
                {
                    "endpoint_id": r.endpoint_id,
                    "event_id": r.event_id,
                    "event_type": r.event_type,
                    "project_id": r.project_id,
                    "body": r.body,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": r.next_attempt_at,
                    "created_at": now,
                    "redelivery_of": r.redelivery_of,
                }
                for r in rows
            ],
        )

    async def enqueue_one(self, row: NewDelivery, now: datetime) -> DeliveryRecord:
        """Write one outbox row and return it."""
        result = await self.session.execute(
            webhook_deliveries.insert()
            .values(
                endpoint_id=row.endpoint_id,
                event_id=row.event_id,
                event_type=row.event_type,
                project_id=row.project_id,
                body=row.body,
                status="pending",
                attempts=0,
                next_attempt_at=row.next_attempt_at,
                created_at=now,
                redelivery_of=row.redelivery_of,
            )
            .returning(*webhook_deliveries.columns)
        )
        return _delivery(result.one())

    async def claim(
        self, now: datetime, lease_until: datetime, claim: str, limit: int, *, skip_locked: bool
    ) -> list[tuple[DeliveryRecord, EndpointRecord]]:
        """Lease up to ``limit`` due deliveries (see the module docstring), with their endpoints."""
        d = webhook_deliveries.alias("d")
        earlier = webhook_deliveries.alias("earlier")
        blocked = exists().where(
            earlier.c.endpoint_id == d.c.endpoint_id,
            earlier.c.project_id == d.c.project_id,
            earlier.c.status == "pending",
            earlier.c.id < d.c.id,
        )
        candidates = (
            select(d.c.id)
            .join(webhook_endpoints, webhook_endpoints.c.id == d.c.endpoint_id)
            .where(
                d.c.status == "pending",
                d.c.next_attempt_at <= now,
                or_(d.c.lease_until.is_(None), d.c.lease_until < now),
                webhook_endpoints.c.enabled.is_(True),
                ~blocked,
            )
            .order_by(d.c.next_attempt_at, d.c.id)
            .limit(limit)
        )
        if skip_locked:
            candidates = candidates.with_for_update(skip_locked=True, of=d)
        result = await self.session.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id.in_(candidates.scalar_subquery()))
            .values(lease_until=lease_until, claim=claim)
            .returning(*webhook_deliveries.columns)
        )
        deliveries = sorted((_delivery(row) for row in result), key=lambda r: r.id)
        if not deliveries:
            return []
        ids = sorted({r.endpoint_id for r in deliveries})
        endpoints = {
            e.id: e
            for e in (
                _endpoint(row)
                for row in await self.session.execute(select(webhook_endpoints).where(webhook_endpoints.c.id.in_(ids)))
            )
        }
        return [(r, endpoints[r.endpoint_id]) for r in deliveries]

    async def settle(
        self,
        delivery: DeliveryRecord,
        claim: str,
        *,
        status: str,
        attempts: int,
        next_attempt_at: datetime,
        at: datetime,
        status_code: int | None,
        error: str | None,
    ) -> bool:
        """Record the outcome of an attempt on the delivery if ``claim`` still holds it; False if the lease
        was lost (it ran out and another dispatcher claimed the row)."""
        result = await self.session.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == delivery.id, webhook_deliveries.c.claim == claim)
            .values(
                status=status,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                lease_until=None,
                claim=None,
                last_attempt_at=at,
                last_status_code=status_code,
                last_error=error,
                delivered_at=at if status == "delivered" else None,
            )
        )
        return bool(getattr(result, "rowcount", 0))

    async def add_attempt(
        self,
        delivery_id: int,
        number: int,
        at: datetime,
        duration_ms: int,
        status_code: int | None,
        excerpt: str | None,
        error: str | None,
    ) -> None:
        """Log one HTTP attempt."""
        await self.session.execute(
            webhook_attempts.insert().values(
                delivery_id=delivery_id,
                number=number,
                at=at,
                duration_ms=duration_ms,
                status_code=status_code,
                response_excerpt=excerpt,
                error=error,
            )
        )

    # --- the delivery log ---------------------------------------------------------------------------------

    async def delivery(self, delivery_id: int) -> DeliveryRecord | None:
        """One delivery, or None."""
        row = (
            await self.session.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id))
        ).first()
        return _delivery(row) if row else None

    async def deliveries(
        self,
        endpoint_id: str,
        *,
        status: str | None = None,
        event_id: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[DeliveryRecord]:
        """An endpoint's deliveries, newest first, at most ``limit``, with ids below ``before_id``."""
        query = select(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
        if status is not None:
            query = query.where(webhook_deliveries.c.status == status)
        if event_id is not None:
            query = query.where(webhook_deliveries.c.event_id == event_id)
        if before_id is not None:
            query = query.where(webhook_deliveries.c.id < before_id)
        query = query.order_by(webhook_deliveries.c.id.desc()).limit(limit)
        return [_delivery(row) for row in await self.session.execute(query)]

    async def attempts(self, delivery_id: int) -> list[AttemptRecord]:
        """A delivery's attempts, oldest first."""
        rows = await self.session.execute(
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id == delivery_id)
            .order_by(webhook_attempts.c.id)
        )
        return [_attempt(row) for row in rows]

    async def failed_since(self, endpoint_id: str, since: datetime) -> list[DeliveryRecord]:
        """The endpoint's failed deliveries created at or after ``since`` that have not been redelivered
        yet, oldest first."""
        child = webhook_deliveries.alias("child")
        redelivered = exists().where(child.c.redelivery_of == webhook_deliveries.c.id)
        rows = await self.session.execute(
            select(webhook_deliveries)
            .where(
                webhook_deliveries.c.endpoint_id == endpoint_id,
                webhook_deliveries.c.status == "failed",
                webhook_deliveries.c.created_at >= since,
                ~redelivered,
            )
            .order_by(webhook_deliveries.c.id)
        )
        return [_delivery(row) for row in rows]

    async def counts(self, endpoint_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """How many deliveries each endpoint has in each status."""
        ids = sorted(set(endpoint_ids))
        out: dict[str, dict[str, int]] = {i: {"pending": 0, "delivered": 0, "failed": 0} for i in ids}
        if not ids:
            return out
        rows = await self.session.execute(
            select(webhook_deliveries.c.endpoint_id, webhook_deliveries.c.status, func.count())
            .where(webhook_deliveries.c.endpoint_id.in_(ids))
            .group_by(webhook_deliveries.c.endpoint_id, webhook_deliveries.c.status)
        )
        for endpoint_id, status, count in rows:
            out[endpoint_id][status] = int(count)
        return out

    async def pending_total(self) -> int:
        """How many deliveries are pending (any endpoint)."""
        return int(
            (
                await self.session.execute(
                    select(func.count()).select_from(webhook_deliveries).where(webhook_deliveries.c.status == "pending")
                )
            ).scalar_one()
        )

    # --- endpoint log -------------------------------------------------------------------------------------

    async def log(self, endpoint_id: str | None, kind: str, at: datetime, actor: str, detail: dict[str, Any]) -> None:
        """Add an entry to the endpoint log."""
        await self.session.execute(
            webhook_log.insert().values(endpoint_id=endpoint_id, kind=kind, at=at, actor=actor, detail=detail)
        )

    async def log_entries(
        self, endpoint_id: str | None = None, *, before_id: int | None = None, limit: int = 50
    ) -> list[LogRecord]:
        """Log entries (of one endpoint, or all), newest first."""
        query = select(webhook_log)
        if endpoint_id is not None:
            query = query.where(webhook_log.c.endpoint_id == endpoint_id)
        if before_id is not None:
            query = query.where(webhook_log.c.id < before_id)
        rows = await self.session.execute(query.order_by(webhook_log.c.id.desc()).limit(limit))
        return [
            LogRecord(id=r.id, endpoint_id=r.endpoint_id, kind=r.kind, at=r.at, actor=r.actor, detail=dict(r.detail))
            for r in rows
        ]


__all__ = [
    "AttemptRecord",
    "DeliveryRecord",
    "EndpointRecord",
    "LogRecord",
    "NewDelivery",
    "WebhookRepository",
]
