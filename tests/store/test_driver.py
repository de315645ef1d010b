"""Statements sent to asyncpg directly inside a PostgreSQL write transaction (:mod:`lifecycle.store.driver`).

What is proved here, on real databases built by the migrations (no mocks):

* which path a statement takes: the driver inside a PostgreSQL ``Database.transaction()``, SQLAlchemy in a
  reader and on SQLite; both paths write and read the same values (UTC instants, ``Decimal`` money, JSON);
* plans: literal values carried by a statement are sent, a missing parameter is named, expanding ``IN``
  lists are left to SQLAlchemy, and plans are cached per statement and parameter names;
* transactions: an integrity violation, an exception of the caller or a broken connection rolls back
  everything written through either path, and the pooled connection is never handed out again inside a
  transaction (nor at all, once broken);
* a savepoint around driver statements contains their integrity violation (SQLAlchemy runs them, so that
  its ``SAVEPOINT`` is sent), and a ``COMMIT`` the server turned into a rollback raises;
* a block cancelled by an AnyIO cancel scope while a statement is in flight commits nothing and leaves no
  open transaction on a pooled connection;
* ``literal_execute`` parameters and textual queries with result columns are left to SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import asyncpg
import pytest
from sqlalchemy import Integer, bindparam, func, select, text, type_coerce, update
from sqlalchemy.engine import Row, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.store import Database, driver
from lifecycle.store.driver import DRIVER_KEY, DriverTransaction, Plans
from lifecycle.store.models import events, principals, project_steps, projects
from lifecycle.store.types import Money, UTCDateTime

from .conftest import Mini

pytestmark = pytest.mark.anyio

POSTGRES_ONLY = pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
"""Run a test on the PostgreSQL database only (the driver path exists nowhere else)."""

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=SHANGHAI)
"""An instant given in +08:00: UTCDateTime columns must store it as this instant and read it back in UTC."""

MONEY = Decimal("123456.7891")
FIELDS = {"investment": "150.25", "名称": "巫山县康养项目", "nested": {"list": [1, 2.5, None, True], "empty": {}}}
REASONS = [{"rule": "overdue", "days": 3, "title": "超期"}]

# Prebuilt statements, as the repositories keep theirs (plans are cached by statement identity).
INSERT_PROJECT = projects.insert()
INSERT_STEP = project_steps.insert()
INSERT_STEP_RETURNING = project_steps.insert().returning(project_steps.c.project_id, project_steps.c.step)
INSERT_EVENT = events.insert()
INSERT_PRINCIPAL = principals.insert()
SELECT_PROJECT = select(
    projects.c.id,
    projects.c.name,
    projects.c.state,
    projects.c.total_investment,
    projects.c.planned_start,
    projects.c.fields,
    projects.c.light_reasons,
    projects.c.light_at,
    projects.c.created_at,
    projects.c.version,
    type_coerce(projects.c.total_investment / 3, Money).label("third"),  # Money's result processor rounds it
).where(projects.c.id == bindparam("project_id"))
SELECT_STEPS = (
    select(project_steps.c.step)
    .where(project_steps.c.project_id == bindparam("project_id"))
    .order_by(project_steps.c.step)
)
SELECT_EVENTS = (
    select(events.c.seq, events.c.kind, events.c.at, events.c.data, events.c.comment)
    .where(events.c.project_id == bindparam("project_id"))
    .order_by(events.c.seq)
)
SELECT_PROJECTS_IN = (
    select(projects.c.id).where(projects.c.id.in_(bindparam("ids", expanding=True))).order_by(projects.c.id)
)
SELECT_PRINCIPALS = select(principals.c.id)
SELECT_SLEEP = select(func.pg_sleep(2))
SET_STATE = update(projects).where(projects.c.id == bindparam("project_id")).values(state=bindparam("new_state"))


# --- helpers ---------------------------------------------------------------------------------------------------


def project_row(project_id: str, **changes: Any) -> dict[str, Any]:
    """Every column of a ``projects`` row (on the ``mini`` definition), with values that need conversion."""
    row: dict[str, Any] = {
        "id": project_id,
        "code": None,
        "name": "巫山县某康养文旅项目",
        "definition_key": "mini",
        "definition_version": 1,
        "state": "draft",
        "phase": "early",
        "source_category": "规划项目",
        "lead_leader": "县领导甲",
        "lead_unit": "unit_a",
        "implementing_unit": "unit_b",
        "township": "龙门街道",
        "total_investment": MONEY,
        "planned_start": date(2026, 5, 1),
        "planned_end": date(2028, 12, 31),
        "fields": FIELDS,
        "held_from": None,
        "light": "red",
        "light_reasons": REASONS,
        "light_at": AT + timedelta(hours=1),
        "version": 1,
        "event_seq": 0,
        "event_hash": "0" * 64,
        "created_at": AT,
        "created_by": "owner",
        "updated_at": AT,
    }
    return {**row, **changes}


def event_rows(project_id: str, count: int) -> list[dict[str, Any]]:
    """``count`` events of ``project_id`` (seq 1…count), each with a JSON document and a +08:00 instant."""
    return [
        {
            "event_id": str(uuid.uuid4()),
            "project_id": project_id,
            "seq": seq,
            "kind": "project.transition",
            "subject_kind": "project",
            "subject_id": project_id,
            "actor": "owner",
            "at": AT + timedelta(minutes=seq),
            "trigger": f"t{seq}",
            "from_state": None,
            "to_state": None,
            "comment": f"第{seq}次",
            "data": {"n": seq, "金额": "1.50"},
            "prev_hash": "0" * 64,
            "hash": f"{seq:064d}",
        }
        for seq in range(1, count + 1)
    ]


def principal_row(principal_id: str) -> dict[str, Any]:
    return {"id": principal_id, "name": principal_id, "unit_id": None, "unit_kind": None, "roles": ["unit"],
            "created_at": AT}  # fmt: skip


def tuples(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in rows]


def went_through_sqlalchemy(rows: Sequence[Sequence[Any]]) -> bool:
    """Whether ``rows`` (not empty) came from SQLAlchemy (``Row``) rather than from the driver."""
    assert rows, "cannot tell the path of an empty result"
    kinds = {isinstance(row, Row) for row in rows}
    assert len(kinds) == 1
    return kinds.pop()


async def write_project(
    session: AsyncSession, project_id: str, *, steps: Sequence[int] = (1,), event_count: int = 2
) -> None:
    """A project, its steps and events, through ``driver.execute`` and ``driver.execute_many``."""
    await driver.execute(session, INSERT_PROJECT, project_row(project_id))
    await driver.execute_many(session, INSERT_STEP, [{"project_id": project_id, "step": step} for step in steps])
    if event_count:
        await driver.execute_many(session, INSERT_EVENT, event_rows(project_id, event_count))


async def read_project(session: AsyncSession, project_id: str) -> tuple[list[tuple[Any, ...]], ...]:
    """The project's row, steps and events through ``driver.rows``, as tuples."""
    return (
        tuples(await driver.rows(session, SELECT_PROJECT, {"project_id": project_id})),
        tuples(await driver.rows(session, SELECT_STEPS, {"project_id": project_id})),
        tuples(await driver.rows(session, SELECT_EVENTS, {"project_id": project_id})),
    )


