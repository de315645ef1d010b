"""Items of a project (审批/验收事项): list, read, their triggers, and firing one.

Issuing a deficiency notice (容缺受理 with 一次性告知) is the item trigger ``accept_with_deficiencies`` with
data ``{"missing": [...], "cure_date"?}``; recording and verifying a 承诺制 commitment are the item triggers
``record_commitment`` / ``verify_commitment``. They all go through ``POST …/tasks/{task_id}/transitions``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.concurrency import etag
from api.deps import Context, ServicesDep, TaskVersion, input_locations
from api.idempotency import answer_response, claim_of
from api.routers import API_PREFIX
from api.schemas.common import ERROR_RESPONSES, MUTATION_RESPONSES
from api.schemas.tasks import TaskOut, item_answer
from api.schemas.transitions import FireRequest, TriggerOptionOut, option_out
from lifecycle.services import TaskView
from lifecycle.services.answers import StoredAnswer

router = APIRouter(prefix=API_PREFIX + "/projects/{project_id}/tasks", tags=["tasks"], responses=ERROR_RESPONSES)

TRIGGER_INPUT = input_locations({"data": ("body", "data")})


@router.get("", response_model=list[TaskOut])
async def list_tasks(project_id: str, ctx: Context, services: ServicesDep) -> list[TaskOut]:
    """The project's items, in the order they opened, with their open clocks."""
    return await services.list_tasks(ctx, project_id)


@router.get("/{task_id}", response_model=TaskOut)
async def get_task(project_id: str, task_id: str, ctx: Context, services: ServicesDep, response: Response) -> TaskOut:
    """One item, with its ETag for firing its triggers."""
    view = await services.get_task(ctx, project_id, task_id)
    response.headers["ETag"] = etag(view.version)
    return view


@router.get("/{task_id}/transitions", response_model=list[TriggerOptionOut])
async def list_task_transitions(
    project_id: str, task_id: str, ctx: Context, services: ServicesDep
) -> list[TriggerOptionOut]:
    """Every trigger leaving the item's state, and whether the caller may fire it (and why not)."""
    options = await services.available_task_transitions(ctx, project_id, task_id)
    return [option_out(option, ctx.lang) for option in options]


@router.post(
    "/{task_id}/transitions",
    response_model=TaskOut,
    responses=MUTATION_RESPONSES,
)
@TRIGGER_INPUT
async def fire_task_transition(
    project_id: str,
    task_id: str,
    body: FireRequest,
    expected_version: TaskVersion,
    ctx: Context,
    services: ServicesDep,
    request: Request,
) -> Response:
    """Fire an item trigger (If-Match: the item's ETag): submit, accept, accept with deficiencies, approve…"""
    claim = claim_of(request)
    # With an Idempotency-Key, the answer is stored in the change's own transaction (and sent as stored).
    stored = StoredAnswer[TaskView](claim, item_answer) if claim is not None else None
    view = await services.fire_task(
        ctx, project_id, task_id, expected_version, body.trigger, body.data, body.comment, answer=stored
    )
    runtime = request.app.state.runtime
    runtime.metrics.fired(await runtime.definition_key_of(ctx, project_id), "task", body.trigger)
    return answer_response((claim.answer() if claim is not None else None) or item_answer(view))
