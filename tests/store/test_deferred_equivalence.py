"""Writes held back by :func:`lifecycle.store.driver.deferred` against the same statements sent one by one:
sequences whose outcome once differed (a write reading a table held writes change, queries of tables the
footprint could not see, a child row before its parent, cascades more than one key away, ``$n`` inside a
literal, volatile functions, the refusal flag outliving its transaction, autocommit blocks, errors surfacing
in a savepoint's guard), and combinations the module docstring claims safe, checked to be so.

Each comparison runs one scenario twice on the same committed data, once one by one and once inside
``deferred``, each in its own transaction that is rolled back afterwards, and compares what it saw.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import (
    String,
    bindparam,
    column,
    delete,
    func,
    insert,
    literal,
    literal_column,
    select,
    table,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.store import Database, driver
from lifecycle.store.models import deficiency_notices, events, principals, project_steps, projects, tasks
from lifecycle.store.models_webhooks import webhook_attempts, webhook_deliveries, webhook_endpoints

from .conftest import Mini
from .test_driver import (
    AT,
    INSERT_EVENT,
    INSERT_PRINCIPAL,
    INSERT_PROJECT,
    INSERT_STEP,
    POSTGRES_ONLY,
    committed,
    event_rows,
    principal_row,
    project_row,
    tuples,
)

pytestmark = pytest.mark.anyio

Scenario = Callable[[AsyncSession], Awaitable[Any]]


class _Undo(Exception):
    """Carries a scenario's outcome out of its transaction, which then rolls back."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


async def outcome(database: Database, scenario: Scenario, check: Scenario, *, held: bool) -> Any:
    """What ``scenario`` returned (or the error it raised) and what ``check`` then read (through SQLAlchemy,
    after the ``deferred`` block), in a transaction rolled back afterwards."""
    try:
        async with database.transaction() as session:
            try:
                if held:
                    async with driver.deferred(session):
                        returned = await scenario(session)
                else:
                    returned = await scenario(session)
            except DBAPIError as error:
                raise _Undo(("raised", type(error).__name__)) from None
            raise _Undo((returned, await check(session)))
    except _Undo as undo:
        return undo.value


async def both(database: Database, scenario: Scenario, check: Scenario) -> tuple[Any, Any]:
    """The outcome one by one, then inside ``deferred``."""
    return (
        await outcome(database, scenario, check, held=False),
        await outcome(database, scenario, check, held=True),
    )


async def nothing(_: AsyncSession) -> None:
    return None


def steps_of(project_id: str) -> Scenario:
    async def check(session: AsyncSession) -> list[int]:
        query = select(project_steps.c.step).where(project_steps.c.project_id == project_id).order_by("step")
        return list((await session.execute(query)).scalars())

    return check


async def add_project(database: Database, project_id: str, **changes: Any) -> None:
    async with database.transaction() as session:
        await driver.execute(session, INSERT_PROJECT, project_row(project_id, **changes))


# --- 1. writes that READ other tables: footprint() counts only the table they write -----------------------------

STEPS_FROM_PROJECT = insert(project_steps).from_select(
    ["project_id", "step"],
    select(projects.c.id, literal(1)).where(projects.c.id == bindparam("project_id")),
)
"""INSERT … SELECT: reads ``projects``; its footprint says it only reaches ``project_steps``."""

EVENT_SEQ_FROM_EVENTS = (
    update(projects)
    .where(projects.c.id == bindparam("project_id"))
    .values(
        event_seq=select(func.coalesce(func.max(events.c.seq), 0))
        .where(events.c.project_id == projects.c.id)
        .scalar_subquery()
    )
)
"""UPDATE with a subquery of ``events``; its footprint says it only reaches ``projects``."""


async def test_an_insert_select_sees_a_held_insert_of_the_table_it_reads(database: Database, mini: Mini) -> None:
    """INSERT project p1 (held), then INSERT INTO project_steps SELECT … FROM projects WHERE id = p1.
    One by one the SELECT finds p1 and a step row is written; held, both run in one snapshot, the SELECT
    finds no p1 and no step is written (footprint() ignores the tables a write reads)."""

    async def scenario(session: AsyncSession) -> None:
        await driver.execute(session, INSERT_PROJECT, project_row("p1"))
        await driver.execute(session, STEPS_FROM_PROJECT, {"project_id": "p1"})

    one_by_one, held = await both(database, scenario, steps_of("p1"))
    assert one_by_one == (None, [1])
    assert held == one_by_one


