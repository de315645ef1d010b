"""Webhook benchmark: deliveries/s with several ``lifecycle worker`` processes on PostgreSQL, and the lag from a
change's commit to its receipt, beside the rate of changes committed in the same run.

Run: ``python bench/webhooks.py [--workers 4] [--seconds 10] [--backlog-seconds 5] [--writers 8] [--database-url URL]``

What it does, all on this machine:

* creates a fresh PostgreSQL database (on ``LIFECYCLE_BENCH_POSTGRES_URL``, default
  ``postgresql://postgres@127.0.0.1:5432/postgres``; dropped at the end) or uses ``--database-url``, migrates
  it and publishes the test definition ``mini``;
* starts a receiver (uvicorn, a raw ASGI app, in its own process) that answers 200 at once and notes the
  arrival time, ``webhook-id`` and the payload's project and version of every message;
* registers one endpoint for every event type;
* capacity: for ``--backlog-seconds`` ``--writers`` concurrent writers create projects and move them (start
  permitting, hold, resume) with no worker running; then ``--workers`` real ``lifecycle worker`` processes start
  and the time they take to drain that backlog gives deliveries/s;
* live: for ``--seconds`` the writers go on while the workers run, noting when each change's transaction has
  committed (its project id and new version); the lag is receipt time minus commit time, per message;
* prints capacity (deliveries/s), the changes committed/s of the live phase (the same-run baseline) and the
  lag from commit to receipt (p50, p90, p99, max).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MINI = ROOT / "tests" / "data" / "engine-mini.yaml"


# --- the receiver (its own process) ----------------------------------------------------------------------


def serve_receiver(port: int, out: Path) -> None:
    """Run the receiver until SIGTERM, then write what it received to ``out`` (JSON lines)."""
    import uvicorn

    records: list[tuple[float, str, str | None, int | None, str]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    with out.open("w") as f:
                        for record in records:
                            f.write(json.dumps(record) + "\n")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        arrived = time.time()
        headers = dict(scope["headers"])
        payload = json.loads(body)
        project = payload.get("project") or {}
        records.append(
            (arrived, headers[b"webhook-id"].decode(), project.get("id"), project.get("version"), payload["type"])
        )
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)


# --- the run -----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"the receiver did not start on port {port}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(url: str, workers: int, seconds: float, backlog_seconds: float, writers: int, work: Path) -> None:
    from lifecycle.clock import SystemClock
    from lifecycle.services import CallContext, CreateProject, Principal, Services
    from lifecycle.services.webhooks import NewEndpoint, WebhookService
    from lifecycle.store import Database
    from lifecycle.store.migrate import upgrade_to_head
    from lifecycle.store.webhooks import WebhookRepository
    from lifecycle.webhooks.config import WebhookSettings

    upgrade_to_head(url)
    services = Services(Database(url, pool_size=writers + 2), clock=SystemClock())
    bundle = work / "definitions"
    bundle.mkdir()
    shutil.copyfile(MINI, bundle / MINI.name)
    await services.publish_bundled(bundle)

    port = _free_port()
    received_file = work / "received.jsonl"
    receiver = subprocess.Popen([sys.executable, __file__, "--serve-receiver", str(port), str(received_file)])
    _wait_port(port)
    integrator = CallContext(Principal("bench", "bench", roles=frozenset({"integrator"})))
    hooks = WebhookService(services, WebhookSettings(allow_private=True))
    await hooks.create_endpoint(integrator, NewEndpoint(url=f"http://127.0.0.1:{port}/hook", event_types=["*"]))

    env = {
        **os.environ,
        "LIFECYCLE_DATABASE_URL": url,
        "LIFECYCLE_WEBHOOKS_ALLOW_PRIVATE": "1",
        "LIFECYCLE_WEBHOOKS_POLL_SECONDS": "0.05",
        "LIFECYCLE_LOG_LEVEL": "WARNING",
    }
    script = Path(sys.executable).parent / "lifecycle"
    command = [str(script), "worker"] if script.exists() else [sys.executable, "-m", "lifecycle.cli", "worker"]

    owner = CallContext(Principal("owner", "owner", unit_id="unit_a", roles=frozenset({"unit"})))
    dispatcher = CallContext(Principal("dispatch", "dispatch", roles=frozenset({"dispatcher"})))
    committed: dict[tuple[str, int], float] = {}

    async def write(duration: float) -> tuple[int, float]:
        """Writers for ``duration`` seconds: (changes committed, seconds taken)."""
        changes = 0
        stop_at = time.monotonic() + duration

        async def writer() -> None:
            nonlocal changes
            while time.monotonic() < stop_at:
                project = await services.create_project(
                    owner,
                    CreateProject(
                        definition_key="mini",
                        name="bench",
                        source_category="规划项目",
                        lead_unit="unit_a",
                        fields={"investment": "150"},
                    ),
                )
                committed[(project.id, project.version)] = time.time()
                project = await services.fire(
                    owner, project.id, project.version, "start_permitting", {"approval_no": "1"}
                )
                committed[(project.id, project.version)] = time.time()
                project = await services.fire(dispatcher, project.id, project.version, "hold")
                committed[(project.id, project.version)] = time.time()
                project = await services.fire(dispatcher, project.id, project.version, "resume")
                committed[(project.id, project.version)] = time.time()
                changes += 4

        began = time.time()
        await asyncio.gather(*(writer() for _ in range(writers)))
        return changes, time.time() - began

    async def pending() -> int:
        async with services.database.reader() as session:
            return await WebhookRepository(session).pending_total()

    async def drain(limit: float = 300) -> None:
        deadline = time.monotonic() + limit
        while await pending() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # Phase 1, capacity: a backlog written with no worker running, then drained by the workers.
    backlog_changes, backlog_wrote = await write(backlog_seconds)
    backlog = await pending()
    procs = [subprocess.Popen(command, env=env) for _ in range(workers)]
    await drain()
    phase2 = time.time()
    # Phase 2, lag: writers and workers at the same time.
    changes, wrote = await write(seconds)
    left_when_writing_stopped = await pending()
    await drain()
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(30)
    receiver.send_signal(signal.SIGTERM)
    receiver.wait(30)
    await services.close()

    records = [json.loads(line) for line in received_file.read_text().splitlines()]
    drained = [r[0] for r in records if r[0] < phase2]
    live = [r for r in records if r[0] >= phase2]
    lags = [r[0] - committed[(r[2], r[3])] for r in live if (r[2], r[3]) in committed]
    unique = len({r[1] for r in records})
    print(f"database             {url.split('@')[-1]}")
    print(f"setup                {workers} `lifecycle worker` processes, 1 endpoint (every type), {writers} writers")
    if drained:
        span = max(drained) - min(drained)
        print(
            f"capacity (drain)     backlog of {backlog} deliveries ({backlog_changes} changes) sent in {span:.1f} s "
            f"= {len(drained) / max(span, 1e-9):,.0f} deliveries/s"
        )
    print(f"no workers: changes  {backlog_changes / backlog_wrote:,.0f} changes/s while the backlog was written")
    print(
        f"live: changes        {changes} committed in {wrote:.1f} s = {changes / wrote:,.0f} changes/s "
        f"(same-run baseline; {len(live) / max(changes, 1):.2f} deliveries per change)"
    )
    if lags:
        print(
            f"live: lag            commit→receipt p50 {statistics.median(lags) * 1000:,.0f} ms, "
            f"p90 {_percentile(lags, 0.9) * 1000:,.0f} ms, p99 {_percentile(lags, 0.99) * 1000:,.0f} ms, "
            f"max {max(lags) * 1000:,.0f} ms; {left_when_writing_stopped} pending when writing stopped"
        )
    print(
        f"received             {len(records)} messages, {unique} distinct webhook-ids ({len(records) - unique} resent)"
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-receiver":
        serve_receiver(int(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--backlog-seconds", type=float, default=5, help="writing time that fills the backlog")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--database-url", default=None, help="an existing database (default: a fresh PostgreSQL one)")
    args = parser.parse_args()

    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    from lifecycle.settings import async_database_url

    admin_url = os.environ.get("LIFECYCLE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    created: str | None = None
    url = args.database_url
    if url is None:
        created = f"lifecycle_bench_webhooks_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(created)))
        url = make_url(admin_url).set(database=created).render_as_string(hide_password=False)
    try:
        with tempfile.TemporaryDirectory() as work:
            asyncio.run(
                run(async_database_url(url), args.workers, args.seconds, args.backlog_seconds, args.writers, Path(work))
            )
    finally:
        if created is not None:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(created)))


if __name__ == "__main__":
    main()
