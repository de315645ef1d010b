"""One scheduler tick: everything time has made due, as of one instant.

A tick, in order:

1. **Calendar**: if the calendar override folder changed (an administrator added ``2027.yaml``), load it
   and give the engine the new calendar; then count again the estimated due dates it can now count exactly
   (after a change, every open estimated deadline).
2. **Obligations**: open the deadline of each period that has come due for every project that owes its
   report and has not filed it.
3. **Deadlines**: claim the due deadlines in batches (a short transaction each) and fire each claimed batch
   through the service path in one transaction (projects locked together, engine, escalation rows,
   notices, history, hooks; written in a few statements for the whole batch); a batch that fails is fired
   again one deadline at a time. A tick after downtime fires every level that came due meanwhile, once
   each, in order, and says how late.
4. **Lights**: recompute the traffic lights not yet computed today.
5. **Housekeeping**: delete the idempotency records past their expiry (24 h after their request).

With ``dry_run`` every step computes what it would do and writes nothing (``lifecycle sweep --dry-run``):
claims become plain reads, fires are computed on copies of the projects.

The tick knows nothing about APScheduler or leadership: :mod:`lifecycle.scheduler.runner` calls it on a
timer while it holds the leader lock; ``lifecycle sweep --as-of T`` calls it once with a frozen clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from lifecycle.calendar import WorkingCalendar
from lifecycle.clock import ensure_utc
from lifecycle.errors import DefinitionError
from lifecycle.services import Services
from lifecycle.services.scheduling import Scheduling
from lifecycle.services.scheduling_views import Fired, TickReport
from lifecycle.store.scheduling import DueRef

log = logging.getLogger("lifecycle.scheduler")

DEFAULT_BATCH = 250
"""Deadlines claimed, and fired together in one transaction, at a time: large enough that a batch's few
statements cost little per deadline, small enough that the projects it locks are held briefly."""

DEFAULT_LEASE = timedelta(minutes=5)
"""How long a claim keeps other schedulers off a deadline: longer than any fire takes; a claim whose holder
died is taken again after it."""


def _signature(directory: Path | None) -> tuple[tuple[str, int, int], ...]:
    """What identifies the contents of the calendar folder: each ``*.yaml`` file's name, size, mtime."""
    if directory is None or not directory.is_dir():
        return ()
    out = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(out)


