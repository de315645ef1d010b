"""Webhooks: endpoint administration, the outbox hook, and the delivery log (use cases).

* :class:`WebhookOutbox` is a :class:`~lifecycle.services.hooks.ChangeHook`: every change of a project calls it
  in the change's own transaction, and it writes one outbox row per event and matching enabled endpoint. A
  change that rolls back leaves no row; a change that commits leaves every row — no event is lost between the
  database and the dispatcher, whoever made the change (a request, the scheduler, the command line).
* :class:`WebhookService` holds the use cases behind ``/api/v1/webhooks``: endpoints (create, list, read,
  change, delete, rotate the secret, ping), deliveries and their attempts, redelivery, and the endpoint log.
  Only ``admin`` and ``integrator`` callers may use them; an integrator sees only the endpoints it created.

The secret is returned once, by :meth:`WebhookService.create_endpoint` and :meth:`WebhookService.rotate_secret`,
and never again: views carry no secret, records keep it out of their ``repr``, nothing logs it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.clock import ensure_utc
from lifecycle.errors import Forbidden, InvalidInput, Location, NotFound, Problem, StaleVersion
from lifecycle.messages import register
from lifecycle.store.webhooks import (
    SUBSCRIPTIONS_READ,
    AttemptRecord,
    DeliveryRecord,
    EndpointRecord,
    LogRecord,
    NewDelivery,
    Subscription,
    WebhookRepository,
    subscriptions_of,
)
from lifecycle.webhooks import events as payloads
from lifecycle.webhooks.config import WebhookSettings
from lifecycle.webhooks.netsafety import AddressRefused, check_registration
from lifecycle.webhooks.signing import generate_secret

from .authz import CallContext, Principal
from .hooks import Change, LockRead, lock_read_value
from .views import Page

if TYPE_CHECKING:
    from .service import Services

register(
    {
        "webhook.url_refused": ("不能向该地址推送：{reason}", "webhooks cannot be sent to this URL: {reason}"),
        "webhook.url_too_long": ("地址过长（上限 2048 个字符）", "the URL is too long (2048 characters at most)"),
        "webhook.event_types_empty": ("至少订阅一种事件", "subscribe to at least one event type"),
        "webhook.event_type_invalid": (
            "事件类型 “{pattern}” 无效：应为 *、类别.* 或 类别.名称，类别为 {categories}",
            "event type '{pattern}' is not valid: use *, category.* or category.name, with a category among "
            "{categories}",
        ),
        "webhook.event_type_admin_only": (
            "只有管理员可以订阅 {pattern}",
            "only administrators may subscribe to {pattern}",
        ),
        "webhook.filter_invalid": (
            "过滤条件 {name} 应为不超过 100 个非空文本的列表",
            "filter {name} must be a list of at most 100 non-empty strings",
        ),
        "webhook.since_in_future": ("since 不能晚于当前时间", "since may not be in the future"),
    }
)

MANAGER_ROLES = frozenset({"admin", "integrator"})
"""Roles that may manage webhook endpoints."""

FILTER_NAMES = ("definition_keys", "units", "project_ids")
"""Optional endpoint filters, each a list: an event matches when every given filter has its value in the list
(units: the project's lead or implementing unit)."""

_TYPE_PATTERN = re.compile(r"^(\*|[a-z][a-z_]*\.(\*|[a-z][a-z_]*))$")

MAX_PAGE = 200


def _where(*path: str | int) -> Location:
    return Location(file="request", line=0, column=0, path=path)


# --- matching ---------------------------------------------------------------------------------------------


def type_matches(pattern: str, event_type: str) -> bool:
    """Whether a subscription pattern (``*``, ``project.*``, ``task.transitioned``) covers ``event_type``.
    ``*`` covers every type except ``webhook.*`` (events about endpoints, which must be asked for by name)."""
    if pattern == "*":
        return not event_type.startswith("webhook.")
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


@dataclass(frozen=True)
class Subject:
    """What the filters of an endpoint look at: the event's project (if any) and definition."""

    definition_key: str | None = None
    project_id: str | None = None
    units: frozenset[str] = frozenset()


def wants(subscription: Subscription, event_type: str, subject: Subject) -> bool:
    """Whether an enabled endpoint's ``subscription`` wants an event of ``event_type`` about ``subject``. A
    filter that the event cannot satisfy (a unit filter on an event without a project) does not match."""
    if not any(type_matches(p, event_type) for p in subscription.event_types):
        return False
    filters = subscription.filters
    keys = filters.get("definition_keys")
    if keys and subject.definition_key not in keys:
        return False
    projects = filters.get("project_ids")
    if projects and subject.project_id not in projects:
        return False
    units = filters.get("units")
    return not (units and subject.units.isdisjoint(units))


# --- the outbox -------------------------------------------------------------------------------------------


_SUBSCRIPTIONS_WITH_LOCK = LockRead("webhook_subscriptions", SUBSCRIPTIONS_READ)


class WebhookOutbox:
    """The change hook writing outbox rows (see the module docstring), and the way to enqueue events that are
    not a project's (workflow published, endpoint disabled)."""

    def __init__(self, max_payload_bytes: int = WebhookSettings.max_payload_bytes) -> None:
        self.max_payload_bytes = max_payload_bytes

    def derive(self, change: Change) -> None:
        """Nothing: the outbox rows are the hook's own (:meth:`write`)."""

    def lock_read(self, dialect: str) -> LockRead | None:
        """On PostgreSQL, the subscriptions are read by the statement that locks the project (no round trip
        of their own). Read a little earlier in the same transaction, they are the same subscriptions a
        read just before writing would give, but for an endpoint changed in the meantime: as with any read,
        an endpoint committed after it is not seen by this change."""
        return _SUBSCRIPTIONS_WITH_LOCK if dialect == "postgresql" else None

    async def write(self, session: AsyncSession, changes: Sequence[Change]) -> None:
        """The outbox rows of every event of ``changes`` for every enabled endpoint that wants it (one read
        of the endpoints, unless the project's lock read them along, and one insert for all the changes)."""
        if not any(change.events for change in changes):
            return
        repository = WebhookRepository(session)
        read_along, value = lock_read_value(session, _SUBSCRIPTIONS_WITH_LOCK.name)
        subscriptions = subscriptions_of(value) if read_along else await repository.subscriptions()
        if not subscriptions:
            return
        rows: list[NewDelivery] = []
        for change in changes:
            rows.extend(self._deliveries(change, subscriptions))
        await repository.enqueue(rows, changes[0].now)

    def _deliveries(self, change: Change, subscriptions: Sequence[Subscription]) -> list[NewDelivery]:
        record = change.record
        subject = Subject(
            definition_key=record.definition_key,
            project_id=record.id,
            units=frozenset(u for u in (record.lead_unit, record.implementing_unit) if u),
        )
        snapshot = payloads.project_snapshot(record, change.definition)
        rows: list[NewDelivery] = []
        for event in change.events:
            event_type = payloads.event_type_of(event.kind)
            wanted = [s.endpoint_id for s in subscriptions if wants(s, event_type, subject)]
            if not wanted:
                continue
            body = payloads.body_of(payloads.project_event(change, event, snapshot), self.max_payload_bytes)
            rows.extend(NewDelivery(e, event.event_id, event_type, record.id, body, change.now) for e in wanted)
        return rows

    async def enqueue_event(
        self,
        session: AsyncSession,
        event_type: str,
        data: BaseModel | dict[str, Any],
        *,
        now: datetime,
        actor: str = "system",
        event_id: str | None = None,
        definition_key: str | None = None,
        only_endpoint: str | None = None,
    ) -> list[DeliveryRecord]:
        """Enqueue an event that is not a project's history event, in the caller's transaction, for every
        enabled endpoint that wants it (or for ``only_endpoint`` alone, whatever it subscribes to: a ping).

        Raises:
            pydantic.ValidationError: ``data`` does not fit the type's payload model.
        """
        ident = event_id or str(uuid.uuid4())
        body = payloads.body_of(payloads.envelope(event_type, ident, now, actor, data), self.max_payload_bytes)
        repository = WebhookRepository(session)
        if only_endpoint is not None:
            targets = [only_endpoint]
        else:
            subject = Subject(definition_key=definition_key)
            targets = [s.endpoint_id for s in await repository.subscriptions() if wants(s, event_type, subject)]
        return [await repository.enqueue_one(NewDelivery(t, ident, event_type, None, body, now), now) for t in targets]


# --- views ------------------------------------------------------------------------------------------------


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class EndpointView(_View):
    """An endpoint as its owner sees it: never its secret."""

    id: str
    owner: str
    url: str
    description: str
    event_types: list[str]
    filters: dict[str, list[str]]
    enabled: bool
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    previous_secret_expires_at: datetime | None = None
    failing_since: datetime | None = None
    last_success_at: datetime | None = None
    version: int
    created_at: datetime
    updated_at: datetime


class DeliveryView(_View):
    """One event for one endpoint: where its sending stands, and the body sent."""

    id: int
    endpoint_id: str
    event_id: str
    event_type: str
    project_id: str | None = None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None = None
    created_at: datetime
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    redelivery_of: int | None = None
    payload: str


class AttemptView(_View):
    """One HTTP attempt of a delivery."""

    id: int
    delivery_id: int
    number: int
    at: datetime
    duration_ms: int
    status_code: int | None = None
    response_excerpt: str | None = None
    error: str | None = None


class LogView(_View):
    """An entry of the endpoint log."""

    id: int
    endpoint_id: str | None = None
    kind: str
    at: datetime
    actor: str
    detail: dict[str, Any]


def _endpoint_view(record: EndpointRecord) -> EndpointView:
    expires = record.previous_secret_expires_at if record.previous_secret else None
    return EndpointView(
        id=record.id,
        owner=record.owner,
        url=record.url,
        description=record.description,
        event_types=list(record.event_types),
        filters={k: list(v) for k, v in record.filters.items()},
        enabled=record.enabled,
        disabled_reason=record.disabled_reason,
        disabled_at=record.disabled_at,
        previous_secret_expires_at=expires,
        failing_since=record.failing_since,
        last_success_at=record.last_success_at,
        version=record.version,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _delivery_view(record: DeliveryRecord) -> DeliveryView:
    return DeliveryView(
        id=record.id,
        endpoint_id=record.endpoint_id,
        event_id=record.event_id,
        event_type=record.event_type,
        project_id=record.project_id,
        status=record.status,  # type: ignore[arg-type]
        attempts=record.attempts,
        next_attempt_at=record.next_attempt_at if record.status == "pending" else None,
        created_at=record.created_at,
        last_attempt_at=record.last_attempt_at,
        last_status_code=record.last_status_code,
        last_error=record.last_error,
        delivered_at=record.delivered_at,
        redelivery_of=record.redelivery_of,
        payload=record.body,
    )


def _attempt_view(record: AttemptRecord) -> AttemptView:
    return AttemptView(**record.__dict__)


def _log_view(record: LogRecord) -> LogView:
    return LogView(**record.__dict__)


# --- inputs -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEndpoint:
    """What a caller gives to create an endpoint."""

    url: str
    event_types: Sequence[str]
    filters: Mapping[str, Sequence[str]] | None = None
    description: str = ""
    enabled: bool = True


@dataclass(frozen=True)
class EndpointChanges:
    """Changes to an endpoint; None leaves an attribute as it is."""

    url: str | None = None
    event_types: Sequence[str] | None = None
    filters: Mapping[str, Sequence[str]] | None = None
    description: str | None = None
    enabled: bool | None = None


def _check_types(principal: Principal, patterns: Sequence[str]) -> list[Problem]:
    problems: list[Problem] = []
    if not patterns:
        problems.append(Problem.of("webhook.event_types_empty", _where("event_types")))
    categories = ", ".join(payloads.CATEGORIES)
    for index, pattern in enumerate(patterns):
        where = _where("event_types", index)
        if not _TYPE_PATTERN.match(pattern) or (pattern != "*" and pattern.split(".")[0] not in payloads.CATEGORIES):
            problems.append(Problem.of("webhook.event_type_invalid", where, pattern=pattern, categories=categories))
        elif pattern.split(".")[0] in payloads.ADMIN_ONLY_CATEGORIES and "admin" not in principal.roles:
            problems.append(Problem.of("webhook.event_type_admin_only", where, pattern=pattern))
    return problems


def _check_filters(filters: Mapping[str, Sequence[str]]) -> list[Problem]:
    problems: list[Problem] = []
    for name, values in filters.items():
        ok = (
            name in FILTER_NAMES
            and isinstance(values, list | tuple)
            and len(values) <= 100
            and all(isinstance(v, str) and 0 < len(v) <= 64 for v in values)
        )
        if not ok:
            problems.append(Problem.of("webhook.filter_invalid", _where("filters", name), name=name))
    return problems


async def _check_url(url: str, allow_private: bool) -> list[Problem]:
    if len(url) > 2048:
        return [Problem.of("webhook.url_too_long", _where("url"))]
    try:
        await check_registration(url, allow_private)
    except AddressRefused as refused:
        return [Problem.of("webhook.url_refused", _where("url"), reason=refused.reason)]
    return []


# --- use cases --------------------------------------------------------------------------------------------


class WebhookService:
    """The webhook use cases; each public coroutine is one transaction.

    Attributes:
        services: the process's :class:`~lifecycle.services.Services` (database, clock).
        settings: delivery settings (address policy, secret overlap, payload limit).
    """

    def __init__(self, services: Services, settings: WebhookSettings | None = None) -> None:
        self.services = services
        self.settings = settings or WebhookSettings.from_env()
        self.outbox = WebhookOutbox(self.settings.max_payload_bytes)

    # --- access ---------------------------------------------------------------------------------------

    @staticmethod
    def _require_manager(principal: Principal, ident: str = "", action: str = "manage") -> None:
        if principal.roles.isdisjoint(MANAGER_ROLES):
            raise Forbidden("webhook_endpoint", ident, action)

    async def _endpoint(
        self, repository: WebhookRepository, principal: Principal, endpoint_id: str, *, for_update: bool = False
    ) -> EndpointRecord:
        self._require_manager(principal, endpoint_id)
        record = await repository.endpoint(endpoint_id, for_update=for_update)
        if record is None or ("admin" not in principal.roles and record.owner != principal.id):
            raise NotFound("webhook_endpoint", endpoint_id)
        return record

    async def _delivery(
        self, repository: WebhookRepository, principal: Principal, delivery_id: int
    ) -> tuple[DeliveryRecord, EndpointRecord]:
        self._require_manager(principal, str(delivery_id))
        delivery = await repository.delivery(delivery_id)
        if delivery is None:
            raise NotFound("webhook_delivery", str(delivery_id))
        try:
            endpoint = await self._endpoint(repository, principal, delivery.endpoint_id)
        except NotFound:
            raise NotFound("webhook_delivery", str(delivery_id)) from None
        return delivery, endpoint

    # --- endpoints ------------------------------------------------------------------------------------

    async def create_endpoint(self, ctx: CallContext, data: NewEndpoint) -> tuple[EndpointView, str]:
        """Register an endpoint; ``(view, secret)`` — the secret is shown only now.

        Raises:
            Forbidden: the caller is neither an integrator nor an administrator.
            InvalidInput: a refused URL, an unknown event type, a bad filter.
        """
        principal = ctx.principal
        self._require_manager(principal, "", "create")
        filters = {k: list(v) for k, v in (data.filters or {}).items() if v}
        problems = [
            *(await _check_url(data.url, self.settings.allow_private)),
            *_check_types(principal, data.event_types),
            *_check_filters(filters),
        ]
        if problems:
            raise InvalidInput(problems)
        now = self.services.now()
        secret = generate_secret()
        async with self.services.database.transaction() as session:
            repository = WebhookRepository(session)
            record = await repository.add_endpoint(
                {
                    "id": str(uuid.uuid4()),
                    "owner": principal.id,
                    "url": data.url,
                    "description": data.description,
                    "event_types": list(dict.fromkeys(data.event_types)),
                    "filters": filters,
                    "enabled": data.enabled,
                    "disabled_reason": None if data.enabled else "manual",
                    "disabled_at": None if data.enabled else now,
                    "secret": secret,
                    "previous_secret": None,
                    "previous_secret_expires_at": None,
                    "failing_since": None,
                    "last_success_at": None,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            await repository.log(record.id, "webhook.endpoint_created", now, principal.id, {"url": data.url})
            return _endpoint_view(record), secret

    async def list_endpoints(self, ctx: CallContext) -> list[EndpointView]:
        """The caller's endpoints (every endpoint, for an administrator).

        Raises:
            Forbidden: not an integrator or administrator.
        """
        principal = ctx.principal
        self._require_manager(principal)
        owner = None if "admin" in principal.roles else principal.id
        async with self.services.database.reader() as session:
            return [_endpoint_view(r) for r in await WebhookRepository(session).endpoints(owner)]

    async def get_endpoint(self, ctx: CallContext, endpoint_id: str) -> EndpointView:
        """One endpoint.

        Raises:
            Forbidden, NotFound (another integrator's endpoint is not found either).
        """
        async with self.services.database.reader() as session:
            return _endpoint_view(await self._endpoint(WebhookRepository(session), ctx.principal, endpoint_id))

    async def update_endpoint(
        self, ctx: CallContext, endpoint_id: str, expected_version: int | None, changes: EndpointChanges
    ) -> EndpointView:
        """Change an endpoint. Enabling a disabled endpoint clears its run of failures; its pending deliveries
        are then sent, in order.

        Raises:
            Forbidden, NotFound, StaleVersion, InvalidInput.
        """
        principal = ctx.principal
        self._require_manager(principal, endpoint_id, "update")
        problems: list[Problem] = []
        if changes.url is not None:
            problems += await _check_url(changes.url, self.settings.allow_private)
        if changes.event_types is not None:
            problems += _check_types(principal, changes.event_types)
        filters = None if changes.filters is None else {k: list(v) for k, v in changes.filters.items() if v}
        if filters is not None:
            problems += _check_filters(filters)
        if problems:
            raise InvalidInput(problems)
        now = self.services.now()
        async with self.services.database.transaction() as session:
            repository = WebhookRepository(session)
            record = await self._endpoint(repository, principal, endpoint_id, for_update=True)
            _check_version(endpoint_id, expected_version, record.version)
            values: dict[str, Any] = {"updated_at": now}
            if changes.url is not None:
                values["url"] = changes.url
            if changes.event_types is not None:
                values["event_types"] = list(dict.fromkeys(changes.event_types))
            if filters is not None:
                values["filters"] = filters
            if changes.description is not None:
                values["description"] = changes.description
            if changes.enabled is not None and changes.enabled != record.enabled:
                values["enabled"] = changes.enabled
                if changes.enabled:
                    values.update(disabled_reason=None, disabled_at=None, failing_since=None)
                else:
                    values.update(disabled_reason="manual", disabled_at=now)
                kind = "webhook.endpoint_enabled" if changes.enabled else "webhook.endpoint_disabled"
                detail = {} if changes.enabled else {"reason": "manual"}
                await repository.log(endpoint_id, kind, now, principal.id, detail)
            return _endpoint_view(await repository.update_endpoint(endpoint_id, values))

    async def delete_endpoint(self, ctx: CallContext, endpoint_id: str, expected_version: int | None) -> None:
        """Delete an endpoint with its deliveries and attempts (its log entries stay).

        Raises:
            Forbidden, NotFound, StaleVersion.
        """
        principal = ctx.principal
        now = self.services.now()
        async with self.services.database.transaction() as session:
            repository = WebhookRepository(session)
            record = await self._endpoint(repository, principal, endpoint_id, for_update=True)
            _check_version(endpoint_id, expected_version, record.version)
            await repository.delete_endpoint(endpoint_id)
            await repository.log(endpoint_id, "webhook.endpoint_deleted", now, principal.id, {"url": record.url})

    async def rotate_secret(
        self, ctx: CallContext, endpoint_id: str, expected_version: int | None
    ) -> tuple[EndpointView, str]:
        """A new secret for the endpoint, shown only now; the old one keeps signing (beside the new one) for
        the overlap (24 h), so that the integrator can switch without losing a message.

        Raises:
            Forbidden, NotFound, StaleVersion.
        """
        principal = ctx.principal
        now = self.services.now()
        secret = generate_secret()
        async with self.services.database.transaction() as session:
            repository = WebhookRepository(session)
            record = await self._endpoint(repository, principal, endpoint_id, for_update=True)
            _check_version(endpoint_id, expected_version, record.version)
            expires = now + self.settings.secret_overlap
            updated = await repository.update_endpoint(
                endpoint_id,
                {
                    "secret": secret,
                    "previous_secret": record.secret,
                    "previous_secret_expires_at": expires,
                    "updated_at": now,
                },
            )
            await repository.log(
                endpoint_id, "webhook.secret_rotated", now, principal.id, {"previous_valid_until": expires.isoformat()}
            )
            return _endpoint_view(updated), secret

    async def ping(self, ctx: CallContext, endpoint_id: str) -> DeliveryView:
        """Queue a ``webhook.ping`` message for the endpoint, delivered (signed, retried) like any event.

        Raises:
            Forbidden, NotFound.
        """
        principal = ctx.principal
        now = self.services.now()
        async with self.services.database.transaction() as session:
            await self._endpoint(WebhookRepository(session), principal, endpoint_id)
            data = payloads.PingData(endpoint_id=endpoint_id, message="ping from lifecycle")
            rows = await self.outbox.enqueue_event(
                session, "webhook.ping", data, now=now, actor=principal.id, only_endpoint=endpoint_id
            )
            return _delivery_view(rows[0])

    # --- deliveries -----------------------------------------------------------------------------------

    async def list_deliveries(
        self,
        ctx: CallContext,
        endpoint_id: str,
        *,
        status: str | None = None,
        event_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[DeliveryView]:
        """An endpoint's deliveries, newest first; ``next_cursor`` continues the list.

        Raises:
            Forbidden, NotFound, InvalidInput (bad cursor or limit).
        """
        before = _cursor(cursor)
        _check_limit(limit)
        async with self.services.database.reader() as session:
            repository = WebhookRepository(session)
            await self._endpoint(repository, ctx.principal, endpoint_id)
            rows = await repository.deliveries(
                endpoint_id, status=status, event_id=event_id, before_id=before, limit=limit + 1
            )
        page = rows[:limit]
        more = len(rows) > limit
        return Page[DeliveryView](
            items=[_delivery_view(r) for r in page], next_cursor=str(page[-1].id) if more and page else None
        )

    async def get_delivery(self, ctx: CallContext, delivery_id: int) -> DeliveryView:
        """One delivery.

        Raises:
            Forbidden, NotFound.
        """
        async with self.services.database.reader() as session:
            delivery, _ = await self._delivery(WebhookRepository(session), ctx.principal, delivery_id)
            return _delivery_view(delivery)

    async def attempts(self, ctx: CallContext, delivery_id: int) -> list[AttemptView]:
        """Every attempt of a delivery, oldest first.

        Raises:
            Forbidden, NotFound.
        """
        async with self.services.database.reader() as session:
            repository = WebhookRepository(session)
            await self._delivery(repository, ctx.principal, delivery_id)
            return [_attempt_view(a) for a in await repository.attempts(delivery_id)]

    async def redeliver(self, ctx: CallContext, delivery_id: int) -> DeliveryView:
        """Send a delivery's event again (same ``webhook-id``, same body), as a new delivery due now.

        Raises:
            Forbidden, NotFound.
        """
        now = self.services.now()
        async with self.services.database.transaction() as session:
            repository = WebhookRepository(session)
            delivery, _ = await self._delivery(repository, ctx.principal, delivery_id)
            again = await repository.enqueue_one(_again(delivery, now), now)
            return _delivery_view(again)

    async def redeliver_failed(self, ctx: CallContext, endpoint_id: str, since: datetime) -> list[DeliveryView]:
        """Send again every failed delivery of the endpoint created since ``since`` that has not been sent again
        yet; the new deliveries.

        Raises:
            Forbidden, NotFound, InvalidInput (``since`` in the future).
        """
        now = self.services.now()
        since = ensure_utc(since)
        if since > now:
            raise InvalidInput([Problem.of("webhook.since_in_future", _where("since"))])
        async with self.services.database.transaction() as session:
            repository = WebhookRepository(session)
            await self._endpoint(repository, ctx.principal, endpoint_id)
            failed = await repository.failed_since(endpoint_id, since)
            return [_delivery_view(await repository.enqueue_one(_again(d, now), now)) for d in failed]

    async def log(
        self, ctx: CallContext, endpoint_id: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page[LogView]:
        """The endpoint log (created, secret rotated, disabled…), newest first. Administrators only.

        Raises:
            Forbidden: not an administrator.
        """
        if "admin" not in ctx.principal.roles:
            raise Forbidden("webhook_log", endpoint_id or "*", "read")
        before = _cursor(cursor)
        _check_limit(limit)
        async with self.services.database.reader() as session:
            rows = await WebhookRepository(session).log_entries(endpoint_id, before_id=before, limit=limit + 1)
        page = rows[:limit]
        more = len(rows) > limit
        return Page[LogView](
            items=[_log_view(r) for r in page], next_cursor=str(page[-1].id) if more and page else None
        )


def _again(delivery: DeliveryRecord, now: datetime) -> NewDelivery:
    return NewDelivery(
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        project_id=delivery.project_id,
        body=delivery.body,
        next_attempt_at=now,
        redelivery_of=delivery.id,
    )


def _check_version(endpoint_id: str, expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        raise StaleVersion("webhook_endpoint", endpoint_id, str(expected), str(actual))


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput([Problem.of("page.limit", _where("limit"), max=MAX_PAGE)])


def _cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    if not cursor.isdigit() or len(cursor) > 18:
        raise InvalidInput([Problem.of("page.cursor", _where("cursor"))])
    return int(cursor)
