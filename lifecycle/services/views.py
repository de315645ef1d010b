"""What the services return: read-only pydantic views the API serialises as they are.

Each view carries the object's data plus what a reader needs to show it without the definition at hand:
Chinese titles (and English ones where the definition has them) of states, phases, groups and items. Field
values are in their JSON form (money as a decimal string, dates as ISO text). ``etag`` is the weak ETag of
the object's version (``W/"<version>"``), which the API sends and expects back in ``If-Match``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, field_serializer

from lifecycle.engine.instance import Deadline

T = TypeVar("T")

_FOUR_PLACES = Decimal("0.0001")


class View(BaseModel):
    """Base of every view: immutable."""

    model_config = ConfigDict(frozen=True)


def etag_of(version: int) -> str:
    """The weak ETag of a version counter: ``W/"<version>"``."""
    return f'W/"{version}"'


class StepView(View):
    """A numbered step of the work plan (1–11) with its title."""

    number: int
    title: str
    title_en: str | None = None


class DeadlineView(View):
    """A running (or closed) clock of a project, item or notice.

    ``overdue`` is judged at the time the view was made; ``paused`` says the clock is stopped (e.g. expert
    review: 行政许可法 Art. 45); ``estimated`` says the due date relies on a year whose holidays are not
    published yet.
    """

    id: str
    subject_kind: Literal["project", "task", "notice"]
    subject_id: str
    clock: str
    title: str
    started_on: date
    due_date: date
    due_at: datetime
    estimated: bool
    paused: bool
    overdue: bool
    level: int
    closed_at: datetime | None = None
    fired_at: datetime | None = None


class LightReasonView(View):
    """Why a project's traffic light (红黄绿灯) has its colour: one band of the definition that applies (what
    it measures, the value measured, the colour it gives, and its title)."""

    measure: str
    value: str
    color: Literal["yellow", "red"]
    title: str
    title_en: str | None = None


class ProjectView(View):
    """A project (重大项目): header, definition, current state with its titles, phase, steps, the data
    fields (JSON form), and the version for ``If-Match``."""

    id: str
    code: str | None
    name: str
    definition_key: str
    definition_version: int
    state: str
    state_title: str
    state_title_en: str | None = None
    terminal: bool
    held: bool
    held_from: str | None = None
    held_from_title: str | None = None
    phase: str | None = None
    phase_title: str | None = None
    steps: list[StepView]
    source_category: str
    lead_leader: str | None = None
    lead_unit: str
    implementing_unit: str | None = None
    township: str | None = None
    total_investment: Decimal | None = None
    planned_start: date | None = None
    planned_end: date | None = None
    fields: dict[str, Any]
    light: str | None = None
    light_reasons: list[LightReasonView] = []
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime

    @field_serializer("total_investment", when_used="json")
    def _money(self, value: Decimal | None) -> str | None:
        # Always its four stored decimals ("5000.5000"), whether the project was just created from 5000.5 or
        # "5e3" or read back from the database: equal amounts look equal.
        return None if value is None else str(value.quantize(_FOUR_PLACES))

    @property
    def etag(self) -> str:
        """``W/"<version>"``."""
        return etag_of(self.version)


class TaskView(View):
    """An item (审批/验收事项) of a project: where it stands, who handles it, and its open clocks."""

    project_id: str
    id: str
    group: str
    group_title: str
    item: str
    item_title: str
    department: str | None = None
    department_title: str | None = None
    machine: str
    state: str
    state_title: str
    outcome: Literal["open", "done", "failed"]
    submission: int
    opened_at: datetime
    closed_at: datetime | None = None
    data: dict[str, Any]
    version: int
    deadlines: list[DeadlineView]

    @property
    def etag(self) -> str:
        """``W/"<version>"``."""
        return etag_of(self.version)


class MaterialView(View):
    """A material (申请材料) named on a notice."""

    id: str
    title: str


class NoticeView(View):
    """A 一次性告知 (容缺补正通知): the one notice for one submission of an item, listing every missing
    material and the cure date."""

    project_id: str
    id: str
    task_id: str
    item_title: str
    submission: int
    machine: str
    state: str
    state_title: str
    outcome: Literal["open", "done", "failed"]
    missing: list[MaterialView]
    cure_date: date
    issued_at: datetime
    issued_by: str
    closed_at: datetime | None = None
    version: int

    @property
    def etag(self) -> str:
        """``W/"<version>"``."""
        return etag_of(self.version)


class CommitmentView(View):
    """A 告知承诺制 commitment made for an item."""

    project_id: str
    id: str
    task_id: str
    text: str
    state: Literal["recorded", "verified", "breached"]
    recorded_at: datetime
    recorded_by: str
    due_date: date | None = None
    verified_at: datetime | None = None
    verified_by: str | None = None
    note: str | None = None


class HistoryEntry(View):
    """One event of a project's history, with its place in the hash chain."""

    seq: int
    event_id: str
    kind: str
    subject_kind: str
    subject_id: str
    actor: str
    at: datetime
    trigger: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    comment: str | None = None
    data: dict[str, Any]
    prev_hash: str
    hash: str


class Page(View, Generic[T]):
    """One page of a list; ``next_cursor`` is None on the last page, else passed back to get the next."""

    items: list[T]
    next_cursor: str | None = None


class PublishOutcome(View):
    """What publishing one bundled definition file did.

    ``status``: ``published`` (a new version), ``unchanged`` (this content is already a version), or
    ``not_published`` (the key has versions and the file differs: publishing edits is an explicit act).
    """

    key: str
    version: int | None
    status: Literal["published", "unchanged", "not_published"]
    content_hash: str
    file: str


def deadline_view(deadline: Deadline, now: datetime) -> DeadlineView:
    """What a caller sees of a deadline at ``now`` (``overdue`` is judged then)."""
    return DeadlineView(
        id=deadline.id,
        subject_kind=deadline.subject_kind,
        subject_id=deadline.subject_id,
        clock=deadline.clock,
        title=deadline.title,
        started_on=deadline.started_on,
        due_date=deadline.due_date,
        due_at=deadline.due_at,
        estimated=deadline.estimated,
        paused=deadline.paused,
        overdue=deadline.closed_at is None and deadline.due_at < now,
        level=deadline.level,
        closed_at=deadline.closed_at,
        fired_at=deadline.fired_at,
    )
