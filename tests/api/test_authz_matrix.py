"""Who may do what: every role × endpoint × own/other-unit case, from one table.

The world of each case: project P led by ``unit_a`` in ``permitting``; its planning permit (planning bureau)
accepted with deficiencies, so deficiency notice N is open; its construction permit (housing bureau)
pending. The callers:

* county-wide roles: admin, dispatcher, leader, viewer, integrator, task_force — they see every project;
  what they may *fire* is the definition's business (each transition lists its roles);
* ``unit/own`` leads P (unit_a), ``unit/other`` is another unit (unit_b): P is invisible to it (404);
* ``department/own`` is the planning bureau (P's planning permit is its item), ``department/sibling`` the
  housing bureau (it sees P through its own item, but may not act on the planning bureau's), and
  ``department/other`` the water bureau (no item of P: P is invisible, 404);
* ``anonymous`` sends no token (401 everywhere).

A 403 is either ``forbidden`` (may see, may not change: the services) or ``engine.role_refused`` (the YAML's
roles for that trigger: the engine). Mutations send the current ETag, so a refusal is never a stale version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from .conftest import (
    ADMIN,
    CONSTRUCTION_PERMIT,
    DISPATCHER,
    HOUSING,
    INTEGRATOR,
    LEADER,
    PLANNING,
    PLANNING_PERMIT,
    TASK_FORCE,
    UNIT_A,
    UNIT_B,
    VIEWER,
    WATER,
    Api,
    new_project,
    problem,
)

pytestmark = pytest.mark.anyio

ACTORS = {
    "admin": ADMIN,
    "dispatcher": DISPATCHER,
    "leader": LEADER,
    "viewer": VIEWER,
    "integrator": INTEGRATOR,
    "task_force": TASK_FORCE,
    "unit/own": UNIT_A,
    "unit/other": UNIT_B,
    "department/own": PLANNING,
    "department/sibling": HOUSING,
    "department/other": WATER,
    "anonymous": None,
}


@dataclass(frozen=True)
class Endpoint:
    """A request of the matrix: ``{project}``, ``{task}``, ``{notice}`` are filled from the world; ``etag``
    names the resource whose current ETag goes in If-Match."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    etag: str | None = None


P = "/api/v1/projects/{project}"
ENDPOINTS = {
    "create project": Endpoint("POST", "/api/v1/projects", new_project(name="矩阵新项目")),
    "list projects": Endpoint("GET", "/api/v1/projects"),
    "get project": Endpoint("GET", P),
    "update project": Endpoint("PATCH", P, {"name": "改名"}, etag=P),
    "list transitions": Endpoint("GET", P + "/transitions"),
    "fire hold": Endpoint("POST", P + "/transitions", {"trigger": "hold"}, etag=P),
    "list tasks": Endpoint("GET", P + "/tasks"),
    "get task": Endpoint("GET", P + "/tasks/{task}"),
    "list task transitions": Endpoint("GET", P + "/tasks/{task}/transitions"),
    "submit construction permit": Endpoint(
        "POST",
        P + f"/tasks/{CONSTRUCTION_PERMIT}/transitions",
        {"trigger": "submit"},
        etag=P + f"/tasks/{CONSTRUCTION_PERMIT}",
    ),
    "resume planning permit": Endpoint(
        "POST", P + "/tasks/{task}/transitions", {"trigger": "resume"}, etag=P + "/tasks/{task}"
    ),
    "list notices": Endpoint("GET", P + "/notices"),
    "get notice": Endpoint("GET", P + "/notices/{notice}"),
    "read notice": Endpoint(
        "POST", P + "/notices/{notice}/transitions", {"trigger": "read"}, etag=P + "/notices/{notice}"
    ),
    "list commitments": Endpoint("GET", P + "/commitments"),
    "history": Endpoint("GET", P + "/history"),
    "list workflows": Endpoint("GET", "/api/v1/workflows"),
    "workflow version": Endpoint("GET", "/api/v1/workflows/mini/versions/1"),
    "calendar day": Endpoint("GET", "/api/v1/calendar/days/2026-10-01"),
    "add working days": Endpoint("GET", "/api/v1/calendar/add-working-days?start=2026-09-23&days=10"),
}

