"""A project's history (append-only, hash-chained events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class HistoryEntryOut(BaseModel):
    """One event: who did what, when (UTC and county time), from which state to which, and why."""

    seq: int = Field(description="Position in the project's history, from 1.")
    event_id: str
    kind: str = Field(description="project.created, project.transition, task.transition, notice.issued…")
    subject_kind: str
    subject_id: str
    actor: str
    at: datetime = Field(description="When, in UTC.")
    at_local: datetime = Field(description="When, in Asia/Shanghai (UTC+8), as county users read it.")
    trigger: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    comment: str | None = None
    data: dict[str, Any]
    prev_hash: str
    hash: str
