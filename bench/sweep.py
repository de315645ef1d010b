"""Scheduler sweep benchmark: one tick with 1,000 due deadlines among 10,000 rows, then among 1,000,000 rows
not yet due, on PostgreSQL. Cost should follow what is due, not what is stored.

Run: ``python bench/sweep.py [--admin-url postgresql://postgres@127.0.0.1:5432/postgres] [--due 1000]
[--sizes 10000,1000000]``

For each size a dedicated database ``lifecycle_bench_sweep_<pid>_<n>`` is created, migrated, filled with fast
bulk SQL (``generate_series``), swept, and dropped at the end:

* 11,000 projects (and 20 for the warm-up) of the bundled ``major-project`` definition in ``acceptance`` (a
  state no recurring report applies in): 1,000 each with one open ``joint_acceptance_limit`` deadline due an
  hour ago (its first ladder level, 项目牵头部门一线调度, due now: notices to the lead unit and the implementing
  unit), and 10,000 holding the deadlines that are not due (due in the next 365 days, scheduled, on the same
  ladder). The projects are the same in both sizes; only the number of stored not-yet-due deadlines grows.
* The tick that is timed is a whole ``Sweeper.tick``: calendar check, obligations, claiming and firing every
  due deadline through the service path (project lock, engine, escalation row, notices, history event with
  its hash chain, change hooks: light, webhook outbox, next fire time), lights. A warm-up tick two hours
  earlier fires the deadlines of 20 more projects, due then, so that what is timed is a running scheduler's
  tick: the definition loaded, the connection pool filled, the statements compiled and prepared.
* The claim query alone (the indexed "what is due" read) is timed too, in a transaction rolled back.

It prints how fast the machine is right now (a fixed pure-Python loop: the machines are shared, and the same
tick takes a third longer on a slow moment); per size: rows stored, deadlines fired, the tick's time, the
CPU time this process spent in it, and its phases, the claim query's time; then the ratio larger/smaller and
the targets (the larger tick under 1 s, under 1.5× the smaller).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from lifecycle.clock import FrozenClock, end_of_local_day, local_date  # noqa: E402
from lifecycle.engine.core import Engine  # noqa: E402
from lifecycle.scheduler.sweep import Sweeper  # noqa: E402
from lifecycle.services import Services  # noqa: E402
from lifecycle.settings import BUNDLED_WORKFLOWS_DIR, async_database_url  # noqa: E402
from lifecycle.store import Database  # noqa: E402
from lifecycle.store.migrate import upgrade_to_head  # noqa: E402
from lifecycle.store.scheduling import SchedulingRepository  # noqa: E402

AS_OF = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)  # a Friday, 14:00 in Wushan
FILLER_PROJECTS = 10_000
WARM_UP = 20
"""Projects whose deadlines the warm-up tick fires."""


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _create(admin_url: str, name: str) -> str:
    with psycopg.connect(_libpq(admin_url), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop(admin_url: str, name: str) -> None:
    with psycopg.connect(_libpq(admin_url), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _fill(url: str, due: int, rows: int) -> float:
    """Bulk-insert the projects and deadlines (see the module docstring); seconds taken."""
    started = time.perf_counter()
    due_at = AS_OF - timedelta(hours=1)
    due_day = local_date(due_at)
    not_due = rows - due
    with psycopg.connect(_libpq(url), autocommit=True) as db:
        db.execute("SET synchronous_commit = off")
        project_sql = """
            INSERT INTO projects (id, code, name, definition_key, definition_version, state, phase, source_category,
                lead_leader, lead_unit, implementing_unit, fields, light, light_reasons, light_at, version, event_seq,
                event_hash, created_at, created_by, updated_at)
            SELECT {prefix} || lpad(n::text, 12, '0'), NULL, '压测项目' || n, 'major-project', 1, 'acceptance',
                'operation', '规划项目', '县领导甲', 'unit_' || (n %% 50), 'owner_' || (n %% 300), '{{}}'::jsonb,
                'green', '[]'::jsonb, %(now)s, 1, 0, repeat('0', 64), %(now)s, 'bench', %(now)s
            FROM generate_series(1, %(count)s) AS n
        """
        db.execute(project_sql.format(prefix="'00000000-0000-0000-0000-'"), {"now": AS_OF, "count": due})
        db.execute(project_sql.format(prefix="'11111111-1111-1111-1111-'"), {"now": AS_OF, "count": FILLER_PROJECTS})
        db.execute(project_sql.format(prefix="'22222222-2222-2222-2222-'"), {"now": AS_OF, "count": WARM_UP})
        db.execute("INSERT INTO project_steps (project_id, step) SELECT id, 9 FROM projects")
        due_sql = """
            INSERT INTO deadlines (project_id, id, subject_kind, subject_id, clock, title, started_on, due_date, due_at,
                estimated, ladder, on_expiry, pauses, closed_at, level, fired_at, next_fire_at)
            SELECT p, p || '/joint_acceptance_limit/1', 'project', p, 'joint_acceptance_limit', '联合验收时限',
                %(started)s, %(due_day)s, %(due_at)s, false, 'four_level_dispatch', NULL, '[]'::jsonb, NULL, 0, NULL,
                %(due_at)s
            FROM (SELECT %(prefix)s || lpad(n::text, 12, '0') AS p
                  FROM generate_series(1, %(count)s) AS n) AS due_projects
            """
        for prefix, at, count in (
            ("00000000-0000-0000-0000-", due_at, due),
            ("22222222-2222-2222-2222-", AS_OF - timedelta(hours=3), WARM_UP),  # fired by the warm-up tick
        ):
            db.execute(
                due_sql,
                {"prefix": prefix, "started": due_day - timedelta(days=70), "due_day": local_date(at), "due_at": at,
                 "count": count},
            )  # fmt: skip
        db.execute(
            """
            INSERT INTO deadlines (project_id, id, subject_kind, subject_id, clock, title, started_on, due_date, due_at,
                estimated, ladder, on_expiry, pauses, closed_at, level, fired_at, next_fire_at)
            SELECT p, p || '/bench_' || n || '/1', 'project', p, 'bench_' || n, '压测时限', %(today)s,
                %(today)s + 1 + n %% 365, %(tomorrow)s + make_interval(days => n %% 365), false, 'four_level_dispatch',
                NULL, '[]'::jsonb, NULL, 0, NULL, %(tomorrow)s + make_interval(days => n %% 365)
            FROM (SELECT n, '11111111-1111-1111-1111-' || lpad((1 + n %% %(fillers)s)::text, 12, '0') AS p
                  FROM generate_series(1, %(count)s) AS n) AS rows_not_due
            """,
            {
                "today": local_date(AS_OF),
                "tomorrow": end_of_local_day(local_date(AS_OF)),
                "fillers": FILLER_PROJECTS,
                "count": not_due,
            },
        )
        db.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


async def _publish(url: str) -> None:
    services = Services(Database(url), engine=Engine(), clock=FrozenClock(AS_OF - timedelta(days=400)))
    try:
        await services.publish_bundled(BUNDLED_WORKFLOWS_DIR)
    finally:
        await services.close()


async def _measure(url: str, concurrency: int | None = None) -> dict[str, Any]:
    clock = FrozenClock(AS_OF - timedelta(hours=2))
    services = Services(Database(url), engine=Engine(), clock=clock)
    try:
        sweeper = Sweeper(services, concurrency=concurrency)
        warm = await sweeper.tick(clock.now())
        assert len(warm.fired) == WARM_UP and not warm.errors, (len(warm.fired), warm.errors)
        gc.freeze()  # as the scheduler process does once started (lifecycle.scheduler.runner)
        claims = []
        for _ in range(5):
            # The claim statement alone, rolled back: the indexed "what is due" read and its writes.
            async with services.database.engine.connect() as connection, connection.begin() as transaction:
                session = AsyncSession(bind=connection)
                started = time.perf_counter()
                found = await SchedulingRepository(session).claim(AS_OF, AS_OF + timedelta(minutes=5), 1000)
                claims.append(time.perf_counter() - started)
                await transaction.rollback()
        clock.set(AS_OF)
        started, cpu_started = time.perf_counter(), time.process_time()
        report = await sweeper.tick(AS_OF)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        assert not report.errors, report.errors[:3]
        async with services.database.reader() as session:
            stored = await session.scalar(text("SELECT count(*) FROM deadlines"))
            escalated = await session.scalar(text("SELECT count(*) FROM escalations"))
            notices = await session.scalar(text("SELECT count(*) FROM escalation_notices"))
        return {
            "stored": stored,
            "fired": len(report.fired),
            "escalations": escalated,
            "notices": notices,
            "tick": elapsed,
            "cpu": cpu,
            "phases": report.seconds,
            "claim_ms": statistics.median(claims) * 1000,
            "claimed": len(found),
        }
    finally:
        await services.close()


def run_size(admin_url: str, due: int, rows: int, index: int, concurrency: int | None = None) -> dict[str, Any]:
    name = f"lifecycle_bench_sweep_{os.getpid()}_{index}"
    url = _create(admin_url, name)
    try:
        upgrade_to_head(url)
        asyncio.run(_publish(async_database_url(url)))
        fill = _fill(url, due, rows)
        result = asyncio.run(_measure(async_database_url(url), concurrency))
        result["fill"] = fill
        return result
    finally:
        _drop(admin_url, name)


def reference_ms() -> float:
    """The best of three timings of a fixed pure-Python loop: how fast this (shared) machine is right now."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        sum(range(10_000_000))
        timings.append(time.perf_counter() - started)
    return min(timings) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("LIFECYCLE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--concurrency", type=int, default=None, help="deadlines fired at once (default: 4)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine reference: a fixed pure-Python loop takes {reference_ms():.0f} ms in this run (compare runs by it)")
    results = []
    for index, rows in enumerate(sizes):
        result = run_size(args.admin_url, args.due, rows, index, args.concurrency)
        results.append(result)
        phases = "  ".join(f"{k} {v * 1000:.0f} ms" for k, v in result["phases"].items())
        print(
            f"{result['stored']:>9,} deadlines stored, {args.due:,} due: tick {result['tick'] * 1000:7.0f} ms "
            f"using {result['cpu'] * 1000:.0f} ms of CPU "
            f"({result['fired']:,} fired, {result['escalations']:,} escalations, {result['notices']:,} notices; "
            f"{phases}); claim query {result['claim_ms']:.1f} ms for {result['claimed']:,}; "
            f"bulk fill {result['fill']:.1f} s",
            flush=True,
        )
    if len(results) >= 2:
        small, large = results[0], results[-1]
        ratio = large["tick"] / small["tick"]
        claim_ratio = large["claim_ms"] / small["claim_ms"]
        print(
            f"ratio larger/smaller: tick {ratio:.2f}x (target < 1.5x), claim query {claim_ratio:.2f}x; "
            f"larger tick {large['tick'] * 1000:.0f} ms (target < 1000 ms): "
            f"{'met' if ratio < 1.5 and large['tick'] < 1.0 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
