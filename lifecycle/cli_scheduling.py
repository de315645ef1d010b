"""Scheduler commands of the ``lifecycle`` command line: ``sweep`` and ``scheduler``.

* ``lifecycle sweep [--as-of T] [--dry-run] [--json]`` runs one scheduler tick as of ``T`` (default now):
  estimated due dates counted again, missing reports' deadlines opened, due deadlines fired (expiry triggers,
  ladder levels with their notices), traffic lights refreshed. ``--dry-run`` prints what would happen and
  writes nothing. Operators preview with it; tests drive time with it. ``T`` is ISO 8601: a date means the
  end of that local day (everything due that day has come due); a time without an offset is Asia/Shanghai.
* ``lifecycle scheduler`` runs the scheduler alone (without the API) until interrupted: a tick every
  ``--interval`` seconds; on PostgreSQL only the holder of the leader lock works, the others stand by.

Exit codes: 0 done; 1 the tick reported errors; 2 a usage error (a bad ``--as-of``, a database not migrated).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Annotated, Any

import typer

from lifecycle.clock import SHANGHAI, FrozenClock, end_of_local_day, ensure_utc
from lifecycle.scheduler.sweep import DEFAULT_BATCH
from lifecycle.services import Services
from lifecycle.services.scheduling_views import TickReport
from lifecycle.settings import Settings
from lifecycle.store import migrate

app = typer.Typer()

DEFAULT_LEASE_SECONDS = 300.0
"""How long a claim holds by default (the scheduler's lease, 5 minutes)."""


def parse_as_of(text: str) -> datetime:
    """``--as-of``: an ISO date (the end of that local day) or date-time (no offset: Asia/Shanghai).

    Raises:
        typer.BadParameter: neither.
    """
    try:
        if len(text) == 10:
            return end_of_local_day(date.fromisoformat(text))
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            "expected an ISO date or date-time, e.g. 2026-10-30 or 2026-10-30T18:30+08:00", param_hint="--as-of"
        ) from None
    return ensure_utc(moment.replace(tzinfo=SHANGHAI) if moment.tzinfo is None else moment)


def _require_migrated(settings: Settings) -> None:
    if not migrate.is_at_head(settings.database_url):
        typer.echo(
            "数据库未迁移到最新版本，请先运行 lifecycle migrate / the database is not migrated: run lifecycle migrate",
            err=True,
        )
        raise typer.Exit(2)


def _late(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600}h"


def render_report(report: TickReport) -> list[str]:
    """The tick as lines for a terminal (what fired, or would: ``would`` in a dry run)."""
    verb = "would " if report.dry_run else ""
    lines = [
        f"as of {report.as_of.astimezone(SHANGHAI).isoformat()} (Asia/Shanghai){' — dry run' if report.dry_run else ''}"
    ]
    for r in report.redated:
        exact = "estimated" if r.estimated else "exact"
        lines.append(f"{verb}re-date  {r.project_id}  {r.deadline_id}  {r.old_due} -> {r.new_due} ({exact})")
    for o in report.opened:
        lines.append(
            f"{verb}open     {o.project_id}  {o.obligation} {o.period}  "
            f"due {o.due_at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}"
        )
    for f in report.fired:
        what = f"expire   {f.title}" if f.action == "expire" else f"level {f.level}  {f.title}"
        outcome = "" if f.outcome == "fired" else f"  ({f.outcome})"
        notices = f"  notices {len(f.notices)}" if f.action == "escalate" else ""
        lines.append(
            f"{verb}fire     {f.project_name}  {f.deadline_title}  {what}  due "
            f"{f.due_at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}  late {_late(f.late_by_seconds)}  "
            f"{f.days_late} working days overdue{notices}{outcome}"
        )
    lines.append(
        f"{len(report.redated)} re-dated, {len(report.opened)} opened, {len(report.fired)} fired, "
        f"{report.lights} lights{' to refresh' if report.dry_run else ' refreshed'}, "
        f"{report.purged} expired idempotency records purged, {len(report.errors)} errors"
    )
    lines.extend(f"error: {e}" for e in report.errors)
    return lines


def report_json(report: TickReport) -> dict[str, Any]:
    """The tick as JSON-ready data."""
    return json.loads(json.dumps(asdict(report), default=str))  # type: ignore[no-any-return]


@app.command()
def sweep(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="按此时刻执行（默认现在）/ run as of this instant (default now)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="只显示将执行的操作，不写入 / preview, write nothing")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出 / print JSON")] = False,
) -> None:
    """执行一次调度：到期提醒、逐级调度、报送催报、红黄绿灯 / run one scheduler tick."""
    from lifecycle.scheduler.sweep import Sweeper

    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    at = parse_as_of(as_of) if as_of else None
    _require_migrated(settings)

    async def run() -> TickReport:
        services = Services.from_settings(settings, clock=FrozenClock(at) if at else None)
        try:
            return await Sweeper(services, calendars_dir=settings.calendars_dir).tick(at, dry_run=dry_run)
        finally:
            await services.close()

    report = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(report_json(report), ensure_ascii=False, indent=2))
    else:
        for line in render_report(report):
            typer.echo(line)
    if report.errors:
        raise typer.Exit(1)


@app.command()
def scheduler(
    interval: Annotated[
        float | None,
        typer.Option(help="两次调度间隔秒数 / seconds between ticks (default $LIFECYCLE_SCHEDULER_INTERVAL or 60)"),
    ] = None,
    batch: Annotated[
        int, typer.Option(help="每次认领并一并处理的时限数 / deadlines claimed and fired together")
    ] = DEFAULT_BATCH,
    max_fires: Annotated[
        int | None, typer.Option(help="每次调度最多处理的时限数 / at most this many deadlines fired per tick")
    ] = None,
    lease_seconds: Annotated[
        float, typer.Option(help="认领有效期（秒）/ how long a claim holds, seconds")
    ] = DEFAULT_LEASE_SECONDS,
) -> None:
    """单独运行调度器（PostgreSQL 上多实例时一主多备）/ run the scheduler alone (one active, others standby)."""
    from lifecycle.scheduler.runner import SchedulerRunner

    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _require_migrated(settings)

    async def run() -> None:
        services = Services.from_settings(settings)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        runner = SchedulerRunner(
            services,
            settings,
            interval=interval,
            batch=batch,
            max_fires=max_fires,
            lease=timedelta(seconds=lease_seconds),
        )
        try:
            await runner.start()
            await stopping.wait()
        finally:
            await runner.stop()
            await services.close()

    asyncio.run(run())
