"""The dispatcher: claims due deliveries from the outbox, signs and sends them, records every attempt.

One delivery goes through three steps, and no database transaction is open while anything is sent:

1. **claim** (a short transaction, committed): lease a batch of due deliveries
   (:meth:`lifecycle.store.webhooks.WebhookRepository.claim`: per endpoint and project in order; on PostgreSQL
   ``FOR UPDATE SKIP LOCKED``, so several dispatchers share the load);
2. **send** (no transaction): resolve and check the address (:mod:`.netsafety`), sign (:mod:`.signing`), POST
   with httpx within the timeout, read at most 2 KB of the answer;
3. **record** (a short transaction, committed): the attempt, and the delivery's new state — delivered (2xx),
   retry later (the schedule of :data:`~lifecycle.webhooks.config.RETRY_SCHEDULE` with jitter, or the
   answer's ``Retry-After``), or given up (schedule exhausted; 410 Gone, which also disables the endpoint).
   An endpoint with no success for five days is disabled, logged (``webhook.endpoint_disabled``) and that
   event is sent to the endpoints that subscribe to it.

A dispatcher that dies between 1 and 3 holds its leases until they run out; the deliveries are then claimed
again and sent again with the same ``webhook-id``: delivery is at least once, never lost.

Scheduling times (due, lease, five days) come from the services' clock, so tests move them with a
``FrozenClock``; the ``webhook-timestamp`` header is the wall clock's, because receivers compare it with theirs.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.clock import Clock, SystemClock, ensure_utc
from lifecycle.services.webhooks import WebhookOutbox
from lifecycle.store.db import Database
from lifecycle.store.webhooks import DeliveryRecord, EndpointRecord, WebhookRepository

from . import signing
from .config import WebhookSettings
from .events import EndpointDisabledData
from .netsafety import AddressRefused, parse_url, resolve

log = logging.getLogger("lifecycle.webhooks")
# httpx logs every request with its URL at INFO; an integrator's URL may carry a token in its query string.
logging.getLogger("httpx").setLevel(logging.WARNING)

USER_AGENT = "lifecycle-webhooks/1"
EXCERPT_BYTES = 2048
"""How much of an answer the attempts log keeps."""
MAX_RETRY_AFTER = timedelta(hours=24)
"""The longest ``Retry-After`` honoured (a larger one is cut to this)."""


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status code (None when no answer came), the start of the answer, an error, the
    answer's ``Retry-After`` in seconds, and how long it took."""

    status_code: int | None
    excerpt: str | None
    error: str | None
    retry_after: float | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        """Only a 2xx answer is a success."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Sent:
    """A finished send, waiting to be recorded."""

    delivery: DeliveryRecord
    endpoint: EndpointRecord
    claim: str
    outcome: Outcome
    started: datetime


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (Unix time): delta-seconds or an HTTP date; None if absent or
    unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, ensure_utc(when).timestamp() - now)


def _worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Dispatcher:
    """Sends the outbox. Use :meth:`run` to serve until stopped, or :meth:`run_once` to send what is due now
    (tests, ``lifecycle worker --once``).

    Args:
        database: where the outbox is.
        clock: the source of "now" for scheduling (not for ``webhook-timestamp``).
        settings: timeouts, lease, batch size, address policy, retry schedule.
        wall: the wall clock in Unix seconds, for ``webhook-timestamp``.
        rng: randomness for the retry jitter.
    """

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock | None = None,
        settings: WebhookSettings | None = None,
        worker_id: str | None = None,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.database = database
        self.clock: Clock = clock or SystemClock()
        self.settings = settings or WebhookSettings.from_env()
        self.worker_id = worker_id or _worker_id()
        self.wall = wall
        self.rng = rng or random.Random()
        self._batches = itertools.count(1)
        # No proxies from the environment: a proxy would connect to the name again, past the address check.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=max(10, self.settings.batch_size * 2)),
        )

    def now(self) -> datetime:
        return ensure_utc(self.clock.now())

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    # --- the loop -------------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due now (one batch), send it all, record it all; how many were claimed."""
        claimed = await self._claim(self.settings.batch_size)
        if claimed:
            await self._record_all(list(await asyncio.gather(*(self._send_one(d, e, c) for d, e, c in claimed))))
        return len(claimed)

    async def run_until_idle(self, max_rounds: int = 100) -> int:
        """:meth:`run_once` until nothing is due (the next events of a project become due as earlier ones are
        delivered); how many deliveries were attempted."""
        total = 0
        for _ in range(max_rounds):
            claimed = await self.run_once()
            if not claimed:
                break
            total += claimed
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set, keeping up to ``batch_size`` sends in flight; then finish those.

        Sends finished since the last look are recorded together, in one transaction.
        """
        inflight: set[asyncio.Task[Sent]] = set()
        stopping = asyncio.ensure_future(stop.wait())
        failures = 0
        half = max(1, self.settings.batch_size // 2)
        try:
            while not stop.is_set():
                claimed: list[tuple[DeliveryRecord, EndpointRecord, str]] = []
                free = self.settings.batch_size - len(inflight)
                # Claim when half the slots are free (or nothing is in flight): one claim per delivery would
                # cost a transaction per message.
                if free >= half or not inflight:
                    try:
                        claimed = await self._claim(free)
                        failures = 0
                    except Exception as error:  # the database is away: keep trying, a little slower each time
                        failures += 1
                        log.warning("webhook dispatcher: claim failed (%s)", type(error).__name__)
                for delivery, endpoint, claim in claimed:
                    inflight.add(asyncio.create_task(self._send_one(delivery, endpoint, claim)))
                if not claimed or self.settings.batch_size - len(inflight) < half:
                    wait = self.settings.poll_seconds * min(2**failures, 60)
                    await asyncio.wait({*inflight, stopping}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                done = {t for t in inflight if t.done()}
                inflight -= done
                if done:
                    await self._record_all([t.result() for t in done])
        finally:
            if inflight:
                await self._record_all(list(await asyncio.gather(*inflight)))
            stopping.cancel()

    # --- the three steps ------------------------------------------------------------------------------

    async def _claim(self, limit: int) -> list[tuple[DeliveryRecord, EndpointRecord, str]]:
        now = self.now()
        claim = f"{self.worker_id}:{next(self._batches)}"
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        async with self.database.transaction() as session:
            rows = await WebhookRepository(session).claim(
                now, lease_until, claim, limit, skip_locked=self.database.dialect == "postgresql"
            )
        return [(d, e, claim) for d, e in rows]

    async def _send_one(self, delivery: DeliveryRecord, endpoint: EndpointRecord, claim: str) -> Sent:
        started = self.now()
        try:
            outcome = await self.send(delivery, endpoint)
        except Exception as error:  # a bug must not kill the loop; the attempt is recorded as failed
            log.exception("webhook delivery %s: unexpected error", delivery.id)
            outcome = Outcome(None, None, f"internal error: {type(error).__name__}", None, 0)
        return Sent(delivery, endpoint, claim, outcome, started)

    async def _record_all(self, sent: list[Sent]) -> None:
        """Record finished sends, all in one transaction. If it fails, nothing is recorded: the leases run out
        and the deliveries are sent again (at least once)."""
        try:
            async with self.database.transaction() as session:
                for one in sorted(sent, key=lambda s: s.delivery.id):
                    await self._record(session, one)
        except Exception as error:
            log.warning("webhook dispatcher: could not record %d attempt(s) (%s)", len(sent), type(error).__name__)

    async def send(self, delivery: DeliveryRecord, endpoint: EndpointRecord) -> Outcome:
        """One signed POST of the delivery's body to the endpoint (no database involved)."""
        begun = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - begun) * 1000)

        try:
            target = await resolve(parse_url(endpoint.url), self.settings.allow_private)
        except AddressRefused as refused:
            return Outcome(None, None, f"address refused: {refused.reason}", None, elapsed())
        timestamp = int(self.wall())
        headers = signing.headers(endpoint.signing_secrets(self.now()), delivery.event_id, timestamp, delivery.body)
        headers.update({"content-type": "application/json", "user-agent": USER_AGENT, "host": target.host_header})
        extensions = {"sni_hostname": target.host} if target.https else {}
        timeout = self.settings.timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                request = self._client.build_request(
                    "POST", target.pinned_url(), content=delivery.body.encode(), headers=headers, extensions=extensions
                )
                response = await self._client.send(request, stream=True)
                try:
                    excerpt = bytearray()
                    async for chunk in response.aiter_bytes():
                        excerpt += chunk
                        if len(excerpt) >= EXCERPT_BYTES:
                            break
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return Outcome(None, None, f"timeout after {timeout:g} s", None, elapsed())
        except httpx.HTTPError as error:
            return Outcome(None, None, f"{type(error).__name__}: {error}"[:500], None, elapsed())
        code = response.status_code
        return Outcome(
            code,
            bytes(excerpt[:EXCERPT_BYTES]).decode("utf-8", errors="replace"),
            None if 200 <= code < 300 else f"HTTP {code}",
            parse_retry_after(response.headers.get("retry-after"), self.wall()),
            elapsed(),
        )

    def next_delay(self, attempts_made: int) -> timedelta | None:
        """How long to wait after ``attempts_made`` failed attempts; None when the schedule is exhausted."""
        schedule = self.settings.retry_schedule
        if attempts_made >= len(schedule):
            return None
        base = schedule[attempts_made]
        factor = 1 + self.rng.uniform(-self.settings.jitter, self.settings.jitter)
        return timedelta(seconds=base * factor)

    async def _record(self, session: AsyncSession, sent: Sent) -> None:
        """Record one finished send in ``session``: the attempt, the delivery's new state, the endpoint's
        health (and disabling it)."""
        delivery, endpoint, outcome = sent.delivery, sent.endpoint, sent.outcome
        now = self.now()
        number = delivery.attempts + 1
        next_at = now
        error = outcome.error
        if outcome.ok:
            status = "delivered"
        elif outcome.status_code == 410:
            status, error = "failed", "HTTP 410 Gone: the endpoint is disabled"
        else:
            delay = self.next_delay(number)
            if delay is None:
                status, error = "failed", f"{outcome.error} (gave up after {number} attempts)"
            else:
                status = "pending"
                if outcome.retry_after is not None:
                    delay = min(timedelta(seconds=outcome.retry_after), MAX_RETRY_AFTER)
                next_at = now + delay
        repository = WebhookRepository(session)
        await repository.add_attempt(
            delivery.id, number, sent.started, outcome.duration_ms, outcome.status_code, outcome.excerpt, outcome.error
        )
        settled = await repository.settle(
            delivery,
            sent.claim,
            status=status,
            attempts=number,
            next_attempt_at=next_at,
            at=now,
            status_code=outcome.status_code,
            error=error,
        )
        if not settled:
            return  # our lease ran out and another dispatcher has the delivery now
        if outcome.ok:
            await repository.note_success(endpoint.id, now)
            return
        since = await repository.note_failure(endpoint.id, now)
        if outcome.status_code == 410:
            await self._disable(session, endpoint, "gone", since, now)
        elif now - since >= self.settings.disable_after:
            await self._disable(session, endpoint, "failing", since, now)

    async def _disable(
        self,
        session: AsyncSession,
        endpoint: EndpointRecord,
        reason: Literal["gone", "failing"],
        since: datetime,
        now: datetime,
    ) -> None:
        repository = WebhookRepository(session)
        if not await repository.disable(endpoint.id, reason, now):
            return
        detail = {"reason": reason, "failing_since": since.isoformat()}
        await repository.log(endpoint.id, "webhook.endpoint_disabled", now, "system", detail)
        data = EndpointDisabledData(endpoint_id=endpoint.id, owner=endpoint.owner, reason=reason, failing_since=since)
        outbox = WebhookOutbox(self.settings.max_payload_bytes)
        await outbox.enqueue_event(session, "webhook.endpoint_disabled", data, now=now)
        log.warning("webhook endpoint %s disabled (%s; failing since %s)", endpoint.id, reason, since.isoformat())


class DispatcherHandle:
    """A dispatcher running in the current event loop (``lifecycle serve``); :meth:`stop` ends it."""

    def __init__(self, dispatcher: Dispatcher, stop_event: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.dispatcher = dispatcher
        self._stop = stop_event
        self._task = task

    async def stop(self) -> None:
        """Stop claiming, finish the sends in flight, close the HTTP client."""
        self._stop.set()
        try:
            await self._task
        finally:
            await self.dispatcher.aclose()


def start(database: Database, clock: Clock | None = None, settings: WebhookSettings | None = None) -> DispatcherHandle:
    """Start a dispatcher in the running loop."""
    dispatcher = Dispatcher(database, clock=clock, settings=settings)
    stop_event = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop_event), name="webhook-dispatcher")
    return DispatcherHandle(dispatcher, stop_event, task)