VISIBLE = (200, 200, 200, 200, 200, 200, 200, 404, 200, 200, 404, 401)
EVERYONE = (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 401)

# fmt: off
EXPECTED: dict[str, tuple[int, ...]] = {
    #                             admin disp ldr  view integ tf   u/own u/oth d/own d/sib d/oth anon
    "create project":             (201, 201, 403, 403, 201,  403, 201,  403,  403,  403,  403,  401),
    "list projects":              EVERYONE,
    "get project":                VISIBLE,
    "update project":             (200, 200, 403, 403, 200,  403, 200,  404,  403,  403,  404,  401),
    "list transitions":           VISIBLE,
    "fire hold":                  (403, 200, 403, 403, 403,  403, 403,  404,  403,  403,  404,  401),
    "list tasks":                 VISIBLE,
    "get task":                   VISIBLE,
    "list task transitions":      VISIBLE,
    "submit construction permit": (403, 403, 403, 403, 403,  403, 200,  404,  403,  403,  404,  401),
    "resume planning permit":     (403, 403, 403, 403, 403,  403, 403,  404,  200,  403,  404,  401),
    "list notices":               VISIBLE,
    "get notice":                 VISIBLE,
    "read notice":                (403, 403, 403, 403, 403,  403, 200,  404,  403,  403,  404,  401),
    "list commitments":           VISIBLE,
    "history":                    VISIBLE,
    "list workflows":             EVERYONE,
    "workflow version":           EVERYONE,
    "calendar day":               EVERYONE,
    "add working days":           EVERYONE,
}
# fmt: on

CASES = [
    pytest.param(endpoint, actor, EXPECTED[endpoint][column], id=f"{endpoint}|{actor}")
    for endpoint in ENDPOINTS
    for column, actor in enumerate(ACTORS)
]


def test_the_table_covers_every_endpoint_and_caller() -> None:
    assert set(EXPECTED) == set(ENDPOINTS)
    assert all(len(row) == len(ACTORS) for row in EXPECTED.values())


async def build_world(api: Api) -> dict[str, str]:
    """Project P in permitting, its planning permit accepted with deficiencies (notice N open)."""
    project, notice = await api.with_notice()
    return {"project": project["id"], "task": PLANNING_PERMIT, "notice": quote(notice, safe="")}


@pytest.mark.parametrize(("endpoint", "actor", "expected"), CASES)
async def test_authorisation_matrix(api: Api, endpoint: str, actor: str, expected: int) -> None:
    world = await build_world(api)
    spec = ENDPOINTS[endpoint]
    headers: dict[str, str] = {}
    if spec.etag:
        headers["If-Match"] = await api.etag(spec.etag.format(**world))
    response = await api.request(spec.method, spec.path.format(**world), ACTORS[actor], json=spec.body, headers=headers)
    assert response.status_code == expected, response.text
    if expected == 403:
        assert problem(response, 403, response.json()["code"])["code"] in ("forbidden", "engine.role_refused")
    elif expected >= 400:
        problem(response, expected, {401: "api.unauthorized", 404: "not_found"}[expected])


@pytest.mark.parametrize(
    ("actor", "visible"),
    [
        ("dispatcher", 1),
        ("unit/own", 1),
        ("unit/other", 0),
        ("department/own", 1),
        ("department/sibling", 1),
        ("department/other", 0),
    ],
)
async def test_lists_show_only_what_the_caller_may_see(api: Api, actor: str, visible: int) -> None:
    await build_world(api)
    caller = ACTORS[actor]
    assert caller is not None
    page = (await api.get("/api/v1/projects", caller)).json()
    assert len(page["items"]) == visible
