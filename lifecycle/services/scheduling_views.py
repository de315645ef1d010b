"""What the scheduling use cases return and take: escalations, notices (提示函 / 督办函), obligation reports
and their periods, and what one scheduler tick did.

Views are read-only pydantic models the API serialises as they are (see :mod:`.views`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .views import DeadlineView, View


class EscalationView(View):
    """One action the scheduler took on a deadline: a ladder level climbed (``level`` ≥ 1) or the deadline's
    expiry trigger fired (``level`` 0). ``late_by_seconds`` says how long after it came due it was taken."""

    id: str
    project_id: str
    deadline_id: str
    level: int
    ladder: str | None = None
    title: str
    subject_kind: str
    subject_id: str
    deadline_title: str
    deadline_due_date: date
    due_at: datetime
    fired_at: datetime
    late_by_seconds: int
    days_late: int
    outcome: Literal["fired", "refused"]
    notice_ids: list[str]


class EscalationNoticeView(View):
    """A notice (提示函 / 督办函 / 催报通知) an escalation level sent to one recipient.

    ``recipient_kind`` is ``unit`` (the project's lead or implementing unit), ``leader`` (its lead county
    leader), ``department`` (the late item's department) or ``role`` (a county body: dispatcher, task_force,
    leading_group); ``recipient_role`` is the ladder's name for the recipient.
    """

    id: str
    escalation_id: str
    project_id: str
    project_name: str | None = None
    project_code: str | None = None
    deadline_id: str
    level: int
    kind: str
    recipient_role: str
    recipient_kind: Literal["unit", "leader", "department", "role"]
    recipient_id: str
    recipient_title: str
    subject: str
    due_date: date
    days_late: int
    level_title: str
    text: str
    created_at: datetime
    acknowledged: bool
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


class NoticeFilters(BaseModel):
    """Filters of the notice list; None means "any".

    Attributes:
        recipient: the recipient's id (a unit, department, leader, or a county body's ladder name).
        project_id: notices about this project.
        level: the ladder level.
        acknowledged: acknowledged (True) or not yet (False).
        kind: the notice kind (提示函, 督办函, 催报通知…).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipient: str | None = None
    project_id: str | None = None
    level: int | None = None
    acknowledged: bool | None = None
    kind: str | None = None


class ReportView(View):
    """A report filed for one period of a recurring obligation (data in JSON form: money as decimal
    strings, 万元; attachments as references)."""

    id: str
    project_id: str
    obligation: str
    period: str
    data: dict[str, Any]
    due_at: datetime
    submitted_at: datetime
    submitted_by: str
    late: bool
    late_by_seconds: int


PeriodStatus = Literal["reported", "late", "missing", "due"]
"""Where one period of an obligation stands for a project: ``reported`` on time; ``late`` (filed after it was
due); ``missing`` (due and not filed); ``due`` (not due yet and not filed)."""


class PeriodView(View):
    """One period of an obligation for a project: when it is due, whether its report is in, and how far the
    missing report has climbed the ladder."""

    period: str
    due_at: datetime
    estimated: bool
    status: PeriodStatus
    report_id: str | None = None
    deadline_id: str | None = None
    level: int = 0


class ObligationStatusView(View):
    """An obligation of a project: its titles, recurrence, ladder, report fields, whether it applies to the
    project now, and its recent periods (newest first)."""

    obligation: str
    title: str
    title_en: str | None = None
    recurrence: str
    applies_now: bool
    ladder: str | None = None
    fields: list[dict[str, Any]]
    updates_fields: dict[str, str]
    periods: list[PeriodView]
    reports: list[ReportView]


class ProjectDeadlinesView(View):
    """A project's deadlines (open first, then closed), with the escalations each has fired."""

    deadlines: list[DeadlineView]
    escalations: list[EscalationView]


@dataclass(frozen=True)
class Fired:
    """One thing a tick did (or, in a dry run, would do) to a deadline.

    Attributes:
        action: ``expire`` (the deadline's ``on_expiry`` trigger) or ``escalate`` (a ladder level).
        late_by_seconds: how long after it came due it fired (large after downtime).
        notices: the recipients notified, ``kind:id``.
    """

    project_id: str
    project_name: str
    deadline_id: str
    deadline_title: str
    action: Literal["expire", "escalate"]
    level: int
    title: str
    due_at: datetime
    fired_at: datetime
    late_by_seconds: int
    days_late: int
    outcome: Literal["fired", "refused"] = "fired"
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpenedObligation:
    """A missing report's deadline a tick opened (or would open): the project, obligation and period."""

    project_id: str
    obligation: str
    period: str
    deadline_id: str
    due_at: datetime


@dataclass(frozen=True)
class Redated:
    """A deadline whose estimated due date a tick counted again with a calendar that knows its years."""

    project_id: str
    deadline_id: str
    old_due: date
    new_due: date
    estimated: bool


@dataclass
class TickReport:
    """What one scheduler tick did (or, with ``dry_run``, would do), as of ``as_of``."""

    as_of: datetime
    dry_run: bool = False
    redated: list[Redated] = field(default_factory=list)
    opened: list[OpenedObligation] = field(default_factory=list)
    fired: list[Fired] = field(default_factory=list)
    lights: int = 0
    purged: int = 0
    """Expired idempotency records deleted."""
    errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
