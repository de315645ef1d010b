"""Values a change hook needs, read by the statement that locks the project (:class:`~lifecycle.services.hooks.
LockRead`): :meth:`ProjectRepository.lock_reading`, the webhook subscriptions read along on PostgreSQL
(:data:`~lifecycle.store.webhooks.SUBSCRIPTIONS_READ`), hooks added after the services were built, and the
round trip it saves (the statements one transition sends, counted on the driver connection)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.clock import FrozenClock
from lifecycle.services import ProjectView, Services
from lifecycle.services.hooks import LOCK_READS, Change, LockRead, lock_read_value
from lifecycle.services.webhooks import EndpointChanges, NewEndpoint, WebhookOutbox, WebhookService
from lifecycle.store.models import events, projects
from lifecycle.store.models_webhooks import webhook_deliveries
from lifecycle.store.projects import ProjectRepository, _lock_statement
from lifecycle.store.webhooks import SUBSCRIPTIONS_READ, Subscription, WebhookRepository, subscriptions_of
from lifecycle.webhooks.config import WebhookSettings
from tests.webhooks.conftest import INTEGRATOR

from .conftest import DISPATCHER, UNIT_A, as_, into_permitting, new_project_data

pytestmark = pytest.mark.anyio

ONLY_POSTGRESQL = pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)], indirect=True
)
"""Tests of what only PostgreSQL does (the lock reads along; other transactions run while one waits)."""

SUBSCRIPTIONS = "webhook_subscriptions"
"""The name the outbox's read along goes by (:func:`lock_read_value`)."""

EVENT_COUNT = select(func.count()).select_from(events).where(events.c.project_id == projects.c.id).scalar_subquery()
"""A portable scalar subquery, correlated with the locked project: how many events it has."""

PROJECT_COUNT = select(func.count()).select_from(projects.alias("every_project")).scalar_subquery()
"""A portable scalar subquery, not correlated: how many projects there are."""

WEBHOOK_TYPES = {"project.transition": "project.transitioned", "task.opened": "task.opened"}


# --- helpers ------------------------------------------------------------------------------------------------


@pytest.fixture
def hooks(services: Services) -> WebhookService:
    """The webhook use cases (127.0.0.1 allowed: nothing is sent in these tests)."""
    return WebhookService(services, WebhookSettings(allow_private=True))


async def endpoint(hooks: WebhookService, name: str, *types: str, enabled: bool = True, **filters: list[str]) -> str:
    view, _ = await hooks.create_endpoint(
        as_(INTEGRATOR),
        NewEndpoint(url=f"http://127.0.0.1:9/{name}", event_types=types or ("*",), filters=filters, enabled=enabled),
    )
    return view.id


async def create(services: Services, **overrides: Any) -> ProjectView:
    return await services.create_project(as_(UNIT_A), new_project_data(**overrides))


@dataclass(frozen=True)
class Delivery:
    endpoint_id: str
    event_type: str
    event_id: str
    project_id: str | None


async def deliveries(services: Services) -> list[Delivery]:
    """Every outbox row, in id order."""
    columns = webhook_deliveries.c
    query = select(columns.endpoint_id, columns.event_type, columns.event_id, columns.project_id).order_by(columns.id)
    async with services.database.reader() as session:
        return [Delivery(*row) for row in (await session.execute(query)).all()]


async def event_ids_after(services: Services, project_id: str, seq: int) -> list[tuple[str, str]]:
    """(event id, webhook type) of the project's events after ``seq``."""
    page = await services.history(as_(DISPATCHER), project_id, seq, 200)
    return [(e.event_id, WEBHOOK_TYPES.get(e.kind, e.kind)) for e in page.items]


async def last_seq(services: Services, project_id: str) -> int:
    page = await services.history(as_(DISPATCHER), project_id, 0, 200)
    return page.items[-1].seq


def per_endpoint(rows: Sequence[Delivery], names: dict[str, str]) -> dict[str, Counter[str]]:
    """Event types by endpoint name (every name present, empty when it got nothing)."""
    out: dict[str, Counter[str]] = {name: Counter() for name in names.values()}
    for row in rows:
        out[names[row.endpoint_id]][row.event_type] += 1
    return out


