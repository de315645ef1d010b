"""Crash test: ``kill -9`` a real ``lifecycle worker`` in the middle of a batch, start another, and check that
the receiver got every event at least once, with the same ``webhook-id`` when twice, and each project's events
in order — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from lifecycle.services import Services
from lifecycle.services.webhooks import WebhookService
from lifecycle.store.webhooks import WebhookRepository
from tests.services.conftest import DISPATCHER, UNIT_A, new_project_data

from .conftest import as_, subscribe
from .receiver import Receiver, Reply

pytestmark = pytest.mark.anyio

PROJECTS = 12


def _worker(db_url: str, log: Path) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).parent / "lifecycle"
    command = [str(script), "worker"] if script.exists() else [sys.executable, "-m", "lifecycle.cli", "worker"]
    env = {
        **os.environ,
        "LIFECYCLE_DATABASE_URL": db_url,
        "LIFECYCLE_WEBHOOKS_ALLOW_PRIVATE": "1",
        "LIFECYCLE_WEBHOOKS_TIMEOUT_SECONDS": "2",
        "LIFECYCLE_WEBHOOKS_LEASE_SECONDS": "3",
        "LIFECYCLE_WEBHOOKS_BATCH": "8",
        "LIFECYCLE_WEBHOOKS_POLL_SECONDS": "0.05",
    }
    return subprocess.Popen(command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def _wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)  # waiting for another process, not for time to pass


async def _pending(services: Services) -> int:
    async with services.database.reader() as session:
        return await WebhookRepository(session).pending_total()


async def test_killing_a_worker_mid_batch_loses_nothing(
    services: Services, hooks: WebhookService, receiver: Receiver, db_url: str, tmp_path: Path
) -> None:
    _, secret = await subscribe(hooks, receiver.url())
    expected: dict[str, list[str]] = {}
    for _ in range(PROJECTS):
        project = await services.create_project(as_(UNIT_A), new_project_data())
        await services.fire(as_(UNIT_A), project.id, 1, "start_permitting", {"approval_no": "巫发改〔2026〕1号"})
        history = await services.history(as_(DISPATCHER), project.id, 0, 200)
        expected[project.id] = [e.event_id for e in history.items]
    total = sum(len(ids) for ids in expected.values())
    # Slow answers keep a batch in flight when the worker is killed.
    receiver.decide("/hook", lambda request: Reply(200, delay=0.3))

    log = tmp_path / "worker.log"
    first = _worker(db_url, log)
    try:
        await _wait_for(lambda: len(receiver.received) >= 12, 60, "the first worker to send a dozen messages")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    seen_before_restart = len(receiver.received)
    assert await _pending(services) > 0, "the kill should have left deliveries pending"

    second = _worker(db_url, log)
    try:
        deadline = time.monotonic() + 90
        while await _pending(services):
            assert second.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the second worker did not finish: " + log.read_text()[-2000:]
            await asyncio.sleep(0.1)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(15)
        except subprocess.TimeoutExpired:
            second.kill()
    assert second.returncode == 0, log.read_text()[-2000:]

    received = receiver.at("/hook")
    ids = [r.webhook_id for r in received]
    every = {i for project_ids in expected.values() for i in project_ids}
    assert set(ids) == every and len(every) == total  # every event at least once, nothing unknown
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert duplicates, "the messages in flight when the worker died should have been sent again"
    webhook = Webhook(secret)
    for request in received:
        payload = webhook.verify(request.body, request.headers)
        assert payload["id"] == request.webhook_id  # a resent message keeps its webhook-id and body
    # Each project's events: first arrivals in the order of its history.
    for project_id, history_ids in expected.items():
        firsts: list[str] = []
        for request in received:
            if request.json["project"]["id"] == project_id and request.webhook_id not in firsts:
                firsts.append(request.webhook_id)
        assert firsts == history_ids
    assert seen_before_restart < len(received)
    assert secret not in log.read_text() and secret.removeprefix("whsec_") not in log.read_text()
