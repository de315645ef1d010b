"""The baseline of ``bench/api.py``: the same SQL writes as a transition, and nothing else.

One endpoint, ``POST /minimal/{project_id}``, in one transaction: lock the project row, bump its state and
version, append an event row (with a hash, as the chain does); commit. No engine, no ORM, no authentication,
no idempotency, no problem+json: what a transition costs the database, served by the same ASGI server with the
same settings, so that ``api / minimal`` measures what the service adds on top.

Run by ``bench/api.py`` as ``uvicorn bench.minimal_app:app`` with ``LIFECYCLE_DATABASE_URL`` set.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def _dsn() -> str:
    url = os.environ["LIFECYCLE_DATABASE_URL"]
    return url.replace("postgresql+asyncpg://", "postgresql://").replace("postgresql+psycopg://", "postgresql://")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(_dsn(), min_size=5, max_size=20)
    yield
    await app.state.pool.close()


async def minimal(request: Request) -> JSONResponse:
    project_id = request.path_params["project_id"]
    body = await request.json()
    trigger = body["trigger"]
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            "SELECT state, version, event_seq, event_hash FROM projects WHERE id = $1 FOR UPDATE", project_id
        )
        new_state = "on_hold" if trigger == "suspend" else "planning"
        now = datetime.now(UTC)
        seq = row["event_seq"] + 1
        content = json.dumps([project_id, seq, trigger, row["state"], new_state, now.isoformat()])
        digest = hashlib.sha256((row["event_hash"] + content).encode()).hexdigest()
        await connection.execute(
            "UPDATE projects SET state = $2, version = version + 1, event_seq = $3, event_hash = $4, updated_at = $5 "
            "WHERE id = $1",
            project_id,
            new_state,
            seq,
            digest,
            now,
        )
        await connection.execute(
            "INSERT INTO events (event_id, project_id, seq, kind, subject_kind, subject_id, actor, at, trigger, "
            "from_state, to_state, comment, data, prev_hash, hash) "
            "VALUES ($1, $2, $3, 'project.transition', 'project', $2, 'bench', $4, $5, $6, $7, NULL, '{}'::jsonb, "
            "$8, $9)",
            str(uuid.uuid4()),
            project_id,
            seq,
            now,
            trigger,
            row["state"],
            new_state,
            row["event_hash"],
            digest,
        )
    return JSONResponse({"state": new_state, "version": row["version"] + 1})


app = Starlette(routes=[Route("/minimal/{project_id}", minimal, methods=["POST"])], lifespan=lifespan)