async def test_an_update_with_a_subquery_sees_a_held_insert_of_the_table_it_reads(
    database: Database, mini: Mini
) -> None:
    """Event 1 of p1 inserted (held), then p1's event_seq set from max(events.seq). One by one: 1; held:
    the subquery runs in the held insert's snapshot and reads 0."""
    await add_project(database, "p1")

    async def scenario(session: AsyncSession) -> None:
        await driver.execute(session, INSERT_EVENT, event_rows("p1", 1)[0])
        await driver.execute(session, EVENT_SEQ_FROM_EVENTS, {"project_id": "p1"})

    async def check(session: AsyncSession) -> int:
        return int((await session.execute(select(projects.c.event_seq).where(projects.c.id == "p1"))).scalar_one())

    one_by_one, held = await both(database, scenario, check)
    assert one_by_one == (None, 1)
    assert held == one_by_one


# --- 2. queries whose tables footprint() cannot see ---------------------------------------------------------------

TEXT_PRINCIPALS = text("SELECT id FROM principals ORDER BY id").columns(column("id", String))
"""A textual query that declares its columns: it goes to the driver, and its footprint reads no table."""

LIGHT_PRINCIPALS = select(column("id", String)).select_from(table("principals")).order_by("id")
"""A query on a lightweight ``table()`` (a TableClause, not a Table): its footprint reads no table."""


@pytest.mark.parametrize("query", [TEXT_PRINCIPALS, LIGHT_PRINCIPALS], ids=["text-columns", "table-clause"])
async def test_a_query_footprint_cannot_read_still_sees_held_writes(database: Database, mini: Mini, query: Any) -> None:
    """INSERT principal alice (held), then a query of principals that footprint() sees as reading nothing:
    one by one it returns alice; held, it rides with the insert and returns nothing."""

    async def scenario(session: AsyncSession) -> list[tuple[Any, ...]]:
        await driver.execute(session, INSERT_PRINCIPAL, principal_row("alice"))
        return tuples(await driver.rows(session, query))

    one_by_one, held = await both(database, scenario, nothing)
    assert one_by_one == ([("alice",)], None)
    assert held == one_by_one


# --- 3. foreign keys: a child row written before its parent --------------------------------------------------------


async def test_a_child_row_before_its_parent_fails_as_it_does_one_by_one(database: Database, mini: Mini) -> None:
    """INSERT step of p1, then INSERT project p1. One by one the step's foreign key fails at once
    (IntegrityError); held, both rows are in one statement whose foreign keys are checked at its end, so
    the step is accepted. (The docstring's "checked as before" is not what one by one does.)"""

    async def scenario(session: AsyncSession) -> None:
        await driver.execute(session, INSERT_STEP, {"project_id": "p1", "step": 1})
        await driver.execute(session, INSERT_PROJECT, project_row("p1"))

    one_by_one, held = await both(database, scenario, steps_of("p1"))
    assert one_by_one == ("raised", "IntegrityError")
    assert held == one_by_one


# --- 4. cascades that go further than one foreign key ----------------------------------------------------------------

ENDPOINT = {
    "id": "e1", "owner": "owner", "url": "https://example.invalid/hook", "description": "", "event_types": ["*"],
    "filters": {}, "enabled": True, "disabled_reason": None, "disabled_at": None, "secret": "whsec_x",
    "previous_secret": None, "previous_secret_expires_at": None, "failing_since": None, "last_success_at": None,
    "version": 1, "created_at": AT, "updated_at": AT,
}  # fmt: skip
DELIVERY = {
    "endpoint_id": "e1", "event_id": "ev1", "event_type": "project.transition", "project_id": None, "body": "{}",
    "status": "pending", "attempts": 0, "next_attempt_at": AT, "lease_until": None, "claim": None,
    "created_at": AT, "last_attempt_at": None, "last_status_code": None, "last_error": None,
    "delivered_at": None, "redelivery_of": None,
}  # fmt: skip
DELETE_ENDPOINT = delete(webhook_endpoints).where(webhook_endpoints.c.id == bindparam("endpoint_id"))
INSERT_ATTEMPT = webhook_attempts.insert()
SET_ATTEMPT_ERROR = (
    update(webhook_attempts).where(webhook_attempts.c.id == bindparam("attempt_id")).values(error=bindparam("err"))
)


