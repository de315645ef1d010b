"""Bearer-token authentication.

Callers send ``Authorization: Bearer <token>``. The store keeps only the token's SHA-256, so the token is
looked up hashed (:meth:`lifecycle.services.Services.authenticate`); a revoked token is unknown. Tokens
are never logged: the access log names the principal id, error documents never echo the header.

Everything under ``/api/v1`` needs a token. ``/healthz``, ``/readyz`` and ``/metrics`` do not (probes and the
Prometheus scraper run inside the deployment; they expose no project data). ``/openapi.json`` and ``/docs``
do not either: they describe the API and hold no data, and integrators need them before they have a token.

The principal is looked up once per request, by the access gate in front of ``/api/v1`` (:mod:`api.access`),
and remembered in ``request.state.principal`` for the idempotency middleware (keys are scoped per principal)
and the endpoints' :func:`api.deps.call_context`. :data:`bearer_scheme` describes the scheme in OpenAPI.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import Request
from fastapi.security import HTTPBearer

from api.errors import ApiProblem
from lifecycle.services import Principal, Services

MAX_TOKEN_LENGTH: Final = 256
"""Longer values are not tokens of ours and are refused without a database lookup."""

_UNRESOLVED: Final = object()

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token issued by `lifecycle tokens create` (`lc_…`), sent as `Authorization: Bearer <token>`.",
)


def bearer_token(authorization: str | None) -> str | None:
    """The token in an ``Authorization`` header value, or None when it is not a plausible bearer token."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return None
    return token


async def resolve_principal(services: Services, state: dict[str, Any], authorization: str | None) -> Principal | None:
    """The principal holding the request's token (None: no or unknown token), looked up once per request
    and remembered in the request ``state``."""
    cached = state.get("principal", _UNRESOLVED)
    if cached is not _UNRESOLVED:
        return cached if isinstance(cached, Principal) else None
    token = bearer_token(authorization)
    principal = await services.authenticate(token) if token else None
    state["principal"] = principal
    return principal


def _unauthorized(invalid: bool) -> ApiProblem:
    # RFC 6750 §3: name the scheme; say invalid_token when a token was sent but is not (or no longer) valid.
    challenge = 'Bearer realm="lifecycle"' + (', error="invalid_token"' if invalid else "")
    return ApiProblem(401, "api.unauthorized", headers={"WWW-Authenticate": challenge})


async def authenticated(request: Request) -> Principal:
    """The caller of ``request``, looked up once per request; 401 without a valid token."""
    authorization = request.headers.get("authorization")
    services = request.app.state.runtime.services
    principal = await resolve_principal(services, request.scope.setdefault("state", {}), authorization)
    if principal is None:
        raise _unauthorized(invalid=authorization is not None)
    return principal
