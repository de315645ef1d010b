"""Published definition versions: the YAML text of each (key, version) and its content hash.

A version's content never changes once stored. Publishing is append-only: a new version gets the next
number, and at most one version of a key is active (the database holds that rule with a partial unique
index).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import definitions


@dataclass(frozen=True)
class DefinitionRecord:
    """One published version of a definition, as stored."""

    key: str
    version: int
    content_hash: str
    yaml_text: str
    title: str
    published_at: datetime
    published_by: str
    change_note: str | None
    active: bool


def _record(row: Any) -> DefinitionRecord:
    return DefinitionRecord(
        key=row.key,
        version=row.version,
        content_hash=row.content_hash,
        yaml_text=row.yaml_text,
        title=row.title,
        published_at=row.published_at,
        published_by=row.published_by,
        change_note=row.change_note,
        active=row.active,
    )


class DefinitionRepository:
    """Reads and appends definition versions within the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        key: str,
        version: int,
        content_hash: str,
        yaml_text: str,
        title: str,
        published_by: str,
        change_note: str | None,
        active: bool,
        now: datetime,
    ) -> DefinitionRecord:
        """Store a new version; when ``active``, the key's previously active version stops being active."""
        if active:
            await self.session.execute(
                update(definitions).where(definitions.c.key == key, definitions.c.active.is_(True)).values(active=False)
            )
        record = DefinitionRecord(
            key=key,
            version=version,
            content_hash=content_hash,
            yaml_text=yaml_text,
            title=title,
            published_at=now,
            published_by=published_by,
            change_note=change_note,
            active=active,
        )
        await self.session.execute(definitions.insert().values(**record.__dict__))
        return record

    async def get(self, key: str, version: int) -> DefinitionRecord | None:
        """The version ``version`` of ``key``, or None."""
        row = (
            await self.session.execute(
                select(definitions).where(definitions.c.key == key, definitions.c.version == version)
            )
        ).first()
        return _record(row) if row else None

    async def active(self, key: str) -> DefinitionRecord | None:
        """The active version of ``key`` (new projects start on it), or None."""
        row = (
            await self.session.execute(
                select(definitions).where(definitions.c.key == key, definitions.c.active.is_(True))
            )
        ).first()
        return _record(row) if row else None

    async def list_keys(self) -> list[str]:
        """Every definition key that has at least one version, sorted."""
        rows = await self.session.execute(select(definitions.c.key).distinct().order_by(definitions.c.key))
        return [row.key for row in rows]

    async def list_versions(self, key: str) -> list[DefinitionRecord]:
        """Every version of ``key``, oldest first."""
        rows = await self.session.execute(
            select(definitions).where(definitions.c.key == key).order_by(definitions.c.version)
        )
        return [_record(row) for row in rows]

    async def by_hash(self, key: str, content_hash: str) -> DefinitionRecord | None:
        """The earliest version of ``key`` whose content has hash ``content_hash``, or None."""
        row = (
            await self.session.execute(
                select(definitions)
                .where(definitions.c.key == key, definitions.c.content_hash == content_hash)
                .order_by(definitions.c.version)
                .limit(1)
            )
        ).first()
        return _record(row) if row else None

    async def next_version(self, key: str) -> int:
        """The number the next version of ``key`` gets (1 for a new key)."""
        latest = await self.session.scalar(select(func.max(definitions.c.version)).where(definitions.c.key == key))
        return int(latest or 0) + 1
