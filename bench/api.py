"""API benchmark: transitions/s through the whole service on PostgreSQL, against a minimal endpoint.

Run: ``python bench/api.py [--seconds 10] [--connections 32] [--warm-up 3] [--postgres postgresql://…:5432]``

What it does, all in one run and with the same server settings (one uvicorn worker, uvloop and httptools when
installed):

1. creates a fresh PostgreSQL database and migrates it, starts ``lifecycle serve`` on it, takes the admin
   token it prints, and creates two major-projects per connection (one for the measured run, one for the
   warm-up: ``--warm-up`` seconds of the same load before it, not counted, so that both servers are measured
   with their caches filled and their statements prepared);
2. drives ``POST /api/v1/projects/{id}/transitions`` from ``--connections`` concurrent keep-alive connections,
   each on its own project, alternating 暂缓 (suspend) and 恢复 (resume) with the ETag of the last answer in
   ``If-Match`` and a fresh ``Idempotency-Key``: every request is a real, accepted transition;
3. stops it and starts ``bench/minimal_app.py`` (the same SQL writes, nothing else) on the same database and
   drives it the same way, warm-up included;
4. prints requests/s, p50/p99 latency, the server's CPU time per request (user + system, read from ``/proc``:
   less disturbed by other load on a shared machine than the rate), the share of non-2xx answers, the
   server's peak RSS, and the ratio.

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


async def drive(
    port: int, token: str | None, projects: list[tuple[str, str]], seconds: float, minimal: bool
) -> dict[str, Any]:
    """Each connection works on its own project for ``seconds``; returns counts and latencies."""
    latencies: list[float] = []
    failures = 0
    stop_at = time.perf_counter() + seconds

    async def worker(project_id: str, etag: str) -> None:
        nonlocal failures
        connection = await Connection.open(port)
        trigger = "suspend"
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
                started = time.perf_counter()
                status, response_headers, _ = await connection.request("POST", path, headers, body)
                latencies.append(time.perf_counter() - started)
                if 200 <= status < 300:
                    etag = response_headers.get("etag", etag)
                    trigger = "resume" if trigger == "suspend" else "suspend"
                else:
                    failures += 1
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(pid, etag) for pid, etag in projects))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rate": len(latencies) / elapsed,
        "failures": failures,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan"),
    }


def run_load(
    port: int, token: str | None, projects: list[tuple[str, str]], seconds: float, minimal: bool, server_pid: int
) -> dict[str, Any]:
    """The load generator, in its own process (so its CPU is not the server's, and not this script's); adds the
    server's CPU time per request (``cpu_ms``), which a shared machine disturbs less than the rate."""
    payload = json.dumps({"port": port, "token": token, "projects": projects, "seconds": seconds, "minimal": minimal})
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(
        [sys.executable, __file__, "--load-generator"], input=payload, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    result["cpu_ms"] = (cpu_seconds(server_pid) - cpu_before) * 1000 / max(result["requests"], 1)
    return result


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
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--warm-up", type=float, default=3.0, help="seconds of load before each measured run (not counted)"
    )
    parser.add_argument(
        "--postgres", default=os.environ.get("LIFECYCLE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
    )
    parser.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_generator:
        job = json.loads(sys.stdin.read())
        projects = [tuple(p) for p in job["projects"]]
        print(json.dumps(asyncio.run(drive(job["port"], job["token"], projects, job["seconds"], job["minimal"]))))
        return

    import psycopg

    name = f"lifecycle_bench_{os.getpid()}"
    with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{args.postgres.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}_"))  # the service's folder (removed at the end)
    try:
        port = free_port()
        service, token = start_service(url, port, workdir)
        try:
            # One project per connection for the measured run, and as many again for the warm-up before it
            # (each answer's ETag is the next request's If-Match, so the two runs keep to their own).
            projects = create_projects(port, token, 2 * args.connections)
            projects, warm_up = projects[: args.connections], projects[args.connections :]
            run_load(port, token, warm_up, args.warm_up, minimal=False, server_pid=service.pid)
            api = run_load(port, token, projects, args.seconds, minimal=False, server_pid=service.pid)
        finally:
            api_rss = stop(service)
        port = free_port()
        minimal = start_minimal(url, port)
        try:
            wait_ready(port, "/")
            run_load(port, None, warm_up, args.warm_up, minimal=True, server_pid=minimal.pid)
            baseline = run_load(port, None, projects, args.seconds, minimal=True, server_pid=minimal.pid)
        finally:
            minimal_rss = stop(minimal)
    finally:
        with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)

    ratio = api["rate"] / baseline["rate"]

    def row(label: str, r: dict[str, Any], rss: float) -> str:
        return (f"{label:<22}{r['rate']:9,.0f} req/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms   "
                f"CPU {r['cpu_ms']:5.2f} ms/req   non-2xx {r['failures']}/{r['requests']}   "
                f"peak RSS {rss:6.1f} MB")  # fmt: skip

    print(f"{args.connections} connections, {args.seconds:.0f} s each, PostgreSQL, one uvicorn worker")
    print(row("transitions (API)", api, api_rss))
    print(row("minimal endpoint", baseline, minimal_rss))
    print(f"API / minimal         {ratio:9.3f}   (target >= 0.40)")
    verdicts = {
        ">= 500 transitions/s": api["rate"] >= 500,
        ">= 40% of minimal": ratio >= 0.40,
        "p99 < 100 ms": api["p99_ms"] < 100,
        "RSS < 300 MB": api_rss < 300,
    }
    print("targets: " + ", ".join(f"{k} {'OK' if ok else 'MISSED'}" for k, ok in verdicts.items()))


if __name__ == "__main__":
    main()
