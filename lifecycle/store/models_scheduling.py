"""Tables for Deadline escalations, recurring obligations, traffic lights and escalation notices.

Kept apart from :mod:`.models` so that each area owns its schema; they share its metadata (and naming
convention) through :class:`~lifecycle.store.models.Base`, and ``models`` imports this module so that the
metadata is complete wherever it is used.

* ``escalations`` — every action the scheduler took on a deadline, one row per (project, deadline, level):
  level 1, 2, … is a ladder level (四级调度), level 0 the deadline's ``on_expiry`` trigger. The UNIQUE
  constraint on (project_id, deadline_id, level) is what makes "each level fires exactly once" a fact the
  database holds, whatever number of schedulers race;
* ``escalation_notices`` — the 提示函 / 督办函 each level sends, one per recipient, with its rendered text;
  the recipient acknowledges it;
* ``obligation_reports`` — the recurring reports projects file (周报 形象进度, 月度投资计划…), one per
  (project, obligation, period);
* ``scheduler_state`` — small facts the scheduler keeps between ticks (how far each obligation's periods
  have been opened, the calendar it last re-dated with, the active scheduler).

The core tables gain three columns in this area's migration: ``projects.light_reasons`` and
``projects.light_at`` (the traffic light's reasons and when it was computed) and ``deadlines.next_fire_at``
(when the scheduler next has something to do for an open deadline).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from .models import ID, NAME, Base
from .types import JSONDocument, UTCDateTime

__all__ = [
    "NEVER",
    "Base",
    "Escalation",
    "EscalationNotice",
    "ObligationReport",
    "SchedulerState",
    "escalation_notices",
    "escalations",
    "obligation_reports",
    "scheduler_state",
]

NEVER = datetime(9999, 12, 31, tzinfo=UTC)
"""``deadlines.next_fire_at`` of an open deadline the scheduler has nothing more to do for (ladder climbed,
expiry fired, or neither configured)."""

RECIPIENT_KINDS = ("unit", "leader", "department", "role")
"""Who a notice is addressed to: a project's unit, its lead county leader, the late item's department, or a
county body (dispatcher, task force, leading group) by its ladder name."""


class Escalation(Base):
    """One action the scheduler took on a deadline: a ladder level climbed (``level`` ≥ 1) or the deadline's
    ``on_expiry`` trigger fired (``level`` 0).

    ``due_at`` is when the action came due and ``fired_at`` when it was taken; ``late_by_seconds`` is the
    difference (large after the scheduler was down). ``days_late`` is how many working days the deadline was
    past due when it fired (what the notices say). ``outcome`` is ``fired``, or ``refused`` for an expiry
    trigger whose subject could no longer take it (recorded, so it is not tried again). ``notice_ids`` are
    the notices the level sent (one per recipient; none for an expiry).
    """

    __tablename__ = "escalations"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    deadline_id: Mapped[str] = mapped_column(String(240))
    level: Mapped[int] = mapped_column(Integer)
    ladder: Mapped[str | None] = mapped_column(String(NAME))
    title: Mapped[str] = mapped_column(String(200))
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(160))
    deadline_title: Mapped[str] = mapped_column(String(400))
    deadline_due_date: Mapped[date] = mapped_column(Date)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    late_by_seconds: Mapped[int] = mapped_column(Integer)
    days_late: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    notice_ids: Mapped[list[str]] = mapped_column(JSONDocument)

    __table_args__ = (
        # Exactly once: a second scheduler firing the same level fails here and rolls back whole.
        UniqueConstraint("project_id", "deadline_id", "level"),
        CheckConstraint("level >= 0", name="level_not_negative"),
        CheckConstraint("outcome IN ('fired', 'refused')", name="outcome"),
    )


class EscalationNotice(Base):
    """A notice (提示函, 督办函, 催报通知…) one escalation level sent to one recipient, with its Chinese text
    rendered from the definition's template, and its acknowledgement by the recipient."""

    __tablename__ = "escalation_notices"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    escalation_id: Mapped[str] = mapped_column(ForeignKey("escalations.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    deadline_id: Mapped[str] = mapped_column(String(240))
    level: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(200))
    recipient_role: Mapped[str] = mapped_column(String(NAME))
    recipient_kind: Mapped[str] = mapped_column(String(16))
    recipient_id: Mapped[str] = mapped_column(String(NAME))
    recipient_title: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(400))
    due_date: Mapped[date] = mapped_column(Date)
    days_late: Mapped[int] = mapped_column(Integer)
    level_title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(NAME))

    __table_args__ = (
        UniqueConstraint("escalation_id", "recipient_kind", "recipient_id"),
        CheckConstraint("recipient_kind IN ('unit', 'leader', 'department', 'role')", name="recipient_kind"),
        # A recipient's inbox, newest first; a project's notices; the county-wide list in (created_at, id).
        Index("ix_escalation_notices_recipient", "recipient_kind", "recipient_id", "created_at"),
        Index("ix_escalation_notices_project_id_created_at", "project_id", "created_at"),
        Index("ix_escalation_notices_created_at_id", "created_at", "id"),
    )


class ObligationReport(Base):
    """A recurring report a project filed for one period (周报 形象进度和投资完成, 月度投资计划…).

    ``data`` holds the report's fields as JSON (money as decimal strings, 万元; attachments by reference).
    ``due_at`` is when the period's report was due; ``late`` says it came after that.
    """

    __tablename__ = "obligation_reports"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    obligation: Mapped[str] = mapped_column(String(NAME))
    period: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    submitted_by: Mapped[str] = mapped_column(String(NAME))
    late: Mapped[bool] = mapped_column(Boolean)
    late_by_seconds: Mapped[int] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("project_id", "obligation", "period"),)


class SchedulerState(Base):
    """A small named fact the scheduler keeps between ticks (JSON ``value``)."""

    __tablename__ = "scheduler_state"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


escalations = cast(Table, Escalation.__table__)
escalation_notices = cast(Table, EscalationNotice.__table__)
obligation_reports = cast(Table, ObligationReport.__table__)
scheduler_state = cast(Table, SchedulerState.__table__)
