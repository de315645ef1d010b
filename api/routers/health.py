"""Probes and metrics: liveness, readiness, Prometheus. No token needed; no project data exposed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.deps import runtime
from api.errors import message, problem_response, request_lang
from api.metrics import CONTENT_TYPE
from api.runtime import Runtime
from api.schemas.common import ProblemDocument
from api.schemas.health import Alive, Ready

router = APIRouter(tags=["health"])

_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": ProblemDocument, "content": {"application/problem+json": {}}, "description": "Not ready."}
}


@router.get("/healthz", response_model=Alive)
async def healthz() -> Alive:
    """Liveness: 200 whenever the process can answer at all."""
    return Alive()


@router.get("/readyz", response_model=Ready, responses=_NOT_READY)
async def readyz(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Ready | Response:
    """Readiness: the database answers and its schema is at the newest migration (else 503 with the reason)."""
    state = await rt.check()
    if state.ready:
        return Ready(revision=state.current_revision)
    lang = request_lang(request)
    return problem_response(
        getattr(request.state, "request_id", None),
        request.url.path,
        lang,
        503,
        "api.not_ready",
        message("api.not_ready", {"reason": state.reason}, lang),
        extra={
            "reason": state.code,
            "current_revision": state.current_revision,
            "head_revision": state.head_revision,
        },
        headers={"Retry-After": "5"},
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    """Prometheus metrics: requests and latency by route, transitions fired, refusals by code."""
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE)