async def committed(database: Database, table: Any, column: str = "id") -> set[Any]:
    """The values of ``column`` in ``table``, as a new reader sees them (what is committed)."""
    async with database.reader() as session:
        return set((await session.execute(select(table.c[column]))).scalars())


async def backend_pid(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


def plain_postgres_url(db_url: str) -> str:
    """``db_url`` for asyncpg itself (no SQLAlchemy driver suffix)."""
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def terminate(db_url: str, pid: int) -> None:
    """End the server process ``pid`` from another connection, and wait until it is gone."""
    other = await asyncpg.connect(plain_postgres_url(db_url))
    try:
        assert await other.fetchval("SELECT pg_terminate_backend($1, 5000)", pid) is True
    finally:
        await other.close()


@pytest.fixture
async def lone(db_url: str, mini: Mini, anyio_backend: str) -> AsyncIterator[Database]:
    """A Database on ``db_url`` (the ``mini`` definition stored) with one pooled connection and no overflow:
    each checkout gets that same connection again, unless it was dropped from the pool."""
    database = Database(db_url, pool_size=1, max_overflow=0)
    try:
        yield database
    finally:
        await database.dispose()


# --- which path a statement takes, and the values on each ------------------------------------------------------


async def test_only_a_postgresql_write_transaction_carries_a_driver_transaction(database: Database) -> None:
    """PostgreSQL ``transaction()``: a DriverTransaction on the session's own asyncpg connection, inside an
    open server transaction. A reader (both dialects) and an SQLite writer carry none."""
    async with database.transaction() as session:
        carried = session.info.get(DRIVER_KEY)
        if database.dialect == "postgresql":
            assert isinstance(carried, DriverTransaction)
            raw = await (await session.connection()).get_raw_connection()
            assert carried.driver is raw.driver_connection  # the session's statements share its transaction
            assert carried.driver.is_in_transaction()
        else:
            assert carried is None and DRIVER_KEY not in session.info
    async with database.reader() as session:
        assert DRIVER_KEY not in session.info
        await session.execute(text("SELECT 1"))
        assert DRIVER_KEY not in session.info


async def test_an_autocommit_block_runs_driver_statements_each_committed_on_its_own(database: Database) -> None:
    """PostgreSQL ``autocommit()``: the connection carries a DriverTransaction while the block lasts (not
    after: the pool hands the connection to others), its driver statements run outside any transaction, so
    each is committed when it returns. SQLite's autocommit block is one write transaction through SQLAlchemy."""
    on_driver = database.dialect == "postgresql"
    async with database.autocommit() as connection:
        carried = connection.info.get(DRIVER_KEY)
        assert isinstance(carried, DriverTransaction) is on_driver
        await driver.execute(connection, INSERT_PRINCIPAL, principal_row("first"))
        assert went_through_sqlalchemy(await driver.rows(connection, SELECT_PRINCIPALS)) is not on_driver
        if on_driver:
            assert not carried.driver.is_in_transaction()
            assert await committed(database, principals) == {"first"}  # seen by others before the block ends
        info = connection.info
    assert DRIVER_KEY not in info
    assert await committed(database, principals) == {"first"}


async def test_both_paths_write_and_read_the_same_values(database: Database, mini: Mini) -> None:
    """Rows written and read through the driver equal those written and read through SQLAlchemy (the path
    ``driver.*`` takes without a DriverTransaction): UTC-aware instants, Decimal money, JSON documents."""
    on_driver = database.dialect == "postgresql"
    by_driver, by_sqlalchemy = "written-by-the-driver", "written-by-sqlalchemy"
    async with database.transaction() as session:
        await write_project(session, by_driver, steps=(1, 2), event_count=3)
        seen_inside = await driver.rows(session, SELECT_PROJECT, {"project_id": by_driver})
        assert went_through_sqlalchemy(seen_inside) is not on_driver
    async with database.transaction() as session:
        session.info.pop(DRIVER_KEY, None)  # as a session without one (SQLite, a reader): SQLAlchemy's path
        await write_project(session, by_sqlalchemy, steps=(1, 2), event_count=3)
        assert went_through_sqlalchemy(await driver.rows(session, SELECT_PROJECT, {"project_id": by_sqlalchemy}))

    async with database.transaction() as session:  # the driver's reads (PostgreSQL)
        rows = await driver.rows(session, SELECT_PROJECT, {"project_id": by_driver})
        assert went_through_sqlalchemy(rows) is not on_driver
        driver_reads = {pid: await read_project(session, pid) for pid in (by_driver, by_sqlalchemy)}
    async with database.reader() as session:  # SQLAlchemy's reads
        assert went_through_sqlalchemy(await driver.rows(session, SELECT_PROJECT, {"project_id": by_driver}))
        sqlalchemy_reads = {pid: await read_project(session, pid) for pid in (by_driver, by_sqlalchemy)}
    assert driver_reads == sqlalchemy_reads

    for project_id in (by_driver, by_sqlalchemy):
        [project], steps, history = driver_reads[project_id]
        assert project == (project_id, "巫山县某康养文旅项目", "draft", MONEY, date(2026, 5, 1), FIELDS, REASONS,
                           AT + timedelta(hours=1), AT, 1, Decimal("41152.2630"))  # fmt: skip
        _, _, _, money, _, fields, reasons, light_at, created_at, _, third = project
        assert type(money) is Decimal and str(money) == "123456.7891"
        assert type(third) is Decimal and str(third) == "41152.2630"  # four places, as SQLAlchemy reads it
        assert type(fields) is dict and type(reasons) is list
        for instant in (light_at, created_at):
            assert instant.tzinfo is UTC  # read back in UTC, whatever zone it was written in
        assert created_at == datetime(2026, 3, 2, 1, 30, 15, 123456, tzinfo=UTC)
        assert steps == [(1,), (2,)]
        assert history == [
            (seq, "project.transition", AT + timedelta(minutes=seq), {"n": seq, "金额": "1.50"}, f"第{seq}次")
            for seq in (1, 2, 3)
        ]
        assert all(at.tzinfo is UTC for _, _, at, _, _ in history)


@POSTGRES_ONLY
async def test_the_driver_applies_the_columns_bind_and_result_conversions(database: Database, mini: Mini) -> None:
    """The driver runs the types' processors as SQLAlchemy does: UTCDateTime refuses a naive instant before
    anything is sent, and turns a naive timestamp the server returns into an aware UTC one; Money rounds a
    computed amount to four places."""
    with pytest.raises(ValueError, match="naive datetime"):
        async with database.transaction() as session:
            assert DRIVER_KEY in session.info
            await driver.execute(session, INSERT_PROJECT, project_row("naive", created_at=datetime(2026, 3, 2, 9)))
    assert await committed(database, projects) == set()

    converted = select(
        type_coerce(func.timezone("UTC", projects.c.created_at), UTCDateTime),  # timestamp without time zone
        type_coerce(projects.c.total_investment / 7, Money),
    ).where(projects.c.id == bindparam("project_id"))
    expected = [(datetime(2026, 3, 2, 1, 30, 15, 123456, tzinfo=UTC), Decimal("17636.6842"))]
    async with database.transaction() as session:
        await write_project(session, "p1")
        rows = await driver.rows(session, converted, {"project_id": "p1"})
        assert not went_through_sqlalchemy(rows)
        assert tuples(rows) == expected and rows[0][0].tzinfo is UTC
        assert session.info[DRIVER_KEY].plans.plan(converted, frozenset({"project_id"}), False).convert
    async with database.reader() as session:
        assert tuples(await driver.rows(session, converted, {"project_id": "p1"})) == expected


# --- plans: literals, missing parameters, IN lists, the cache ----------------------------------------------------


@POSTGRES_ONLY
async def test_literal_values_carried_by_a_statement_are_filled_in(database: Database, mini: Mini) -> None:
    """``.values(state="…")``, ``.values(step=7)`` and ``where(col == "literal")`` run on the driver with the
    literal sent for its placeholder; the caller gives only the other parameters."""
    set_literal_state = update(projects).where(projects.c.id == bindparam("project_id")).values(state="literal_state")
    insert_step_seven = project_steps.insert().values(step=7)
    in_literal_state = select(projects.c.id).where(projects.c.state == "literal_state")
    in_other_state = select(projects.c.id).where(projects.c.state == "no_such_state")
    async with database.transaction() as session:
        plans = session.info[DRIVER_KEY].plans
        await write_project(session, "p1", event_count=0)
        await write_project(session, "p2", event_count=0)
        await driver.execute(session, set_literal_state, {"project_id": "p1"})
        await driver.execute(session, insert_step_seven, {"project_id": "p1"})
        found = await driver.rows(session, in_literal_state)
        assert tuples(found) == [("p1",)] and not went_through_sqlalchemy(found)
        assert await driver.rows(session, in_other_state) == []
        for statement, names in [
            (set_literal_state, {"project_id"}),
            (insert_step_seven, {"project_id"}),
            (in_literal_state, set()),
        ]:
            assert plans.plan(statement, frozenset(names), False) is not None  # the driver's path, not the fallback
        carried = {name: value for name, _, value in plans.plan(in_literal_state, frozenset(), False).slots}
        assert carried == {"state_1": "literal_state"}
    async with database.reader() as session:
        states = dict((await session.execute(select(projects.c.id, projects.c.state))).all())
        steps = set((await session.execute(select(project_steps.c.project_id, project_steps.c.step))).all())
    assert states == {"p1": "literal_state", "p2": "draft"}
    assert steps == {("p1", 1), ("p1", 7), ("p2", 1)}


@POSTGRES_ONLY
async def test_a_missing_required_parameter_raises_key_error_naming_it(database: Database, mini: Mini) -> None:
    """A placeholder neither given nor carried by the statement raises KeyError with its name (for one
    statement and for any entry of a batch), and the transaction is rolled back."""
    with pytest.raises(KeyError, match="new_state"):
        async with database.transaction() as session:
            await write_project(session, "p1", event_count=0)
            await driver.execute(session, SET_STATE, {"project_id": "p1"})
    with pytest.raises(KeyError, match="'step'"):
        async with database.transaction() as session:
            await write_project(session, "p2", event_count=0)
            await driver.execute_many(session, INSERT_STEP, [{"project_id": "p2", "step": 2}, {"project_id": "p2"}])
    assert await committed(database, projects) == set()
    assert await committed(database, project_steps, "project_id") == set()


async def test_statements_with_an_expanding_in_list_go_through_sqlalchemy(database: Database, mini: Mini) -> None:
    """An ``IN`` list (a bound list or literal values) has no plan; ``driver.rows`` runs it through
    SQLAlchemy in the same transaction, seeing the rows the driver wrote there."""
    literal_list = select(projects.c.id).where(projects.c.id.in_(["p1", "p3"])).order_by(projects.c.id)
    async with database.transaction() as session:
        if database.dialect == "postgresql":
            plans = session.info[DRIVER_KEY].plans
            assert plans.plan(SELECT_PROJECTS_IN, frozenset({"ids"}), False) is None
            assert plans.plan(literal_list, frozenset(), False) is None
        for project_id in ("p1", "p2", "p3"):
            await write_project(session, project_id, event_count=0)  # not committed yet
        found = await driver.rows(session, SELECT_PROJECTS_IN, {"ids": ["p3", "p2", "nope"]})
        assert went_through_sqlalchemy(found)
        assert tuples(found) == [("p2",), ("p3",)]
        assert tuples(await driver.rows(session, literal_list)) == [("p1",), ("p3",)]


@POSTGRES_ONLY
async def test_plans_are_cached_per_statement_and_parameter_names(database: Database) -> None:
    """One Plan per (statement, parameter names, batch or not), shared by the Database's transactions; the
    result conversions learned on a statement's first run stay with its plan."""
    async with database.transaction() as session:
        plans: Plans = session.info[DRIVER_KEY].plans
        required = frozenset({"id", "name", "roles", "created_at"})
        plan = plans.plan(INSERT_PRINCIPAL, required, False)
        assert plan is not None and plan.statement is INSERT_PRINCIPAL
        assert plans.plan(INSERT_PRINCIPAL, required, False) is plan
        with_unit = plans.plan(INSERT_PRINCIPAL, required | {"unit_id"}, False)
        assert with_unit is not None and with_unit is not plan
        assert sorted(name for name, _, _ in plan.slots) == sorted(required)
        assert sorted(name for name, _, _ in with_unit.slots) == sorted(required | {"unit_id"})
        assert plans.plan(INSERT_PRINCIPAL, required, True) is not plan  # a batch has a plan of its own
        twin = principals.insert()  # an equal statement, built again: keyed by identity
        assert plans.plan(twin, required, False) is not plan

        query = plans.plan(SELECT_STEPS, frozenset({"project_id"}), False)
        assert query is not None and query.results is None  # not run yet
        assert await driver.rows(session, SELECT_STEPS, {"project_id": "none"}) == []
        assert plans.plan(SELECT_STEPS, frozenset({"project_id"}), False) is query
        assert query.results is not None and len(query.results) == 1
    async with database.transaction() as session:
        assert session.info[DRIVER_KEY].plans is plans
        assert plans.plan(INSERT_PRINCIPAL, required, False) is plan


# --- transactions: errors, rollback, commit -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["execute", "execute_many", "rows"])
async def test_an_integrity_violation_raises_integrity_error_and_rolls_back_the_whole_transaction(
    database: Database, mini: Mini, how: str
) -> None:
    """A duplicate key sent by ``driver.execute`` / ``execute_many`` / ``rows`` raises IntegrityError, and
    nothing written before it in the block (through the driver or the session) is kept."""
    async with database.transaction() as session:
        await write_project(session, "kept")
    with pytest.raises(IntegrityError) as raised:
        async with database.transaction() as session:
            await write_project(session, "lost")
            await session.execute(INSERT_STEP, {"project_id": "lost", "step": 5})
            if how == "execute":
                await driver.execute(session, INSERT_PROJECT, project_row("kept"))
            elif how == "execute_many":
                await driver.execute_many(session, INSERT_STEP, [{"project_id": "lost", "step": 6},
                                                                 {"project_id": "kept", "step": 1}])  # fmt: skip
            else:
                await driver.rows(session, INSERT_STEP_RETURNING, {"project_id": "lost", "step": 5})
            pytest.fail("the duplicate was accepted")
    if database.dialect == "postgresql":
        assert getattr(raised.value.orig, "sqlstate", None) == "23505"  # unique_violation
        assert isinstance(raised.value.orig, asyncpg.UniqueViolationError)  # the driver's own error, wrapped
    assert await committed(database, projects) == {"kept"}
    assert await committed(database, project_steps, "project_id") == {"kept"}
    assert await committed(database, events, "project_id") == {"kept"}
    async with database.transaction() as session:  # the next transaction works
        await write_project(session, "after")
    assert await committed(database, projects) == {"kept", "after"}


@POSTGRES_ONLY
async def test_after_an_integrity_violation_the_connection_is_pooled_outside_any_transaction(
    lone: Database,
) -> None:
    """The one pooled connection survives a duplicate key (it is not dropped), comes back with no server
    transaction open (rolled back, not aborted), and the next transaction on it commits."""
    async with lone.transaction() as session:
        await write_project(session, "kept")
        pid = await backend_pid(session)
    with pytest.raises(IntegrityError):
        async with lone.transaction() as session:
            await write_project(session, "lost")
            await driver.execute(session, INSERT_PROJECT, project_row("kept"))
    async with lone.autocommit() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert not raw.is_in_transaction()
        assert await raw.fetchval("SELECT pg_backend_pid()") == pid
        assert await raw.fetchval("SELECT count(*) FROM projects") == 1
    async with lone.transaction() as session:
        assert await backend_pid(session) == pid
        await write_project(session, "after")
    assert await committed(lone, projects) == {"kept", "after"}


async def test_a_savepoint_the_session_has_begun_contains_an_integrity_violation_of_the_driver(
    database: Database, mini: Mini
) -> None:
    """Inside ``session.begin_nested()`` whose SAVEPOINT the session has sent (it ran a statement there, as the
    services' report filing does), a duplicate key sent by the driver is undone alone: the rest commits."""
    async with database.transaction() as session:
        await write_project(session, "first")
        with pytest.raises(IntegrityError):
            async with session.begin_nested():
                await session.execute(text("SELECT 1"))  # the session begins its SAVEPOINT lazily, here
                await driver.execute(session, INSERT_STEP, {"project_id": "first", "step": 9})
                await driver.execute(session, INSERT_PROJECT, project_row("first"))
        await write_project(session, "second")
    assert await committed(database, projects) == {"first", "second"}
    async with database.reader() as session:
        assert tuples(await driver.rows(session, SELECT_STEPS, {"project_id": "first"})) == [(1,)]


async def test_an_exception_in_the_block_rolls_back_both_paths_and_a_normal_exit_commits_both(
    database: Database, mini: Mini
) -> None:
    """Writes through the driver and through ``session.execute`` share one transaction: invisible to others
    until the block ends, all rolled back when the caller's code raises, all committed when it returns."""

    async def write_both(session: AsyncSession, project_id: str) -> None:
        await write_project(session, project_id, event_count=2)
        await session.execute(INSERT_STEP, {"project_id": project_id, "step": 4})
        await session.execute(SET_STATE, {"project_id": project_id, "new_state": "permitting"})
        # Each path sees the other's writes (one connection, one transaction)...
        [row], steps, history = await read_project(session, project_id)
        assert row[2] == "permitting" and steps == [(1,), (4,)] and len(history) == 2
        state = await session.scalar(select(projects.c.state).where(projects.c.id == project_id))
        assert state == "permitting"
        # ...and nobody else does before the commit.
        assert await committed(database, projects) == set()

    with pytest.raises(RuntimeError, match="the caller's own failure"):
        async with database.transaction() as session:
            await write_both(session, "p1")
            raise RuntimeError("the caller's own failure")
    assert await committed(database, projects) == set()
    assert await committed(database, project_steps, "project_id") == set()
    assert await committed(database, events, "project_id") == set()

    async with database.transaction() as session:
        await write_both(session, "p1")
    async with database.reader() as session:
        [row], steps, history = await read_project(session, "p1")
    assert row[2] == "permitting" and steps == [(1,), (4,)] and [seq for seq, *_ in history] == [1, 2]


# --- broken connections and cancellation --------------------------------------------------------------------------


@POSTGRES_ONLY
@pytest.mark.parametrize("how", ["rows", "execute", "execute_many"])
async def test_a_connection_broken_mid_transaction_raises_dbapi_error_and_is_not_pooled_again(
    lone: Database, db_url: str, how: str
) -> None:
    """The server process ends mid-transaction: the next driver statement raises DBAPIError (not
    IntegrityError), nothing of the block is kept, and the next transaction gets a new connection."""
    with pytest.raises(DBAPIError) as raised:
        async with lone.transaction() as session:
            await write_project(session, "lost")
            pid = await backend_pid(session)
            await terminate(db_url, pid)
            if how == "rows":
                await driver.rows(session, SELECT_PROJECT, {"project_id": "lost"})
            elif how == "execute":
                await driver.execute(session, SET_STATE, {"project_id": "lost", "new_state": "x"})
            else:
                await driver.execute_many(session, INSERT_STEP, [{"project_id": "lost", "step": 2}])
            pytest.fail("a statement ran on a terminated connection")
    assert not isinstance(raised.value, IntegrityError)
    assert isinstance(raised.value.orig, asyncpg.PostgresError | asyncpg.InterfaceError)
    async with lone.transaction() as session:  # only one connection may exist: the dead one was dropped
        assert await backend_pid(session) != pid
        await write_project(session, "after")
    assert await committed(lone, projects) == {"after"}


@POSTGRES_ONLY
async def test_a_pooled_connection_that_died_fails_one_transaction_and_is_then_replaced(
    lone: Database, db_url: str
) -> None:
    """A connection whose server process ended while it sat in the pool (no pre-ping) fails the ``BEGIN`` of
    the next transaction with DBAPIError; it is dropped, and the transaction after that works."""
    async with lone.transaction() as session:
        pid = await backend_pid(session)
    await terminate(db_url, pid)
    with pytest.raises(DBAPIError):
        async with lone.transaction() as session:
            await write_project(session, "lost")
    async with lone.transaction() as session:
        assert await backend_pid(session) != pid
        await write_project(session, "after")
    assert await committed(lone, projects) == {"after"}


@POSTGRES_ONLY
async def test_a_block_cancelled_by_asyncio_while_a_statement_runs_leaves_nothing_behind(lone: Database) -> None:
    """asyncio cancellation (a timeout) during a driver statement: the block is rolled back, and the pooled
    connection's next transaction works and commits only its own rows."""

    async def block() -> None:
        async with lone.transaction() as session:
            await driver.execute(session, INSERT_PRINCIPAL, principal_row("cancelled"))
            await driver.rows(session, SELECT_SLEEP)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await block()
    async with lone.transaction() as session:
        await driver.execute(session, INSERT_PRINCIPAL, principal_row("next"))
    assert await committed(lone, principals) == {"next"}


# --- savepoints, cancellation, statements SQLAlchemy renders per call ----------------------------------------


@pytest.mark.parametrize(
    "db_url",
    [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)
async def test_a_savepoint_holding_only_driver_statements_contains_their_integrity_violation(
    database: Database, mini: Mini
) -> None:
    """``session.begin_nested()`` around driver statements alone undoes only them on a duplicate key; what
    the block wrote before is committed when it returns (as on SQLite)."""
    async with database.transaction() as session:
        await write_project(session, "first")
        with pytest.raises(IntegrityError):
            async with session.begin_nested():
                await driver.execute(session, INSERT_PROJECT, project_row("first"))
    assert await committed(database, projects) == {"first"}


@POSTGRES_ONLY
async def test_a_block_cancelled_by_an_anyio_cancel_scope_during_a_session_statement_leaves_nothing_behind(
    lone: Database,
) -> None:
    """The contrast to the bug below: cancelled (AnyIO cancel scope) while a ``session.execute`` statement
    waits, the block keeps nothing, since SQLAlchemy invalidates a connection interrupted by a BaseException."""
    for attempt in range(5):
        with anyio.CancelScope() as scope:
            async with lone.transaction() as session:
                await driver.execute(session, INSERT_PRINCIPAL, principal_row(f"cancelled-{attempt}"))
                scope.cancel()
                await session.execute(SELECT_PRINCIPALS)
        assert scope.cancelled_caught
        async with lone.transaction() as session:
            await driver.execute(session, INSERT_PRINCIPAL, principal_row(f"next-{attempt}"))
        assert await committed(lone, principals) == {f"next-{n}" for n in range(attempt + 1)}


@POSTGRES_ONLY
@pytest.mark.parametrize("statement", ["a quick read", "a long statement"])
async def test_a_block_cancelled_by_an_anyio_cancel_scope_during_a_driver_statement_leaves_nothing_behind(
    lone: Database, statement: str
) -> None:
    """Cancelled (AnyIO cancel scope, as AnyIO task groups and Starlette cancel) while a driver statement
    waits for its result: nothing of the block is committed, and the next transaction commits its own rows."""
    async with lone.transaction() as session:  # plan and prepared statement ready: one round trip below
        await driver.rows(session, SELECT_PRINCIPALS)
    for attempt in range(10):
        with anyio.CancelScope() as scope:
            async with lone.transaction() as session:
                await driver.execute(session, INSERT_PRINCIPAL, principal_row(f"cancelled-{attempt}"))
                if statement == "a quick read":
                    scope.cancel()  # delivered while the read waits for its result
                    await driver.rows(session, SELECT_PRINCIPALS)
                else:
                    scope.deadline = anyio.current_time() + 0.3
                    await driver.rows(session, SELECT_SLEEP)
        assert scope.cancelled_caught
        async with lone.transaction() as session:
            await driver.execute(session, INSERT_PRINCIPAL, principal_row(f"next-{attempt}"))
        assert await committed(lone, principals) == {f"next-{n}" for n in range(attempt + 1)}


@POSTGRES_ONLY
async def test_a_literal_execute_parameter_works_on_the_driver_path(database: Database) -> None:
    """A ``literal_execute`` parameter (rendered by SQLAlchemy at execution time) gives the same rows in a
    write transaction as in a reader."""
    first = select(principals.c.id).order_by(principals.c.id).limit(bindparam("n", type_=Integer, literal_execute=True))
    async with database.transaction() as session:
        await driver.execute_many(session, INSERT_PRINCIPAL, [principal_row(f"p{n}") for n in (1, 2, 3)])
    async with database.reader() as session:
        assert tuples(await driver.rows(session, first, {"n": 2})) == [("p1",), ("p2",)]
    async with database.transaction() as session:
        assert tuples(await driver.rows(session, first, {"n": 2})) == [("p1",), ("p2",)]


@POSTGRES_ONLY
async def test_a_textual_query_returns_its_rows_on_the_driver_path(database: Database) -> None:
    """``driver.rows`` of a ``text()`` query gives the same rows in a write transaction as in a reader."""
    query = text("SELECT id FROM principals WHERE id = :principal_id")
    async with database.transaction() as session:
        await driver.execute(session, INSERT_PRINCIPAL, principal_row("p1"))
    async with database.reader() as session:
        assert tuples(await driver.rows(session, query, {"principal_id": "p1"})) == [("p1",)]
    async with database.transaction() as session:
        assert tuples(await driver.rows(session, query, {"principal_id": "p1"})) == [("p1",)]


@POSTGRES_ONLY
async def test_a_commit_the_server_turns_into_a_rollback_raises(database: Database, mini: Mini) -> None:
    """A block that swallows a statement's error returns normally, but PostgreSQL had aborted the
    transaction and answers its ``COMMIT`` with ``ROLLBACK``: that raises DBAPIError instead of passing for a
    commit, and nothing of the block is kept."""
    with pytest.raises(DBAPIError, match="ROLLBACK"):
        async with database.transaction() as session:
            await write_project(session, "first")
            with pytest.raises(IntegrityError):
                await driver.execute(session, INSERT_PROJECT, project_row("first"))
    assert await committed(database, projects) == set()


@POSTGRES_ONLY
async def test_a_unit_of_work_after_a_cancelled_one_in_a_one_connection_block_gets_a_live_connection(
    database: Database,
) -> None:
    """Inside :meth:`Database.one_connection`, a transaction cancelled mid-statement closes the held
    connection; the block's next unit of work checks out another instead of failing on the closed one."""
    async with database.one_connection():
        with anyio.CancelScope() as scope:
            async with database.transaction() as session:
                await driver.execute(session, INSERT_PRINCIPAL, principal_row("cancelled"))
                scope.deadline = anyio.current_time() + 0.3
                await driver.rows(session, SELECT_SLEEP)
        assert scope.cancelled_caught
        async with database.transaction() as session:
            await driver.execute(session, INSERT_PRINCIPAL, principal_row("next"))
    assert await committed(database, principals) == {"next"}
