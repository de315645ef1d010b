"""Webhook delivery end to end, on SQLite and PostgreSQL, to a real HTTP receiver on 127.0.0.1: the outbox
written with each change, signatures checked by the independent ``standardwebhooks`` package, retries after
500s and timeouts, Retry-After, 410, per-project order, redelivery, disabling, secret rotation."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from lifecycle.clock import FrozenClock
from lifecycle.errors import InvalidInput
from lifecycle.services import ProjectView, Services
from lifecycle.services.hooks import Change
from lifecycle.services.webhooks import EndpointChanges, NewEndpoint, WebhookService
from lifecycle.webhooks.config import RETRY_SCHEDULE, WebhookSettings
from lifecycle.webhooks.dispatcher import Dispatcher
from tests.services.conftest import DISPATCHER, PLANNING, UNIT_A, UNIT_B, new_project_data

from .conftest import ADMIN, INTEGRATOR, as_, subscribe
from .receiver import Received, Receiver, Reply

pytestmark = pytest.mark.anyio


async def create(services: Services, **overrides: object) -> ProjectView:
    return await services.create_project(as_(UNIT_A), new_project_data(**overrides))


async def into_permitting(services: Services, project: ProjectView) -> ProjectView:
    data = {"approval_no": "巫发改〔2026〕1号"}
    return await services.fire(as_(UNIT_A), project.id, project.version, "start_permitting", data)


async def history_ids(services: Services, project_id: str) -> list[str]:
    page = await services.history(as_(DISPATCHER), project_id, 0, 200)
    return [e.event_id for e in page.items]


def verify(secret: str, request: Received) -> dict[str, object]:
    """Check the signature with the standardwebhooks package; the payload."""
    payload: dict[str, object] = Webhook(secret).verify(request.body, request.headers)
    return payload


# --- the outbox and the payloads ----------------------------------------------------------------------------


async def test_changes_are_delivered_signed_in_order_with_their_history_ids(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    endpoint_id, secret = await subscribe(hooks, receiver.url())
    project = await create(services, code="2026-500237-48-01-00001A")
    project = await into_permitting(services, project)

    assert await dispatcher.run_until_idle() == len(receiver.received)
    got = receiver.at("/hook")
    payloads = [verify(secret, r) for r in got]
    # One message per history event, in the history's order, each with the event id as webhook-id.
    assert [r.webhook_id for r in got] == await history_ids(services, project.id)
    assert [p["id"] for p in payloads] == [r.webhook_id for r in got]
    types = [p["type"] for p in payloads]
    assert types[:2] == ["project.created", "project.transitioned"] and set(types[2:]) == {"task.opened"}

    moved = payloads[1]
    assert moved["version"] == 1 and moved["actor"] == UNIT_A.id
    data = moved["data"]
    assert isinstance(data, dict)
    assert data["trigger"] == "start_permitting"
    assert data["from_state"]["id"] == "draft" and data["to_state"]["id"] == "permitting"
    assert data["to_state"]["title"]  # titles travel with ids: no call back needed
    snapshot = moved["project"]
    assert isinstance(snapshot, dict)
    assert snapshot["code"] == "2026-500237-48-01-00001A" and snapshot["state"]["id"] == "permitting"
    assert snapshot["definition_key"] == "mini" and snapshot["definition_version"] == 1
    opened = payloads[2]["data"]
    assert isinstance(opened, dict) and opened["task"]["department"] and opened["task"]["item_title"]

    page = await hooks.list_deliveries(as_(INTEGRATOR), endpoint_id)
    assert {d.status for d in page.items} == {"delivered"}
    attempts = await hooks.attempts(as_(INTEGRATOR), page.items[0].id)
    assert [(a.number, a.status_code, a.response_excerpt) for a in attempts] == [(1, 200, "ok")]


async def test_a_notice_event_carries_the_missing_list_and_cure_date(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    _, secret = await subscribe(hooks, receiver.url(), "notice.*")
    project = await into_permitting(services, await create(services))
    task = "permits.planning_permit"
    view = await services.fire_task(as_(UNIT_A), project.id, task, 1, "submit")
    await services.fire_task(
        as_(PLANNING), project.id, task, view.version, "accept_with_deficiencies", {"missing": ["photos"]}
    )
    await dispatcher.run_until_idle()
    [request] = receiver.at("/hook")
    payload = verify(secret, request)
    assert payload["type"] == "notice.issued"
    data = payload["data"]
    assert isinstance(data, dict)
    assert [m["id"] for m in data["notice"]["missing"]] == ["photos"] and data["notice"]["missing"][0]["title"]
    assert data["notice"]["cure_date"] and data["task"]["id"] == task and data["task"]["department"]


async def test_a_change_that_rolls_back_leaves_no_delivery(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    endpoint_id, _ = await subscribe(hooks, receiver.url())

    class FailAfterTheOutbox:
        def derive(self, change: Change) -> None:
            pass

        async def write(self, session: object, changes: Sequence[Change]) -> None:
            raise RuntimeError("a later hook fails: the whole change rolls back")

    fail_after_the_outbox = FailAfterTheOutbox()
    services.hooks.append(fail_after_the_outbox)
    with pytest.raises(RuntimeError):
        await create(services)
    services.hooks.remove(fail_after_the_outbox)

    assert (await hooks.list_deliveries(as_(INTEGRATOR), endpoint_id)).items == []
    assert await dispatcher.run_until_idle() == 0 and receiver.received == []


async def test_patterns_and_filters_choose_the_endpoints(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    await subscribe(hooks, receiver.url("/tasks"), "task.*", definition_keys=["mini"])
    await subscribe(hooks, receiver.url("/b-only"), "project.*", units=["unit_b"])
    await subscribe(hooks, receiver.url("/transitions"), "project.transitioned")
    await subscribe(hooks, receiver.url("/other-key"), "*", definition_keys=["major-project"])
    await into_permitting(services, await create(services))
    await create(services, implementing_unit="unit_b", lead_unit="unit_a")
    await dispatcher.run_until_idle()

    assert {r.json["type"] for r in receiver.at("/tasks")} == {"task.opened"}
    assert [r.json["type"] for r in receiver.at("/transitions")] == ["project.transitioned"]
    assert [r.json["type"] for r in receiver.at("/b-only")] == ["project.created"]
    assert receiver.at("/other-key") == []


async def test_unknown_event_types_and_private_addresses_are_refused(services: Services) -> None:
    strict = WebhookService(services, WebhookSettings(allow_private=False))
    for url in (
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "ftp://example.org/hook",
        "http://user:pw@example.org/hook",
    ):
        with pytest.raises(InvalidInput) as refused:
            await strict.create_endpoint(as_(INTEGRATOR), NewEndpoint(url=url, event_types=["*"]))
        assert [p.code for p in refused.value.problems()] == ["webhook.url_refused"], url
    with pytest.raises(InvalidInput) as bad:
        await strict.create_endpoint(
            as_(INTEGRATOR), NewEndpoint(url="http://93.184.216.34/", event_types=["projekt.*", "webhook.*"])
        )
    assert [p.code for p in bad.value.problems()] == ["webhook.event_type_invalid", "webhook.event_type_admin_only"]


# --- retries -----------------------------------------------------------------------------------------------


async def test_500s_are_retried_on_schedule_with_the_same_webhook_id(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver, clock: FrozenClock
) -> None:
    endpoint_id, secret = await subscribe(hooks, receiver.url())
    receiver.plan("/hook", Reply(500, body=b"boom"), Reply(502), Reply(200))
    await create(services)

    assert await dispatcher.run_until_idle() == 1
    [delivery] = (await hooks.list_deliveries(as_(INTEGRATOR), endpoint_id)).items
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=RETRY_SCHEDULE[1])
    assert await dispatcher.run_until_idle() == 0  # not due yet

    clock.advance(timedelta(seconds=5))
    assert await dispatcher.run_until_idle() == 1
    delivery = await hooks.get_delivery(as_(INTEGRATOR), delivery.id)
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=RETRY_SCHEDULE[2])

    clock.advance(timedelta(minutes=5))
    assert await dispatcher.run_until_idle() == 1
    delivery = await hooks.get_delivery(as_(INTEGRATOR), delivery.id)
    assert delivery.status == "delivered" and delivery.attempts == 3
    got = receiver.at("/hook")
    assert len({r.webhook_id for r in got}) == 1 and len(got) == 3
    for request in got:
        verify(secret, request)  # each attempt is signed afresh
    attempts = await hooks.attempts(as_(INTEGRATOR), delivery.id)
    assert [(a.status_code, a.response_excerpt) for a in attempts] == [(500, "boom"), (502, "ok"), (200, "ok")]
    assert attempts[0].error == "HTTP 500" and attempts[2].error is None


async def test_a_timeout_is_a_failed_attempt(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver, clock: FrozenClock
) -> None:
    endpoint_id, _ = await subscribe(hooks, receiver.url())
    receiver.plan("/hook", Reply(200, delay=1.5))
    await create(services)
    await dispatcher.run_until_idle()
    [delivery] = (await hooks.list_deliveries(as_(INTEGRATOR), endpoint_id)).items
    assert delivery.status == "pending" and delivery.last_status_code is None
    [attempt] = await hooks.attempts(as_(INTEGRATOR), delivery.id)
    assert attempt.error is not None and attempt.error.startswith("timeout") and attempt.duration_ms < 1400
    clock.advance(timedelta(seconds=5))
    await dispatcher.run_until_idle()
    assert (await hooks.get_delivery(as_(INTEGRATOR), delivery.id)).status == "delivered"


async def test_retry_after_is_honoured_in_seconds_and_as_a_date(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver, clock: FrozenClock
) -> None:
    endpoint_id, _ = await subscribe(hooks, receiver.url())
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    receiver.plan("/hook", Reply(503, {"Retry-After": "120"}), Reply(429, {"Retry-After": later}))
    await create(services)
    await dispatcher.run_until_idle()
    [delivery] = (await hooks.list_deliveries(as_(INTEGRATOR), endpoint_id)).items
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=120)

    clock.advance(timedelta(seconds=120))
    await dispatcher.run_until_idle()
    delivery = await hooks.get_delivery(as_(INTEGRATOR), delivery.id)
    assert delivery.next_attempt_at is not None
    wait = (delivery.next_attempt_at - clock.now()).total_seconds()
    assert 3590 <= wait <= 3601


async def test_the_schedule_ends_in_failure_after_eight_attempts(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver, clock: FrozenClock
) -> None:
    endpoint_id, _ = await subscribe(hooks, receiver.url())
    receiver.decide("/hook", lambda request: Reply(500))
    await create(services)
    for delay in [*RETRY_SCHEDULE[1:], 0]:
        assert await dispatcher.run_until_idle() == 1
        clock.advance(timedelta(seconds=delay))
    [delivery] = (await hooks.list_deliveries(as_(INTEGRATOR), endpoint_id)).items
    assert delivery.status == "failed" and delivery.attempts == len(RETRY_SCHEDULE) == 8
    assert delivery.last_error is not None and "gave up after 8 attempts" in delivery.last_error
    clock.advance(timedelta(days=1))
    assert await dispatcher.run_until_idle() == 0


def test_retry_delays_have_jitter_within_bounds() -> None:
    from lifecycle.store import Database

    sender = Dispatcher(Database("sqlite+aiosqlite:///:memory:"), settings=WebhookSettings(jitter=0.1))
    delays = {sender.next_delay(3) for _ in range(50)}
    assert len(delays) > 1
    assert all(timedelta(minutes=27) <= d <= timedelta(minutes=33) for d in delays if d is not None)
    assert sender.next_delay(8) is None


# --- 410, disabling, order -----------------------------------------------------------------------------------


async def test_410_gone_disables_the_endpoint_and_reenabling_resumes(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    endpoint_id, _ = await subscribe(hooks, receiver.url())
    receiver.plan("/hook", Reply(410))
    project = await create(services)
    await dispatcher.run_until_idle()
    endpoint = await hooks.get_endpoint(as_(INTEGRATOR), endpoint_id)
    assert not endpoint.enabled and endpoint.disabled_reason == "gone"
    [gone] = (await hooks.list_deliveries(as_(INTEGRATOR), endpoint_id)).items
    assert gone.status == "failed" and gone.last_status_code == 410
    log = await hooks.log(as_(ADMIN), endpoint_id)
    assert log.items[0].kind == "webhook.endpoint_disabled" and log.items[0].detail["reason"] == "gone"

    await into_permitting(services, project)  # a disabled endpoint gets no new rows
    assert len((await hooks.list_deliveries(as_(INTEGRATOR), endpoint_id)).items) == 1

    await hooks.update_endpoint(as_(INTEGRATOR), endpoint_id, endpoint.version, EndpointChanges(enabled=True))
    await hooks.redeliver(as_(INTEGRATOR), gone.id)
    await dispatcher.run_until_idle()
    assert [r.webhook_id for r in receiver.at("/hook")] == [gone.event_id, gone.event_id]


async def test_an_endpoint_failing_for_five_days_is_disabled_and_says_so(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver, clock: FrozenClock
) -> None:
    endpoint_id, _ = await subscribe(hooks, receiver.url("/down"))
    _, admin_secret = await subscribe(hooks, receiver.url("/ops"), "webhook.endpoint_disabled", by=ADMIN)
    receiver.decide("/down", lambda request: Reply(500))
    await create(services)
    await dispatcher.run_until_idle()
    failing = await hooks.get_endpoint(as_(INTEGRATOR), endpoint_id)
    assert failing.enabled and failing.failing_since == clock.now()

    clock.advance(timedelta(days=4, hours=23))
    await dispatcher.run_until_idle()
    assert (await hooks.get_endpoint(as_(INTEGRATOR), endpoint_id)).enabled
    clock.advance(timedelta(hours=1))
    await hooks.ping(as_(INTEGRATOR), endpoint_id)
    await dispatcher.run_until_idle()

    endpoint = await hooks.get_endpoint(as_(INTEGRATOR), endpoint_id)
    assert not endpoint.enabled and endpoint.disabled_reason == "failing"
    kinds = [e.kind for e in (await hooks.log(as_(ADMIN))).items]
    assert "webhook.endpoint_disabled" in kinds
    [notice] = receiver.at("/ops")
    payload = verify(admin_secret, notice)
    assert payload["type"] == "webhook.endpoint_disabled"
    assert payload["data"] == {
        "endpoint_id": endpoint_id,
        "owner": INTEGRATOR.id,
        "reason": "failing",
        "failing_since": failing.failing_since.isoformat().replace("+00:00", "Z") if failing.failing_since else None,
    }


async def test_events_of_one_project_arrive_in_order_while_others_go_on(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver, clock: FrozenClock
) -> None:
    await subscribe(hooks, receiver.url())
    first = await create(services)
    failed_once: set[str] = set()

    def fail_first_project_once(request: Received) -> Reply | None:
        payload = request.json
        if payload["project"]["id"] == first.id and payload["type"] == "project.created" and not failed_once:
            failed_once.add(request.webhook_id)
            return Reply(500)
        return None

    receiver.decide("/hook", fail_first_project_once)
    await into_permitting(services, first)
    other = await into_permitting(services, await create(services, lead_unit="unit_a"))
    await dispatcher.run_until_idle()

    by_project: dict[str, list[str]] = {}
    for request in receiver.at("/hook"):
        by_project.setdefault(request.json["project"]["id"], []).append(request.webhook_id)
    # The first project's later events wait behind its failed first event; the other project goes on.
    assert by_project[first.id] == [next(iter(failed_once))]
    assert by_project[other.id] == await history_ids(services, other.id)

    clock.advance(timedelta(seconds=5))
    await dispatcher.run_until_idle()
    delivered = [r.webhook_id for r in receiver.at("/hook") if r.json["project"]["id"] == first.id]
    assert delivered[1:] == await history_ids(services, first.id)


async def test_two_dispatchers_share_the_outbox_without_sending_anything_twice(
    services: Services, hooks: WebhookService, receiver: Receiver, clock: FrozenClock, webhook_settings: WebhookSettings
) -> None:
    await subscribe(hooks, receiver.url())
    projects = [await create(services) for _ in range(12)]
    settings = WebhookSettings(allow_private=True, timeout_seconds=2, lease_seconds=30, batch_size=4)
    senders = [Dispatcher(services.database, clock=clock, settings=settings, worker_id=f"w{i}") for i in range(2)]
    receiver.decide("/hook", lambda request: Reply(200, delay=0.05))
    try:
        await asyncio.gather(*(s.run_until_idle() for s in senders))
    finally:
        for sender in senders:
            await sender.aclose()
    ids = [r.webhook_id for r in receiver.at("/hook")]
    assert len(ids) == len(set(ids)) == len(projects)


# --- redelivery, rotation, ping ----------------------------------------------------------------------------


async def test_redeliver_one_and_every_failed_one_since(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver, clock: FrozenClock
) -> None:
    endpoint_id, secret = await subscribe(hooks, receiver.url())
    await create(services)
    await dispatcher.run_until_idle()
    [done] = (await hooks.list_deliveries(as_(INTEGRATOR), endpoint_id)).items
    again = await hooks.redeliver(as_(INTEGRATOR), done.id)
    assert again.redelivery_of == done.id and again.event_id == done.event_id and again.payload == done.payload
    await dispatcher.run_until_idle()
    first, second = receiver.at("/hook")
    assert first.webhook_id == second.webhook_id and first.body == second.body
    verify(secret, second)

    # Two events fail for good (410 disables; re-enable), then both are sent again with one call.
    start = clock.now()
    receiver.plan("/hook", Reply(410))
    await create(services)
    await dispatcher.run_until_idle()
    endpoint = await hooks.get_endpoint(as_(INTEGRATOR), endpoint_id)
    await hooks.update_endpoint(as_(INTEGRATOR), endpoint_id, endpoint.version, EndpointChanges(enabled=True))
    redone = await hooks.redeliver_failed(as_(INTEGRATOR), endpoint_id, start)
    assert [d.redelivery_of for d in redone] != [] and all(d.status == "pending" for d in redone)
    assert await hooks.redeliver_failed(as_(INTEGRATOR), endpoint_id, start) == []  # not twice
    await dispatcher.run_until_idle()
    assert receiver.at("/hook")[-1].webhook_id == redone[0].event_id


async def test_a_rotated_secret_signs_beside_the_old_one_for_24_hours(
    services: Services, hooks: WebhookService, dispatcher: Dispatcher, receiver: Receiver, clock: FrozenClock
) -> None:
    endpoint_id, old = await subscribe(hooks, receiver.url())
    endpoint = await hooks.get_endpoint(as_(INTEGRATOR), endpoint_id)
    rotated, new = await hooks.rotate_secret(as_(INTEGRATOR), endpoint_id, endpoint.version)
    assert new != old and new.startswith("whsec_")
    assert rotated.previous_secret_expires_at == clock.now() + timedelta(hours=24)
    assert "whsec_" not in rotated.model_dump_json()

    ping = await hooks.ping(as_(INTEGRATOR), endpoint_id)
    assert ping.event_type == "webhook.ping"
    await dispatcher.run_until_idle()
    [during] = receiver.at("/hook")
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verify(old, during)["type"] == "webhook.ping" and verify(new, during)["type"] == "webhook.ping"

    clock.advance(timedelta(hours=24, seconds=1))
    await hooks.ping(as_(INTEGRATOR), endpoint_id)
    await dispatcher.run_until_idle()
    after = receiver.at("/hook")[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    verify(new, after)
    with pytest.raises(WebhookVerificationError):
        verify(old, after)


async def test_the_address_is_checked_again_at_send_time(
    services: Services, hooks: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    # Registered while allowed (as a name re-pointed to 127.0.0.1 after registration would be): refused at send.
    endpoint_id, _ = await subscribe(hooks, receiver.url())
    await create(services)
    strict = Dispatcher(services.database, clock=clock, settings=WebhookSettings(allow_private=False))
    try:
        await strict.run_until_idle()
    finally:
        await strict.aclose()
    assert receiver.received == []
    [delivery] = (await hooks.list_deliveries(as_(INTEGRATOR), endpoint_id)).items
    [attempt] = await hooks.attempts(as_(INTEGRATOR), delivery.id)
    assert attempt.status_code is None and attempt.error is not None and "address refused" in attempt.error


async def test_integrators_see_only_their_own_endpoints(services: Services, hooks: WebhookService) -> None:
    from lifecycle.errors import Forbidden, NotFound

    endpoint_id, _ = await subscribe(hooks, "http://127.0.0.1:9/x")
    other = type(INTEGRATOR)("other-system", "其他系统", roles=frozenset({"integrator"}))
    with pytest.raises(NotFound):
        await hooks.get_endpoint(as_(other), endpoint_id)
    assert await hooks.list_endpoints(as_(other)) == []
    assert [e.id for e in await hooks.list_endpoints(as_(ADMIN))] == [endpoint_id]
    with pytest.raises(Forbidden):
        await hooks.list_endpoints(as_(UNIT_B))
    with pytest.raises(Forbidden):
        await hooks.log(as_(INTEGRATOR))


# --- running inside the service, payload size ----------------------------------------------------------------


async def test_start_dispatcher_sends_in_the_background_until_stopped(
    services: Services, hooks: WebhookService, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lifecycle.settings import Settings
    from lifecycle.webhooks import start_dispatcher

    monkeypatch.setenv("LIFECYCLE_WEBHOOKS_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("LIFECYCLE_WEBHOOKS_POLL_SECONDS", "0.02")
    await subscribe(hooks, receiver.url())
    handle = await start_dispatcher(services, Settings(database_url=services.database.url))
    try:
        project = await create(services)
        for _ in range(250):  # the background task runs in this loop: give it turns
            if receiver.received:
                break
            await asyncio.sleep(0.02)
    finally:
        await handle.stop()
    assert [r.json["project"]["id"] for r in receiver.received] == [project.id]


def test_a_payload_over_the_limit_is_trimmed_to_a_pointer() -> None:
    from datetime import UTC, datetime

    from lifecycle.webhooks import events

    data = events.GenericData(subject_kind="project", subject_id="p", details={"text": "字" * 2000})
    payload = events.envelope("escalation.fired", "e1", datetime(2026, 3, 2, tzinfo=UTC), "system", data)
    assert '"truncated":false' in events.body_of(payload, 256 * 1024)
    trimmed = events.body_of(payload, 1024)
    assert len(trimmed.encode()) <= 1024
    assert (
        '"truncated":true' in trimmed and '"data":null' in trimmed and '"href":"/api/v1/webhooks/deliveries"' in trimmed
    )
