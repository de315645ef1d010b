"""承诺制 commitments of a project. Recording and verifying one are item triggers (``record_commitment``,
``verify_commitment`` on ``POST …/tasks/{task_id}/transitions``); this lists them."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Context, ServicesDep
from api.routers import API_PREFIX
from api.schemas.common import ERROR_RESPONSES
from api.schemas.tasks import CommitmentOut

router = APIRouter(
    prefix=API_PREFIX + "/projects/{project_id}/commitments", tags=["commitments"], responses=ERROR_RESPONSES
)


@router.get("", response_model=list[CommitmentOut])
async def list_commitments(project_id: str, ctx: Context, services: ServicesDep) -> list[CommitmentOut]:
    """The project's commitments, in the order they were recorded, with their state."""
    return await services.list_commitments(ctx, project_id)
