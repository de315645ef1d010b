"""Writes held back and sent with the next statement (:mod:`lifecycle.store.deferred`, :func:`driver.deferred`).

The rules are checked on plans compiled for asyncpg (no database needed); what the held writes do is checked on
real databases built by the migrations: the same rows as statements sent one by one, every later statement
(through the driver or through SQLAlchemy) seeing them, errors raised inside the transaction and nothing
committed after a failure. On SQLite ``deferred`` changes nothing, and the same tests pass there.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import bindparam, delete, func, insert, literal, literal_column, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.exc import DBAPIError, IntegrityError

from lifecycle.store import Database, driver
from lifecycle.store.deferred import MAX_STATEMENTS, PendingWrites, footprint
from lifecycle.store.driver import DRIVER_KEY, DriverTransaction, Plan, Plans
from lifecycle.store.models import events, principals, project_steps, projects, tasks
from lifecycle.store.models_webhooks import webhook_endpoints

from .conftest import Mini
from .test_driver import (
    INSERT_EVENT,
    INSERT_PRINCIPAL,
    INSERT_PROJECT,
    INSERT_STEP,
    POSTGRES_ONLY,
    SELECT_PRINCIPALS,
    SELECT_STEPS,
    committed,
    event_rows,
    principal_row,
    project_row,
    tuples,
)

pytestmark = pytest.mark.anyio

SET_NAME = update(projects).where(projects.c.id == bindparam("project_id")).values(name=bindparam("new_name"))
SET_STATE = update(projects).where(projects.c.id == bindparam("project_id")).values(state=bindparam("new_state"))
SELECT_NAME_STATE = select(projects.c.name, projects.c.state).where(projects.c.id == bindparam("project_id"))
DELETE_PROJECT = delete(projects).where(projects.c.id == bindparam("project_id"))
UPSERT_PRINCIPAL = (
    postgresql_insert(principals)
    .values(id=bindparam("id"), name=bindparam("name"), roles=bindparam("roles"), created_at=bindparam("created_at"))
    .on_conflict_do_nothing()
)


# --- the rules, on compiled plans ------------------------------------------------------------------------------


@pytest.fixture
def plans() -> Plans:
    return Plans(postgresql.asyncpg.dialect())  # type: ignore[attr-defined]


def plan(plans: Plans, statement: Any, *names: str, many: bool = False) -> Plan:
    found = plans.plan(statement, frozenset(names), many)
    assert found is not None
    return found


def test_footprints_name_the_kind_and_every_table_a_statement_reaches(plans: Plans) -> None:
    assert footprint(INSERT_EVENT, "INSERT INTO events …").kind == "insert"
    upsert = plan(plans, UPSERT_PRINCIPAL, "id", "name", "roles", "created_at")
    assert upsert.footprint.kind == "upsert" and upsert.footprint.reach == {"principals"}
    assert plan(plans, SET_NAME, "project_id", "new_name").footprint.reach == {"projects"}  # no ON UPDATE action
    deleting = plan(plans, DELETE_PROJECT, "project_id").footprint
    assert deleting.kind == "delete"
    assert {"projects", "project_steps", "tasks"} <= deleting.reach  # ON DELETE CASCADE reaches them
    reading = plan(plans, SELECT_NAME_STATE, "project_id").footprint
    assert (reading.kind, reading.reach) == ("select", {"projects"})
    joined = select(tasks.c.id).where(tasks.c.project_id.in_(select(projects.c.id).scalar_subquery()))
    assert plan(plans, joined).footprint.reach == {"tasks", "projects"}  # a subquery's tables count too


def test_what_a_footprint_cannot_see_into_never_shares_a_statement(plans: Plans) -> None:
    """Text, literal SQL, quoted strings and function calls make a statement opaque; the footprint follows
    foreign keys however far, and names what a write reads and references."""
    opaque = [
        text("SELECT id FROM principals").columns(principals.c.id),
        select(principals.c.id).where(principals.c.name == literal_column("'a $1'")),
        select(func.clock_timestamp()),
        update(projects).where(projects.c.id == bindparam("pid")).values(updated_at=func.clock_timestamp()),
    ]
    for statement in opaque:
        compiled = plans.plan(statement, frozenset({"pid"}) & frozenset(statement.compile().params), False)
        assert compiled is None or compiled.footprint.kind == "other", statement
    deleting = plan(plans, delete(webhook_endpoints).where(webhook_endpoints.c.id == bindparam("e")), "e")
    assert {"webhook_deliveries", "webhook_attempts"} <= deleting.footprint.reach  # two keys away
    inserting = plan(plans, INSERT_EVENT, *event_rows("p", 1)[0]).footprint
    assert "projects" in inserting.parents and not inserting.reads
    copying = insert(project_steps).from_select(["project_id", "step"], select(projects.c.id, literal(1)))
    assert plan(plans, copying).footprint.reads == {"projects"}


def test_plain_inserts_join_whatever_is_held_and_a_change_of_a_table_waits_for_its_writes(plans: Plans) -> None:
    held = PendingWrites(plans.combined)
    insert_principal = plan(plans, INSERT_PRINCIPAL, *principal_row("p"))
    insert_step = plan(plans, INSERT_STEP, "project_id", "step")
    set_name = plan(plans, SET_NAME, "project_id", "new_name")
    assert held.may_hold(insert_principal, 3) and held.accepts(insert_principal, 3)
    held.add(insert_principal, [[None] * len(insert_principal.slots)] * 3)
    assert held.accepts(insert_step, 1)  # another table
    assert held.accepts(set_name, 1)  # projects: nothing held reaches it
    held.add(set_name, [["x", "p"]])
    assert not held.accepts(set_name, 1)  # a second update of projects might meet the same row
    assert not held.accepts(plan(plans, INSERT_PROJECT, *project_row("p")), 1)  # an insert after an update of it
    assert held.accepts(insert_step, 1)


def test_what_is_never_held_and_which_queries_ride_along(plans: Plans) -> None:
    held = PendingWrites(plans.combined)
    set_name = plan(plans, SET_NAME, "project_id", "new_name", many=True)
    assert not held.may_hold(set_name, 2)  # several updates: two might meet the same row
    assert not held.may_hold(plan(plans, SELECT_PRINCIPALS), 1)  # not a write
    insert_step = plan(plans, INSERT_STEP, "project_id", "step")
    assert not held.may_hold(insert_step, MAX_STATEMENTS + 1)
    insert_event = plan(plans, INSERT_EVENT, *event_rows("p", 1)[0])
    assert insert_event.footprint.numbered  # events.id comes from a sequence
    assert not held.may_hold(insert_event, 2)  # two rows in one statement might be numbered out of order
    held.add(insert_event, [[None] * len(insert_event.slots)])
    assert not held.accepts(insert_event, 1)
    assert not held.reaches(plan(plans, SELECT_PRINCIPALS))  # principals: no held write touches them
    assert held.reaches(plan(plans, select(events.c.seq)))  # reads what is held
    assert not held.reaches(plan(plans, SET_NAME, "project_id", "new_name"))  # a write that could be held


def test_take_numbers_every_statements_placeholders_on_and_empties_the_holder(plans: Plans) -> None:
    held = PendingWrites(plans.combined)
    set_name = plan(plans, SET_NAME, "project_id", "new_name")
    insert_step = plan(plans, INSERT_STEP, "project_id", "step")
    held.add(set_name, [["name", "p1"]])
    held.add(insert_step, [["p1", 1], ["p1", 2]])
    query = plan(plans, SELECT_PRINCIPALS)
    sql, args = held.take(query, [])
    assert not held and args == ["name", "p1", "p1", 1, "p1", 2]
    assert sql.startswith("WITH w0 AS (UPDATE projects SET name=$1::VARCHAR WHERE projects.id = $2::VARCHAR), ")
    assert "w1 AS (INSERT INTO project_steps (project_id, step) VALUES ($3::VARCHAR, $4::INTEGER))" in sql
    assert "w2 AS (INSERT INTO project_steps (project_id, step) VALUES ($5::VARCHAR, $6::INTEGER))" in sql
    assert sql.endswith("SELECT principals.id \nFROM principals")
    held.add(set_name, [["other", "p2"]])
    assert held.take() == (set_name.sql, ["other", "p2"])  # one statement alone is sent as it is


# --- what held writes do, on both databases ---------------------------------------------------------------------


def held_of(session: Any) -> Any:
    """The writes the session's transaction holds now (None off the driver path)."""
    transaction: DriverTransaction | None = session.info.get(DRIVER_KEY)
    return None if transaction is None else transaction.held


