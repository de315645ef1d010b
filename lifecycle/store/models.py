"""The database schema as typed SQLAlchemy models.

These classes are the schema's single description in Python: Alembic migrations are written to match them
(a test compares a migrated database with this metadata on SQLite and PostgreSQL), and repositories build
their statements from the tables. Repositories read and write through table-level statements and return
plain dataclasses, so no ORM identity map ever holds a stale copy of a row.

Conventions:

* every constraint and index is named by :data:`NAMING_CONVENTION`, so migrations can refer to them;
* instants are :class:`~lifecycle.store.types.UTCDateTime` (UTC, timezone-aware); local calendar dates
  (due dates, cure dates) are ``Date``;
* money is :class:`~lifecycle.store.types.Money` (``Numeric(18, 4)``, 万元);
* JSON columns are ``jsonb`` on PostgreSQL;
* a project owns its tasks, notices, commitments, deadlines and steps (``ON DELETE CASCADE``); events are
  never deleted with it (``RESTRICT``), since the history is append-only.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import JSONDocument, Money, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint and index names (as Polar does): stable names that migrations can drop or alter."""

ID = 36
"""Length of a UUID in text form: project and event ids."""

NAME = 64
"""Length of identifiers from definitions and principals (states, triggers, unit ids, role ids)."""

SOURCE_CATEGORIES = ("规划项目", "年度重大助推项目", "国家新增专项", "招商引资签约项目")
"""项目范围 of the work plan (§二): projects of the county's plans, the county's yearly major projects,
newly added national special projects, and signed investment-attraction projects."""

# SQLite rowids are INTEGER; PostgreSQL gets a BIGINT identity column for the events' internal id.
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base holding the metadata with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DefinitionVersion(Base):
    """A published version of a lifecycle definition. Its YAML and content hash never change once stored;
    at most one version of a key is ``active`` (the one new projects start on)."""

    __tablename__ = "definitions"

    key: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(80))
    yaml_text: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(String(200))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_by: Mapped[str] = mapped_column(String(NAME))
    change_note: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        CheckConstraint("version >= 1", name="version_positive"),
        Index("ix_definitions_key_content_hash", "key", "content_hash"),
        # One active version per key, enforced by the database.
        Index(
            "uq_definitions_key_active",
            "key",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )


class Principal(Base):
    """Someone or something that calls the service: a person of a unit or department, or a county system.

    ``roles`` is a JSON list of platform roles; ``unit_id`` is the org unit (a unit's id for project
    owners, a department id for approving departments).
    """

    __tablename__ = "principals"

    id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit_id: Mapped[str | None] = mapped_column(String(NAME))
    unit_kind: Mapped[str | None] = mapped_column(String(32))
    roles: Mapped[list[str]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token of a principal. Only the SHA-256 of the token is stored; ``prefix`` (its first
    characters) lets an administrator recognise it in a listing."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Project(Base):
    """A project (重大项目): its header for listing and filtering, plus the instance state.

    ``phase`` and the ``project_steps`` rows are derived from ``state`` on every write and stored only so
    that lists can be filtered by them. ``event_seq`` / ``event_hash`` are the head of the project's event
    chain: the last event's seq and hash, which is how the audit notices events deleted from the end.
    """

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    code: Mapped[str | None] = mapped_column(String(24), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    definition_key: Mapped[str] = mapped_column(String(NAME), index=True)
    definition_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(NAME), index=True)
    phase: Mapped[str | None] = mapped_column(String(NAME), index=True)
    source_category: Mapped[str] = mapped_column(String(32))
    lead_leader: Mapped[str | None] = mapped_column(String(NAME), index=True)
    lead_unit: Mapped[str] = mapped_column(String(NAME), index=True)
    implementing_unit: Mapped[str | None] = mapped_column(String(NAME), index=True)
    township: Mapped[str | None] = mapped_column(String(NAME))
    total_investment: Mapped[Decimal | None] = mapped_column(Money)
    planned_start: Mapped[date | None] = mapped_column(Date)
    planned_end: Mapped[date | None] = mapped_column(Date)
    fields: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    held_from: Mapped[str | None] = mapped_column(String(NAME))
    light: Mapped[str | None] = mapped_column(String(16), index=True)
    light_reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONDocument)  # scheduling area
    light_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)  # scheduling area
    version: Mapped[int] = mapped_column(Integer)
    event_seq: Mapped[int] = mapped_column(Integer)
    event_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(NAME))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        ForeignKeyConstraint(["definition_key", "definition_version"], ["definitions.key", "definitions.version"]),
        CheckConstraint(
            "source_category IN ('规划项目', '年度重大助推项目', '国家新增专项', '招商引资签约项目')",
            name="source_category",
        ),
        CheckConstraint("version >= 1", name="version_positive"),
        # Keyset pagination walks (created_at, id).
        Index("ix_projects_created_at_id", "created_at", "id"),
    )


class ProjectStep(Base):
    """The plan steps (1–11) a project is carrying out now, one row each, for "filter by step"."""

    __tablename__ = "project_steps"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)

    __table_args__ = (Index("ix_project_steps_step_project_id", "step", "project_id"),)


class TaskRow(Base):
    """An item (审批/验收事项) opened for a project. ``department`` is copied from the item's definition when
    it opens, so that a department's visibility is a plain indexed query."""

    __tablename__ = "tasks"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(140), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(NAME))
    item_id: Mapped[str] = mapped_column(String(NAME))
    machine: Mapped[str] = mapped_column(String(NAME))
    department: Mapped[str | None] = mapped_column(String(NAME))
    state: Mapped[str] = mapped_column(String(NAME))
    submission: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_tasks_department_project_id", "department", "project_id"),)


