"""FastAPI dependencies: the app's runtime and services, readiness, the caller, the call context, If-Match."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import Depends, Header, Request

from api.auth import current_principal
from api.concurrency import parse_if_match
from api.errors import ApiProblem, request_lang
from api.runtime import Runtime
from lifecycle.calendar import WorkingCalendar
from lifecycle.services import CallContext, Principal, Services


def runtime(request: Request) -> Runtime:
    """The app's runtime (settings, services, metrics, readiness)."""
    value: Runtime = request.app.state.runtime
    return value


def services(rt: Annotated[Runtime, Depends(runtime)]) -> Services:
    """The use cases."""
    return rt.services


def calendar(rt: Annotated[Runtime, Depends(runtime)]) -> WorkingCalendar:
    """The working-day calendar the engine counts deadlines with."""
    return rt.services.engine.calendar


async def require_ready(rt: Annotated[Runtime, Depends(runtime)]) -> None:
    """503 until the database is reachable and migrated (see :mod:`api.runtime`)."""
    state = await rt.ensure_ready()
    if not state.ready:
        raise ApiProblem(
            503,
            "api.not_ready",
            params={"reason": state.reason},
            extra={"reason": state.code},
            headers={"Retry-After": "5"},
        )


async def call_context(request: Request, principal: Annotated[Principal, Depends(current_principal)]) -> CallContext:
    """Who calls, in which language."""
    return CallContext(principal=principal, lang=request_lang(request))


IfMatch = Annotated[str | None, Header(alias="If-Match", description='The ETag read before the change: W/"<version>".')]


def project_if_match(if_match: IfMatch = None) -> int:
    """The project version named by If-Match (428 when absent)."""
    return parse_if_match(if_match, "project")


def task_if_match(if_match: IfMatch = None) -> int:
    """The item version named by If-Match (428 when absent)."""
    return parse_if_match(if_match, "task")


def notice_if_match(if_match: IfMatch = None) -> int:
    """The notice version named by If-Match (428 when absent)."""
    return parse_if_match(if_match, "notice")


ServicesDep = Annotated[Services, Depends(services)]
Context = Annotated[CallContext, Depends(call_context)]
ProjectVersion = Annotated[int, Depends(project_if_match)]
TaskVersion = Annotated[int, Depends(task_if_match)]
NoticeVersion = Annotated[int, Depends(notice_if_match)]


def input_locations(locs: Mapping[str, tuple[str | int, ...]]) -> Callable[[Request], None]:
    """A dependency telling the error handler where the service's input paths are in this request
    (see :func:`api.errors.problem_errors`)."""

    def dependency(request: Request) -> None:
        request.state.input_locs = locs

    return dependency


PROJECT_INPUT = input_locations({"data": ("body", "fields"), "fields": ("body", "fields")})
"""Create/update: the engine checks the data fields under ``data``; they are ``fields`` in the body."""

LIST_INPUT = input_locations({"cursor": ("query", "cursor"), "limit": ("query", "limit")})
"""Lists: paging problems are in the query string."""

Services_ = ServicesDep
"""The earlier name of :data:`ServicesDep`, kept for routers written against it."""
