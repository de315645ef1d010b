"""Webhooks: what a caller sends to register or change an endpoint, and what the delivery log shows.

The payloads sent to endpoints are documented by the models of :mod:`lifecycle.webhooks.events` (see
``GET /api/v1/webhooks/event-types`` and docs/webhooks.md).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from api.schemas.common import RequestModel
from lifecycle.services.webhooks import AttemptView, DeliveryView, EndpointView, LogView
from lifecycle.webhooks.events import GenericEvent, KnownEvent

Payload = Annotated[KnownEvent | GenericEvent | dict[str, Any], Field(union_mode="left_to_right")]
"""A payload as sent: one of the documented shapes (a trimmed or unexpected one is shown as it is)."""

FilterList = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=100)]
EventPattern = Annotated[str, Field(min_length=1, max_length=64, examples=["project.*"])]


class EndpointFilters(RequestModel):
    """Optional filters: an event is sent only when each filter given contains its value."""

    definition_keys: FilterList | None = Field(default=None, description="Definition keys (major-project…).")
    units: FilterList | None = Field(default=None, description="The project's lead or implementing unit.")
    project_ids: FilterList | None = Field(default=None, description="Project ids.")


class EndpointCreate(RequestModel):
    """A new endpoint. The answer holds its signing secret, shown only this once."""

    url: str = Field(min_length=1, max_length=2048, examples=["https://integrator.example.gov.cn/hooks/lifecycle"])
    event_types: list[EventPattern] = Field(
        min_length=1,
        max_length=50,
        description="Types (``project.transitioned``), categories (``task.*``) or ``*`` (every type but "
        "``webhook.*``).",
        examples=[["project.*", "notice.issued"]],
    )
    filters: EndpointFilters | None = None
    description: str = Field(default="", max_length=500)
    enabled: bool = True


class EndpointPatch(RequestModel):
    """Changes to an endpoint; members left out stay as they are. ``enabled: true`` re-enables a disabled
    endpoint (its waiting deliveries are then sent, in order)."""

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    event_types: list[EventPattern] | None = Field(default=None, min_length=1, max_length=50)
    filters: EndpointFilters | None = None
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None


class EndpointOut(BaseModel):
    """An endpoint (never its secret)."""

    id: str
    owner: str
    url: str
    description: str
    event_types: list[str]
    filters: dict[str, list[str]]
    enabled: bool
    disabled_reason: str | None = Field(default=None, description="manual, gone (410), failing (5 days).")
    disabled_at: datetime | None = None
    previous_secret_expires_at: datetime | None = Field(
        default=None, description="After a rotation: until when the previous secret still signs."
    )
    failing_since: datetime | None = None
    last_success_at: datetime | None = None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: EndpointView) -> EndpointOut:
        return cls(**view.model_dump())


class EndpointWithSecret(EndpointOut):
    """An endpoint just created, or whose secret was just rotated, with the secret: shown only this once."""

    secret: str = Field(description="whsec_ + base64 of 32 random bytes (Standard Webhooks).")


class DeliveryOut(BaseModel):
    """One event for one endpoint: where its sending stands, and the payload sent."""

    id: int
    endpoint_id: str
    event_id: str = Field(description="The webhook-id header (the history event id).")
    event_type: str
    project_id: str | None = None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None = None
    created_at: datetime
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    redelivery_of: int | None = None
    payload: Payload

    @classmethod
    def of(cls, view: DeliveryView) -> DeliveryOut:
        values = view.model_dump()
        values["payload"] = json.loads(values["payload"])
        return cls(**values)


class AttemptOut(BaseModel):
    """One HTTP attempt: when, how long, the status code, the first 2 KB of the answer, the error."""

    id: int
    delivery_id: int
    number: int
    at: datetime
    duration_ms: int
    status_code: int | None = None
    response_excerpt: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, view: AttemptView) -> AttemptOut:
        return cls(**view.model_dump())


class LogOut(BaseModel):
    """An entry of the endpoint log (``webhook.endpoint_disabled``…)."""

    id: int
    endpoint_id: str | None = None
    kind: str
    at: datetime
    actor: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, view: LogView) -> LogOut:
        return cls(**view.model_dump())


class Redelivered(BaseModel):
    """The deliveries queued again."""

    count: int
    deliveries: list[DeliveryOut]


class EventTypeOut(BaseModel):
    """An event type an endpoint may subscribe to, with the JSON Schema of its payload."""

    type: str
    version: int
    description: str
    payload_schema: dict[str, Any]