class DeficiencyNoticeRow(Base):
    """A 一次性告知 (容缺补正通知). UNIQUE(project_id, task_id, submission) is the one-time rule held by the
    database as well as by the engine: one notice per submission of an item."""

    __tablename__ = "deficiency_notices"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(140))
    submission: Mapped[int] = mapped_column(Integer)
    machine: Mapped[str] = mapped_column(String(NAME))
    state: Mapped[str] = mapped_column(String(NAME))
    missing: Mapped[list[str]] = mapped_column(JSONDocument)
    cure_date: Mapped[date] = mapped_column(Date)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    issued_by: Mapped[str] = mapped_column(String(NAME))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        ForeignKeyConstraint(["project_id", "task_id"], ["tasks.project_id", "tasks.id"], ondelete="CASCADE"),
        UniqueConstraint("project_id", "task_id", "submission"),
    )


class CommitmentRow(Base):
    """A 告知承诺制 commitment recorded for an item, then verified or found breached."""

    __tablename__ = "commitments"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(140))
    text: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(NAME))
    due_date: Mapped[date | None] = mapped_column(Date)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_by: Mapped[str | None] = mapped_column(String(NAME))
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        ForeignKeyConstraint(["project_id", "task_id"], ["tasks.project_id", "tasks.id"], ondelete="CASCADE"),
        CheckConstraint("state IN ('recorded', 'verified', 'breached')", name="state"),
    )


SCHEDULING_DEADLINE_INDEXES = (
    # What the scheduler claims: open rows whose next action has come (scheduled), or whose due time has
    # come and that were never scheduled; and open estimated rows, re-dated when the calendar learns a year.
    Index(
        "ix_deadlines_open_next_fire_at",
        "next_fire_at",
        sqlite_where=text("closed_at IS NULL AND next_fire_at IS NOT NULL"),
        postgresql_where=text("closed_at IS NULL AND next_fire_at IS NOT NULL"),
    ),
    Index(
        "ix_deadlines_unscheduled_due_at",
        "due_at",
        sqlite_where=text("closed_at IS NULL AND next_fire_at IS NULL"),
        postgresql_where=text("closed_at IS NULL AND next_fire_at IS NULL"),
    ),
    Index(
        "ix_deadlines_open_estimated_due_date",
        "due_date",
        sqlite_where=text("closed_at IS NULL AND estimated"),
        postgresql_where=text("closed_at IS NULL AND estimated"),
    ),
)
"""Indexes of the scheduling area on ``deadlines`` (created by its migration, 0002)."""


class DeadlineRow(Base):
    """A running clock of a project, item or notice: due date, pauses, and how far its ladder has climbed.

    The partial index on ``due_at`` over open rows is what the scheduler's sweep reads ("open and due").
    """

    __tablename__ = "deadlines"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(240), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(160))
    clock: Mapped[str] = mapped_column(String(NAME))
    title: Mapped[str] = mapped_column(String(400))
    started_on: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    estimated: Mapped[bool] = mapped_column(Boolean)
    ladder: Mapped[str | None] = mapped_column(String(NAME))
    on_expiry: Mapped[str | None] = mapped_column(String(NAME))
    pauses: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    level: Mapped[int] = mapped_column(Integer)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # scheduling area: see its migration

    __table_args__ = (
        CheckConstraint("subject_kind IN ('project', 'task', 'notice')", name="subject_kind"),
        Index(
            "ix_deadlines_open_due_at",
            "due_at",
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
        *SCHEDULING_DEADLINE_INDEXES,
    )


class EventRow(Base):
    """One entry of a project's append-only history, hash-chained per project.

    ``seq`` counts 1, 2, 3… per project; ``prev_hash`` is the previous event's ``hash`` (64 zeros for the
    first); ``hash`` is SHA-256 over ``prev_hash`` and the canonical JSON of the event's content (see
    :mod:`lifecycle.store.events`). ``event_id`` is the stable id integrators see.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(_BIG_ID, Identity(), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(ID), unique=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="RESTRICT"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(NAME))
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(160))
    actor: Mapped[str] = mapped_column(String(NAME))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[str | None] = mapped_column(String(NAME))
    from_state: Mapped[str | None] = mapped_column(String(NAME))
    to_state: Mapped[str | None] = mapped_column(String(NAME))
    comment: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("project_id", "seq"),)


class IdempotencyRecord(Base):
    """What one ``Idempotency-Key`` of one principal did: the request's hash, and once finished the
    response (status, headers, body) to replay. Kept until ``expires_at`` (24 h by default)."""

    __tablename__ = "idempotency_records"

    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[list[list[str]] | None] = mapped_column(JSONDocument)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (CheckConstraint("state IN ('running', 'completed')", name="state"),)


# The tables, for the repositories' table-level statements.
projects = cast(Table, Project.__table__)
project_steps = cast(Table, ProjectStep.__table__)
tasks = cast(Table, TaskRow.__table__)
deficiency_notices = cast(Table, DeficiencyNoticeRow.__table__)
commitments = cast(Table, CommitmentRow.__table__)
deadlines = cast(Table, DeadlineRow.__table__)
events = cast(Table, EventRow.__table__)
definitions = cast(Table, DefinitionVersion.__table__)
principals = cast(Table, Principal.__table__)
api_tokens = cast(Table, ApiToken.__table__)
idempotency_records = cast(Table, IdempotencyRecord.__table__)


# Each area keeps its tables in its own module on the same metadata; importing them here completes the
# metadata for Alembic and for anything that uses these models.
from . import models_scheduling, models_webhooks, models_workflows  # noqa: E402, F401
