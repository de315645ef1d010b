"""Deficiency notices (一次性告知 / 容缺补正通知): list, read, and the applicant's read / supply.

A notice is issued by the item trigger ``accept_with_deficiencies`` (see :mod:`api.routers.tasks`); the
one-time rule refuses a second notice for the same submission with a 409 ``one-time-notice-breach``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.concurrency import etag
from api.deps import Context, NoticeVersion, ServicesDep
from api.idempotency import answer_response, claim_of
from api.routers import API_PREFIX
from api.schemas.common import ERROR_RESPONSES, MUTATION_RESPONSES
from api.schemas.tasks import NoticeOut, item_answer
from api.schemas.transitions import NoticeFireRequest
from lifecycle.services import NoticeView
from lifecycle.services.answers import StoredAnswer

router = APIRouter(prefix=API_PREFIX + "/projects/{project_id}/notices", tags=["notices"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[NoticeOut])
async def list_notices(project_id: str, ctx: Context, services: ServicesDep) -> list[NoticeOut]:
    """The project's deficiency notices, in the order they were issued."""
    return await services.list_notices(ctx, project_id)


@router.get("/{notice_id}", response_model=NoticeOut)
async def get_notice(
    project_id: str, notice_id: str, ctx: Context, services: ServicesDep, response: Response
) -> NoticeOut:
    """One deficiency notice: every missing material and the cure date, with its ETag."""
    view = await services.get_notice(ctx, project_id, notice_id)
    response.headers["ETag"] = etag(view.version)
    return view


@router.post("/{notice_id}/transitions", response_model=NoticeOut, responses=MUTATION_RESPONSES)
async def fire_notice_transition(
    project_id: str,
    notice_id: str,
    body: NoticeFireRequest,
    expected_version: NoticeVersion,
    ctx: Context,
    services: ServicesDep,
    request: Request,
) -> Response:
    """Fire a notice trigger (If-Match: the notice's ETag): ``read``, or ``supply`` (which resumes the item)."""
    claim = claim_of(request)
    # With an Idempotency-Key, the answer is stored in the change's own transaction (and sent as stored).
    stored = StoredAnswer[NoticeView](claim, item_answer) if claim is not None else None
    view = await services.fire_notice(
        ctx, project_id, notice_id, expected_version, body.trigger, body.comment, answer=stored
    )
    runtime = request.app.state.runtime
    runtime.metrics.fired(await runtime.definition_key_of(ctx, project_id), "notice", body.trigger)
    return answer_response((claim.answer() if claim is not None else None) or item_answer(view))
