"""Fixtures of the webhook tests: a real receiver on 127.0.0.1, delivery settings for tests (private
addresses allowed, short timeout, no jitter), the webhook use cases and a dispatcher on the test database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from lifecycle.clock import FrozenClock
from lifecycle.services import CallContext, Principal, Services
from lifecycle.services.webhooks import NewEndpoint, WebhookService
from lifecycle.webhooks.config import WebhookSettings
from lifecycle.webhooks.dispatcher import Dispatcher

from .receiver import Receiver

INTEGRATOR = Principal("county-portal", "县政务服务平台", roles=frozenset({"integrator"}))
ADMIN = Principal("admin", "管理员", roles=frozenset({"admin"}))


def as_(principal: Principal) -> CallContext:
    return CallContext(principal)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A started receiver."""
    with Receiver() as started:
        yield started


@pytest.fixture
def webhook_settings() -> WebhookSettings:
    """Test delivery settings: 127.0.0.1 allowed, 0.5 s timeout, no jitter (exact retry times)."""
    return WebhookSettings(allow_private=True, timeout_seconds=0.5, lease_seconds=30, jitter=0.0)


@pytest.fixture
def hooks(services: Services, webhook_settings: WebhookSettings) -> WebhookService:
    """The webhook use cases."""
    return WebhookService(services, webhook_settings)


@pytest.fixture
async def dispatcher(
    services: Services, clock: FrozenClock, webhook_settings: WebhookSettings
) -> AsyncIterator[Dispatcher]:
    """A dispatcher on the test database, with the test clock."""
    sender = Dispatcher(services.database, clock=clock, settings=webhook_settings, worker_id="test")
    try:
        yield sender
    finally:
        await sender.aclose()


async def subscribe(
    hooks: WebhookService, url: str, *types: str, by: Principal = INTEGRATOR, **filters: list[str]
) -> tuple[str, str]:
    """Register an endpoint; ``(endpoint id, secret)``."""
    view, secret = await hooks.create_endpoint(
        as_(by), NewEndpoint(url=url, event_types=types or ("*",), filters=filters)
    )
    return view.id, secret
