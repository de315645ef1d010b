"""Bad input never makes a 500: malformed JSON, wrong types, huge numbers, unknown fields, bad dates, bad
cursors, bad headers and odd ids, thrown at the endpoints that take input. Every refusal is a problem
document (``application/problem+json``).

Hypothesis drives the inputs; the app and its database are set up once per test (function-scoped fixtures
shared by the examples, hence the suppressed health check), which is what a real client hammering one
running service looks like.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import DISPATCHER, PLANNING_PERMIT, UNIT_A, Api, new_project

pytestmark = pytest.mark.anyio

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same inputs on every run: a failure here is reproducible as it is
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.integers(min_value=10**300, max_value=10**3000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["2026-02-30", "0000-01-01", "9999-12-31", "1e999999", "NaN", "-0", "１２３", "\u0000", "0x10"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
PROJECT_MEMBERS = [*new_project(), "code", "definition_version", "total_investment", "planned_start", "planned_end",
                   "implementing_unit", "township", "unexpected"]  # fmt: skip
project_bodies = (
    st.dictionaries(st.sampled_from(PROJECT_MEMBERS), json_values, max_size=8).map(
        lambda changes: {**new_project(), **changes}
    )
    | json_values
)
fire_bodies = (
    st.fixed_dictionaries(
        {"trigger": st.text(max_size=70) | st.sampled_from(["hold", "stop", "start_building", "submit"])},
        optional={"data": json_values, "comment": json_values, "extra": json_values},
    )
    | json_values
)
raw_bodies = st.binary(max_size=200) | st.sampled_from(
    [b"", b"{", b"[]", b"null", b'{"trigger": "hold"', b'{"a": 1e999999}', b'{"a": ' + b"9" * 5000 + b"}", b"\xff\xfe"]
)
header_bytes = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40).map(
    lambda text: text.encode("latin-1")
)
"""Header values as raw bytes: anything a careless client can put on the wire, Latin-1 included."""


def assert_not_500(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), response.headers
        assert response.json()["code"]


@pytest.fixture
async def project(api: Api) -> dict[str, Any]:
    return await api.into_permitting()


@FUZZ
@given(body=project_bodies, language=header_bytes)
async def test_create_project_never_500(api: Api, body: Any, language: bytes) -> None:
    response = await api.request(
        "POST", "/api/v1/projects", DISPATCHER, json=body, headers={"Accept-Language": language}
    )
    assert_not_500(response)


@FUZZ
@given(
    raw=raw_bodies,
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
)
async def test_raw_bodies_never_500(api: Api, project: dict[str, Any], raw: bytes, content_type: str) -> None:
    pid = project["id"]
    for path, headers in [
        ("/api/v1/projects", {}),
        (f"/api/v1/projects/{pid}/transitions", {"If-Match": 'W/"2"'}),
        (f"/api/v1/projects/{pid}/tasks/{PLANNING_PERMIT}/transitions", {"If-Match": 'W/"1"'}),
    ]:
        response = await api.request(
            "POST", path, UNIT_A, content=raw, headers={**headers, "Content-Type": content_type}
        )
        assert_not_500(response)
    patched = await api.request(
        "PATCH",
        f"/api/v1/projects/{pid}",
        UNIT_A,
        content=raw,
        headers={"Content-Type": content_type, "If-Match": 'W/"2"'},
    )
    assert_not_500(patched)


@FUZZ
@given(body=fire_bodies, if_match=header_bytes, key=st.none() | header_bytes)
async def test_fire_never_500(api: Api, project: dict[str, Any], body: Any, if_match: bytes, key: bytes | None) -> None:
    pid = project["id"]
    headers: dict[str, Any] = {"If-Match": if_match}
    if key is not None:
        headers["Idempotency-Key"] = key
    for path in (
        f"/api/v1/projects/{pid}/transitions",
        f"/api/v1/projects/{pid}/tasks/{PLANNING_PERMIT}/transitions",
        f"/api/v1/projects/{pid}/notices/{quote(PLANNING_PERMIT + '#n1', safe='')}/transitions",
    ):
        assert_not_500(await api.request("POST", path, DISPATCHER, json=body, headers=headers))


@FUZZ
@given(changes=st.dictionaries(st.sampled_from([*PROJECT_MEMBERS, "fields"]), json_values, max_size=6) | json_values)
async def test_patch_never_500(api: Api, project: dict[str, Any], changes: Any) -> None:
    etag = await api.etag(f"/api/v1/projects/{project['id']}")
    response = await api.request(
        "PATCH", f"/api/v1/projects/{project['id']}", DISPATCHER, json=changes, headers={"If-Match": etag}
    )
    assert_not_500(response)


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(
            ["state", "phase", "step", "unit", "leader", "overdue", "definition", "light", "q", "cursor", "limit"]
        ),
        st.text(max_size=40) | st.integers().map(str) | st.sampled_from(["true", "maybe", "-1", "1e9", "eyJ0IjoxfQ"]),
        max_size=5,
    )
)
async def test_list_queries_never_500(api: Api, project: dict[str, Any], params: dict[str, str]) -> None:
    assert_not_500(await api.get("/api/v1/projects", UNIT_A, params=params))
    history = {k: v for k, v in params.items() if k in ("cursor", "limit")}
    assert_not_500(await api.get(f"/api/v1/projects/{project['id']}/history", UNIT_A, params=history))


@FUZZ
@given(segment=st.text(max_size=60), day=st.text(max_size=20), days=st.text(max_size=12) | st.integers().map(str))
async def test_odd_ids_and_dates_never_500(
    api: Api, project: dict[str, Any], segment: str, day: str, days: str
) -> None:
    safe = quote(segment, safe="") or "%20"
    for path in (
        f"/api/v1/projects/{safe}",
        f"/api/v1/projects/{project['id']}/tasks/{safe}",
        f"/api/v1/projects/{project['id']}/notices/{safe}",
        f"/api/v1/workflows/{safe}",
        f"/api/v1/workflows/mini/versions/{safe}",
        f"/api/v1/calendar/days/{quote(day, safe='') or '%20'}",
    ):
        assert_not_500(await api.get(path, UNIT_A))
    assert_not_500(await api.get("/api/v1/calendar/add-working-days", UNIT_A, params={"start": day, "days": days}))


async def test_text_no_database_can_store_is_422_not_500(api: Api, project: dict[str, Any]) -> None:
    # PostgreSQL refuses NUL in text and jsonb; an unpaired surrogate cannot be encoded at all.
    nul_path = await api.get("/api/v1/projects/a%00b", UNIT_A)
    assert nul_path.status_code == 422 and nul_path.json()["errors"][0]["loc"] == ["path"]
    nul_query = await api.get("/api/v1/projects", UNIT_A, params={"q": "a\x00b"})
    assert nul_query.status_code == 422 and nul_query.json()["errors"][0]["loc"] == ["query"]
    for raw in (b'{"name": "a\\u0000b"}', b'{"fields": {"approval_no": "\\ud800"}}'):
        body = {**new_project(), **json.loads(raw)}
        response = await api.request("POST", "/api/v1/projects", UNIT_A, content=_dumps(body),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["code"] == "request.string_unstorable"
    fired = await api.request(
        "POST",
        f"/api/v1/projects/{project['id']}/transitions",
        DISPATCHER,
        content=b'{"trigger": "hold", "comment": "x\\u0000"}',
        headers={"Content-Type": "application/json", "If-Match": 'W/"2"'},
    )
    assert fired.status_code == 422 and fired.json()["errors"][0]["loc"] == ["body", "comment"]


def _dumps(value: Any) -> bytes:
    # ensure_ascii keeps a lone surrogate as its \\ud800 escape, which is what a JSON client sends.
    return json.dumps(value, ensure_ascii=True).encode()


def _cursor(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor({"t": "0001-01-01T00:00:00+01:00", "id": "x"}),
        _cursor({"t": "9999-12-31T23:59:59-01:00", "id": "x"}),
        _cursor({"t": "2026-03-02T01:00:00+00:00", "id": "a\u0000b"}),
        _cursor({"t": "2026-03-02T01:00:00+00:00", "id": "\ud800"}),
        _cursor({"t": "2026-03-02T01:00:00+00:00", "id": ["x"]}),
        _cursor({"t": 5, "id": "x"}),
        _cursor({"id": "x"}),
        _cursor([1, 2]),
        "%%%",
        "A" * 500,
    ],
)
async def test_forged_project_cursors_are_422(api: Api, cursor: str) -> None:
    response = await api.get("/api/v1/projects", UNIT_A, params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize("cursor", ["2147483648", "99999999999999999999", "9" * 30, "-1", "1.5", "１"])
async def test_forged_history_cursors_are_422(api: Api, project: dict[str, Any], cursor: str) -> None:
    response = await api.get(f"/api/v1/projects/{project['id']}/history", UNIT_A, params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]
