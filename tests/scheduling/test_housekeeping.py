"""The tick's housekeeping: idempotency records are deleted once expired (24 h after their request), and
a dry run deletes nothing; on both dialects."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.scheduling.conftest import Clockwork

pytestmark = pytest.mark.anyio


async def test_a_tick_purges_the_idempotency_records_that_have_expired_and_only_those(clockwork: Clockwork) -> None:
    services, clock = clockwork.services, clockwork.clock
    await services.add_principal("caller", "县审批系统", ["integrator"])
    assert await services.idempotency_begin("caller", "old", "hash-old") is None
    assert await services.idempotency_complete("caller", "old", 200, [], b"{}")
    clock.advance(timedelta(hours=23))
    assert await services.idempotency_begin("caller", "young", "hash-young") is None

    preview = await clockwork.sweep(clock.now() + timedelta(hours=2), dry_run=True)
    assert preview.purged == 0
    report = await clockwork.sweep(clock.now() + timedelta(hours=2))
    assert report.purged == 1
    # The young one is still there, running: its duplicate is refused, not run again.
    young = await services.idempotency_begin("caller", "young", "hash-young")
    assert young is not None and young.state == "running"
    # The old key is free again.
    assert await services.idempotency_begin("caller", "old", "hash-other") is None