async def endpoint_with_delivery(database: Database, *, attempt: bool = False) -> tuple[int, int | None]:
    """Endpoint e1 with one delivery (and one attempt of it), committed; their ids."""
    async with database.transaction() as session:
        await session.execute(webhook_endpoints.insert(), ENDPOINT)
        delivery_id = int(
            (
                await session.execute(webhook_deliveries.insert().returning(webhook_deliveries.c.id), DELIVERY)
            ).scalar_one()
        )
        attempt_id = None
        if attempt:
            attempt_id = int(
                (
                    await session.execute(
                        webhook_attempts.insert().returning(webhook_attempts.c.id), attempt_row(delivery_id, 1)
                    )
                ).scalar_one()
            )
    return delivery_id, attempt_id


def attempt_row(delivery_id: int, number: int) -> dict[str, Any]:
    return {"delivery_id": delivery_id, "number": number, "at": AT + timedelta(seconds=number), "duration_ms": 5,
            "status_code": 500, "response_excerpt": None, "error": None}  # fmt: skip


async def attempts_left(session: AsyncSession) -> list[int]:
    return sorted((await session.execute(select(webhook_attempts.c.number))).scalars())


async def test_a_delete_waits_for_held_rows_its_cascade_reaches_two_keys_away(database: Database) -> None:
    """INSERT attempt of delivery d1 (held), then DELETE endpoint e1: ON DELETE CASCADE removes d1, whose own
    ON DELETE CASCADE removes its attempts. footprint() only follows the first key (endpoints -> deliveries),
    so the delete joins the held insert of webhook_attempts. One by one: nothing left, no error; held: the
    combined statement fails with IntegrityError (the cascade misses the new attempt, whose delivery is gone)."""
    delivery_id, _ = await endpoint_with_delivery(database)

    async def scenario(session: AsyncSession) -> None:
        await driver.execute(session, INSERT_ATTEMPT, attempt_row(delivery_id, 1))
        await driver.execute(session, DELETE_ENDPOINT, {"endpoint_id": "e1"})

    one_by_one, held = await both(database, scenario, attempts_left)
    assert one_by_one == (None, [])
    assert held == one_by_one


async def test_a_delete_waits_for_a_held_update_its_cascade_reaches_two_keys_away(database: Database) -> None:
    """A doubt that turned out fine (passes): UPDATE attempt 1 (held), then DELETE endpoint e1, whose cascade
    reaches attempts two keys away (footprint() misses that, so they share a statement). PostgreSQL's cascade
    runs after the statement's own changes and deletes the updated row: the same outcome as one by one."""
    _, attempt_id = await endpoint_with_delivery(database, attempt=True)

    async def scenario(session: AsyncSession) -> None:
        await driver.execute(session, SET_ATTEMPT_ERROR, {"attempt_id": attempt_id, "err": "timeout"})
        await driver.execute(session, DELETE_ENDPOINT, {"endpoint_id": "e1"})

    one_by_one, held = await both(database, scenario, attempts_left)
    assert one_by_one == (None, [])
    assert held == one_by_one


# --- 5. $n renumbering ----------------------------------------------------------------------------------------------

SET_LITERAL_NAME = (
    update(projects).where(projects.c.id == bindparam("project_id")).values(name=literal_column("'costs $1'"))
)


async def test_a_dollar_digit_inside_a_literal_is_not_renumbered(database: Database, mini: Mini) -> None:
    """A held INSERT of a principal (6 parameters), then an UPDATE of project p1 whose SQL carries the literal
    'costs $1': take() shifts every ``$n`` of the text, the string literal's too, and stores 'costs $7'."""
    await add_project(database, "p1")

    async def scenario(session: AsyncSession) -> None:
        await driver.execute(session, INSERT_PRINCIPAL, principal_row("alice"))
        await driver.execute(session, SET_LITERAL_NAME, {"project_id": "p1"})

    async def check(session: AsyncSession) -> str:
        return str((await session.execute(select(projects.c.name).where(projects.c.id == "p1"))).scalar_one())

    one_by_one, held = await both(database, scenario, check)
    assert one_by_one == (None, "costs $1")
    assert held == one_by_one


# --- 6. volatile functions: the main statement runs before the held clauses ------------------------------------------

NEXT_EVENT_ID = select(func.nextval(func.pg_get_serial_sequence("events", "id")).label("n"))
"""A query of the events' identity sequence: it reads no table, so it rides with held writes."""


