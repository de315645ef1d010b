"""Webhooks for integrators: endpoints, the delivery log, redelivery, test pings, the endpoint log.

Integrators (role ``integrator``) manage their own endpoints; administrators see and manage every one. The
signing secret is in the answer to the creation and to a rotation, and nowhere else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response

from api.concurrency import etag, parse_if_match
from api.deps import LIST_INPUT, Context, ServicesDep, input_locations
from api.routers import API_PREFIX
from api.schemas.common import ERROR_RESPONSES, MUTATION_RESPONSES, Page
from api.schemas.webhooks import (
    AttemptOut,
    DeliveryOut,
    EndpointCreate,
    EndpointOut,
    EndpointPatch,
    EndpointWithSecret,
    EventTypeOut,
    LogOut,
    Redelivered,
)
from lifecycle.services.webhooks import EndpointChanges, NewEndpoint, WebhookService
from lifecycle.webhooks import events as payloads
from lifecycle.webhooks.config import WebhookSettings

router = APIRouter(prefix=API_PREFIX + "/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)

ENDPOINT_INPUT = input_locations({})


async def webhooks(services: ServicesDep) -> WebhookService:
    """The webhook use cases (delivery settings read from the environment)."""
    return WebhookService(services, WebhookSettings.from_env())


Webhooks = Annotated[WebhookService, Depends(webhooks)]


async def endpoint_if_match(
    if_match: Annotated[
        str | None, Header(alias="If-Match", description='The endpoint\'s ETag: W/"<version>".')
    ] = None,
) -> int:
    """The endpoint version named by If-Match (428 when absent)."""
    return parse_if_match(if_match, "webhook_endpoint")


EndpointVersion = Annotated[int, Depends(endpoint_if_match)]


def _filters(body: EndpointCreate | EndpointPatch) -> dict[str, list[str]] | None:
    if body.filters is None:
        return None
    return {k: v for k, v in body.filters.model_dump(exclude_none=True).items()}


@router.get("/event-types", response_model=list[EventTypeOut])
async def event_types(ctx: Context, services: ServicesDep) -> list[EventTypeOut]:
    """Every event type an endpoint may subscribe to, with the JSON Schema of its payload."""
    del ctx, services  # authenticated, like the rest of the API
    out = []
    for event_type, model in payloads.MODELS.items():
        out.append(
            EventTypeOut(
                type=event_type,
                version=payloads.PAYLOAD_VERSION,
                description=payloads.describe(event_type),
                payload_schema=model.model_json_schema(),
            )
        )
    return out


@router.post(
    "/endpoints",
    response_model=EndpointWithSecret,
    status_code=201,
    responses=MUTATION_RESPONSES,
)
@ENDPOINT_INPUT
async def create_endpoint(
    body: EndpointCreate, ctx: Context, hooks: Webhooks, response: Response
) -> EndpointWithSecret:
    """Register an endpoint; the answer holds its signing secret, shown only this once."""
    view, secret = await hooks.create_endpoint(
        ctx,
        NewEndpoint(
            url=body.url,
            event_types=body.event_types,
            filters=_filters(body),
            description=body.description,
            enabled=body.enabled,
        ),
    )
    response.headers["ETag"] = etag(view.version)
    response.headers["Location"] = f"{API_PREFIX}/webhooks/endpoints/{view.id}"
    return EndpointWithSecret(**view.model_dump(), secret=secret)


@router.get("/endpoints", response_model=list[EndpointOut])
async def list_endpoints(ctx: Context, hooks: Webhooks) -> list[EndpointOut]:
    """The caller's endpoints (every endpoint, for an administrator)."""
    return [EndpointOut.of(v) for v in await hooks.list_endpoints(ctx)]