class ReadsAlone(WebhookOutbox):
    """The outbox as it was: it reads the subscriptions itself, whatever the database."""

    def lock_read(self, dialect: str) -> LockRead | None:
        return None


def outbox_reading_alone(services: Services) -> None:
    index = next(i for i, hook in enumerate(services.hooks) if isinstance(hook, WebhookOutbox))
    services.hooks[index] = ReadsAlone()


class Observer:
    """A change hook without ``lock_read``: records, in each write, what the lock read along."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.seen: list[dict[str, tuple[bool, Any]]] = []

    def derive(self, change: Change) -> None:
        pass

    async def write(self, session: AsyncSession, changes: Sequence[Change]) -> None:
        self.seen.append({name: lock_read_value(session, name) for name in self.names})


class ReadsAlong(Observer):
    """A change hook with its own :class:`LockRead` (the same object every call)."""

    def __init__(self, name: str, query: Any) -> None:
        super().__init__(name)
        self.read = LockRead(name, query)
        self.asked: list[str] = []

    def lock_read(self, dialect: str) -> LockRead | None:
        self.asked.append(dialect)
        return self.read


# --- ProjectRepository.lock_reading ---------------------------------------------------------------------------


async def test_lock_reading_returns_the_locked_record_and_the_values_read_along(services: Services) -> None:
    project = await into_permitting(services, await create(services))
    await create(services, name="第二个项目")
    history = await services.history(as_(DISPATCHER), project.id, 0, 200)
    async with services.database.transaction() as session:
        repository = ProjectRepository(session)
        locked = await repository.lock(project.id)
        record, values = await repository.lock_reading(project.id, (EVENT_COUNT, PROJECT_COUNT))
    assert locked is not None and record == locked
    assert (record.id, record.version, record.state) == (project.id, 2, "permitting")
    assert values == (len(history.items), 2)


async def test_lock_reading_a_missing_project_is_none_and_no_values(services: Services) -> None:
    await create(services)
    async with services.database.transaction() as session:
        assert await ProjectRepository(session).lock_reading("no-such-project", (EVENT_COUNT, PROJECT_COUNT)) == (
            None,
            (),
        )


def test_the_lock_statement_is_built_once_per_tuple_of_reads() -> None:
    one = _lock_statement((EVENT_COUNT, PROJECT_COUNT))
    assert _lock_statement((EVENT_COUNT, PROJECT_COUNT)) is one  # a new tuple of the same reads
    assert _lock_statement(tuple([EVENT_COUNT, PROJECT_COUNT])) is one
    other_order = _lock_statement((PROJECT_COUNT, EVENT_COUNT))
    assert other_order is not one
    assert _lock_statement((EVENT_COUNT,)) is not one and _lock_statement((EVENT_COUNT,)) is _lock_statement(
        (EVENT_COUNT,)
    )
    # The project row is locked, not the rows the subqueries read.
    sql = str(_lock_statement((SUBSCRIPTIONS_READ,)).compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    assert sql.rstrip().endswith("FOR UPDATE OF projects"), sql
    assert "webhook_endpoints" in sql


@ONLY_POSTGRESQL
async def test_lock_reading_locks_the_project_but_not_what_it_reads(services: Services, hooks: WebhookService) -> None:
    endpoint_id = await endpoint(hooks, "locked")
    project = await create(services)
    nowait = text("SELECT id FROM projects WHERE id = :id FOR UPDATE NOWAIT")
    async with services.database.transaction() as session:
        record, (value,) = await ProjectRepository(session).lock_reading(project.id, (SUBSCRIPTIONS_READ,))
        assert record is not None and [s.endpoint_id for s in subscriptions_of(value)] == [endpoint_id]
        async with services.database.engine.connect() as other:
            await other.execute(text("SET lock_timeout = '2s'"))
            # The endpoint read along is not locked: another transaction changes it at once.
            changed = await other.execute(
                text("UPDATE webhook_endpoints SET description = 'changed' WHERE id = :id"), {"id": endpoint_id}
            )
            assert changed.rowcount == 1
            await other.commit()
            # The project is.
            with pytest.raises(Exception, match="could not obtain lock"):
                await other.execute(nowait, {"id": project.id})
            await other.rollback()


# --- the subscriptions read along ---------------------------------------------------------------------------


async def read_both_ways(services: Services, project_id: str) -> tuple[Any, list[Subscription], list[Subscription]]:
    """In one transaction: the raw value read with the lock, and the subscriptions as the repository reads them."""
    async with services.database.transaction() as session:
        record, (value,) = await ProjectRepository(session).lock_reading(project_id, (SUBSCRIPTIONS_READ,))
        assert record is not None
        return value, subscriptions_of(value), await WebhookRepository(session).subscriptions()


@ONLY_POSTGRESQL
async def test_the_subscriptions_read_along_are_the_repositorys(
    services: Services, hooks: WebhookService, clock: FrozenClock
) -> None:
    project = await create(services)

    value, along, alone = await read_both_ways(services, project.id)
    assert value is None and along == alone == []

    disabled = await endpoint(hooks, "disabled", enabled=False)
    value, along, alone = await read_both_ways(services, project.id)
    assert value is None and along == alone == []

    expected: list[Subscription] = []
    specs: list[tuple[tuple[str, ...], dict[str, list[str]]]] = [
        (("*",), {}),
        (("task.*", "project.transitioned"), {"definition_keys": ["mini"]}),
        (("project.*",), {"units": ["unit_a", "unit_b"], "project_ids": [project.id]}),
        (("notice.issued",), {"definition_keys": ["mini", "major-project"], "units": ["unit_c"]}),
    ]
    for number, (types, filters) in enumerate(specs):
        clock.advance(timedelta(minutes=1))  # creation order, not id order
        view, _ = await hooks.create_endpoint(
            as_(INTEGRATOR), NewEndpoint(url=f"http://127.0.0.1:9/e{number}", event_types=types, filters=filters)
        )
        ident = view.id
        expected.append(Subscription(ident, types, filters))
    clock.advance(timedelta(minutes=1))
    switched_off = await endpoint(hooks, "switched-off", "task.*")
    view = await hooks.get_endpoint(as_(INTEGRATOR), switched_off)
    await hooks.update_endpoint(as_(INTEGRATOR), switched_off, view.version, EndpointChanges(enabled=False))

    value, along, alone = await read_both_ways(services, project.id)
    assert along == alone == expected
    assert all(isinstance(s.endpoint_id, str) and isinstance(s.event_types, tuple) for s in along)
    assert disabled not in {s.endpoint_id for s in along} and switched_off not in {s.endpoint_id for s in along}

    # Endpoints created in the same instant come in id order, both ways.
    for number in range(3):
        await endpoint(hooks, f"same-instant-{number}", "task.opened")
    value, along, alone = await read_both_ways(services, project.id)
    assert along == alone and len(along) == len(expected) + 3
    assert [s.endpoint_id for s in along[-3:]] == sorted(s.endpoint_id for s in along[-3:])


def test_subscriptions_of_nothing_is_empty() -> None:
    assert subscriptions_of(None) == [] and subscriptions_of([]) == []
    assert subscriptions_of([["e1", ["*"], {}], ["e2", None, None]]) == [
        Subscription("e1", ("*",), {}),
        Subscription("e2", (), {}),
    ]


# --- what a transition enqueues ---------------------------------------------------------------------------


async def several_endpoints(hooks: WebhookService, project_id: str) -> dict[str, str]:
    """Endpoints with different patterns and filters, one disabled: endpoint id -> name."""
    names = {
        "all": await endpoint(hooks, "all"),
        "mini-tasks": await endpoint(hooks, "mini-tasks", "task.*", definition_keys=["mini"]),
        "b-transitions": await endpoint(hooks, "b-transitions", "project.transitioned", units=["unit_b"]),
        "this-project": await endpoint(hooks, "this-project", "project.*", project_ids=[project_id]),
        "a-or-c": await endpoint(hooks, "a-or-c", "project.transitioned", "task.opened", units=["unit_a", "unit_c"]),
        "other-key": await endpoint(hooks, "other-key", definition_keys=["major-project"]),
        "disabled": await endpoint(hooks, "disabled", enabled=False),
    }
    return {ident: name for name, ident in names.items()}


EXPECTED_FOR_START_PERMITTING = {
    "all": Counter({"project.transitioned": 1, "task.opened": 2}),
    "mini-tasks": Counter({"task.opened": 2}),
    "b-transitions": Counter(),
    "this-project": Counter({"project.transitioned": 1}),
    "a-or-c": Counter({"project.transitioned": 1, "task.opened": 2}),
    "other-key": Counter(),
    "disabled": Counter(),
}


async def test_a_transition_enqueues_the_deliveries_its_events_want(services: Services, hooks: WebhookService) -> None:
    # The same expectation on SQLite (the outbox reads the endpoints itself) and PostgreSQL (read with the lock).
    project = await create(services)
    names = await several_endpoints(hooks, project.id)
    seq = await last_seq(services, project.id)
    before = len(await deliveries(services))
    await into_permitting(services, project)

    new = (await deliveries(services))[before:]
    assert per_endpoint(new, names) == EXPECTED_FOR_START_PERMITTING
    fired = await event_ids_after(services, project.id, seq)
    assert sorted(t for _, t in fired) == ["project.transitioned", "task.opened", "task.opened"]
    wanted = {
        (name, event_id)
        for event_id, event_type in fired
        for name, types in EXPECTED_FOR_START_PERMITTING.items()
        if types[event_type]
    }
    assert {(names[d.endpoint_id], d.event_id) for d in new} == wanted
    assert {d.project_id for d in new} == {project.id}


async def test_reading_with_the_lock_or_alone_enqueues_the_same_deliveries(
    services: Services, hooks: WebhookService
) -> None:
    along_project, alone_project = await create(services), await create(services, name="另一个项目")
    names = await several_endpoints(hooks, along_project.id)
    observer = Observer(SUBSCRIPTIONS)
    services.hooks.append(observer)

    before = len(await deliveries(services))
    await into_permitting(services, along_project)
    along = (await deliveries(services))[before:]

    outbox_reading_alone(services)
    before = len(await deliveries(services))
    await into_permitting(services, alone_project)
    alone = (await deliveries(services))[before:]

    # On PostgreSQL the first transition's subscriptions came with its lock, the second's did not.
    read_along = services.database.dialect == "postgresql"
    assert [seen[SUBSCRIPTIONS][0] for seen in observer.seen] == [read_along, False]
    # "this-project" filters on the first project only; apart from it, the same rows.
    assert per_endpoint(along, names) == EXPECTED_FOR_START_PERMITTING
    assert per_endpoint(alone, names) == {**EXPECTED_FOR_START_PERMITTING, "this-project": Counter()}
    assert [(d.endpoint_id, d.event_type) for d in along if names[d.endpoint_id] != "this-project"] == [
        (d.endpoint_id, d.event_type) for d in alone
    ]


async def test_endpoints_changed_before_a_transition_are_seen_by_it(services: Services, hooks: WebhookService) -> None:
    kept = await endpoint(hooks, "kept")
    disabled = await endpoint(hooks, "to-disable")
    deleted = await endpoint(hooks, "to-delete")
    project = await create(services)
    assert {d.endpoint_id for d in await deliveries(services)} == {kept, disabled, deleted}  # project.created

    view = await hooks.get_endpoint(as_(INTEGRATOR), disabled)
    await hooks.update_endpoint(as_(INTEGRATOR), disabled, view.version, EndpointChanges(enabled=False))
    view = await hooks.get_endpoint(as_(INTEGRATOR), deleted)
    await hooks.delete_endpoint(as_(INTEGRATOR), deleted, view.version)
    created = await endpoint(hooks, "created")

    seq = await last_seq(services, project.id)
    moved = await into_permitting(services, project)
    fired = {event_id for event_id, _ in await event_ids_after(services, project.id, seq)}
    got: dict[str, set[str]] = {}
    for d in await deliveries(services):
        if d.event_id in fired:
            got.setdefault(d.endpoint_id, set()).add(d.event_id)
    assert got == {kept: fired, created: fired}

    # Enabled again, the endpoint gets the next transition's events (no subscriptions kept from before).
    view = await hooks.get_endpoint(as_(INTEGRATOR), disabled)
    await hooks.update_endpoint(as_(INTEGRATOR), disabled, view.version, EndpointChanges(enabled=True))
    seq = await last_seq(services, project.id)
    await services.fire(as_(DISPATCHER), project.id, moved.version, "hold")
    fired = {event_id for event_id, _ in await event_ids_after(services, project.id, seq)}
    assert fired
    got = {}
    for d in await deliveries(services):
        if d.event_id in fired:
            got.setdefault(d.endpoint_id, set()).add(d.event_id)
    assert got == {kept: fired, created: fired, disabled: fired}


async def test_with_no_endpoint_a_transition_enqueues_nothing(services: Services) -> None:
    observer = Observer(SUBSCRIPTIONS)
    services.hooks.append(observer)
    project = await create(services)
    await into_permitting(services, project)
    assert await deliveries(services) == []
    # Creating reads nothing with a lock; the transition does on PostgreSQL (no enabled endpoint: None).
    expected = (True, None) if services.database.dialect == "postgresql" else (False, None)
    assert [seen[SUBSCRIPTIONS] for seen in observer.seen] == [(False, None), expected]


# --- hooks with and without a read of their own --------------------------------------------------------------


async def test_a_hook_added_after_construction_has_its_value_read_with_the_lock(
    services: Services, hooks: WebhookService
) -> None:
    all_events = await endpoint(hooks, "all")
    project = await create(services)
    reader = ReadsAlong("test.event_count", EVENT_COUNT)
    services.hooks.append(reader)

    moved = await into_permitting(services, project)
    assert reader.asked and set(reader.asked) == {services.database.dialect}
    assert reader.seen == [{"test.event_count": (True, 1)}]  # the project had its creation event only

    count = len((await services.history(as_(DISPATCHER), project.id, 0, 200)).items)
    await services.fire(as_(DISPATCHER), project.id, moved.version, "hold")
    assert reader.seen[-1] == {"test.event_count": (True, count)}
    # The outbox, read with the lock or not, still enqueued every event for the endpoint.
    history = (await services.history(as_(DISPATCHER), project.id, 0, 200)).items
    assert sorted(d.event_id for d in await deliveries(services) if d.endpoint_id == all_events) == sorted(
        e.event_id for e in history
    )


async def test_a_hook_without_lock_read_keeps_working(services: Services, hooks: WebhookService) -> None:
    all_events = await endpoint(hooks, "all")
    plain = Observer(SUBSCRIPTIONS, "test.nothing")

    class DeclinesToRead(Observer):
        def lock_read(self, dialect: str) -> LockRead | None:
            return None

    declines = DeclinesToRead("test.nothing")
    services.hooks.extend([plain, declines])
    project = await create(services)
    await into_permitting(services, project)

    read_along = services.database.dialect == "postgresql"
    assert [seen["test.nothing"] for seen in plain.seen] == [(False, None), (False, None)]
    assert [seen[SUBSCRIPTIONS][0] for seen in plain.seen] == [False, read_along]
    if read_along:
        assert [s.endpoint_id for s in subscriptions_of(plain.seen[1][SUBSCRIPTIONS][1])] == [all_events]
    assert declines.seen == [{"test.nothing": (False, None)}] * 2
    history = (await services.history(as_(DISPATCHER), project.id, 0, 200)).items
    assert len([d for d in await deliveries(services) if d.endpoint_id == all_events]) == len(history)


async def test_a_hook_removed_is_no_longer_read_for(services: Services) -> None:
    project = await create(services)
    reader = ReadsAlong("test.event_count", EVENT_COUNT)
    observer = Observer("test.event_count")
    services.hooks.extend([reader, observer])
    moved = await into_permitting(services, project)
    assert observer.seen == [{"test.event_count": (True, 1)}]

    services.hooks.remove(reader)
    await services.fire(as_(DISPATCHER), project.id, moved.version, "hold")
    assert observer.seen[-1] == {"test.event_count": (False, None)}
    assert len(reader.seen) == 1


async def test_two_hooks_reading_along_each_get_their_own_value(services: Services) -> None:
    await create(services, name="其他")
    project = await create(services)
    counting_events = ReadsAlong("test.event_count", EVENT_COUNT)
    counting_projects = ReadsAlong("test.project_count", PROJECT_COUNT)
    services.hooks.extend([counting_events, counting_projects])
    await into_permitting(services, project)
    assert counting_events.seen == [{"test.event_count": (True, 1)}]
    assert counting_projects.seen == [{"test.project_count": (True, 2)}]


async def test_values_read_along_belong_to_their_own_transaction(services: Services) -> None:
    # A change that locks no project (creating one) sees nothing read along, even right after one that did.
    reader = ReadsAlong("test.event_count", EVENT_COUNT)
    services.hooks.append(reader)
    project = await create(services)
    await into_permitting(services, project)
    await create(services, name="之后创建")
    assert reader.seen == [
        {"test.event_count": (False, None)},
        {"test.event_count": (True, 1)},
        {"test.event_count": (False, None)},
    ]
    async with services.database.transaction() as session:
        assert LOCK_READS not in session.info


# --- the round trip saved -------------------------------------------------------------------------------------


class StatementLog:
    """Every statement sent on the database's connections while active: those the store hands to asyncpg
    directly (asyncpg's query logger on each checked-out connection) and those SQLAlchemy runs."""

    def __init__(self) -> None:
        self.driver: list[str] = []
        self.sqlalchemy: list[str] = []

    def _log(self, record: Any) -> None:
        self.driver.append(record.query)

    def _checkout(self, dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(self._log)

    def _checkin(self, dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is not None:
            dbapi_connection.driver_connection.remove_query_logger(self._log)

    def _execute(self, _connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sqlalchemy.append(statement)

    @contextmanager
    def listening(self, services: Services) -> Iterator[None]:
        engine = services.database.engine.sync_engine
        listeners: list[tuple[str, Callable[..., None]]] = [
            ("checkout", self._checkout),
            ("checkin", self._checkin),
            ("before_cursor_execute", self._execute),
        ]
        for name, listener in listeners:
            event.listen(engine, name, listener)
        try:
            yield
        finally:
            for name, listener in listeners:
                event.remove(engine, name, listener)

    def inside_transaction(self) -> list[str]:
        statements = self.driver + self.sqlalchemy
        ends = [s for s in statements if s.strip().upper() in ("BEGIN", "COMMIT", "ROLLBACK")]
        assert ends == ["BEGIN", "COMMIT"], ends  # one transaction, committed
        return [s for s in statements if s not in ends]


@asynccontextmanager
async def logged(services: Services) -> AsyncIterator[StatementLog]:
    log = StatementLog()
    with log.listening(services):
        yield log
    for _ in range(5):  # asyncpg calls its query loggers soon after each statement, not at once
        await anyio.sleep(0)


def reads_endpoints(statement: str) -> bool:
    """Whether ``statement`` reads the endpoints, other than the outbox insert's check that each row's endpoint
    still exists and is enabled (``INSERT INTO webhook_deliveries … WHERE EXISTS (… webhook_endpoints …)``)."""
    normal = " ".join(statement.lower().split())
    return "webhook_endpoints" in normal and "insert into webhook_deliveries" not in normal


def is_project_lock(statement: str) -> bool:
    normal = " ".join(statement.lower().split())
    return "from projects" in normal and "for update" in normal


async def fire_logged(services: Services, project: ProjectView) -> list[str]:
    async with logged(services) as log:
        await into_permitting(services, project)
    return log.inside_transaction()


@ONLY_POSTGRESQL
@pytest.mark.parametrize("with_endpoints", [True, False], ids=["endpoints", "no-endpoint"])
async def test_a_transition_reads_the_subscriptions_with_its_lock_not_by_a_statement_of_its_own(
    services: Services, hooks: WebhookService, with_endpoints: bool
) -> None:
    if with_endpoints:
        await several_endpoints(hooks, "any")
    along_project, alone_project = await create(services), await create(services, name="另一个项目")

    along = await fire_logged(services, along_project)
    endpoint_reads = [s for s in along if reads_endpoints(s)]
    assert len(endpoint_reads) == 1 and is_project_lock(endpoint_reads[0]), endpoint_reads
    assert not [
        s for s in along if s.lstrip().upper().startswith("SELECT") and reads_endpoints(s) and not is_project_lock(s)
    ]

    # The outbox reading the endpoints itself costs one statement more, which the log sees: the count above is
    # not blind to such a read.
    outbox_reading_alone(services)
    alone = await fire_logged(services, alone_project)
    own_reads = [s for s in alone if reads_endpoints(s)]
    assert len(own_reads) == 1 and not is_project_lock(own_reads[0]), own_reads
    assert len(alone) == len(along) + 1, (along, alone)
    if with_endpoints:
        assert len(await deliveries(services)) > 0


# --- an endpoint changed while the transition waits for the project's lock ----------------------------------


async def lock_waits(services: Services) -> int:
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND wait_event_type = 'Lock' AND query ILIKE '%FROM projects%FOR UPDATE%'"
    )
    async with services.database.autocommit() as connection:
        return int((await connection.execute(query)).scalar_one())


async def while_the_transition_waits(
    services: Services, project: ProjectView, change: Callable[[], Awaitable[None]]
) -> ProjectView | BaseException:
    """Fire ``start_permitting`` while another transaction holds the project's lock, run ``change`` (committed)
    once the transition waits for that lock, then let it go: the transition's view, or what it raised."""
    outcome: list[ProjectView | BaseException] = []

    async def transition() -> None:
        try:
            outcome.append(await into_permitting(services, project))
        except Exception as error:  # reported to the test, which says what it expected
            outcome.append(error)

    async with anyio.create_task_group() as group, services.database.transaction() as session:
        assert await ProjectRepository(session).lock(project.id) is not None
        group.start_soon(transition)
        with anyio.fail_after(10):
            while not await lock_waits(services):
                await anyio.sleep(0.02)
        await change()
        # The lock goes with the block's transaction; the transition goes on.
    [result] = outcome
    return result


@ONLY_POSTGRESQL
async def test_an_endpoint_deleted_while_the_transition_waits_for_its_lock_does_not_fail_it(
    services: Services, hooks: WebhookService
) -> None:
    kept = await endpoint(hooks, "kept")
    deleted = await endpoint(hooks, "deleted")
    project = await create(services)
    seq = await last_seq(services, project.id)

    async def delete() -> None:
        view = await hooks.get_endpoint(as_(INTEGRATOR), deleted)
        await hooks.delete_endpoint(as_(INTEGRATOR), deleted, view.version)

    result = await while_the_transition_waits(services, project, delete)
    assert isinstance(result, ProjectView), f"the transition failed: {result!r}"
    fired = {event_id for event_id, _ in await event_ids_after(services, project.id, seq)}
    assert {d.endpoint_id for d in await deliveries(services) if d.event_id in fired} == {kept}


@ONLY_POSTGRESQL
async def test_an_endpoint_disabled_while_the_transition_waits_for_its_lock_gets_nothing_of_it(
    services: Services, hooks: WebhookService
) -> None:
    kept = await endpoint(hooks, "kept")
    disabled = await endpoint(hooks, "disabled")
    project = await create(services)
    seq = await last_seq(services, project.id)

    async def disable() -> None:
        view = await hooks.get_endpoint(as_(INTEGRATOR), disabled)
        await hooks.update_endpoint(as_(INTEGRATOR), disabled, view.version, EndpointChanges(enabled=False))

    result = await while_the_transition_waits(services, project, disable)
    assert isinstance(result, ProjectView), f"the transition failed: {result!r}"
    fired = {event_id for event_id, _ in await event_ids_after(services, project.id, seq)}
    assert {d.endpoint_id for d in await deliveries(services) if d.event_id in fired} == {kept}
