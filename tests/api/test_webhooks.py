"""The webhook REST API on SQLite and PostgreSQL: endpoints (secret shown once, ETag/If-Match), pings and the
delivery log after real sends to a receiver on 127.0.0.1, redelivery, the admin log, the documented payloads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from lifecycle.clock import FrozenClock
from lifecycle.services import Services
from lifecycle.webhooks.config import WebhookSettings
from lifecycle.webhooks.dispatcher import Dispatcher
from tests.webhooks.receiver import Receiver, Reply

from .conftest import ADMIN, INTEGRATOR, UNIT_A, VIEWER, Api, principal, problem

pytestmark = pytest.mark.anyio

BASE = "/api/v1/webhooks"
OTHER_INTEGRATOR = principal("other-system", "integrator")


@pytest.fixture(autouse=True)
def allow_private(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFECYCLE_WEBHOOKS_ALLOW_PRIVATE", "1")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


async def send_due(services: Services, clock: FrozenClock) -> int:
    sender = Dispatcher(
        services.database, clock=clock, settings=WebhookSettings(allow_private=True, timeout_seconds=1, jitter=0)
    )
    try:
        return await sender.run_until_idle()
    finally:
        await sender.aclose()


async def register(api: Api, url: str, *types: str, by: object = INTEGRATOR) -> dict[str, object]:
    response = await api.request(
        "POST", f"{BASE}/endpoints", by, json={"url": url, "event_types": list(types) or ["*"]}
    )  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    assert response.headers["ETag"] == 'W/"1"'
    return dict(response.json())


async def test_the_secret_is_shown_once_and_never_again(api: Api, receiver: Receiver) -> None:
    created = await register(api, receiver.url(), "project.*", "task.transitioned")
    secret = str(created["secret"])
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 44
    assert created["event_types"] == ["project.*", "task.transitioned"] and created["enabled"] is True
    endpoint = f"{BASE}/endpoints/{created['id']}"
    read = await api.get(endpoint, INTEGRATOR)
    assert read.status_code == 200 and read.headers["ETag"] == 'W/"1"'
    listed = await api.get(f"{BASE}/endpoints", INTEGRATOR)
    for text in (read.text, listed.text):
        assert "secret" not in read.json() and secret not in text and secret[6:] not in text
    assert [e["id"] for e in listed.json()] == [created["id"]]


async def test_changes_need_if_match_and_the_current_version(api: Api, receiver: Receiver) -> None:
    created = await register(api, receiver.url())
    endpoint = f"{BASE}/endpoints/{created['id']}"
    problem(await api.request("PATCH", endpoint, INTEGRATOR, json={"description": "x"}), 428, "api.if_match_required")
    changed = await api.request(
        "PATCH",
        endpoint,
        INTEGRATOR,
        json={"description": "县政务平台", "enabled": False},
        headers={"If-Match": 'W/"1"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["enabled"] is False and changed.json()["disabled_reason"] == "manual"
    assert changed.headers["ETag"] == 'W/"2"'
    problem(
        await api.request("PATCH", endpoint, INTEGRATOR, json={"enabled": True}, headers={"If-Match": 'W/"1"'}),
        412,
        "stale_version",
    )
    rotated = await api.request("POST", f"{endpoint}/rotate-secret", INTEGRATOR, headers={"If-Match": 'W/"2"'})
    assert rotated.status_code == 200 and rotated.json()["secret"] != created["secret"]
    assert rotated.json()["previous_secret_expires_at"]
    problem(await api.request("DELETE", endpoint, INTEGRATOR, headers={"If-Match": 'W/"2"'}), 412, "stale_version")
    assert (await api.request("DELETE", endpoint, INTEGRATOR, headers={"If-Match": 'W/"3"'})).status_code == 204
    problem(await api.get(endpoint, INTEGRATOR), 404, "not_found")


async def test_who_may_manage_endpoints(api: Api, receiver: Receiver) -> None:
    created = await register(api, receiver.url())
    endpoint = f"{BASE}/endpoints/{created['id']}"
    problem(await api.get(endpoint, OTHER_INTEGRATOR), 404, "not_found")
    assert (await api.get(f"{BASE}/endpoints", OTHER_INTEGRATOR)).json() == []
    assert (await api.get(endpoint, ADMIN)).status_code == 200
    problem(await api.get(f"{BASE}/endpoints", VIEWER), 403, "forbidden")
    problem(
        await api.request("POST", f"{BASE}/endpoints", UNIT_A, json={"url": receiver.url(), "event_types": ["*"]}),
        403,
        "forbidden",
    )
    problem(await api.get(f"{BASE}/log", INTEGRATOR), 403, "forbidden")
    assert (await api.get(f"{BASE}/log", ADMIN)).json()["items"][0]["kind"] == "webhook.endpoint_created"


async def test_invalid_registrations_are_422_with_field_paths(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFECYCLE_WEBHOOKS_ALLOW_PRIVATE", "0")
    response = await api.request(
        "POST", f"{BASE}/endpoints", INTEGRATOR, json={"url": "http://127.0.0.1:8080/x", "event_types": ["proj.*"]}
    )
    body = problem(response, 422, "input.invalid")
    assert [(e["loc"], e["code"]) for e in body["errors"]] == [
        (["body", "url"], "webhook.url_refused"),
        (["body", "event_types", 0], "webhook.event_type_invalid"),
    ]
    problem(
        await api.request(
            "POST", f"{BASE}/endpoints", INTEGRATOR, json={"url": "https://a.example", "event_types": []}
        ),
        422,
        "api.request_invalid",
    )


async def test_ping_deliveries_attempts_and_redelivery(
    api: Api, services: Services, clock: FrozenClock, receiver: Receiver
) -> None:
    created = await register(api, receiver.url())
    endpoint = f"{BASE}/endpoints/{created['id']}"
    receiver.plan("/hook", Reply(500, body=b"not now"))
    ping = await api.request("POST", f"{endpoint}/ping", INTEGRATOR)
    assert ping.status_code == 202 and ping.json()["event_type"] == "webhook.ping"
    assert ping.json()["payload"]["data"]["endpoint_id"] == created["id"]
    await send_due(services, clock)
    clock.advance(timedelta(seconds=5))
    await send_due(services, clock)

    deliveries = (await api.get(f"{endpoint}/deliveries", INTEGRATOR)).json()["items"]
    [delivery] = deliveries
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    attempts = (await api.get(f"{BASE}/deliveries/{delivery['id']}/attempts", INTEGRATOR)).json()
    assert [(a["number"], a["status_code"], a["response_excerpt"]) for a in attempts] == [
        (1, 500, "not now"),
        (2, 200, "ok"),
    ]
    problem(await api.get(f"{BASE}/deliveries/{delivery['id']}", OTHER_INTEGRATOR), 404, "not_found")

    again = await api.request("POST", f"{BASE}/deliveries/{delivery['id']}/redeliver", INTEGRATOR)
    assert again.status_code == 202 and again.json()["redelivery_of"] == delivery["id"]
    await send_due(services, clock)
    webhook = Webhook(str(created["secret"]))
    ids = [webhook.verify(r.body, r.headers)["id"] for r in receiver.at("/hook")]
    assert len(ids) == 3 and len(set(ids)) == 1

    since = (clock.now() - timedelta(hours=1)).isoformat()
    none_failed = await api.request("POST", f"{endpoint}/redeliver", INTEGRATOR, params={"since": since})
    assert none_failed.status_code == 202 and none_failed.json() == {"count": 0, "deliveries": []}


async def test_project_events_reach_the_endpoint_through_the_api(
    api: Api, services: Services, clock: FrozenClock, receiver: Receiver
) -> None:
    created = await register(api, receiver.url(), "project.transitioned")
    project = await api.into_permitting()
    await send_due(services, clock)
    [request] = receiver.at("/hook")
    payload = Webhook(str(created["secret"])).verify(request.body, request.headers)
    assert payload["type"] == "project.transitioned" and payload["project"]["id"] == project["id"]
    history = (await api.get(f"/api/v1/projects/{project['id']}/history")).json()["items"]
    assert payload["id"] == next(e["event_id"] for e in history if e["kind"] == "project.transition")


async def test_event_types_and_payload_models_are_documented(api: Api) -> None:
    types = (await api.get(f"{BASE}/event-types", INTEGRATOR)).json()
    names = {t["type"] for t in types}
    assert {"project.created", "project.updated", "project.transitioned", "task.transitioned", "notice.issued"} <= names
    transitioned = next(t for t in types if t["type"] == "project.transitioned")
    assert transitioned["version"] == 1 and "from_state" in str(transitioned["payload_schema"])
    schemas = (await api.get("/openapi.json", None)).json()["components"]["schemas"]
    assert {"ProjectTransitioned", "NoticeIssued", "TaskTransitioned", "WebhookPing", "GenericEvent"} <= set(schemas)
