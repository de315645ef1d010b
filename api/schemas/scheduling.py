"""Escalation notices (提示函 / 督办函), obligation reports and a project's deadlines: request bodies; the
answers are the services' views (:mod:`lifecycle.services.scheduling_views`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from api.schemas.common import RequestModel


class ReportIn(RequestModel):
    """A report for one period of a recurring obligation (周报 形象进度和投资完成, 月度投资计划…).

    ``data`` holds the obligation's report fields (money in 万元 as decimal strings or numbers; attachments
    as a list of references); ``period`` defaults to the current one (``2026-W41``, ``2026-10``,
    ``2026-Q4``, ``2026``).
    """

    period: str | None = Field(default=None, max_length=16, examples=["2026-W41"])
    data: dict[str, Any] = Field(
        default_factory=dict,
        examples=[
            {
                "progress_text": "主体结构施工至第8层",
                "invested_this_week": "120.5",
                "invested_this_year": "3600",
                "invested_to_date": "5200",
                "attachments": ["file://photos/2026-10-12/1.jpg"],
            }
        ],
    )
