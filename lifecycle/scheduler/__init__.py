"""The deadline scheduler: ticks that fire due deadlines, open missing reports' escalations and keep the
traffic lights current.

* :func:`start_scheduler` — start ticking inside a running service (``lifecycle serve`` calls it and later
  awaits ``stop()`` on what it returns);
* :class:`~.sweep.Sweeper` — one tick (``lifecycle sweep --as-of T [--dry-run]`` runs one);
* :class:`~.runner.SchedulerRunner` — the timer and the leader election (``lifecycle scheduler``).

Deadlines are rows; the scheduler only dispatches (see :mod:`lifecycle.store.scheduling`).
"""

from __future__ import annotations

from lifecycle.services import Services
from lifecycle.settings import Settings

from .runner import ADVISORY_LOCK_KEY, LeaderLock, SchedulerRunner, interval_from_env
from .sweep import Sweeper, sweep_once

__all__ = [
    "ADVISORY_LOCK_KEY",
    "LeaderLock",
    "SchedulerRunner",
    "Sweeper",
    "interval_from_env",
    "start_scheduler",
    "sweep_once",
]


async def start_scheduler(services: Services, settings: Settings) -> SchedulerRunner:
    """Start the scheduler in the running event loop; returns the handle whose ``await stop()`` ends it.

    The tick interval is ``LIFECYCLE_SCHEDULER_INTERVAL`` seconds (default 60). On PostgreSQL the process
    works only while it holds the leader lock (see :mod:`.runner`).
    """
    return await SchedulerRunner(services, settings).start()
