"""Principals (who calls the service) and their API tokens.

A token is shown once, when it is created: ``lc_`` followed by 43 URL-safe characters (256 random bits).
Only its SHA-256 is stored, so a copy of the database does not hand out working tokens; the first
characters (``prefix``) are kept so that an administrator can tell tokens apart in a listing.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import api_tokens, principals

TOKEN_PREFIX = "lc_"
TOKEN_LENGTH = len(TOKEN_PREFIX) + 43
SHOWN_PREFIX = len(TOKEN_PREFIX) + 8
"""How much of a token a listing shows."""


@dataclass(frozen=True)
class PrincipalRecord:
    """A stored principal: its id, name, org unit (a unit's or a department's id) and platform roles."""

    id: str
    name: str
    unit_id: str | None
    unit_kind: str | None
    roles: frozenset[str]
    created_at: datetime


@dataclass(frozen=True)
class TokenRecord:
    """What a listing shows of a token: never the token itself."""

    id: str
    principal_id: str
    prefix: str
    description: str
    created_at: datetime
    revoked_at: datetime | None


def token_hash(plain_token: str) -> str:
    """The SHA-256 (hex) under which ``plain_token`` is stored."""
    return hashlib.sha256(plain_token.encode("utf-8")).hexdigest()


def _principal(row: Any) -> PrincipalRecord:
    return PrincipalRecord(
        id=row.id,
        name=row.name,
        unit_id=row.unit_id,
        unit_kind=row.unit_kind,
        roles=frozenset(row.roles or ()),
        created_at=row.created_at,
    )


def _token(row: Any) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        principal_id=row.principal_id,
        prefix=row.prefix,
        description=row.description,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class PrincipalRepository:
    """Principals and tokens within the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        principal_id: str,
        name: str,
        roles: Iterable[str],
        now: datetime,
        *,
        unit_id: str | None = None,
        unit_kind: str | None = None,
    ) -> PrincipalRecord:
        """Store a new principal."""
        record = PrincipalRecord(principal_id, name, unit_id, unit_kind, frozenset(roles), now)
        await self.session.execute(
            principals.insert().values(
                id=record.id,
                name=record.name,
                unit_id=record.unit_id,
                unit_kind=record.unit_kind,
                roles=sorted(record.roles),
                created_at=now,
            )
        )
        return record

    async def get(self, principal_id: str) -> PrincipalRecord | None:
        """The principal ``principal_id``, or None."""
        row = (await self.session.execute(select(principals).where(principals.c.id == principal_id))).first()
        return _principal(row) if row else None

    async def create_token(self, principal_id: str, description: str, now: datetime) -> tuple[str, str]:
        """A new token for the principal: ``(token_id, plain_token)``. The plain token is never stored and
        cannot be shown again."""
        plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = str(uuid.uuid4())
        await self.session.execute(
            api_tokens.insert().values(
                id=token_id,
                principal_id=principal_id,
                token_hash=token_hash(plain),
                prefix=plain[:SHOWN_PREFIX],
                description=description,
                created_at=now,
                revoked_at=None,
            )
        )
        return token_id, plain

    async def authenticate(self, plain_token: str) -> PrincipalRecord | None:
        """The principal holding ``plain_token`` if it is a live (not revoked) token, else None."""
        if not plain_token.startswith(TOKEN_PREFIX) or len(plain_token) != TOKEN_LENGTH:
            return None
        row = (
            await self.session.execute(
                select(principals)
                .join(api_tokens, api_tokens.c.principal_id == principals.c.id)
                .where(api_tokens.c.token_hash == token_hash(plain_token), api_tokens.c.revoked_at.is_(None))
            )
        ).first()
        return _principal(row) if row else None

    async def list_tokens(self, principal_id: str | None = None) -> list[TokenRecord]:
        """Tokens (of one principal, or all), oldest first."""
        query = select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id)
        if principal_id is not None:
            query = query.where(api_tokens.c.principal_id == principal_id)
        return [_token(row) for row in await self.session.execute(query)]

    async def revoke(self, token_id: str, now: datetime) -> bool:
        """Revoke a token; False if there is no such live token."""
        result = await self.session.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(api_tokens.c.id)
        )
        return result.first() is not None