@POSTGRES_ONLY
async def test_a_sequence_read_after_a_held_numbered_insert_comes_after_it(database: Database, mini: Mini) -> None:
    """INSERT event (held; events.id from an identity sequence), then SELECT nextval of that sequence.
    One by one the query's number is above the event's; held, the main SELECT runs before the unreferenced
    WITH clause, so the event is numbered after the query."""
    await add_project(database, "p1")

    async def scenario(session: AsyncSession) -> bool:
        await driver.execute(session, INSERT_EVENT, event_rows("p1", 1)[0])
        (drawn,) = tuples(await driver.rows(session, NEXT_EVENT_ID))[0]
        event_id = (await session.execute(select(events.c.id).where(events.c.project_id == "p1"))).scalar_one()
        return bool(drawn > event_id)

    one_by_one, held = await both(database, scenario, nothing)
    assert one_by_one == (True, None)
    assert held == one_by_one


CLOCKED_PRINCIPAL = principals.insert().values(created_at=func.clock_timestamp())


@POSTGRES_ONLY
async def test_clock_timestamp_of_two_held_inserts_follows_their_order(database: Database) -> None:
    """Two held INSERTs of principals whose created_at is clock_timestamp(): one by one the first is the
    earlier; held, the main statement (the second) runs before the WITH clause, and the order is reversed."""

    async def scenario(session: AsyncSession) -> None:
        for name in ("first", "second"):
            row = {k: v for k, v in principal_row(name).items() if k != "created_at"}
            await driver.execute(session, CLOCKED_PRINCIPAL, row)

    async def check(session: AsyncSession) -> list[str]:
        return list((await session.execute(select(principals.c.id).order_by(principals.c.created_at))).scalars())

    one_by_one, held = await both(database, scenario, check)
    assert one_by_one == (None, ["first", "second"])
    assert held == one_by_one


# --- 7. the holder's state outliving its transaction, and autocommit blocks -------------------------------------------


@POSTGRES_ONLY
async def test_a_raising_deferred_block_does_not_poison_later_transactions_of_one_connection(
    database: Database,
) -> None:
    """Inside ``one_connection()`` every unit of work reuses one DriverTransaction. A deferred block that
    raised with writes held sets its ``discarded`` flag, which nothing resets: the next, unrelated transaction
    on that connection refuses to commit ("dropped"). Without deferred the second transaction commits."""
    async with database.one_connection():
        with pytest.raises(LookupError):
            async with database.transaction() as session, driver.deferred(session):
                await driver.execute(session, INSERT_PRINCIPAL, principal_row("failed"))
                raise LookupError("the first unit of work fails")
        async with database.transaction() as session:
            await driver.execute(session, INSERT_PRINCIPAL, principal_row("next"))
    assert await committed(database, principals) == {"next"}


async def test_deferred_in_an_autocommit_block_keeps_each_statement_committed_on_its_own(
    database: Database,
) -> None:
    """deferred()'s docstring: "Only in a PostgreSQL write transaction; elsewhere … the block just runs".
    An autocommit connection carries a DriverTransaction too, so its writes are held; a block that then
    raises drops them (nothing refuses to commit: autocommit never commits). One by one the insert was
    committed when it returned."""
    async with database.autocommit() as connection:
        with pytest.raises(LookupError):
            async with driver.deferred(connection):
                await driver.execute(connection, INSERT_PRINCIPAL, principal_row("alice"))
                raise LookupError("after the insert returned")
    assert await committed(database, principals) == {"alice"}


# --- 8. errors of held writes surfacing in a savepoint --------------------------------------------------------------


@POSTGRES_ONLY
async def test_a_held_writes_error_caught_by_a_later_savepoint_guard_still_fails_the_transaction(
    database: Database,
) -> None:
    """A held INSERT that violates a key, then a savepoint guarding another statement (the pattern of
    ``file_report``: ``except IntegrityError`` around ``begin_nested()`` means "that statement lost a race").
    One by one the error comes from the first INSERT, outside the guard. Held, it comes where the held writes
    are sent, with the savepoint's first statement, inside the guard, which cannot tell it from its own. The
    guard cannot save the transaction though: PostgreSQL aborted it, so it fails and commits nothing."""
    async with database.transaction() as session:
        await driver.execute(session, INSERT_PRINCIPAL, principal_row("taken"))
    guard_caught = False
    with pytest.raises(DBAPIError):
        async with database.transaction() as session, driver.deferred(session):
            await driver.execute(session, INSERT_PRINCIPAL, principal_row("taken"))  # a duplicate key
            try:
                async with session.begin_nested():
                    await driver.execute(session, INSERT_PRINCIPAL, principal_row("fresh"))
            except IntegrityError:
                guard_caught = True
    assert guard_caught
    assert await committed(database, principals) == {"taken"}


# --- 9. combinations claimed safe that were doubted (these pass) -----------------------------------------------------

