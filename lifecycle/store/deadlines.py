"""Deadlines as the scheduler sees them: open rows that have come due, across all projects.

The rows are written with their project's aggregate (:mod:`.projects`); this module only finds due ones,
through the partial index on ``due_at`` over open rows. On PostgreSQL the rows are read with
``FOR UPDATE SKIP LOCKED``: several schedulers (or a scheduler and its standby) each get rows nobody else is
working on, and never wait for each other. On SQLite the write transaction already holds the database's
write lock, so a plain read is the claim.

Lock order matters to whoever uses this: a transition locks its project row and then writes deadline
rows, so a sweep that keeps deadline rows locked while it waits for a project row can deadlock with it.
The sweep should claim rows in a short transaction of its own (e.g. mark them), then fire each through the
ordinary service path, which takes the project lock first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.engine.instance import Deadline

from .models import deadlines
from .projects import deadline_from_row


class DeadlineRepository:
    """Cross-project deadline queries within the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def due_deadlines(self, now: datetime, limit: int = 100) -> list[tuple[str, Deadline]]:
        """Up to ``limit`` open deadlines due at or before ``now``, earliest first, as
        ``(project_id, deadline)``; on PostgreSQL locked for this transaction, skipping rows another
        transaction holds."""
        statement = (
            select(deadlines)
            .where(deadlines.c.closed_at.is_(None), deadlines.c.due_at <= now)
            .order_by(deadlines.c.due_at, deadlines.c.project_id, deadlines.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = await self.session.execute(statement)
        return [(row.project_id, deadline_from_row(row)) for row in rows]
