"""Probes and metrics: /healthz, /readyz on a migrated and an un-migrated database, /metrics, the docs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from lifecycle.settings import Settings
from lifecycle.store.migrate import head_revision, upgrade_to_head

from .conftest import DISPATCHER, UNIT_A, Api, problem, start_app

pytestmark = pytest.mark.anyio


async def test_healthz_and_readyz_need_no_token(client: httpx.AsyncClient) -> None:
    alive = await client.get("/healthz")
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "revision": head_revision()}


async def test_openapi_and_docs_need_no_token_and_describe_every_endpoint(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert (await client.get("/docs")).status_code == 200
    operations = [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 24
    for path, _, op in operations:
        assert op["summary"] and "\n" not in op["summary"], path
        assert op["tags"], path
        if path.startswith("/api/v1/"):
            assert op["security"] == [{"bearer": []}], path
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_an_unmigrated_database_is_not_ready_until_migrated(empty_db_url: str, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "engine-mini.yaml").write_bytes((Path(__file__).parents[1] / "data" / "engine-mini.yaml").read_bytes())
    app = create_app(Settings(database_url=empty_db_url, workflows_dir=bundle))
    async for started in start_app(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=started), base_url="http://t") as http:
            assert (await http.get("/healthz")).status_code == 200
            body = problem(await http.get("/readyz"), 503, "api.not_ready")
            assert body["reason"] == "migrations_pending" and body["current_revision"] is None
            assert body["head_revision"] == head_revision()
            refused = await http.get("/api/v1/projects", headers={"Authorization": "Bearer lc_whatever"})
            assert problem(refused, 503, "api.not_ready")["reason"] == "migrations_pending"
            assert refused.headers["Retry-After"]
            # `lifecycle serve` migrates first; here an operator does it while the app runs.
            await asyncio.to_thread(upgrade_to_head, empty_db_url)
            assert (await http.get("/readyz")).status_code == 200
            services = started.state.runtime.services
            await services.add_principal("d", "调度", ["dispatcher"])
            _, token = await services.create_token("d")
            workflows = await http.get("/api/v1/workflows", headers={"Authorization": f"Bearer {token}"})
            assert workflows.status_code == 200 and [w["key"] for w in workflows.json()] == ["mini"]


async def test_unreachable_database_is_not_ready(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "x.db"
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{missing}", workflows_dir=tmp_path))
    async for started in start_app(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=started), base_url="http://t") as http:
            assert problem(await http.get("/readyz"), 503, "api.not_ready")["reason"] == "database_unreachable"
            assert (await http.get("/healthz")).status_code == 200


async def test_metrics_count_requests_by_route_transitions_and_refusals(app: FastAPI, api: Api) -> None:
    project = await api.into_permitting()
    await api.fire(project["id"], "start_building", DISPATCHER)  # refused: gate
    await api.get("/api/v1/projects/nothing")  # refused: not found
    await api.client.get("/api/v1/projects")  # refused: no token
    text = (await api.client.get("/metrics")).text
    assert 'lifecycle_http_requests_total{method="POST",route="/api/v1/projects",status="201"} 1.0' in text
    assert 'route="/api/v1/projects/{project_id}/transitions",status="200"} 1.0' in text
    assert 'lifecycle_http_request_duration_seconds_count{method="GET",route="/api/v1/projects/{project_id}"}' in text
    assert (
        'lifecycle_transitions_fired_total{definition="mini",subject="project",trigger="start_permitting"} 1.0' in text
    )
    assert 'lifecycle_refusals_total{code="engine.gate_not_satisfied"} 1.0' in text
    assert 'lifecycle_refusals_total{code="not_found"} 1.0' in text
    assert 'lifecycle_refusals_total{code="api.unauthorized"} 1.0' in text
    assert "nothing" not in text  # concrete ids never become labels
    await api.fire_task(project["id"], "permits.planning_permit", "submit", UNIT_A)
    text = (await api.client.get("/metrics")).text
    assert 'lifecycle_transitions_fired_total{definition="mini",subject="task",trigger="submit"} 1.0' in text
