"""Persistence: the only place SQL lives.

* :mod:`.db` — :class:`Database` (async engine, write and read sessions, SQLite WAL and ``BEGIN IMMEDIATE``);
* :mod:`.models` — the schema (SQLAlchemy typed models, naming convention);
* :mod:`.migrate` — Alembic from Python (upgrade, downgrade, current and head revisions);
* repositories, each a small class over an ``AsyncSession``: :class:`DefinitionRepository`,
  :class:`ProjectRepository`, :class:`EventRepository`, :class:`PrincipalRepository`,
  :class:`IdempotencyRepository`, :class:`DeadlineRepository`.
"""

from __future__ import annotations

from .db import Database
from .deadlines import DeadlineRepository
from .definitions import DefinitionRecord, DefinitionRepository
from .events import AuditFinding, EventRecord, EventRepository
from .idempotency import IdempotencyEntry, IdempotencyRepository
from .principals import PrincipalRecord, PrincipalRepository, TokenRecord
from .projects import (
    GENESIS_HASH,
    ProjectHeader,
    ProjectQuery,
    ProjectRecord,
    ProjectRepository,
    Visibility,
)

__all__ = [
    "GENESIS_HASH",
    "AuditFinding",
    "Database",
    "DeadlineRepository",
    "DefinitionRecord",
    "DefinitionRepository",
    "EventRecord",
    "EventRepository",
    "IdempotencyEntry",
    "IdempotencyRepository",
    "PrincipalRecord",
    "PrincipalRepository",
    "ProjectHeader",
    "ProjectQuery",
    "ProjectRecord",
    "ProjectRepository",
    "TokenRecord",
    "Visibility",
]
