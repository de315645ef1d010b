"""Deadline escalations, recurring obligations, traffic lights and escalation notices (issue: scheduler).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Written to match ``lifecycle/store/models_scheduling.py`` (and the scheduling columns of ``projects`` and
``deadlines`` in ``lifecycle/store/models.py``) as of this revision; the types are spelled out here so that
this file keeps describing the schema it created.

New tables: ``escalations`` (UNIQUE project, deadline, level: each level fires once), ``escalation_notices``,
``obligation_reports`` (UNIQUE project, obligation, period), ``scheduler_state``.
New columns: ``projects.light_reasons``, ``projects.light_at``; ``deadlines.next_fire_at`` with the partial
indexes the scheduler's claim reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
INSTANT = sa.DateTime(timezone=True)
NAME = sa.String(length=64)
UUID_TEXT = sa.String(length=36)

_DEADLINE_INDEXES = (
    ("ix_deadlines_open_next_fire_at", "next_fire_at", "closed_at IS NULL AND next_fire_at IS NOT NULL"),
    ("ix_deadlines_unscheduled_due_at", "due_at", "closed_at IS NULL AND next_fire_at IS NULL"),
    ("ix_deadlines_open_estimated_due_date", "due_date", "closed_at IS NULL AND estimated"),
)


def upgrade() -> None:
    op.add_column("projects", sa.Column("light_reasons", JSON, nullable=True))
    op.add_column("projects", sa.Column("light_at", INSTANT, nullable=True))
    op.create_index("ix_projects_light_at", "projects", ["light_at"])

    # NULL: not scheduled yet (the scheduler looks at the row when it comes due); else the next instant at
    # which it has something to do (far in the future when nothing is left).
    op.add_column("deadlines", sa.Column("next_fire_at", INSTANT, nullable=True))
    for name, column, where in _DEADLINE_INDEXES:
        op.create_index(name, "deadlines", [column], sqlite_where=sa.text(where), postgresql_where=sa.text(where))

    op.create_table(
        "escalations",
        sa.Column("id", UUID_TEXT, nullable=False),
        sa.Column("project_id", UUID_TEXT, nullable=False),
        sa.Column("deadline_id", sa.String(length=240), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("ladder", NAME, nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("subject_kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=160), nullable=False),
        sa.Column("deadline_title", sa.String(length=400), nullable=False),
        sa.Column("deadline_due_date", sa.Date(), nullable=False),
        sa.Column("due_at", INSTANT, nullable=False),
        sa.Column("fired_at", INSTANT, nullable=False),
        sa.Column("late_by_seconds", sa.Integer(), nullable=False),
        sa.Column("days_late", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("notice_ids", JSON, nullable=False),
        sa.CheckConstraint("level >= 0", name=op.f("ck_escalations_level_not_negative")),
        sa.CheckConstraint("outcome IN ('fired', 'refused')", name=op.f("ck_escalations_outcome")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_escalations_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalations")),
        # Exactly once: each level of each deadline of each project has at most one row.
        sa.UniqueConstraint(
            "project_id", "deadline_id", "level", name=op.f("uq_escalations_project_id_deadline_id_level")
        ),
    )
    op.create_index("ix_escalations_fired_at", "escalations", ["fired_at"])

    op.create_table(
        "escalation_notices",
        sa.Column("id", UUID_TEXT, nullable=False),
        sa.Column("escalation_id", UUID_TEXT, nullable=False),
        sa.Column("project_id", UUID_TEXT, nullable=False),
        sa.Column("deadline_id", sa.String(length=240), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=200), nullable=False),
        sa.Column("recipient_role", NAME, nullable=False),
        sa.Column("recipient_kind", sa.String(length=16), nullable=False),
        sa.Column("recipient_id", NAME, nullable=False),
        sa.Column("recipient_title", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=400), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("days_late", sa.Integer(), nullable=False),
        sa.Column("level_title", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("acknowledged_at", INSTANT, nullable=True),
        sa.Column("acknowledged_by", NAME, nullable=True),
        sa.CheckConstraint(
            "recipient_kind IN ('unit', 'leader', 'department', 'role')",
            name=op.f("ck_escalation_notices_recipient_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["escalation_id"],
            ["escalations.id"],
            name=op.f("fk_escalation_notices_escalation_id_escalations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_escalation_notices_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_notices")),
        sa.UniqueConstraint(
            "escalation_id",
            "recipient_kind",
            "recipient_id",
            name=op.f("uq_escalation_notices_escalation_id_recipient_kind_recipient_id"),
        ),
    )
    op.create_index(
        "ix_escalation_notices_recipient", "escalation_notices", ["recipient_kind", "recipient_id", "created_at"]
    )
    op.create_index("ix_escalation_notices_project_id_created_at", "escalation_notices", ["project_id", "created_at"])
    op.create_index("ix_escalation_notices_created_at_id", "escalation_notices", ["created_at", "id"])

    op.create_table(
        "obligation_reports",
        sa.Column("id", UUID_TEXT, nullable=False),
        sa.Column("project_id", UUID_TEXT, nullable=False),
        sa.Column("obligation", NAME, nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("due_at", INSTANT, nullable=False),
        sa.Column("submitted_at", INSTANT, nullable=False),
        sa.Column("submitted_by", NAME, nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("late_by_seconds", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_obligation_reports_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_obligation_reports")),
        sa.UniqueConstraint(
            "project_id", "obligation", "period", name=op.f("uq_obligation_reports_project_id_obligation_period")
        ),
    )

    op.create_table(
        "scheduler_state",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", JSON, nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_scheduler_state")),
    )


def downgrade() -> None:
    op.drop_table("scheduler_state")
    op.drop_table("obligation_reports")
    op.drop_index("ix_escalation_notices_created_at_id", table_name="escalation_notices")
    op.drop_index("ix_escalation_notices_project_id_created_at", table_name="escalation_notices")
    op.drop_index("ix_escalation_notices_recipient", table_name="escalation_notices")
    op.drop_table("escalation_notices")
    op.drop_index("ix_escalations_fired_at", table_name="escalations")
    op.drop_table("escalations")
    for name, _column, _where in reversed(_DEADLINE_INDEXES):
        op.drop_index(name, table_name="deadlines")
    op.drop_column("deadlines", "next_fire_at")
    op.drop_index("ix_projects_light_at", table_name="projects")
    op.drop_column("projects", "light_at")
    op.drop_column("projects", "light_reasons")
