"""Errors as RFC 9457 problems: authentication, unknown routes and methods, language, request ids, and the
last-resort 500 that says nothing about its cause."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from api.errors import problem_type
from api.i18n import negotiate

from .conftest import DISPATCHER, UNIT_A, Api, problem

pytestmark = pytest.mark.anyio


async def test_no_token_is_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/projects", "/api/v1/workflows", "/api/v1/calendar/days/2026-10-01"):
        response = await client.get(path)
        problem(response, 401, "api.unauthorized")
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="lifecycle"'
    created = await client.post("/api/v1/projects", json={})
    problem(created, 401, "api.unauthorized")  # before any validation of the body
    # Before routing too: without a token, a path that is not an endpoint answers as one that is.
    problem(await client.get("/api/v1/nothing-here"), 401, "api.unauthorized")
    problem(await client.delete("/api/v1/projects"), 401, "api.unauthorized")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer lc_not-a-real-token", "Bearer " + "x" * 5000, "Basic dXNlcjpwYXNz", "Bearer", "lc_token-without-scheme"],
)
async def test_bad_tokens_are_401(client: httpx.AsyncClient, authorization: str) -> None:
    response = await client.get("/api/v1/projects", headers={"Authorization": authorization})
    problem(response, 401, "api.unauthorized")
    assert response.headers["WWW-Authenticate"].endswith('error="invalid_token"')


async def test_revoked_token_is_401(client: httpx.AsyncClient, app: FastAPI, api: Api) -> None:
    headers = await api.auth(DISPATCHER)
    assert (await client.get("/api/v1/projects", headers=headers)).status_code == 200
    services = app.state.runtime.services
    [token] = await services.list_tokens(DISPATCHER.id)
    assert await services.revoke_token(token.id)
    problem(await client.get("/api/v1/projects", headers=headers), 401, "api.unauthorized")


async def test_unknown_route_and_wrong_method(api: Api) -> None:
    body = problem(await api.get("/api/v1/nothing-here"), 404, "api.route_not_found")
    assert body["type"] == problem_type("api.route_not_found")
    problem(await api.request("DELETE", "/api/v1/projects", DISPATCHER), 405, "api.method_not_allowed")


async def test_messages_are_chinese_by_default_and_english_on_request(api: Api) -> None:
    zh = await api.get("/api/v1/projects/nothing")
    assert zh.headers["Content-Language"] == "zh-CN"
    assert problem(zh, 404, "not_found")["title"] == "未找到"
    for header in ("en", "en-GB, zh;q=0.5", "fr, en;q=0.8, zh;q=0.7", "zh;q=0, *"):
        en = await api.get("/api/v1/projects/nothing", headers={"Accept-Language": header})
        assert en.headers["Content-Language"] == "en", header
        assert problem(en, 404, "not_found")["title"] == "Not found"
    for header in ("zh-CN", "en;q=0.2, zh-Hans;q=0.9", "fr", "en;q=0", "en;q=bogus", "zh, en"):
        zh = await api.get("/api/v1/projects/nothing", headers={"Accept-Language": header})
        assert zh.headers["Content-Language"] == "zh-CN", header


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "zh"),
        ("", "zh"),
        ("en", "en"),
        ("EN-us", "en"),
        ("zh-TW", "zh"),
        ("en;q=0.5, zh;q=0.6", "zh"),
        ("en;q=0.7, zh;q=0.6", "en"),
        ("en, zh", "en"),
        ("zh, en", "zh"),
        ("de, *;q=0.5", "zh"),
        ("zh;q=0, *;q=0.1", "en"),
        ("en;q=0, zh;q=0", "zh"),
        ("en;q=2", "zh"),
        ("en;q=-1", "zh"),
        ("en ; Q=0.9 , zh ; q=0.8", "en"),
        (",,;;q=,", "zh"),
        ("en;" + "x" * 5000, "zh"),
    ],
)
def test_accept_language_negotiation(header: str | None, lang: str) -> None:
    assert negotiate(header) == lang


async def test_request_id_is_echoed_or_made(api: Api) -> None:
    given = await api.get("/api/v1/projects", headers={"X-Request-ID": "county-system-42"})
    assert given.headers["X-Request-ID"] == "county-system-42"
    made = await api.get("/api/v1/projects/nothing", headers={"X-Request-ID": "bad id with spaces\t"})
    request_id = made.headers["X-Request-ID"]
    assert request_id != "bad id with spaces\t" and len(request_id) == 32
    assert problem(made, 404, "not_found")["request_id"] == request_id


async def test_an_unexpected_exception_is_a_500_that_reveals_nothing(
    app: FastAPI, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode() -> None:
        raise RuntimeError("database password is hunter2")

    app.add_api_route("/api/v1/test-explode", explode, methods=["GET"])
    headers = await api.auth(UNIT_A)
    with caplog.at_level(logging.INFO, logger="lifecycle.api"):
        response = await api.client.get(
            "/api/v1/test-explode", headers={**headers, "X-Request-ID": "trace-me", "Accept-Language": "en"}
        )
    body = problem(response, 500, "api.internal_error")
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert body["request_id"] == "trace-me" and response.headers["X-Request-ID"] == "trace-me"
    assert "trace-me" in body["detail"]
    logged = [r for r in caplog.records if r.name == "lifecycle.api" and r.levelno == logging.ERROR]
    assert logged and "trace-me" in logged[0].getMessage() and logged[0].exc_info is not None
    token = headers["Authorization"].split()[1]
    assert all(token not in r.getMessage() for r in caplog.records)


async def test_tokens_are_never_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    headers = await api.auth(DISPATCHER)
    with caplog.at_level(logging.DEBUG):
        await api.client.get("/api/v1/projects", headers=headers)
        await api.client.get("/api/v1/projects", headers={"Authorization": "Bearer lc_wrong-secret"})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /api/v1/projects 200" in text and f"principal={DISPATCHER.id}" in text
    assert headers["Authorization"].split()[1] not in text and "lc_wrong-secret" not in text


async def test_a_body_that_cannot_be_read_is_400(api: Api) -> None:
    # Valid JSON, but Python refuses integers of more than 4300 digits (a denial-of-service guard).
    unreadable = b'{"name": ' + b"9" * 5000 + b"}"
    response = await api.request(
        "POST", "/api/v1/projects", UNIT_A, content=unreadable, headers={"Content-Type": "application/json"}
    )
    problem(response, 400, "api.bad_request")
