"""Project transitions: what may fire now (with every reason why not), and firing a trigger."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.concurrency import parse_if_match
from api.deps import Context, IfMatch, ServicesDep, app_runtime, call_context, input_locations
from api.idempotency import answer_response, claim_of
from api.routers import API_PREFIX
from api.schemas.common import ERROR_RESPONSES, MUTATION_RESPONSES
from api.schemas.projects import ProjectOut, project_answer
from api.schemas.transitions import FireRequest, TriggerOptionOut, option_out
from lifecycle.services.answers import StoredAnswer

router = APIRouter(
    prefix=API_PREFIX + "/projects/{project_id}/transitions", tags=["transitions"], responses=ERROR_RESPONSES
)

TRIGGER_INPUT = input_locations({"data": ("body", "data")})


@router.get("", response_model=list[TriggerOptionOut])
async def list_transitions(project_id: str, ctx: Context, services: ServicesDep) -> list[TriggerOptionOut]:
    """Every trigger leaving the project's state: may the caller fire it now, and every unmet condition."""
    options = await services.available_transitions(ctx, project_id)
    return [option_out(option, ctx.lang) for option in options]


@router.post("", response_model=ProjectOut, responses=MUTATION_RESPONSES)
@TRIGGER_INPUT
async def fire_transition(project_id: str, body: FireRequest, request: Request, if_match: IfMatch = None) -> Response:
    """Fire a project trigger (If-Match: the project's ETag); 409 lists every unmet gate condition."""
    # The busiest endpoint: the caller and If-Match are read here rather than by dependencies, which FastAPI
    # solves per request at about 5% of the whole request's CPU (measured with callgrind, bench/api.py).
    # So a request with both a bad body and no If-Match gets the body's 422 first, not the 428.
    ctx = await call_context(request)
    expected_version = parse_if_match(if_match, "project")
    runtime = app_runtime(request)
    claim = claim_of(request)
    # With an Idempotency-Key, the answer is stored in the transition's own transaction (and sent as stored).
    stored = StoredAnswer(claim, project_answer) if claim is not None else None
    view = await runtime.services.fire(
        ctx, project_id, expected_version, body.trigger, body.data, body.comment, answer=stored
    )
    runtime.metrics.fired(view.definition_key, "project", body.trigger)
    return answer_response((claim.answer() if claim is not None else None) or project_answer(view))
