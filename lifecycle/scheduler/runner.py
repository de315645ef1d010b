"""The scheduler process: APScheduler ticks on a timer, while this process is the leader.

APScheduler (3.x, ``AsyncIOScheduler``, in-memory job store) only says *when* to tick: every ``interval``
seconds, at once on start, never two ticks of one process at a time, a missed tick coalesced into one. It is
not the record of anything: deadlines, escalations and claims are rows in the database, so a restarted
scheduler simply ticks again and finds what came due meanwhile.

Leadership. On PostgreSQL several processes may run a scheduler (each API worker of ``lifecycle serve``, or
``lifecycle scheduler`` on several hosts). Exactly one works: the one holding a session-level PostgreSQL
advisory lock (:data:`ADVISORY_LOCK_KEY`) on a dedicated connection of its own. The others stand by, trying
the lock at every tick. When the leader dies (even ``kill -9``) its connection closes, PostgreSQL releases
the lock, and the next standby to try takes over; it first releases the claims the dead leader may have left
(:meth:`~lifecycle.services.scheduling.Scheduling.release_claims`), so nothing waits for their lease. The
leader checks its connection at every tick and steps down if it is gone. Leadership is an optimisation, not
the guarantee: should two processes ever work at once, the project row locks and the ``escalations`` unique
constraint still let each level fire once. On SQLite (one host, one writer at a time) there is no election:
every scheduler works.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from lifecycle import heap
from lifecycle.services import Services
from lifecycle.services.scheduling_views import TickReport
from lifecycle.settings import Settings, SettingsError

from .sweep import DEFAULT_LEASE, Sweeper

log = logging.getLogger("lifecycle.scheduler")

ADVISORY_LOCK_KEY = 0x6C69666563796331
"""The PostgreSQL advisory lock the active scheduler holds (the bytes of ``lifecyc1``)."""

INTERVAL_ENV = "LIFECYCLE_SCHEDULER_INTERVAL"
"""Seconds between ticks (default 60)."""

DEFAULT_INTERVAL = 60.0


def interval_from_env(environ: dict[str, str] | None = None) -> float:
    """The tick interval from ``LIFECYCLE_SCHEDULER_INTERVAL`` (seconds, 0.1–3600; default 60).

    Raises:
        SettingsError: not a number in that range.
    """
    raw = (os.environ if environ is None else environ).get(INTERVAL_ENV) or str(DEFAULT_INTERVAL)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{INTERVAL_ENV} must be a number of seconds, not {raw!r}") from None
    if not 0.1 <= value <= 3600:
        raise SettingsError(f"{INTERVAL_ENV} must be between 0.1 and 3600 seconds")
    return value


class LeaderLock:
    """A session-level PostgreSQL advisory lock held on a dedicated connection (outside the pool, in
    autocommit, so it holds no transaction open)."""

    def __init__(self, url: str, key: int = ADVISORY_LOCK_KEY) -> None:
        self.key = key
        self._engine = create_async_engine(url, poolclass=NullPool)
        self._connection: AsyncConnection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    async def acquire(self) -> bool:
        """Whether this process holds the lock now: checks a held lock's connection is alive (stepping down
        if not), else tries to take the lock without waiting."""
        if self._connection is not None:
            try:
                await self._connection.execute(text("SELECT 1"))
                return True
            except Exception:
                log.warning("the scheduler's lock connection is gone: stepping down")
                await self._drop()
                return False
        connection = await self._engine.connect()
        try:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            got = await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key})
        except BaseException:
            await connection.close()
            raise
        if got:
            self._connection = connection
            return True
        await connection.close()
        return False

    async def release(self) -> None:
        """Give the lock up (and close its connection)."""
        if self._connection is not None:
            try:
                await self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            except Exception:
                log.warning("could not release the scheduler lock cleanly; closing its connection")
            await self._drop()

    async def close(self) -> None:
        await self.release()
        await self._engine.dispose()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except Exception:
                log.debug("closing the lock connection failed", exc_info=True)


class SchedulerRunner:
    """Ticks a :class:`Sweeper` on an APScheduler timer while leader. Start with :meth:`start`, end with
    :meth:`stop` (the handle :func:`lifecycle.scheduler.start_scheduler` returns)."""

    def __init__(
        self,
        services: Services,
        settings: Settings,
        *,
        interval: float | None = None,
        batch: int = 100,
        max_fires: int | None = None,
        lease: timedelta = DEFAULT_LEASE,
        name: str | None = None,
    ) -> None:
        self.services = services
        self.interval = interval if interval is not None else interval_from_env()
        self.sweeper = Sweeper(
            services, calendars_dir=settings.calendars_dir, batch=batch, max_fires=max_fires, lease=lease
        )
        self.name = name or f"pid {os.getpid()}"
        self._lock = LeaderLock(services.database.url) if services.database.dialect == "postgresql" else None
        self._scheduler: Any = None
        self._ticking = asyncio.Lock()
        self._was_leader = False
        self.ticks = 0
        self.last_report: TickReport | None = None

    @property
    def leader(self) -> bool:
        """Whether this process is the one working (always, on SQLite)."""
        return self._lock is None or self._lock.held

    async def start(self) -> SchedulerRunner:
        """Start ticking in the running event loop (the first tick at once)."""
        if not log.isEnabledFor(logging.DEBUG):
            # APScheduler logs every run of every job at INFO: a line per tick says nothing the tick does not.
            logging.getLogger("apscheduler").setLevel(logging.WARNING)
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
        scheduler.add_job(
            self._tick,
            "interval",
            seconds=self.interval,
            next_run_time=datetime.now(UTC),
            id="lifecycle-scheduler-tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        scheduler.start()
        self._scheduler = scheduler
        # Everything loaded so far lives as long as the process: out of the collector's reach, collections
        # rarer (a tick allocates many short-lived objects).
        heap.settle()
        log.info("scheduler %s started: a tick every %ss", self.name, self.interval)
        return self

    async def stop(self) -> None:
        """Stop ticking: no new tick starts, the tick in progress finishes, the leader lock is released."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.pause()
        async with self._ticking:  # the tick in progress, if any, finishes first
            pass
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        if self._lock is not None:
            await self._lock.close()
        log.info("scheduler %s stopped", self.name)

    async def tick_now(self) -> TickReport | None:
        """One tick now (as the timer would run it); None when standing by."""
        return await self._tick()

    async def _tick(self) -> TickReport | None:
        async with self._ticking:
            return await self._tick_locked()

    async def _tick_locked(self) -> TickReport | None:
        if self._lock is not None:
            try:
                leading = await self._lock.acquire()
            except Exception:
                log.exception("scheduler %s could not reach the database to elect a leader", self.name)
                leading = False
            if not leading:
                if self._was_leader:
                    log.warning("scheduler %s is no longer the leader", self.name)
                self._was_leader = False
                log.debug("scheduler %s stands by", self.name)
                return None
        if not self._was_leader:
            log.info("scheduler %s is the active scheduler", self.name)
            self._was_leader = True
            # Deadlines a dead leader claimed but never fired would wait for their claims' lease to end.
            released = await self.sweeper.scheduling.release_claims(self.services.now(), self.sweeper.lease)
            if released:
                log.info("scheduler %s took over %d claimed deadlines", self.name, released)
        report = await self.sweeper.tick()
        self.ticks += 1
        self.last_report = report
        if report.fired or report.opened or report.redated or report.errors:
            log.info(
                "tick as of %s: %d fired, %d obligation deadlines opened, %d re-dated, %d lights, %d errors",
                report.as_of.isoformat(),
                len(report.fired),
                len(report.opened),
                len(report.redated),
                report.lights,
                len(report.errors),
            )
        return report
