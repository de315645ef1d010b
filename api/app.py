"""The FastAPI application: ``create_app`` builds it, ``lifecycle serve`` runs it with uvicorn.

Layout of the HTTP surface:

* ``/api/v1/...`` — the REST API; needs a bearer token (:mod:`api.auth`); answers 503 until the database is
  reachable and migrated (:mod:`api.runtime`);
* ``/healthz``, ``/readyz``, ``/metrics`` — probes and Prometheus, no token;
* ``/openapi.json``, ``/docs`` — the API description, no token, no data.

Middleware, outermost first: request context (request id, language, access log, last-resort 500),
metrics, access (readiness and the bearer token for ``/api/v1``), idempotency (POST with
``Idempotency-Key``), then FastAPI's routing with the problem+json exception handlers of :mod:`api.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from api import errors
from api.access import AccessMiddleware
from api.auth import bearer_scheme
from api.idempotency import IdempotencyMiddleware
from api.metrics import MetricsMiddleware
from api.middleware import RequestContextMiddleware
from api.routers import (
    API_PREFIX,
    calendar,
    commitments,
    health,
    history,
    notices,
    projects,
    scheduling,
    tasks,
    transitions,
    webhooks,
    workflows,
)
from api.runtime import Runtime
from lifecycle import heap
from lifecycle.clock import Clock
from lifecycle.services import Services
from lifecycle.settings import Settings

log = logging.getLogger("lifecycle.api")


TAGS = [
    {"name": "projects", "description": "重大项目: create, list, read, change header and fields."},
    {"name": "transitions", "description": "Project triggers: what may fire now and why not; fire one."},
    {"name": "tasks", "description": "审批/验收事项: items of a project and their triggers (容缺, 承诺制 included)."},
    {"name": "notices", "description": "一次性告知 deficiency notices: read, supply."},
    {"name": "commitments", "description": "告知承诺制 commitments of a project."},
    {"name": "history", "description": "A project's append-only, hash-chained history."},
    {"name": "workflows", "description": "Published procedure definitions: versions, YAML, Mermaid diagrams."},
    {"name": "calendar", "description": "Working days (工作日) with 调休 and published holidays."},
    {"name": "health", "description": "Liveness, readiness, Prometheus metrics (no token)."},
]

DESCRIPTION = """\
REST API of the 巫山县重大项目全生命周期管理 workflow service.

* Authentication: `Authorization: Bearer <token>` on every `/api/v1` endpoint.
* Errors: RFC 9457 `application/problem+json` with a stable `code`; Chinese by default,
  English with `Accept-Language: en`.
* Concurrency: reads return `ETag: W/"<version>"`; changes to an existing project, item or notice need
  `If-Match` (428 without, 412 when stale).
* Retries: send `Idempotency-Key` with a POST; a retry replays the first answer (`Idempotent-Replayed: true`).
* Money (万元) is a decimal string; dates are `YYYY-MM-DD`; times are UTC (history adds Asia/Shanghai).
"""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    state = await runtime.check()
    if not state.ready:
        # Keep running: /healthz answers, /readyz says why, /api/v1 answers 503 until the database is fixed.
        log.error("not ready: %s (%s)", state.reason, state.code)
    # Everything loaded by now lives as long as the process: out of the collector's reach, collections rarer.
    heap.settle()
    try:
        yield
    finally:
        await runtime.close()


def _summaries_from_docstrings(router: APIRouter) -> None:
    # Each endpoint's one-line docstring is its OpenAPI summary (FastAPI would title-case the function name).
    for route in router.routes:
        if isinstance(route, APIRoute) and route.summary is None and route.description:
            first, _, rest = route.description.strip().partition("\n")
            route.summary = first.strip()
            route.description = rest.strip()


def _openapi_document(app: FastAPI) -> None:
    # FastAPI files every response model under application/json; error answers are
    # application/problem+json (RFC 9457), so the OpenAPI document says that instead. And every /api/v1
    # operation needs the bearer token, which api.access checks outside FastAPI's view: declared here.
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[bearer_scheme.scheme_name] = bearer_scheme.model.model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    if path.startswith(API_PREFIX + "/"):
                        operation["security"] = [{bearer_scheme.scheme_name: []}]
                    for response in operation.get("responses", {}).values():
                        content = response.get("content", {})
                        if "application/problem+json" in content and "application/json" in content:
                            content["application/problem+json"] = content.pop("application/json")
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None, *, services: Services | None = None, clock: Clock | None = None
) -> FastAPI:
    """Build the application.

    Args:
        settings: configuration (default: from the environment).
        services: use cases to serve (tests pass their own; the app then leaves closing them to the caller).
            When None, the app builds them from ``settings`` and closes them on shutdown.
        clock: the clock for services the app builds (ignored when ``services`` is given: they have theirs).
    """
    settings = settings or Settings.from_env()
    owns = services is None
    if services is None:
        services = Services.from_settings(settings, clock=clock)
    runtime = Runtime(settings=settings, services=services, owns_services=owns)

    app = FastAPI(
        title="lifecycle — 重大项目全生命周期管理",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=_lifespan,
    )
    app.state.runtime = runtime
    app.state.metrics = runtime.metrics
    errors.install(app)

    # Routers carry their full path (API_PREFIX included), so route templates in metrics and logs are whole.
    for module in (
        projects,
        transitions,
        tasks,
        notices,
        commitments,
        history,
        workflows,
        calendar,
        webhooks,
        scheduling,
    ):
        _summaries_from_docstrings(module.router)
        app.include_router(module.router)
    _summaries_from_docstrings(health.router)
    app.include_router(health.router)

    _openapi_document(app)

    # add_middleware wraps: the last added is the outermost.
    # Firing a trigger of a project, an item or a notice claims its key in its own transaction
    # (lifecycle.services.answers).
    claimed_in_change = [
        transitions.router.prefix,
        tasks.router.prefix + "/{task_id}/transitions",
        notices.router.prefix + "/{notice_id}/transitions",
    ]
    app.add_middleware(IdempotencyMiddleware, prefix=API_PREFIX + "/", claimed_in_change=claimed_in_change)
    app.add_middleware(AccessMiddleware, prefix=API_PREFIX + "/")
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
    app.add_middleware(RequestContextMiddleware)
    return app