SET_NOTICE_STATE = (
    update(deficiency_notices)
    .where(deficiency_notices.c.project_id == bindparam("pid"), deficiency_notices.c.id == bindparam("nid"))
    .values(state=bindparam("new_state"))
)
DELETE_TASK = delete(tasks).where(tasks.c.project_id == bindparam("pid"), tasks.c.id == bindparam("tid"))
PRINCIPAL_IF_NEW = (
    postgresql_insert(principals)
    .values(id=bindparam("id"), name=bindparam("name"), roles=bindparam("roles"), created_at=bindparam("created_at"))
    .on_conflict_do_nothing()
)


async def test_a_composite_key_cascade_is_seen_by_the_footprint(database: Database, mini: Mini) -> None:
    """deficiency_notices -> tasks is a composite ForeignKeyConstraint with ON DELETE CASCADE: a held update
    of a notice is sent before the delete of its task (the same as one by one)."""
    await add_project(database, "p1")
    async with database.transaction() as session:
        await session.execute(
            tasks.insert(),
            {"project_id": "p1", "id": "t1", "group_id": "g", "item_id": "i", "machine": "m", "department": None,
             "state": "open", "submission": 1, "opened_at": AT, "closed_at": None, "data": {}, "version": 1},
        )  # fmt: skip
        await session.execute(
            deficiency_notices.insert(),
            {"project_id": "p1", "id": "n1", "task_id": "t1", "submission": 1, "machine": "m", "state": "open",
             "missing": [], "cure_date": AT.date(), "issued_at": AT, "issued_by": "x", "closed_at": None,
             "version": 1},
        )  # fmt: skip

    async def scenario(session: AsyncSession) -> None:
        await driver.execute(session, SET_NOTICE_STATE, {"pid": "p1", "nid": "n1", "new_state": "cured"})
        await driver.execute(session, DELETE_TASK, {"pid": "p1", "tid": "t1"})

    async def check(session: AsyncSession) -> list[str]:
        return list((await session.execute(select(deficiency_notices.c.id))).scalars())

    one_by_one, held = await both(database, scenario, check)
    assert one_by_one == (None, [])
    assert held == one_by_one


@POSTGRES_ONLY
async def test_an_upsert_after_a_held_insert_of_the_same_key_sees_it(database: Database) -> None:
    """INSERT alice (held), then INSERT alice ON CONFLICT DO NOTHING: sent apart, so the upsert does nothing,
    and a plain duplicate after a held upsert still fails."""

    async def scenario(session: AsyncSession) -> None:
        await driver.execute(session, INSERT_PRINCIPAL, principal_row("alice"))
        await driver.execute(session, PRINCIPAL_IF_NEW, principal_row("alice"))

    async def check(session: AsyncSession) -> list[str]:
        return list((await session.execute(select(principals.c.id))).scalars())

    one_by_one, held = await both(database, scenario, check)
    assert one_by_one == (None, ["alice"])
    assert held == one_by_one

    async def duplicate(session: AsyncSession) -> None:
        await driver.execute(session, PRINCIPAL_IF_NEW, principal_row("bob"))
        await driver.execute(session, INSERT_PRINCIPAL, principal_row("bob"))

    assert await both(database, duplicate, check) == (("raised", "IntegrityError"), ("raised", "IntegrityError"))


async def test_placeholders_past_nine_are_renumbered_whole(database: Database, mini: Mini) -> None:
    """A held project row (26 parameters: $1 … $26) and a step, then a query with one parameter: every value
    lands where one by one puts it ($1 does not become a prefix of $10 … $19 when shifted)."""

    async def scenario(session: AsyncSession) -> list[tuple[Any, ...]]:
        await driver.execute(session, INSERT_PRINCIPAL, principal_row("alice"))
        await driver.execute(session, INSERT_PROJECT, project_row("p1", name="十二", township="t12"))
        await driver.execute(session, INSERT_STEP, {"project_id": "p1", "step": 12})
        query = select(principals.c.id, principals.c.name).where(principals.c.id == bindparam("pid"))
        return tuples(await driver.rows(session, query, {"pid": "bob"}))

    async def check(session: AsyncSession) -> Any:
        row = (await session.execute(select(projects.c.name, projects.c.township, projects.c.event_hash))).one()
        return tuple(row), list((await session.execute(select(project_steps.c.step))).scalars())

    one_by_one, held = await both(database, scenario, check)
    assert one_by_one == ([], (("十二", "t12", "0" * 64), [12]))
    assert held == one_by_one