async def test_held_writes_reach_the_server_with_a_query_that_does_not_read_them(
    database: Database, mini: Mini
) -> None:
    async with database.transaction() as session:
        async with driver.deferred(session):
            await driver.execute(session, INSERT_PROJECT, project_row("p1"))
            await driver.execute_many(session, INSERT_STEP, [{"project_id": "p1", "step": s} for s in (1, 2)])
            await driver.execute_many(session, INSERT_EVENT, event_rows("p1", 1))
            await driver.execute(session, INSERT_PRINCIPAL, principal_row("alice"))
            if database.dialect == "postgresql":
                assert len(held_of(session).items) == 5  # nothing sent yet
            assert tuples(await driver.rows(session, SELECT_PRINCIPALS)) == [("alice",)]  # sent with the query
            assert not held_of(session)
        assert tuples(await driver.rows(session, SELECT_STEPS, {"project_id": "p1"})) == [(1,), (2,)]
    assert await committed(database, projects) == {"p1"}
    assert await committed(database, events, "seq") == {1}


async def test_rows_numbered_from_a_sequence_are_numbered_in_their_order(database: Database, mini: Mini) -> None:
    """Events get their ``id`` from a sequence: written in one call or one by one while other writes are
    held, they are numbered in the order they were written."""
    async with database.transaction() as session, driver.deferred(session):
        await driver.execute(session, INSERT_PROJECT, project_row("p1"))
        rows = event_rows("p1", 6)
        await driver.execute_many(session, INSERT_EVENT, rows[:3])
        for row in rows[3:]:
            await driver.execute(session, INSERT_EVENT, row)
            await driver.execute(session, INSERT_PRINCIPAL, principal_row(f"p{row['seq']}"))
    async with database.reader() as session:
        numbered = (await session.execute(select(events.c.seq).order_by(events.c.id))).scalars().all()
    assert numbered == [1, 2, 3, 4, 5, 6]


