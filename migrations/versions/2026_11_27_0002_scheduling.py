"""Deadline escalations, recurring obligations, traffic lights and escalation notices (issue: scheduler).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Empty until its area's tables are added: the revision exists so that areas developed side by side each own
one link of a single chain.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
