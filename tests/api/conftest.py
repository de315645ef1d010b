"""Fixtures of the REST API tests: the app on a real, migrated database (SQLite and PostgreSQL), an HTTP
client speaking ASGI to it, callers with real tokens, and a small client for the ``mini`` definition.

The app is built by :func:`api.app.create_app` around the suite's ``services`` fixture (the ``mini``
definition published, the clock frozen at ``T0``) and its lifespan runs as it would under uvicorn; requests
go through every middleware. Nothing is mocked: tokens are issued and looked up hashed, every answer comes
from the database.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from lifecycle.services import Principal, Services
from lifecycle.settings import Settings

MINI_DEFINITIONS = "definitions"
"""The folder (under the test's tmp_path) where the ``services`` fixture put engine-mini.yaml."""

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def principal(ident: str, *roles: str, unit: str | None = None) -> Principal:
    """A caller with a fixed id (stored with a token on first use)."""
    return Principal(id=ident, name=ident, unit_id=unit, roles=frozenset(roles))


UNIT_A = principal("owner-a", "unit", unit="unit_a")
UNIT_B = principal("owner-b", "unit", unit="unit_b")
PLANNING = principal("planner", "department", unit="planning_bureau")
HOUSING = principal("builder", "department", unit="housing_bureau")
WATER = principal("water", "department", unit="water_bureau")
DISPATCHER = principal("dispatch", "dispatcher")
ADMIN = principal("admin", "admin")
LEADER = principal("leader", "leader")
VIEWER = principal("viewer", "viewer")
INTEGRATOR = principal("integrator", "integrator")
TASK_FORCE = principal("task-force", "task_force")

PLANNING_PERMIT = "permits.planning_permit"
CONSTRUCTION_PERMIT = "permits.construction_permit"


def new_project(**overrides: Any) -> dict[str, Any]:
    """The JSON of a valid new ``mini`` project led by unit_a (investment 150 万元: the gate's floor is 100)."""
    body: dict[str, Any] = {
        "definition_key": "mini",
        "name": "巫山县某康养文旅项目",
        "source_category": "规划项目",
        "lead_unit": "unit_a",
        "lead_leader": "县领导甲",
        "fields": {"investment": "150"},
    }
    body.update(overrides)
    return body


async def start_app(app: FastAPI) -> AsyncIterator[FastAPI]:
    """Run ``app``'s lifespan around the test, as uvicorn would."""
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """The bundled-workflows folder the app publishes at start-up (engine-mini.yaml, put there by the
    ``services`` fixture)."""
    return tmp_path / MINI_DEFINITIONS


@pytest.fixture
def settings(db_url: str, bundle: Path) -> Settings:
    """Settings pointing at the test database and the test bundle."""
    return Settings(database_url=db_url, workflows_dir=bundle)


@pytest.fixture
async def app(services: Services, settings: Settings, anyio_backend: str) -> AsyncIterator[FastAPI]:
    """The app serving ``services``, started."""
    async for started in start_app(create_app(settings, services=services)):
        yield started


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking ASGI to the app."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        yield http


@pytest.fixture
def auth(issue_token: Callable[..., Awaitable[str]]) -> Callable[[Principal], Awaitable[dict[str, str]]]:
    """``await auth(principal)`` -> ``{"Authorization": "Bearer …"}`` (one token per principal per test)."""
    tokens: dict[str, str] = {}

    async def headers(who: Principal) -> dict[str, str]:
        if who.id not in tokens:
            tokens[who.id] = await issue_token(who)
        return {"Authorization": f"Bearer {tokens[who.id]}"}

    return headers


class Api:
    """The REST calls the tests make, by caller: each returns the httpx response."""

    def __init__(self, client: httpx.AsyncClient, auth: Callable[[Principal], Awaitable[dict[str, str]]]) -> None:
        self.client = client
        self.auth = auth

    async def request(
        self,
        method: str,
        path: str,
        by: Principal | None,
        *,
        json: Any = None,
        headers: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        content: bytes | str | None = None,
    ) -> httpx.Response:
        all_headers = {**(await self.auth(by) if by else {}), **(headers or {})}
        return await self.client.request(method, path, json=json, headers=all_headers, params=params, content=content)

    async def create(self, by: Principal = UNIT_A, **overrides: Any) -> dict[str, Any]:
        """Create a mini project; assert it worked; its JSON."""
        response = await self.request("POST", "/api/v1/projects", by, json=new_project(**overrides))
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def get(self, path: str, by: Principal = DISPATCHER, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, by, **kw)

    async def etag(self, path: str) -> str:
        response = await self.get(path)
        assert response.status_code == 200, response.text
        return response.headers["ETag"]

    async def fire(
        self,
        project_id: str,
        trigger: str,
        by: Principal,
        data: dict[str, Any] | None = None,
        *,
        comment: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Fire a project trigger with the project's current ETag."""
        tag = await self.etag(f"/api/v1/projects/{project_id}")
        body = {"trigger": trigger, "data": data or {}, "comment": comment}
        return await self.request(
            "POST",
            f"/api/v1/projects/{project_id}/transitions",
            by,
            json=body,
            headers={"If-Match": tag, **(headers or {})},
        )

    async def fire_task(
        self,
        project_id: str,
        task_id: str,
        trigger: str,
        by: Principal,
        data: dict[str, Any] | None = None,
        *,
        comment: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Fire an item trigger with the item's current ETag."""
        path = f"/api/v1/projects/{project_id}/tasks/{task_id}"
        tag = await self.etag(path)
        body = {"trigger": trigger, "data": data or {}, "comment": comment}
        return await self.request(
            "POST", f"{path}/transitions", by, json=body, headers={"If-Match": tag, **(headers or {})}
        )

    async def fire_notice(self, project_id: str, notice_id: str, trigger: str, by: Principal) -> httpx.Response:
        """Fire a notice trigger with the notice's current ETag."""
        path = f"/api/v1/projects/{project_id}/notices/{quote(notice_id, safe='')}"
        tag = await self.etag(path)
        return await self.request(
            "POST", f"{path}/transitions", by, json={"trigger": trigger}, headers={"If-Match": tag}
        )

    async def into_permitting(self, by: Principal = UNIT_A, **overrides: Any) -> dict[str, Any]:
        """A new project moved into ``permitting`` (its parallel permits group opens)."""
        project = await self.create(by, **overrides)
        response = await self.fire(project["id"], "start_permitting", UNIT_A, {"approval_no": "巫发改〔2026〕1号"})
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def with_notice(self, **overrides: Any) -> tuple[dict[str, Any], str]:
        """A project in permitting whose planning permit was accepted with deficiencies: (project, notice id)."""
        project = await self.into_permitting(**overrides)
        pid = project["id"]
        assert (await self.fire_task(pid, PLANNING_PERMIT, "submit", UNIT_A)).status_code == 200
        response = await self.fire_task(
            pid, PLANNING_PERMIT, "accept_with_deficiencies", PLANNING, {"missing": ["photos", "contract_copy"]}
        )
        assert response.status_code == 200, response.text
        notices = (await self.get(f"/api/v1/projects/{pid}/notices")).json()
        return project, notices[0]["id"]


@pytest.fixture
def api(client: httpx.AsyncClient, auth: Callable[[Principal], Awaitable[dict[str, str]]]) -> Api:
    """REST calls by caller."""
    return Api(client, auth)


def copy_major_project(bundle: Path) -> None:
    """Add the bundled major-project definition to a test bundle."""
    shutil.copyfile(WORKFLOWS / "major-project.yaml", bundle / "major-project.yaml")


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert ``response`` is an RFC 9457 problem with ``status`` and ``code``; its JSON."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = dict(response.json())
    assert body["status"] == status and body["code"] == code, body
    assert body["type"].startswith("https://lifecycle.local/problems/")
    for member in ("title", "detail", "instance"):
        assert isinstance(body[member], str) and body[member], member
    return body