async def test_a_query_of_a_table_with_held_writes_sees_them_on_either_path(database: Database, mini: Mini) -> None:
    """Driver queries and SQLAlchemy statements alike run after the held writes they may depend on."""
    async with database.transaction() as session, driver.deferred(session):
        await driver.execute(session, INSERT_PROJECT, project_row("p1"))
        assert tuples(await driver.rows(session, SELECT_NAME_STATE, {"project_id": "p1"})) == [
            ("巫山县某康养文旅项目", "draft")
        ]
        await driver.execute(session, SET_STATE, {"project_id": "p1", "new_state": "planning"})
        orm_read = (await session.execute(select(projects.c.state).where(projects.c.id == "p1"))).scalar_one()
        assert orm_read == "planning"
        assert not held_of(session)


async def test_two_updates_of_one_row_are_applied_in_order(database: Database, mini: Mini) -> None:
    async with database.transaction() as session:
        await driver.execute(session, INSERT_PROJECT, project_row("p1"))
        async with driver.deferred(session):
            await driver.execute(session, SET_NAME, {"project_id": "p1", "new_name": "first"})
            await driver.execute(session, SET_STATE, {"project_id": "p1", "new_state": "planning"})
            await driver.execute(session, SET_NAME, {"project_id": "p1", "new_name": "second"})
    async with database.reader() as session:
        assert tuples(await driver.rows(session, SELECT_NAME_STATE, {"project_id": "p1"})) == [("second", "planning")]


async def test_a_held_writes_error_is_raised_inside_the_transaction_and_nothing_is_committed(
    database: Database, mini: Mini
) -> None:
    with pytest.raises(IntegrityError):
        async with database.transaction() as session, driver.deferred(session):
            await driver.execute(session, INSERT_PROJECT, project_row("p1"))
            await driver.execute(session, INSERT_PRINCIPAL, principal_row("alice"))
            await driver.execute(session, INSERT_PRINCIPAL, principal_row("alice"))  # a duplicate key
    assert await committed(database, projects) == set()
    assert await committed(database, principals) == set()


@POSTGRES_ONLY
async def test_a_transaction_whose_held_writes_were_dropped_refuses_to_commit(database: Database, mini: Mini) -> None:
    """The block holding writes raised and its caller went on: committing would lose them silently."""
    with pytest.raises(DBAPIError, match="dropped"):
        async with database.transaction() as session:
            await driver.execute(session, INSERT_PRINCIPAL, principal_row("before"))
            with pytest.raises(LookupError):
                async with driver.deferred(session):
                    await driver.execute(session, INSERT_PROJECT, project_row("p1"))
                    raise LookupError("the caller's own failure")
    assert await committed(database, principals) == set()
    assert await committed(database, projects) == set()


async def test_writes_held_before_a_savepoint_survive_its_rollback(database: Database, mini: Mini) -> None:
    async with database.transaction() as session, driver.deferred(session):
        await driver.execute(session, INSERT_PRINCIPAL, principal_row("kept"))
        with pytest.raises(IntegrityError):
            async with session.begin_nested():
                await driver.execute(session, INSERT_PRINCIPAL, principal_row("kept"))
        await driver.execute(session, INSERT_PRINCIPAL, principal_row("after"))
    assert await committed(database, principals) == {"kept", "after"}


async def test_a_delete_waits_for_held_rows_its_cascade_would_remove(database: Database, mini: Mini) -> None:
    """Held step rows of a project, then the project deleted (ON DELETE CASCADE): as one by one, the
    cascade removes them (in one statement the delete would not see them and leave them behind)."""
    async with database.transaction() as session:
        await driver.execute(session, INSERT_PROJECT, project_row("p1"))
        async with driver.deferred(session):
            await driver.execute_many(session, INSERT_STEP, [{"project_id": "p1", "step": s} for s in (1, 2)])
            await driver.execute(session, DELETE_PROJECT, {"project_id": "p1"})
    assert await committed(database, projects) == set()
    assert await committed(database, project_steps, "step") == set()
