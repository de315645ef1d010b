"""API benchmark: transitions/s through the whole service on PostgreSQL, against a minimal endpoint.

Run: ``python bench/api.py [--seconds 20] [--connections 32] [--rounds 10] [--warm-up 3] [--postgres URL]``

What it does, all in one run and with the same server settings (one uvicorn worker each, uvloop and
httptools when installed):

1. creates a fresh PostgreSQL database and migrates it, starts ``lifecycle serve`` on it, takes the admin
   token it prints, creates three major-projects per connection (for the API's measured runs, for its
   warm-up, and for the minimal endpoint), and starts ``bench/minimal_app.py`` (the same SQL writes, nothing
   else) on the same database beside it;
2. warms both servers up (``--warm-up`` seconds of the same load each, not counted: caches filled,
   statements prepared);
3. measures them in turns, ``--rounds`` times each, ``--seconds`` in all per server: both stay up (the idle
   one costs nothing), so a change in the machine's other load falls on both rather than on whichever ran
   second. Each turn drives ``POST /api/v1/projects/{id}/transitions`` (or ``/minimal/{id}``) from
   ``--connections`` concurrent keep-alive connections, each on its own project, alternating 暂缓 (suspend)
   and 恢复 (resume) with the ETag of the last answer in ``If-Match`` and a fresh ``Idempotency-Key``: every
   request is a real, accepted transition, and the next turn goes on where the last one left off;
4. prints, over all turns, requests/s, p50/p99 latency, the server's CPU time per request (user + system,
   read from ``/proc``: less disturbed by other load on a shared machine than the rate), the share of non-2xx
   answers, each server's peak RSS, and the ratio, with the ratio of each pair of turns beside it (how much
   the machine's other load moved the figures); then the CPU time per request of the server, of PostgreSQL
   (every ``postgres`` process on this machine) and of the load generator, which share the machine.

The load generator is a separate process speaking raw HTTP/1.1 over asyncio streams (no HTTP library), so it
costs the server's two cores as little as a Python client can; ``wrk`` is not used because every request needs
the ETag of the previous answer on its connection.
Targets (issue 3): ≥ 500 transitions/s, ≥ 40% of the minimal endpoint, p99 < 100 ms, RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user + system, all threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """The CPU time so far of every PostgreSQL process on this machine (the server's backends, WAL writer…), in
    seconds; 0 when PostgreSQL runs elsewhere."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes().startswith(b"postgres"):
                    total += cpu_seconds(int(entry))
            except OSError:  # the process ended meanwhile
                pass
    return total


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- a raw keep-alive HTTP/1.1 client -------------------------------------------------------------------


class Connection:
    """One keep-alive connection sending JSON POSTs and reading Content-Length responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, f"127.0.0.1:{port}")

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        response_headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            response_headers[name.strip().lower()] = value.strip()
        length = int(response_headers.get("content-length", "0"))
        return status, response_headers, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


Project = tuple[str, str, str]
"""A project the load works on: (id, the ETag of its last answer, the trigger to fire next)."""


async def drive(port: int, token: str | None, projects: list[Project], seconds: float, minimal: bool) -> dict[str, Any]:
    """Each connection works on its own project for ``seconds`` (the window); returns counts (all answers, and
    those within the window), latencies (ms) and where each project was left (its ETag and next trigger, for
    the next run on it)."""
    latencies: list[float] = []
    in_window = failures = 0
    started = time.perf_counter()
    stop_at = started + seconds
    left: list[Project] = list(projects)

    async def worker(index: int, project_id: str, etag: str, trigger: str) -> None:
        nonlocal failures, in_window
        connection = await Connection.open(port)
        try:
            while time.perf_counter() < stop_at:
                body = json.dumps({"trigger": trigger, "comment": "bench"}).encode()
                headers = {"Content-Type": "application/json"}
                if minimal:
                    path = f"/minimal/{project_id}"
                else:
                    path = f"/api/v1/projects/{project_id}/transitions"
                    headers |= {"Authorization": f"Bearer {token}", "If-Match": etag,
                                "Idempotency-Key": uuid.uuid4().hex}  # fmt: skip
                sent = time.perf_counter()
                status, response_headers, _ = await connection.request("POST", path, headers, body)
                answered = time.perf_counter()
                latencies.append((answered - sent) * 1000)
                in_window += answered <= stop_at
                if 200 <= status < 300:
                    etag = response_headers.get("etag", etag)
                    trigger = "resume" if trigger == "suspend" else "suspend"
                else:
                    failures += 1
        finally:
            connection.close()
            left[index] = (project_id, etag, trigger)

    await asyncio.gather(*(worker(i, *project) for i, project in enumerate(projects)))
    # The rate counts the answers within the window: the requests still in flight when it closes would
    # otherwise stretch it by one latency, which weighs on a short turn and more on the slower server.
    return {"requests": len(latencies), "in_window": in_window, "window": seconds, "failures": failures,
            "latencies": latencies, "projects": left}  # fmt: skip


def run_load(
    port: int, token: str | None, projects: list[Project], seconds: float, minimal: bool, server_pid: int
) -> dict[str, Any]:
    """The load generator, in its own process (so its CPU is not the server's, and not this script's); adds the
    server's CPU seconds over the run (``cpu``)."""
    payload = json.dumps({"port": port, "token": token, "projects": projects, "seconds": seconds, "minimal": minimal})
    cpu_before, postgres_before = cpu_seconds(server_pid), postgres_cpu_seconds()
    out = subprocess.run(
        [sys.executable, __file__, "--load-generator"], input=payload, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    result["cpu"] = cpu_seconds(server_pid) - cpu_before
    result["postgres_cpu"] = postgres_cpu_seconds() - postgres_before
    result["projects"] = [tuple(p) for p in result["projects"]]
    return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of a server over its measured runs: rate, p50/p99, CPU per request, non-2xx."""
    latencies = sorted(ms for run in runs for ms in run["latencies"])
    requests = len(latencies)
    return {
        "requests": requests,
        "rate": sum(run["in_window"] for run in runs) / sum(run["window"] for run in runs),
        "failures": sum(run["failures"] for run in runs),
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": latencies[int(requests * 0.99) - 1] if latencies else float("nan"),
        "cpu_ms": sum(run["cpu"] for run in runs) * 1000 / max(requests, 1),
        "postgres_ms": sum(run["postgres_cpu"] for run in runs) * 1000 / max(requests, 1),
        "load_ms": sum(run["load_cpu"] for run in runs) * 1000 / max(requests, 1),
    }


# --- servers ------------------------------------------------------------------------------------------


def wait_ready(port: int, path: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"server on {port} not ready")


def start_service(url: str, port: int, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "LIFECYCLE_DATABASE_URL": url, "LIFECYCLE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "lifecycle.cli", "serve", "--port", str(port), "--no-background"],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stderr is not None
    token = ""
    while not token:
        line = server.stderr.readline()
        if not line:
            raise RuntimeError("the service exited before printing its admin token")
        if line.strip().startswith("lc_"):
            token = line.strip()
    wait_ready(port, "/readyz")
    # 暂缓 and 恢复 are the dispatcher's (the YAML says who may fire what; admin may not): a dispatcher token.
    dispatcher = subprocess.run(
        [sys.executable, "-m", "lifecycle.cli", "tokens", "create", "--principal", "bench-dispatcher",
         "--role", "dispatcher", "--unit", "ndrc"],
        cwd=workdir, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return server, dispatcher.stdout.strip().splitlines()[-1]


def start_minimal(url: str, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "LIFECYCLE_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.minimal_app:app", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    return server


def create_projects(port: int, token: str, count: int) -> list[tuple[str, str]]:
    import httpx

    out = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
        for i in range(count):
            response = client.post(
                "/api/v1/projects",
                json={"definition_key": "major-project", "name": f"压测项目{i}", "lead_unit": "bench_unit",
                      "implementing_unit": "bench_unit", "source_category": "规划项目"},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )  # fmt: skip
            response.raise_for_status()
            out.append((response.json()["id"], response.headers["etag"]))
    return out


def stop(server: subprocess.Popen[str]) -> float:
    rss = peak_rss_mb(server.pid)
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description="API benchmark (see the module docstring)")
    # 2 s turns, ten of each: on this shared machine the ratio of one pair of turns wanders by ±0.04, and five
    # pairs left the whole run's ratio ±0.05 from its median.
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--warm-up", type=float, default=3.0, help="seconds of load on each server before it is measured"
    )
    parser.add_argument("--rounds", type=int, default=10, help="turns the two servers take at being measured")
    parser.add_argument(
        "--postgres", default=os.environ.get("LIFECYCLE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
    )
    parser.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_generator:
        job = json.loads(sys.stdin.read())
        projects = [tuple(p) for p in job["projects"]]
        result = asyncio.run(drive(job["port"], job["token"], projects, job["seconds"], job["minimal"]))
        result["load_cpu"] = time.process_time()  # this process's own CPU: the load generator's cost
        print(json.dumps(result))
        return

    import psycopg

    name = f"lifecycle_bench_{os.getpid()}"
    with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{args.postgres.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}_"))  # the service's folder (removed at the end)
    service = minimal = None
    api_runs: list[dict[str, Any]] = []
    minimal_runs: list[dict[str, Any]] = []
    try:
        service_port, minimal_port = free_port(), free_port()
        service, token = start_service(url, service_port, workdir)
        # One project per connection for the API's measured runs, as many again for its warm-up (each answer's
        # ETag is the next request's If-Match, so the two keep to their own), and as many for the minimal
        # endpoint, which writes the same rows without checking versions (the API's ETags stay right).
        n = args.connections
        created = [(pid, etag, "suspend") for pid, etag in create_projects(service_port, token, 3 * n)]
        measured, warm_up, baseline_projects = created[:n], created[n : 2 * n], created[2 * n :]
        minimal = start_minimal(url, minimal_port)
        wait_ready(minimal_port, "/")
        run_load(service_port, token, warm_up, args.warm_up, minimal=False, server_pid=service.pid)
        run_load(minimal_port, None, baseline_projects, args.warm_up, minimal=True, server_pid=minimal.pid)
        # Both servers stay up (the idle one costs nothing) and take turns, so that a change in the machine's
        # other load falls on both rather than on whichever ran second.
        share = args.seconds / args.rounds
        for _ in range(args.rounds):
            run = run_load(service_port, token, measured, share, minimal=False, server_pid=service.pid)
            measured = run["projects"]
            api_runs.append(run)
            run = run_load(minimal_port, None, baseline_projects, share, minimal=True, server_pid=minimal.pid)
            baseline_projects = run["projects"]
            minimal_runs.append(run)
    finally:
        api_rss = stop(service) if service is not None else float("nan")
        minimal_rss = stop(minimal) if minimal is not None else float("nan")
        with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)
    api, baseline = summary(api_runs), summary(minimal_runs)

    ratio = api["rate"] / baseline["rate"]

    def row(label: str, r: dict[str, Any], rss: float) -> str:
        return (f"{label:<22}{r['rate']:9,.0f} req/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms   "
                f"CPU {r['cpu_ms']:5.2f} ms/req   non-2xx {r['failures']}/{r['requests']}   "
                f"peak RSS {rss:6.1f} MB")  # fmt: skip

    print(
        f"{args.connections} connections, {args.seconds:.0f} s each in {args.rounds} turns, PostgreSQL, "
        "one uvicorn worker each"
    )
    print(row("transitions (API)", api, api_rss))
    print(row("minimal endpoint", baseline, minimal_rss))
    print(f"API / minimal         {ratio:9.3f}   (target >= 0.40)")
    # Turn by turn (each API turn against the minimal turn right after it): how much the machine's other load
    # moved the figures during the run.
    per_turn = [a["in_window"] / max(m["in_window"], 1) for a, m in zip(api_runs, minimal_runs, strict=True)]
    print("  by turn             " + " ".join(f"{r:.2f}" for r in per_turn))
    # Both servers share the machine's two cores with PostgreSQL and the load generator: what each request
    # costs all of them says why the ratio is what it is (PostgreSQL's figure counts every process of a local
    # server, including other databases' work, if any, during the turn).
    print("CPU per request (ms)  server  PostgreSQL  load generator")
    for label, r in (("transitions (API)", api), ("minimal endpoint", baseline)):
        print(f"{label:<20}{r['cpu_ms']:8.2f}{r['postgres_ms']:12.2f}{r['load_ms']:16.2f}")
    verdicts = {
        ">= 500 transitions/s": api["rate"] >= 500,
        ">= 40% of minimal": ratio >= 0.40,
        "p99 < 100 ms": api["p99_ms"] < 100,
        "RSS < 300 MB": api_rss < 300,
    }
    print("targets: " + ", ".join(f"{k} {'OK' if ok else 'MISSED'}" for k, ok in verdicts.items()))


if __name__ == "__main__":
    main()
