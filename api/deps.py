"""FastAPI dependencies: the app's runtime and services, the call context, If-Match; and the readiness check
the access gate runs (:mod:`api.access`).

Every dependency is an ``async def`` even when it awaits nothing: FastAPI runs a plain ``def`` dependency in
a worker thread (``run_in_threadpool``), which costs a thread hand-off per dependency per request. None of
these block, so they run on the event loop.

The graph is kept flat and small: FastAPI solves every node of it on every request (about 70 µs of CPU a
node here), a cached one included (only the call is skipped). So dependencies read the runtime from the
request themselves instead of depending on :func:`runtime`; readiness and the bearer token are checked by
the access gate before routing, and :func:`call_context` reads the caller it found
(:func:`api.auth.authenticated` returns the principal remembered for the request); where an endpoint's
inputs are is an attribute of the endpoint (:func:`input_locations`), not a dependency.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request

from api.auth import authenticated
from api.concurrency import parse_if_match
from api.errors import ApiProblem, request_lang
from api.runtime import Runtime
from lifecycle.calendar import WorkingCalendar
from lifecycle.services import CallContext, Services


def app_runtime(request: Request) -> Runtime:
    """The runtime of the app serving ``request``: a helper of the dependencies below, not a dependency."""
    value: Runtime = request.app.state.runtime
    return value


async def runtime(request: Request) -> Runtime:
    """The app's runtime (settings, services, metrics, readiness)."""
    return app_runtime(request)


async def services(request: Request) -> Services:
    """The use cases."""
    return app_runtime(request).services


async def calendar(request: Request) -> WorkingCalendar:
    """The working-day calendar the engine counts deadlines with."""
    return app_runtime(request).services.engine.calendar


async def require_ready(request: Request) -> None:
    """503 until the database is reachable and migrated (see :mod:`api.runtime`); run by the access gate."""
    state = await app_runtime(request).ensure_ready()
    if not state.ready:
        raise ApiProblem(
            503,
            "api.not_ready",
            params={"reason": state.reason},
            extra={"reason": state.code},
            headers={"Retry-After": "5"},
        )


async def call_context(request: Request) -> CallContext:
    """Who calls (401 without a valid token), in which language."""
    return CallContext(principal=await authenticated(request), lang=request_lang(request))


Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

IfMatch = Annotated[str | None, Header(alias="If-Match", description='The ETag read before the change: W/"<version>".')]


async def project_if_match(if_match: IfMatch = None) -> int:
    """The project version named by If-Match (428 when absent)."""
    return parse_if_match(if_match, "project")


async def task_if_match(if_match: IfMatch = None) -> int:
    """The item version named by If-Match (428 when absent)."""
    return parse_if_match(if_match, "task")


async def notice_if_match(if_match: IfMatch = None) -> int:
    """The notice version named by If-Match (428 when absent)."""
    return parse_if_match(if_match, "notice")


ServicesDep = Annotated[Services, Depends(services)]
Context = Annotated[CallContext, Depends(call_context)]
ProjectVersion = Annotated[int, Depends(project_if_match)]
TaskVersion = Annotated[int, Depends(task_if_match)]
NoticeVersion = Annotated[int, Depends(notice_if_match)]


def input_locations(locs: Mapping[str, tuple[str | int, ...]]) -> Callable[[Endpoint], Endpoint]:
    """A decorator telling the error handler where the service's input paths are in the endpoint's requests
    (see :func:`api.errors.problem_errors`); put it under the route decorator. An attribute of the endpoint,
    read only when there is an error, so it costs a request nothing."""

    def mark(endpoint: Endpoint) -> Endpoint:
        endpoint.input_locations = locs  # type: ignore[attr-defined]
        return endpoint

    return mark


PROJECT_INPUT = input_locations({"data": ("body", "fields"), "fields": ("body", "fields")})
"""Create/update: the engine checks the data fields under ``data``; they are ``fields`` in the body."""

LIST_INPUT = input_locations({"cursor": ("query", "cursor"), "limit": ("query", "limit")})
"""Lists: paging problems are in the query string."""

Services_ = ServicesDep
"""The earlier name of :data:`ServicesDep`, kept for routers written against it."""
