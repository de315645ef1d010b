"""Runtime objects: a project instance and the items, notices, commitments and deadlines it owns.

An instance stores only what changes: its definition key and version, its current state, its data fields,
and the version counter used for optimistic concurrency. Everything else (titles, transitions, clocks) is read
from the shared, frozen definition. These are plain dataclasses: the store maps them to rows, the engine
changes them, and nothing here knows about either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

SubjectKind = Literal["project", "task", "notice"]


@dataclass(frozen=True)
class Actor:
    """Who fires a trigger: a principal id, its roles, and its org unit (a department id for departments,
    the unit id for project owners)."""

    id: str
    roles: frozenset[str]
    unit: str | None = None

    def has_any(self, roles: list[str] | tuple[str, ...] | frozenset[str]) -> bool:
        """Whether the actor holds at least one of ``roles``."""
        return not self.roles.isdisjoint(roles)


SYSTEM_ACTOR = Actor(id="system", roles=frozenset({"system"}))
"""The scheduler: the only actor with the ``system`` role."""


@dataclass
class Task:
    """An approval, review, support or acceptance item (审批/验收事项) opened for a project.

    Attributes:
        id: ``<group>.<item>``, unique within the project.
        submission: how many times it has been submitted (each new submission may get one notice).
        version: optimistic-concurrency counter, bumped by every change.
    """

    id: str
    group: str
    item: str
    machine: str
    state: str
    opened_at: datetime
    submission: int = 0
    closed_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    version: int = 1


@dataclass
class DeficiencyNotice:
    """A 一次性告知 (容缺补正通知): the one notice, per submission of an item, listing every missing material
    and the date by which it must be supplied."""

    id: str
    task_id: str
    submission: int
    machine: str
    state: str
    missing: list[str]
    cure_date: date
    issued_at: datetime
    issued_by: str
    closed_at: datetime | None = None
    version: int = 1


@dataclass
class Commitment:
    """A 告知承诺制 commitment made for an item: recorded, then verified (or found breached) during works or
    at acceptance."""

    id: str
    task_id: str
    text: str
    recorded_at: datetime
    recorded_by: str
    state: Literal["recorded", "verified", "breached"] = "recorded"
    due_date: date | None = None
    verified_at: datetime | None = None
    verified_by: str | None = None
    note: str | None = None


@dataclass
class Pause:
    """A span during which a clock did not run: ``start`` inclusive, ``end`` exclusive (None: still paused)."""

    start: date
    end: date | None = None


@dataclass
class Deadline:
    """A running clock: when its subject must be done by, and how far its escalation has climbed.

    Attributes:
        id: ``<subject id>/<clock id>/<n>``: stable, and unique even when a clock opens again.
        due_date: the last day (local, Asia/Shanghai) within the limit; ``due_at`` is the end of that day in UTC.
        estimated: the due date relied on a year whose holidays are not published (Monday–Friday assumed).
        level: the highest ladder level fired so far (0 = none).
        fired_at: when ``on_expiry`` fired (set by the scheduler).
    """

    id: str
    subject_kind: SubjectKind
    subject_id: str
    clock: str
    title: str
    started_on: date
    due_date: date
    due_at: datetime
    estimated: bool
    ladder: str | None = None
    on_expiry: str | None = None
    pauses: list[Pause] = field(default_factory=list)
    closed_at: datetime | None = None
    level: int = 0
    fired_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1].end is None


@dataclass
class ProjectInstance:
    """A project running on one version of a definition.

    Attributes:
        held_from: the state a holding state (暂缓) was entered from; ``$previous`` returns there.
        version: optimistic-concurrency counter, bumped by every change to the project or anything it owns.
    """

    id: str
    definition_key: str
    definition_version: int
    state: str
    fields: dict[str, Any] = field(default_factory=dict)
    held_from: str | None = None
    tasks: dict[str, Task] = field(default_factory=dict)
    notices: dict[str, DeficiencyNotice] = field(default_factory=dict)
    commitments: dict[str, Commitment] = field(default_factory=dict)
    deadlines: dict[str, Deadline] = field(default_factory=dict)
    version: int = 1

    def open_deadlines(self) -> list[Deadline]:
        """Deadlines still running (or paused)."""
        return [d for d in self.deadlines.values() if d.closed_at is None]


@dataclass(frozen=True)
class Event:
    """Something that happened, for the history (append-only) and for webhooks.

    ``kind``, written by the engine: ``project.created``, ``project.transition``, ``project.fields_updated``,
    ``task.opened``, ``task.transition``, ``notice.issued``, ``notice.transition``, ``commitment.recorded``,
    ``commitment.verified``, ``commitment.breached``. The services add ``project.updated`` (header edits) and
    ``project.migrated`` (moved to another definition version); the scheduler adds ``deadline.expired``,
    ``deadline.escalated``, ``deadline.redated``, ``obligation.reported`` and
    ``escalation_notice.acknowledged``. Webhook event types are derived from these (``docs/webhooks.md``).
    """

    kind: str
    subject_kind: SubjectKind
    subject_id: str
    actor: str
    at: datetime
    trigger: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    comment: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class FireResult:
    """What one engine call did. The store writes exactly this; nothing else changed.

    Attributes:
        state: the project's state afterwards.
        events: what happened, in order.
        tasks_opened / tasks_changed: task ids opened, and ids whose state changed.
        notices_opened / notices_changed: deficiency notice ids.
        commitments_changed: commitment ids recorded or verified.
        deadlines_opened / deadlines_closed / deadlines_changed: deadline ids (changed = paused, resumed or
            re-dated).
    """

    state: str
    events: list[Event] = field(default_factory=list)
    tasks_opened: list[str] = field(default_factory=list)
    tasks_changed: list[str] = field(default_factory=list)
    notices_opened: list[str] = field(default_factory=list)
    notices_changed: list[str] = field(default_factory=list)
    commitments_changed: list[str] = field(default_factory=list)
    deadlines_opened: list[str] = field(default_factory=list)
    deadlines_closed: list[str] = field(default_factory=list)
    deadlines_changed: list[str] = field(default_factory=list)
    fields_changed: list[str] = field(default_factory=list)

    def merged(self, later: FireResult) -> FireResult:
        """What this call and a ``later`` one on the same project did together: ``later``'s state, and the
        events and ids of both, in order (the store writes each row once, in its final form)."""
        lists = {
            name: [*getattr(self, name), *getattr(later, name)] for name in self.__dataclass_fields__ if name != "state"
        }
        return FireResult(state=later.state, **lists)


@dataclass(frozen=True)
class TriggerOption:
    """Whether a trigger may fire now, and if not, why (every reason).

    ``reasons`` holds (code, zh, en) triples: a role refusal, each unmet gate condition, each missing field.
    """

    trigger: str
    title: str
    title_en: str | None
    dest: str
    may_fire: bool
    gate: str | None
    reasons: tuple[tuple[str, str, str], ...] = ()