class Sweeper:
    """Runs ticks for one :class:`~lifecycle.services.Services`.

    Args:
        services: the use cases (their clock is "now" unless a tick is given an instant).
        calendars_dir: the calendar override folder to watch (None: never reload the calendar).
        batch: deadlines claimed per claim transaction, and fired together in one.
        max_fires: at most this many deadlines fired per tick (None: all that are due); the rest wait for the
            next tick, so one tick stays bounded after a long downtime.
        concurrency: when a batch is fired one deadline at a time, how many at once (each in its own
            transaction; 1 on SQLite, where writers queue).
        lease: how long a claim holds.
    """

    def __init__(
        self,
        services: Services,
        *,
        calendars_dir: Path | None = None,
        batch: int = DEFAULT_BATCH,
        max_fires: int | None = None,
        concurrency: int | None = None,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        self.services = services
        self.scheduling = Scheduling(services)
        self.calendars_dir = calendars_dir
        self.batch = batch
        self.max_fires = max_fires
        default_concurrency = 4 if services.database.dialect == "postgresql" else 1
        self.concurrency = max(1, concurrency or default_concurrency)
        self.lease = lease
        self._calendar_signature = _signature(calendars_dir)
        self._redate_everything = False

    def reload_calendar(self) -> bool:
        """Load the calendar folder again if its files changed; whether the engine got a new calendar. An
        invalid file is logged and the calendar in use is kept."""
        if self.calendars_dir is None:
            return False
        signature = _signature(self.calendars_dir)
        if signature == self._calendar_signature:
            return False
        try:
            calendar = WorkingCalendar.from_directory(self.calendars_dir)
        except DefinitionError as error:
            log.error("calendar folder %s is invalid, keeping the calendar in use: %s", self.calendars_dir, error)
            return False
        self._calendar_signature = signature
        self.services.engine.calendar = calendar
        self._redate_everything = True
        log.info("calendar reloaded from %s: exact years %s", self.calendars_dir, sorted(calendar.covered_years()))
        return True

    async def tick(self, now: datetime | None = None, *, dry_run: bool = False) -> TickReport:
        """Run one tick as of ``now`` (default: the services' clock)."""
        at = ensure_utc(now) if now is not None else self.services.now()
        report = TickReport(as_of=at, dry_run=dry_run)
        await self._step(report, "calendar", self._calendar(report, at, dry_run))
        await self._step(report, "obligations", self._obligations(report, at, dry_run))
        await self._step(report, "deadlines", self._deadlines(report, at, dry_run))
        await self._step(report, "lights", self._lights(report, at, dry_run))
        await self._step(report, "housekeeping", self._housekeeping(report, at, dry_run))
        return report

    async def _step(self, report: TickReport, name: str, work: Awaitable[Any]) -> None:
        started = time.perf_counter()
        try:
            await work
        except Exception as error:  # one failing step must not stop the others, nor the next tick
            log.exception("scheduler step %s failed", name)
            report.errors.append(f"{name}: {type(error).__name__}: {error}")
        report.seconds[name] = time.perf_counter() - started

    async def _calendar(self, report: TickReport, at: datetime, dry_run: bool) -> None:
        self.reload_calendar()
        everything = self._redate_everything
        report.redated.extend(await self.scheduling.redate_estimated(at, everything=everything, dry_run=dry_run))
        if everything and not dry_run:
            self._redate_everything = False

    async def _obligations(self, report: TickReport, at: datetime, dry_run: bool) -> None:
        report.opened.extend(await self.scheduling.open_obligations(at, dry_run=dry_run))

    async def _deadlines(self, report: TickReport, at: datetime, dry_run: bool) -> None:
        if dry_run:
            refs = await self.scheduling.due(at, self.max_fires or 10_000)
            for ref in refs:
                report.fired.extend(await self.scheduling.preview_deadline(ref, at))
            return
        budget = self.max_fires
        seen: set[DueRef] = set()
        # Up to ``concurrency`` claimed batches are fired at once, each in its own transaction on its own
        # projects: while one waits for the database, the next is decided.
        firing: set[asyncio.Task[None]] = set()
        while budget is None or budget > 0:
            size = self.batch if budget is None else min(self.batch, budget)
            claimed = await self.scheduling.claim(at, at + self.lease, size)
            # A deadline claimed twice in one tick was rescheduled into the past: a bug to log, not a loop.
            refs = [ref for ref in claimed if ref not in seen]
            for ref in claimed:
                if ref in seen:
                    log.error(
                        "deadline %s of project %s is due again in the same tick", ref.deadline_id, ref.project_id
                    )
            seen.update(refs)
            if not refs:
                break
            firing.add(asyncio.create_task(self._fire_all(report, refs, at)))
            if len(firing) >= self.concurrency:
                done, firing = await asyncio.wait(firing, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # _fire_all handles the failures it expects; anything else is a bug to raise
            if budget is not None:
                budget -= len(refs)
            if len(refs) < size:
                break
        await asyncio.gather(*firing)

    async def _fire_all(self, report: TickReport, refs: list[DueRef], at: datetime) -> None:
        # The whole claimed batch in one transaction (cost follows what is due). If it fails — a level
        # another scheduler recorded meanwhile, one broken project — nothing of it was written, and the
        # deadlines are fired one by one instead, so that only the one in trouble is skipped.
        try:
            report.fired.extend(await self.scheduling.fire_deadlines(refs, at))
            return
        except Exception as error:
            log.warning("firing %d deadlines together failed (%s); firing them one by one", len(refs), error)
        by_project: dict[str, list[DueRef]] = {}
        for ref in refs:
            by_project.setdefault(ref.project_id, []).append(ref)
        gate = asyncio.Semaphore(self.concurrency)

        async def fire_project(group: list[DueRef]) -> None:
            # Deadlines of one project go one after another (they would queue on its lock anyway); projects
            # in parallel, each fire in its own transaction.
            async with gate:
                for ref in group:
                    report.fired.extend(await self._fire_one(report, ref, at))

        await asyncio.gather(*(fire_project(group) for group in by_project.values()))

    async def _fire_one(self, report: TickReport, ref: DueRef, at: datetime) -> list[Fired]:
        try:
            return await self.scheduling.fire_deadline(ref, at)
        except IntegrityError as error:
            # Another scheduler recorded this level first (the unique constraint refused ours, and the whole
            # transaction rolled back): nothing to do here; the claim's lease ends and the deadline is
            # looked at again, finding its level already recorded.
            log.warning("deadline %s of project %s: %s", ref.deadline_id, ref.project_id, error.orig)
            return []
        except Exception as error:  # the claim's lease ends and the deadline is tried again
            log.exception("firing deadline %s of project %s failed", ref.deadline_id, ref.project_id)
            report.errors.append(f"{ref.project_id} {ref.deadline_id}: {type(error).__name__}: {error}")
            return []

    async def _lights(self, report: TickReport, at: datetime, dry_run: bool) -> None:
        report.lights = await self.scheduling.refresh_lights(at, dry_run=dry_run)

    async def _housekeeping(self, report: TickReport, at: datetime, dry_run: bool) -> None:
        if not dry_run:
            report.purged = await self.services.purge_idempotency(at)


async def sweep_once(
    services: Services,
    *,
    as_of: datetime | None = None,
    dry_run: bool = False,
    calendars_dir: Path | None = None,
    on_report: Callable[[TickReport], None] | None = None,
) -> TickReport:
    """One tick as of ``as_of`` (``lifecycle sweep``)."""
    sweeper = Sweeper(services, calendars_dir=calendars_dir)
    report = await sweeper.tick(as_of, dry_run=dry_run)
    if on_report is not None:
        on_report(report)
    return report
