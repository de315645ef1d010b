"""A project's history: every event, oldest first, one page at a time."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import LIST_INPUT, Context, ServicesDep
from api.routers import API_PREFIX
from api.schemas.common import ERROR_RESPONSES, Page
from api.schemas.history import HistoryEntryOut
from lifecycle.clock import SHANGHAI
from lifecycle.errors import InvalidInput, Location, Problem
from lifecycle.services import HistoryEntry

router = APIRouter(prefix=API_PREFIX + "/projects/{project_id}/history", tags=["history"], responses=ERROR_RESPONSES)


MAX_SEQ = 2**31 - 1
"""Event numbers are 32-bit in the database; a larger cursor was never issued (and PostgreSQL would refuse it)."""

_SEQ = re.compile(r"^[0-9]{1,10}$")


def _after_seq(cursor: str | None) -> int:
    """The ``seq`` a history cursor stands for (the services hand out the last seq of a page)."""
    if not cursor:
        return 0
    if not _SEQ.match(cursor) or int(cursor) > MAX_SEQ:
        raise InvalidInput([Problem.of("page.cursor", Location("request", 0, 0, ("cursor",)))])
    return int(cursor)


def _entry(entry: HistoryEntry) -> HistoryEntryOut:
    return HistoryEntryOut(**entry.model_dump(), at_local=entry.at.astimezone(SHANGHAI))


@router.get("", response_model=Page[HistoryEntryOut])
@LIST_INPUT
async def project_history(
    project_id: str,
    ctx: Context,
    services: ServicesDep,
    cursor: Annotated[str | None, Query(max_length=32, description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> Page[HistoryEntryOut]:
    """The project's events (actor, time in UTC and Asia/Shanghai, trigger, from/to, comment), oldest first."""
    page = await services.history(ctx, project_id, _after_seq(cursor), limit)
    return Page[HistoryEntryOut](items=[_entry(e) for e in page.items], next_cursor=page.next_cursor)
