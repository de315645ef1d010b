"""Tables for Workflow administration: definition-level events and migration runs.

Kept apart from :mod:`.models` so that each area owns its schema; they share its metadata (and naming
convention) through :class:`~lifecycle.store.models.Base`, and ``models`` imports this module so that the
metadata is complete wherever it is used.

* ``workflow_events`` — what happened to definitions (a version published, activated, a migration run
  finished), append-only, each with a stable ``event_id``; a project's own events (``project.migrated``) are in
  its hash-chained history instead;
* ``migration_runs`` — one administrator's request to move projects from one version of a definition to
  another: the versions, the state mapping, the selection of projects, and whether it is still running;
* ``migration_outcomes`` — one row per project the run selected, written in the same transaction as the
  project's move: ``pending`` until the run reaches it, then ``migrated``, ``blocked`` (with the reasons) or
  ``skipped``. Because a project's move and its outcome row commit together, a run interrupted anywhere is
  resumed by processing its ``pending`` rows again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    String,
    Table,
)
from sqlalchemy.orm import Mapped, mapped_column

from .models import ID, NAME, Base
from .types import JSONDocument, UTCDateTime

__all__ = ["Base", "migration_outcomes", "migration_runs", "workflow_events"]

# SQLite rowids are INTEGER; PostgreSQL gets a BIGINT identity column (as for ``events``).
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")

RUN_STATUSES = ("running", "finished")
"""A run is ``running`` while any of its outcomes is ``pending`` (also when the process running it died:
resume it), ``finished`` once none is."""

OUTCOME_STATUSES = ("pending", "migrated", "blocked", "skipped")
"""What a run did with one project: not yet reached; moved; left where it is because something blocks the
move (the reasons are stored); left alone because it was no longer on the run's source version."""


class WorkflowEvent(Base):
    """Something that happened to a definition: ``workflow.published``, ``workflow.activated``,
    ``workflow.migrated`` (a migration run finished). ``version`` is the definition version concerned."""

    __tablename__ = "workflow_events"

    id: Mapped[int] = mapped_column(_BIG_ID, Identity(), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(ID), unique=True)
    kind: Mapped[str] = mapped_column(String(NAME))
    definition_key: Mapped[str] = mapped_column(String(NAME))
    version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(NAME))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)

    __table_args__ = (Index("ix_workflow_events_definition_key_id", "definition_key", "id"),)


class MigrationRun(Base):
    """A request to move the selected projects of ``definition_key`` from ``from_version`` to ``to_version``.

    ``state_map`` maps old state ids to new ones (a state not named keeps its id); ``selection`` is the filter
    that chose the projects (``project_ids``, ``states``, ``units``), kept to show what was asked.
    """

    __tablename__ = "migration_runs"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    definition_key: Mapped[str] = mapped_column(String(NAME))
    from_version: Mapped[int] = mapped_column(Integer)
    to_version: Mapped[int] = mapped_column(Integer)
    state_map: Mapped[dict[str, str]] = mapped_column(JSONDocument)
    selection: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(NAME))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        ForeignKeyConstraint(["definition_key", "from_version"], ["definitions.key", "definitions.version"]),
        ForeignKeyConstraint(["definition_key", "to_version"], ["definitions.key", "definitions.version"]),
        CheckConstraint("status IN ('running', 'finished')", name="status"),
        CheckConstraint("from_version <> to_version", name="versions_differ"),
        Index("ix_migration_runs_definition_key_created_at", "definition_key", "created_at"),
    )


class MigrationOutcome(Base):
    """What a run did (or is to do) with one project. ``seq`` is the order the run processes them in;
    ``blockers`` lists why a blocked project cannot move; ``detail`` what a move did (items opened and
    dropped, deadlines re-dated)."""

    __tablename__ = "migration_outcomes"

    run_id: Mapped[str] = mapped_column(ForeignKey("migration_runs.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str] = mapped_column(String(NAME))
    to_state: Mapped[str | None] = mapped_column(String(NAME))
    blockers: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'migrated', 'blocked', 'skipped')", name="status"),
        Index("ix_migration_outcomes_run_id_status_seq", "run_id", "status", "seq"),
        Index("ix_migration_outcomes_project_id", "project_id"),
    )


workflow_events = cast(Table, WorkflowEvent.__table__)
migration_runs = cast(Table, MigrationRun.__table__)
migration_outcomes = cast(Table, MigrationOutcome.__table__)
