"""Initial schema: definitions, principals and tokens, projects and what they own, events, idempotency.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 07:11:14+00:00

Written to match ``lifecycle/store/models.py`` as of this revision; the types are spelled out here (not
imported from the models) so that this file keeps describing the schema it created when the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
INSTANT = sa.DateTime(timezone=True)
MONEY = sa.Numeric(precision=18, scale=4)
NAME = sa.String(length=64)
UUID_TEXT = sa.String(length=36)
SOURCE_CATEGORIES = "'规划项目', '年度重大助推项目', '国家新增专项', '招商引资签约项目'"


def upgrade() -> None:
    op.create_table(
        "definitions",
        sa.Column("key", NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=80), nullable=False),
        sa.Column("yaml_text", sa.Text(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("published_at", INSTANT, nullable=False),
        sa.Column("published_by", NAME, nullable=False),
        sa.Column("change_note", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_definitions_version_positive")),
        sa.PrimaryKeyConstraint("key", "version", name=op.f("pk_definitions")),
    )
    op.create_index("ix_definitions_key_content_hash", "definitions", ["key", "content_hash"])
    op.create_index(
        "uq_definitions_key_active",
        "definitions",
        ["key"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )

    op.create_table(
        "principals",
        sa.Column("id", NAME, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit_id", NAME, nullable=True),
        sa.Column("unit_kind", sa.String(length=32), nullable=True),
        sa.Column("roles", JSON, nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_principals")),
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", UUID_TEXT, nullable=False),
        sa.Column("principal_id", NAME, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("revoked_at", INSTANT, nullable=True),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_api_tokens_principal_id_principals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_principal_id"), "api_tokens", ["principal_id"])

    op.create_table(
        "idempotency_records",
        sa.Column("principal_id", NAME, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("expires_at", INSTANT, nullable=False),
        sa.Column("completed_at", INSTANT, nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_headers", JSON, nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint("state IN ('running', 'completed')", name=op.f("ck_idempotency_records_state")),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_idempotency_records_principal_id_principals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("principal_id", "key", name=op.f("pk_idempotency_records")),
    )
    op.create_index(op.f("ix_idempotency_records_expires_at"), "idempotency_records", ["expires_at"])

    op.create_table(
        "projects",
        sa.Column("id", UUID_TEXT, nullable=False),
        sa.Column("code", sa.String(length=24), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("definition_key", NAME, nullable=False),
        sa.Column("definition_version", sa.Integer(), nullable=False),
        sa.Column("state", NAME, nullable=False),
        sa.Column("phase", NAME, nullable=True),
        sa.Column("source_category", sa.String(length=32), nullable=False),
        sa.Column("lead_leader", NAME, nullable=True),
        sa.Column("lead_unit", NAME, nullable=False),
        sa.Column("implementing_unit", NAME, nullable=True),
        sa.Column("township", NAME, nullable=True),
        sa.Column("total_investment", MONEY, nullable=True),
        sa.Column("planned_start", sa.Date(), nullable=True),
        sa.Column("planned_end", sa.Date(), nullable=True),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("held_from", NAME, nullable=True),
        sa.Column("light", sa.String(length=16), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.Column("event_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("created_by", NAME, nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.CheckConstraint(
            f"source_category IN ({SOURCE_CATEGORIES})", name=op.f("ck_projects_source_category")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_projects_version_positive")),
        sa.ForeignKeyConstraint(
            ["definition_key", "definition_version"],
            ["definitions.key", "definitions.version"],
            name=op.f("fk_projects_definition_key_definition_version_definitions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("code", name=op.f("uq_projects_code")),
    )
    op.create_index("ix_projects_created_at_id", "projects", ["created_at", "id"])
    for column in ("definition_key", "implementing_unit", "lead_leader", "lead_unit", "light", "phase", "state"):
        op.create_index(op.f(f"ix_projects_{column}"), "projects", [column])

    op.create_table(
        "project_steps",
        sa.Column("project_id", UUID_TEXT, nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_project_steps_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "step", name=op.f("pk_project_steps")),
    )
    op.create_index("ix_project_steps_step_project_id", "project_steps", ["step", "project_id"])

    op.create_table(
        "tasks",
        sa.Column("project_id", UUID_TEXT, nullable=False),
        sa.Column("id", sa.String(length=140), nullable=False),
        sa.Column("group_id", NAME, nullable=False),
        sa.Column("item_id", NAME, nullable=False),
        sa.Column("machine", NAME, nullable=False),
        sa.Column("department", NAME, nullable=True),
        sa.Column("state", NAME, nullable=False),
        sa.Column("submission", sa.Integer(), nullable=False),
        sa.Column("opened_at", INSTANT, nullable=False),
        sa.Column("closed_at", INSTANT, nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_tasks_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "id", name=op.f("pk_tasks")),
    )
    op.create_index("ix_tasks_department_project_id", "tasks", ["department", "project_id"])

    op.create_table(
        "deficiency_notices",
        sa.Column("project_id", UUID_TEXT, nullable=False),
        sa.Column("id", sa.String(length=160), nullable=False),
        sa.Column("task_id", sa.String(length=140), nullable=False),
        sa.Column("submission", sa.Integer(), nullable=False),
        sa.Column("machine", NAME, nullable=False),
        sa.Column("state", NAME, nullable=False),
        sa.Column("missing", JSON, nullable=False),
        sa.Column("cure_date", sa.Date(), nullable=False),
        sa.Column("issued_at", INSTANT, nullable=False),
        sa.Column("issued_by", NAME, nullable=False),
        sa.Column("closed_at", INSTANT, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id", "task_id"],
            ["tasks.project_id", "tasks.id"],
            name=op.f("fk_deficiency_notices_project_id_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_deficiency_notices_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "id", name=op.f("pk_deficiency_notices")),
        # 一次性告知: one notice per submission of an item, held by the database too.
        sa.UniqueConstraint(
            "project_id", "task_id", "submission", name=op.f("uq_deficiency_notices_project_id_task_id_submission")
        ),
    )

    op.create_table(
        "commitments",
        sa.Column("project_id", UUID_TEXT, nullable=False),
        sa.Column("id", sa.String(length=160), nullable=False),
        sa.Column("task_id", sa.String(length=140), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.Column("recorded_by", NAME, nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("verified_at", INSTANT, nullable=True),
        sa.Column("verified_by", NAME, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('recorded', 'verified', 'breached')", name=op.f("ck_commitments_state")),
        sa.ForeignKeyConstraint(
            ["project_id", "task_id"],
            ["tasks.project_id", "tasks.id"],
            name=op.f("fk_commitments_project_id_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_commitments_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "id", name=op.f("pk_commitments")),
    )

    op.create_table(
        "deadlines",
        sa.Column("project_id", UUID_TEXT, nullable=False),
        sa.Column("id", sa.String(length=240), nullable=False),
        sa.Column("subject_kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=160), nullable=False),
        sa.Column("clock", NAME, nullable=False),
        sa.Column("title", sa.String(length=400), nullable=False),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("due_at", INSTANT, nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("ladder", NAME, nullable=True),
        sa.Column("on_expiry", NAME, nullable=True),
        sa.Column("pauses", JSON, nullable=False),
        sa.Column("closed_at", INSTANT, nullable=True),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("fired_at", INSTANT, nullable=True),
        sa.CheckConstraint(
            "subject_kind IN ('project', 'task', 'notice')", name=op.f("ck_deadlines_subject_kind")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_deadlines_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "id", name=op.f("pk_deadlines")),
    )
    # "Open and due": the scheduler's sweep reads only open rows, by due time.
    op.create_index(
        "ix_deadlines_open_due_at",
        "deadlines",
        ["due_at"],
        sqlite_where=sa.text("closed_at IS NULL"),
        postgresql_where=sa.text("closed_at IS NULL"),
    )

    op.create_table(
        "events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(always=False), nullable=False
        ),
        sa.Column("event_id", UUID_TEXT, nullable=False),
        sa.Column("project_id", UUID_TEXT, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", NAME, nullable=False),
        sa.Column("subject_kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=160), nullable=False),
        sa.Column("actor", NAME, nullable=False),
        sa.Column("at", INSTANT, nullable=False),
        sa.Column("trigger", NAME, nullable=True),
        sa.Column("from_state", NAME, nullable=True),
        sa.Column("to_state", NAME, nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_events_project_id_projects"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
        sa.UniqueConstraint("project_id", "seq", name=op.f("uq_events_project_id_seq")),
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_index("ix_deadlines_open_due_at", table_name="deadlines")
    op.drop_table("deadlines")
    op.drop_table("commitments")
    op.drop_table("deficiency_notices")
    op.drop_index("ix_tasks_department_project_id", table_name="tasks")
    op.drop_table("tasks")
    op.drop_index("ix_project_steps_step_project_id", table_name="project_steps")
    op.drop_table("project_steps")
    for column in ("definition_key", "implementing_unit", "lead_leader", "lead_unit", "light", "phase", "state"):
        op.drop_index(op.f(f"ix_projects_{column}"), table_name="projects")
    op.drop_index("ix_projects_created_at_id", table_name="projects")
    op.drop_table("projects")
    op.drop_index(op.f("ix_idempotency_records_expires_at"), table_name="idempotency_records")
    op.drop_table("idempotency_records")
    op.drop_index(op.f("ix_api_tokens_principal_id"), table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("principals")
    op.drop_index("uq_definitions_key_active", table_name="definitions")
    op.drop_index("ix_definitions_key_content_hash", table_name="definitions")
    op.drop_table("definitions")
