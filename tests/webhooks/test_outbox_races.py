"""The outbox and endpoints changed while a change is under way (PostgreSQL, where the subscriptions are read
with the project's lock, earlier in the transaction than the outbox rows are written).

An endpoint deleted or disabled by another transaction after the change read the subscriptions gets no outbox
row, and the change still commits: the outbox insert writes a row only while its endpoint exists and is
enabled. Without that guard, a deleted endpoint's row fails the change on the foreign key."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from lifecycle.services import Services
from lifecycle.services.hooks import Change
from lifecycle.services.webhooks import EndpointChanges, WebhookService
from tests.services.conftest import UNIT_A, new_project_data

from .conftest import INTEGRATOR, as_, subscribe
from .receiver import Receiver

pytestmark = pytest.mark.anyio

# PostgreSQL only: SQLite has one writer, so no other transaction can change an endpoint during a change.
ON_POSTGRESQL = pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)], indirect=True
)


class ChangeEndpointsMidway:
    """A hook running before the outbox's: deletes one endpoint and disables another, each in a transaction
    of its own (committed while the change's transaction is still open)."""

    def __init__(self, hooks: WebhookService, deleted: str, disabled: str) -> None:
        self.hooks, self.deleted, self.disabled = hooks, deleted, disabled
        self.ran = 0

    def derive(self, change: Change) -> None:
        pass

    async def write(self, session: object, changes: Sequence[Change]) -> None:
        self.ran += 1
        if self.ran > 1:
            return
        deleted = await self.hooks.get_endpoint(as_(INTEGRATOR), self.deleted)
        await self.hooks.delete_endpoint(as_(INTEGRATOR), self.deleted, deleted.version)
        disabled = await self.hooks.get_endpoint(as_(INTEGRATOR), self.disabled)
        await self.hooks.update_endpoint(
            as_(INTEGRATOR), self.disabled, disabled.version, EndpointChanges(enabled=False)
        )


@ON_POSTGRESQL
async def test_an_endpoint_deleted_or_disabled_during_a_change_gets_nothing_and_the_change_commits(
    services: Services, hooks: WebhookService, receiver: Receiver
) -> None:
    project = await services.create_project(as_(UNIT_A), new_project_data())
    before = len((await services.history(as_(UNIT_A), project.id, 0, 200)).items)
    deleted, _ = await subscribe(hooks, receiver.url("/deleted"))
    disabled, _ = await subscribe(hooks, receiver.url("/disabled"))
    kept, _ = await subscribe(hooks, receiver.url("/kept"))
    midway = ChangeEndpointsMidway(hooks, deleted, disabled)
    services.hooks.insert(0, midway)  # its write runs before the outbox's
    try:
        moved = await services.fire(
            as_(UNIT_A), project.id, project.version, "start_permitting", {"approval_no": "巫发改〔2026〕1号"}
        )
    finally:
        services.hooks.remove(midway)

    assert midway.ran == 1
    assert moved.state == "permitting" and moved.version == project.version + 1
    history = await services.history(as_(UNIT_A), project.id, 0, 200)
    fired = [e.event_id for e in history.items[before:]]  # the transition's events
    kept_rows = (await hooks.list_deliveries(as_(INTEGRATOR), kept)).items
    assert fired and sorted(d.event_id for d in kept_rows) == sorted(fired)
    assert (await hooks.list_deliveries(as_(INTEGRATOR), disabled)).items == []
    endpoints = {e.id for e in await hooks.list_endpoints(as_(INTEGRATOR))}
    assert deleted not in endpoints and {disabled, kept} <= endpoints