@router.get("/endpoints/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(endpoint_id: str, ctx: Context, hooks: Webhooks, response: Response) -> EndpointOut:
    """One endpoint, with its ETag."""
    view = await hooks.get_endpoint(ctx, endpoint_id)
    response.headers["ETag"] = etag(view.version)
    return EndpointOut.of(view)


@router.patch(
    "/endpoints/{endpoint_id}",
    response_model=EndpointOut,
    responses=MUTATION_RESPONSES,
)
@ENDPOINT_INPUT
async def update_endpoint(
    endpoint_id: str,
    body: EndpointPatch,
    expected_version: EndpointVersion,
    ctx: Context,
    hooks: Webhooks,
    response: Response,
) -> EndpointOut:
    """Change an endpoint (If-Match required); only the members sent change."""
    given = body.model_fields_set
    changes = EndpointChanges(
        url=body.url,
        event_types=body.event_types,
        filters=(_filters(body) or {}) if "filters" in given else None,
        description=body.description,
        enabled=body.enabled,
    )
    view = await hooks.update_endpoint(ctx, endpoint_id, expected_version, changes)
    response.headers["ETag"] = etag(view.version)
    return EndpointOut.of(view)


@router.delete("/endpoints/{endpoint_id}", status_code=204, responses=MUTATION_RESPONSES)
async def delete_endpoint(
    endpoint_id: str, expected_version: EndpointVersion, ctx: Context, hooks: Webhooks
) -> Response:
    """Delete an endpoint and its delivery log (If-Match required)."""
    await hooks.delete_endpoint(ctx, endpoint_id, expected_version)
    return Response(status_code=204)


@router.post("/endpoints/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret, responses=MUTATION_RESPONSES)
async def rotate_secret(
    endpoint_id: str, expected_version: EndpointVersion, ctx: Context, hooks: Webhooks, response: Response
) -> EndpointWithSecret:
    """A new signing secret, shown only this once; the old one also signs for 24 hours (If-Match required)."""
    view, secret = await hooks.rotate_secret(ctx, endpoint_id, expected_version)
    response.headers["ETag"] = etag(view.version)
    return EndpointWithSecret(**view.model_dump(), secret=secret)


@router.post("/endpoints/{endpoint_id}/ping", response_model=DeliveryOut, status_code=202)
async def ping(endpoint_id: str, ctx: Context, hooks: Webhooks) -> DeliveryOut:
    """Queue a ``webhook.ping`` message for the endpoint, delivered like any event."""
    return DeliveryOut.of(await hooks.ping(ctx, endpoint_id))


@router.get("/endpoints/{endpoint_id}/deliveries", response_model=Page[DeliveryOut])
@LIST_INPUT
async def list_deliveries(
    endpoint_id: str,
    ctx: Context,
    hooks: Webhooks,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
    event_id: Annotated[str | None, Query(max_length=36, description="Only this event's deliveries.")] = None,
    cursor: Annotated[str | None, Query(max_length=32, description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[DeliveryOut]:
    """The endpoint's deliveries, newest first."""
    page = await hooks.list_deliveries(ctx, endpoint_id, status=status, event_id=event_id, cursor=cursor, limit=limit)
    return Page[DeliveryOut](items=[DeliveryOut.of(v) for v in page.items], next_cursor=page.next_cursor)


@router.post("/endpoints/{endpoint_id}/redeliver", response_model=Redelivered, status_code=202)
async def redeliver_failed(
    endpoint_id: str,
    ctx: Context,
    hooks: Webhooks,
    since: Annotated[datetime, Query(description="Failed deliveries created at or after this instant.")],
) -> Redelivered:
    """Send again every failed delivery of the endpoint since ``since`` (not yet sent again)."""
    views = await hooks.redeliver_failed(ctx, endpoint_id, since)
    return Redelivered(count=len(views), deliveries=[DeliveryOut.of(v) for v in views])


@router.get("/deliveries/{delivery_id}", response_model=DeliveryOut)
async def get_delivery(delivery_id: int, ctx: Context, hooks: Webhooks) -> DeliveryOut:
    """One delivery."""
    return DeliveryOut.of(await hooks.get_delivery(ctx, delivery_id))


@router.get("/deliveries/{delivery_id}/attempts", response_model=list[AttemptOut])
async def delivery_attempts(delivery_id: int, ctx: Context, hooks: Webhooks) -> list[AttemptOut]:
    """Every attempt of a delivery: time, status code, duration, first 2 KB of the answer, error."""
    return [AttemptOut.of(a) for a in await hooks.attempts(ctx, delivery_id)]


@router.post("/deliveries/{delivery_id}/redeliver", response_model=DeliveryOut, status_code=202)
async def redeliver(delivery_id: int, ctx: Context, hooks: Webhooks) -> DeliveryOut:
    """Send a delivery's event again (same webhook-id and body), as a new delivery due now."""
    return DeliveryOut.of(await hooks.redeliver(ctx, delivery_id))


@router.get("/log", response_model=Page[LogOut])
@LIST_INPUT
async def endpoint_log(
    ctx: Context,
    hooks: Webhooks,
    endpoint_id: Annotated[str | None, Query(max_length=36)] = None,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[LogOut]:
    """The endpoint log (created, secret rotated, disabled…), newest first. Administrators only."""
    page = await hooks.log(ctx, endpoint_id, cursor, limit)
    return Page[LogOut](items=[LogOut.of(v) for v in page.items], next_cursor=page.next_cursor)
