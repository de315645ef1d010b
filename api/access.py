"""The gate in front of every ``/api/v1`` endpoint: the service must be ready (503 until the database is
reachable and migrated) and the caller must hold a valid bearer token (401), both checked once per request,
before routing.

It is a middleware rather than a route dependency because FastAPI solves every dependency node of a route on
every request, at about 70 µs of CPU a node on this project's machine, and these checks guard every
endpoint. The OpenAPI document still declares the bearer scheme on every ``/api/v1`` operation
(:func:`api.app.create_app` adds it). A request for a path that is not an endpoint gets the same answers: a
caller without a token learns nothing about which paths exist.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import authenticated
from api.deps import require_ready
from api.errors import ApiProblem, handle_api_problem


class AccessMiddleware:
    """Answers 503 or 401 (problem+json) for requests under ``prefix`` that may not reach an endpoint; lets
    the others through with the caller in ``request.state.principal``."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(self.prefix):
            request = Request(scope, receive)
            try:
                await require_ready(request)
                await authenticated(request)
            except ApiProblem as problem:
                response = await handle_api_problem(request, problem)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
