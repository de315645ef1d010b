"""Escalation notices (提示函 / 督办函) and their acknowledgement; a project's recurring reports, deadlines and
escalations.

* ``GET /notices`` — the notices the caller may see (county-wide roles: all; a unit or department: those
  addressed to it), newest first, filtered by recipient, project, level, acknowledged, kind;
* ``GET /notices/{id}``, ``POST /notices/{id}/acknowledge`` (the recipient only);
* ``GET /projects/{id}/obligations`` and ``…/obligations/{obligation_id}/reports`` — reports and which periods
  are reported, late, missing or due; ``POST …/reports`` files one;
* ``GET /projects/{id}/deadlines`` — the project's deadlines with the escalations they fired.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from api.deps import LIST_INPUT, Context, ServicesDep, input_locations
from api.idempotency import answer_response, claim_of
from api.routers import API_PREFIX
from api.schemas.common import ERROR_RESPONSES, MUTATION_RESPONSES, Page
from api.schemas.scheduling import ReportIn
from lifecycle.services.answers import RenderedAnswer, StoredAnswer
from lifecycle.services.scheduling import Scheduling
from lifecycle.services.scheduling_views import (
    EscalationNoticeView,
    NoticeFilters,
    ObligationStatusView,
    ProjectDeadlinesView,
    ReportView,
)

router = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES)

REPORT_INPUT = input_locations({"data": ("body", "data"), "period": ("body", "period")})
"""Reports: the report fields are under ``data`` in the body, the period is ``period``."""

Periods = Annotated[int, Query(ge=1, le=104, description="How many recent periods to list.")]


@router.get("/notices", response_model=Page[EscalationNoticeView], tags=["escalations"])
@LIST_INPUT
async def list_notices(
    ctx: Context,
    services: ServicesDep,
    recipient: Annotated[
        str | None, Query(max_length=64, description="Recipient id: a unit, department, leader, or county body.")
    ] = None,
    project: Annotated[str | None, Query(max_length=36, description="Project id.")] = None,
    level: Annotated[int | None, Query(ge=0, le=20, description="Ladder level.")] = None,
    acknowledged: Annotated[bool | None, Query(description="Acknowledged (true) or not yet (false).")] = None,
    kind: Annotated[str | None, Query(max_length=200, description="Notice kind: 提示函, 督办函, 催报通知….")] = None,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[EscalationNoticeView]:
    """Escalation notices (提示函 / 督办函) the caller may see, newest first, filtered, one page at a time."""
    filters = NoticeFilters(recipient=recipient, project_id=project, level=level, acknowledged=acknowledged, kind=kind)
    page = await Scheduling(services).list_notices(ctx, filters, cursor or None, limit)
    return Page[EscalationNoticeView](items=page.items, next_cursor=page.next_cursor)


@router.get("/notices/{notice_id}", response_model=EscalationNoticeView, tags=["escalations"])
async def get_notice(notice_id: str, ctx: Context, services: ServicesDep) -> EscalationNoticeView:
    """One escalation notice, with its Chinese text."""
    return await Scheduling(services).get_notice(ctx, notice_id)


@router.post(
    "/notices/{notice_id}/acknowledge",
    response_model=EscalationNoticeView,
    tags=["escalations"],
    responses=MUTATION_RESPONSES,
)
async def acknowledge_notice(notice_id: str, ctx: Context, services: ServicesDep) -> EscalationNoticeView:
    """Acknowledge a notice (签收), as its recipient; acknowledging again changes nothing."""
    return await Scheduling(services).acknowledge_notice(ctx, notice_id)


@router.get("/projects/{project_id}/obligations", response_model=list[ObligationStatusView], tags=["obligations"])
async def list_obligations(
    project_id: str, ctx: Context, services: ServicesDep, periods: Periods = 12
) -> list[ObligationStatusView]:
    """Every recurring report the project's procedure defines, with its recent periods and reports."""
    return await Scheduling(services).obligations(ctx, project_id, periods)


@router.get(
    "/projects/{project_id}/obligations/{obligation_id}/reports",
    response_model=ObligationStatusView,
    tags=["obligations"],
)
async def list_reports(
    project_id: str, obligation_id: str, ctx: Context, services: ServicesDep, periods: Periods = 12
) -> ObligationStatusView:
    """The reports filed for one obligation, and which recent periods are reported, late, missing or due."""
    return await Scheduling(services).obligation(ctx, project_id, obligation_id, periods)


@router.post(
    "/projects/{project_id}/obligations/{obligation_id}/reports",
    response_model=ReportView,
    status_code=201,
    tags=["obligations"],
    responses=MUTATION_RESPONSES,
)
@REPORT_INPUT
async def submit_report(
    project_id: str, obligation_id: str, body: ReportIn, ctx: Context, services: ServicesDep, request: Request
) -> Response:
    """File the report of one period (default: the current one); a late report is recorded as late and
    stops the period's escalation; 409 if the period already has a report."""
    claim = claim_of(request)
    # With an Idempotency-Key, the answer is stored in the report's own transaction (and sent as stored).
    stored = StoredAnswer[ReportView](claim, report_answer) if claim is not None else None
    view = await Scheduling(services).submit_report(
        ctx, project_id, obligation_id, body.data, body.period, answer=stored
    )
    return answer_response((claim.answer() if claim is not None else None) or report_answer(view))


def report_answer(view: ReportView) -> RenderedAnswer:
    """The answer to filing a report: 201, the report as JSON (what FastAPI sends for
    ``response_model=ReportView``) and where the obligation's reports are listed (``Location``)."""
    body = view.__pydantic_serializer__.to_json(view, by_alias=True)
    location = f"{API_PREFIX}/projects/{view.project_id}/obligations/{view.obligation}/reports"
    return 201, (("content-type", "application/json"), ("location", location)), body


@router.get("/projects/{project_id}/deadlines", response_model=ProjectDeadlinesView, tags=["escalations"])
async def project_deadlines(project_id: str, ctx: Context, services: ServicesDep) -> ProjectDeadlinesView:
    """The project's deadlines (open first: due date, estimated, paused, overdue, ladder level) and every
    escalation they fired (level, when due, when fired, how late)."""
    return await Scheduling(services).project_deadlines(ctx, project_id)
