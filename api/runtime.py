"""What one running app holds: settings, services, metrics, and whether it is ready to serve.

Readiness is "the database answers and its schema is at the newest migration". ``lifecycle serve`` migrates
before it starts the server; the app itself never migrates (several workers starting at once must not race
to change the schema), it only refuses to serve until the schema is right: every ``/api/v1`` request is
then a 503 and ``/readyz`` says why. Once the database is found ready, the bundled workflows are published
(idempotent: content already published creates nothing), and the app stays ready; ``/readyz`` keeps
checking the database on every call, since that is what a load balancer asks it for.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Final

from api.metrics import Metrics
from lifecycle.errors import LifecycleError
from lifecycle.services import CallContext, Services
from lifecycle.settings import Settings
from lifecycle.store import migrate

log = logging.getLogger("lifecycle.api")

_KEY_CACHE_SIZE: Final = 10_000

CHECK_TIMEOUT_SECONDS: Final = 5.0
"""How long a readiness check waits for the database before calling it unreachable."""


@dataclass
class Readiness:
    """The outcome of a readiness check: ready, or the reason (``code``, and text for operators)."""

    ready: bool
    code: str
    reason: str
    current_revision: str | None = None
    head_revision: str | None = None


@dataclass
class Runtime:
    """The state of one app, kept on ``app.state.runtime``.

    Attributes:
        owns_services: the app built the services and closes them on shutdown (else the caller does).
        published: the bundled workflows have been published since start-up.
    """

    settings: Settings
    services: Services
    owns_services: bool
    metrics: Metrics = field(default_factory=Metrics)
    published: bool = False
    last: Readiness | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _definition_keys: dict[str, str] = field(default_factory=dict)

    async def check(self) -> Readiness:
        """Check the database (reachable, at the newest migration) and, the first time it is, publish the
        bundled workflows. Never raises: a failure is a not-ready answer."""
        url = self.services.database.url
        try:
            head = migrate.head_revision()
            # Alembic is synchronous: run it in a thread, and stop waiting for a database that hangs.
            current = await asyncio.wait_for(
                asyncio.to_thread(migrate.current_revision, url), timeout=CHECK_TIMEOUT_SECONDS
            )
        except Exception as error:  # any driver error means the same thing here: not reachable
            log.warning("readiness: database unreachable: %s", type(error).__name__)
            self.last = Readiness(False, "database_unreachable", "the database does not answer")
            return self.last
        if current != head:
            self.last = Readiness(
                False,
                "migrations_pending",
                "the database schema is not at the newest migration: run `lifecycle migrate`",
                current,
                head,
            )
            return self.last
        if not self.published:
            async with self._lock:
                if not self.published:
                    try:
                        outcomes = await self.services.publish_bundled(self.settings.workflows_dir)
                    except LifecycleError as error:
                        log.error("bundled workflows cannot be published: %s", error)
                        self.last = Readiness(
                            False, "workflows_invalid", "a bundled workflow definition is invalid", current, head
                        )
                        return self.last
                    except Exception as error:
                        log.warning("readiness: publishing failed: %s", type(error).__name__)
                        self.last = Readiness(
                            False, "database_unreachable", "the database does not answer", current, head
                        )
                        return self.last
                    for outcome in outcomes:
                        log.info("workflow %s: %s (version %s)", outcome.key, outcome.status, outcome.version)
                    self.published = True
        self.last = Readiness(True, "ready", "ready", current, head)
        return self.last

    async def ensure_ready(self) -> Readiness:
        """The readiness for serving a request: cached once ready (a request does not pay for a migration
        check), checked again otherwise."""
        if self.last is not None and self.last.ready:
            return self.last
        return await self.check()

    async def definition_key_of(self, ctx: CallContext, project_id: str) -> str:
        """The definition key a project runs on (for metric labels). A project's key never changes, so it
        is cached; the cache is bounded by clearing it when full (a miss costs one read)."""
        key = self._definition_keys.get(project_id)
        if key is None:
            key = (await self.services.get_project(ctx, project_id)).definition_key
            if len(self._definition_keys) >= _KEY_CACHE_SIZE:
                self._definition_keys.clear()
            self._definition_keys[project_id] = key
        return key

    async def close(self) -> None:
        """Release what the app opened."""
        if self.owns_services:
            await self.services.close()
