"""Webhooks for integrators: signed (Standard Webhooks), retried, ordered per project, never lost.

* :mod:`.events` — the versioned payload of each event type (pydantic models, in the OpenAPI document);
* :mod:`.signing` — secrets and ``webhook-*`` headers;
* :mod:`.netsafety` — which addresses may receive webhooks (checked at registration and at every send);
* :mod:`.config` — :class:`WebhookSettings` (``LIFECYCLE_WEBHOOKS_*``);
* :mod:`.dispatcher` — claims the outbox, sends, records attempts (``lifecycle worker``, or inside
  ``lifecycle serve`` through :func:`start_dispatcher`).

The outbox rows are written by :class:`lifecycle.services.webhooks.WebhookOutbox`, a change hook, in the
transaction of each change. This package's ``__init__`` imports nothing heavy: the services import its
submodules, and the dispatcher imports the services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lifecycle.services import Services
    from lifecycle.settings import Settings

    from .dispatcher import DispatcherHandle


async def start_dispatcher(services: Services, settings: Settings) -> DispatcherHandle:
    """Start a webhook dispatcher in the running event loop, on the services' database and clock, with the
    ``LIFECYCLE_WEBHOOKS_*`` settings; ``await handle.stop()`` ends it. (``lifecycle serve`` calls this.)"""
    from .config import WebhookSettings
    from .dispatcher import start

    del settings  # the database and clock come from the services; delivery settings from the environment
    return start(services.database, services.clock, WebhookSettings.from_env())


__all__ = ["start_dispatcher"]
