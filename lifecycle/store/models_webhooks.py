"""Tables for Webhook endpoints, the outbox and the delivery log.

Kept apart from :mod:`.models` so that each area owns its schema; they share its metadata (and naming
convention) through :class:`~lifecycle.store.models.Base`, and ``models`` imports this module so that the
metadata is complete wherever it is used.

* ``webhook_endpoints`` — where integrators want events sent, which ones, and the signing secret(s);
* ``webhook_deliveries`` — the outbox: one row per (endpoint, event), written in the transaction of the
  change that caused the event; the dispatcher claims due rows, sends them and records the outcome here;
* ``webhook_attempts`` — every HTTP attempt of a delivery (the delivery log);
* ``webhook_log`` — what happened to endpoints (created, secret rotated, disabled…), for administrators.

Secrets are kept in the database as given to the integrator (``whsec_…``): they must be recoverable to sign,
so they cannot be hashed. They are never returned after creation (or rotation), never logged, and their
column is read only by the dispatcher; protecting them at rest is the database's job (see docs/webhooks.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Identity, Index, Integer, String, Table, Text
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from .models import ID, NAME, Base
from .types import JSONDocument, UTCDateTime

__all__ = [
    "Base",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookLogEntry",
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
    "webhook_log",
]

# SQLite rowids are INTEGER; PostgreSQL gets BIGINT identity columns (the outbox grows without bound).
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")

DELIVERY_STATUSES = ("pending", "delivered", "failed")
"""``pending``: to be sent (now or at ``next_attempt_at``); ``delivered``: a 2xx answer came back; ``failed``:
given up (retries exhausted, the endpoint answered 410 Gone, or the payload could not be sent at all)."""


class WebhookEndpoint(Base):
    """An integrator's subscription: a URL, the event types (patterns) it wants, optional filters, and the
    signing secret. ``version`` is the ETag counter; ``failing_since`` is the start of the current run of
    failed attempts (cleared by any success), which disables the endpoint after five days."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    owner: Mapped[str] = mapped_column(String(NAME), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(500))
    event_types: Mapped[list[str]] = mapped_column(JSONDocument)
    filters: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    enabled: Mapped[bool] = mapped_column(Boolean)
    disabled_reason: Mapped[str | None] = mapped_column(String(32))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (CheckConstraint("version >= 1", name="version_positive"),)


class WebhookDelivery(Base):
    """One event to send to one endpoint (the transactional outbox), and where its sending stands.

    ``event_id`` is the ``webhook-id`` header: the history event's id, the same on every attempt and on a
    redelivery. ``body`` is the exact JSON sent (bounded in size). ``project_id`` orders deliveries: a row is
    not attempted while an earlier pending row of the same endpoint and project exists. ``lease_until`` and
    ``claim`` mark a row a dispatcher has claimed; a crashed dispatcher's lease runs out and the row is
    claimed again (at least once).
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(_BIG_ID, Identity(), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(ID), index=True)
    event_type: Mapped[str] = mapped_column(String(NAME))
    project_id: Mapped[str | None] = mapped_column(String(ID))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redelivery_of: Mapped[int | None] = mapped_column(_BIG_ID)

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        # What the dispatcher reads: pending rows by due time.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            sqlite_where=sql_text("status = 'pending'"),
            postgresql_where=sql_text("status = 'pending'"),
        ),
        # The ordering check: "is there an earlier pending row of this endpoint and project?"
        Index(
            "ix_webhook_deliveries_pending_order",
            "endpoint_id",
            "project_id",
            "id",
            sqlite_where=sql_text("status = 'pending'"),
            postgresql_where=sql_text("status = 'pending'"),
        ),
        # The delivery log of an endpoint, newest first.
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: when, how long, the status code (None when no answer came), the first
    2 KB of the answer, and the error (timeout, refused address, connection error…)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(_BIG_ID, Identity(), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (Index("ix_webhook_attempts_delivery_id_id", "delivery_id", "id"),)


class WebhookLogEntry(Base):
    """Something that happened to an endpoint (``webhook.endpoint_created``, ``webhook.secret_rotated``,
    ``webhook.endpoint_disabled``…), kept after the endpoint is deleted, for administrators."""

    __tablename__ = "webhook_log"

    id: Mapped[int] = mapped_column(_BIG_ID, Identity(), primary_key=True)
    endpoint_id: Mapped[str | None] = mapped_column(String(ID), index=True)
    kind: Mapped[str] = mapped_column(String(NAME))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(NAME))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONDocument)


webhook_endpoints = cast(Table, WebhookEndpoint.__table__)
webhook_deliveries = cast(Table, WebhookDelivery.__table__)
webhook_attempts = cast(Table, WebhookAttempt.__table__)
webhook_log = cast(Table, WebhookLogEntry.__table__)
