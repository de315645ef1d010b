"""Workflow administration: definition-level events, migration runs and their per-project outcomes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

Written to match ``lifecycle/store/models_workflows.py`` as of this revision; the types are spelled out here
(not imported from the models) so that this file keeps describing the schema it created when the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
INSTANT = sa.DateTime(timezone=True)
NAME = sa.String(length=64)
UUID_TEXT = sa.String(length=36)


def upgrade() -> None:
    op.create_table(
        "workflow_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(always=False), nullable=False
        ),
        sa.Column("event_id", UUID_TEXT, nullable=False),
        sa.Column("kind", NAME, nullable=False),
        sa.Column("definition_key", NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("actor", NAME, nullable=False),
        sa.Column("at", INSTANT, nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_workflow_events_event_id")),
    )
    op.create_index("ix_workflow_events_definition_key_id", "workflow_events", ["definition_key", "id"])

    op.create_table(
        "migration_runs",
        sa.Column("id", UUID_TEXT, nullable=False),
        sa.Column("definition_key", NAME, nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=False),
        sa.Column("to_version", sa.Integer(), nullable=False),
        sa.Column("state_map", JSON, nullable=False),
        sa.Column("selection", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", NAME, nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.Column("finished_at", INSTANT, nullable=True),
        sa.CheckConstraint("status IN ('running', 'finished')", name=op.f("ck_migration_runs_status")),
        sa.CheckConstraint("from_version <> to_version", name=op.f("ck_migration_runs_versions_differ")),
        sa.ForeignKeyConstraint(
            ["definition_key", "from_version"],
            ["definitions.key", "definitions.version"],
            name=op.f("fk_migration_runs_definition_key_from_version_definitions"),
        ),
        sa.ForeignKeyConstraint(
            ["definition_key", "to_version"],
            ["definitions.key", "definitions.version"],
            name=op.f("fk_migration_runs_definition_key_to_version_definitions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_runs")),
    )
    op.create_index("ix_migration_runs_definition_key_created_at", "migration_runs", ["definition_key", "created_at"])

    op.create_table(
        "migration_outcomes",
        sa.Column("run_id", UUID_TEXT, nullable=False),
        sa.Column("project_id", UUID_TEXT, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("from_state", NAME, nullable=False),
        sa.Column("to_state", NAME, nullable=True),
        sa.Column("blockers", JSON, nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("updated_at", INSTANT, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'migrated', 'blocked', 'skipped')", name=op.f("ck_migration_outcomes_status")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["migration_runs.id"],
            name=op.f("fk_migration_outcomes_run_id_migration_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_migration_outcomes_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "project_id", name=op.f("pk_migration_outcomes")),
    )
    op.create_index(
        "ix_migration_outcomes_run_id_status_seq", "migration_outcomes", ["run_id", "status", "seq"]
    )
    op.create_index("ix_migration_outcomes_project_id", "migration_outcomes", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_migration_outcomes_project_id", table_name="migration_outcomes")
    op.drop_index("ix_migration_outcomes_run_id_status_seq", table_name="migration_outcomes")
    op.drop_table("migration_outcomes")
    op.drop_index("ix_migration_runs_definition_key_created_at", table_name="migration_runs")
    op.drop_table("migration_runs")
    op.drop_index("ix_workflow_events_definition_key_id", table_name="workflow_events")
    op.drop_table("workflow_events")
