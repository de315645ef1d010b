"""Statements sent to the database driver directly, inside a PostgreSQL write transaction.

Why: SQLAlchemy's async execution path (the greenlet hand-over, the execution context, the result object)
costs about 120 µs of CPU per statement on top of asyncpg's own 80 µs (measured on this project's machine:
PostgreSQL 15, asyncpg 0.32, SQLAlchemy 2.1), more than the statement's round trip. A transition runs some
eight statements under its lock, so on a busy API server that overhead, not the database, set the pace.

How, without writing any statement twice:

* a PostgreSQL write transaction (:meth:`lifecycle.store.db.Database.transaction`) is begun and committed on
  the asyncpg connection itself (the SQLAlchemy connection under it is in autocommit mode, so SQLAlchemy
  sends no ``BEGIN`` or ``COMMIT`` of its own), and the session carries a :class:`DriverTransaction` in its
  ``info``; so does the connection of an autocommit block (:meth:`~lifecycle.store.db.Database.autocommit`),
  where each statement commits on its own;
* the repositories run their prebuilt statements with :func:`rows`, :func:`execute` and
  :func:`execute_many`. In such a transaction these compile the SQLAlchemy Core statement once per set of
  parameter names (a :class:`Plan`, kept for the process) and hand the SQL text to asyncpg, whose own cache
  prepares it once per connection. Parameters and result columns go through the same type conversions
  SQLAlchemy applies (each type's ``bind_processor`` and ``result_processor`` for the asyncpg dialect), so
  the values are those SQLAlchemy would read and write. Anything else — SQLite, a read-only session, a
  statement whose SQL SQLAlchemy renders per call (an expanding ``IN`` list, a ``literal_execute``
  parameter), a query that does not declare its result columns (a bare ``text()``), a statement inside a
  savepoint (``session.begin_nested()``, whose ``SAVEPOINT`` SQLAlchemy sends with its next statement), any
  statement not run through these functions — goes through SQLAlchemy as usual, on the same connection and in
  the same transaction;
* errors keep SQLAlchemy's shape: an integrity violation is :class:`sqlalchemy.exc.IntegrityError`, any other
  database error :class:`sqlalchemy.exc.DBAPIError`, and a connection the driver found broken is invalidated so
  that the pool does not hand it out again. A ``COMMIT`` the server answers with ``ROLLBACK`` (the
  transaction had failed) raises rather than passing for a commit; a block cancelled mid-statement closes its
  connection, so the server ends the transaction and no later checkout finds it open.

Inside :func:`deferred` (a transition's writes), writes are held back and sent as data-modifying ``WITH``
clauses of the next statement: a transition's project row, steps and events then cost one round trip, not
three (see :mod:`lifecycle.store.deferred` for when that gives the same result, and when it is not done).

Rows come back as sequences in the statement's column order (an asyncpg ``Record`` or a tuple, or
SQLAlchemy's ``Row`` on the other path): read them by position.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import anyio
import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

from .deferred import Footprint, PendingWrites, footprint

DRIVER_KEY: Final = "lifecycle.driver_transaction"
"""The key of the ``info`` of a session (a PostgreSQL write transaction) or of a connection (an autocommit block)
under which its :class:`DriverTransaction` is kept."""

_MISSING: Final = object()

Processor = Callable[[Any], Any]


@dataclass
class Plan:
    """One statement compiled for asyncpg with one set of parameter names.

    Attributes:
        sql: the SQL text with ``$n`` placeholders.
        slots: per placeholder, in order: the parameter name, its bind processor (or None) and the value the
            statement itself carries for it (a literal in the statement), or ``_MISSING`` when the caller
            must give it.
        columns: the statement's declared result columns (a query's selected columns, a write's
            ``RETURNING`` columns), or None when it declares none (a bare ``text()``).
        results: per result column, its result processor (or None); None until the first run has told the
            columns' database types (numeric conversions depend on them).
        convert: whether any result column has a processor.
        footprint: what it does to which tables (whether it may share a statement with held writes).
    """

    statement: Executable  # kept alive: the cache is keyed by its id
    sql: str
    slots: tuple[tuple[str, Processor | None, Any], ...]
    columns: tuple[Any, ...] | None
    footprint: Footprint
    results: tuple[Processor | None, ...] | None = None
    convert: bool = False

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for ``params``, converted as SQLAlchemy would."""
        out = []
        for name, processor, carried in self.slots:
            value = params.get(name, carried)
            if value is _MISSING:
                raise KeyError(f"no value for parameter {name!r} of {self.sql!r}")
            out.append(processor(value) if processor is not None else value)
        return out


class Plans:
    """The plans of one dialect, by statement and parameter names (a process lives with a few dozen)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._plans: dict[tuple[int, frozenset[str], bool], Plan | None] = {}
        self.combined: dict[tuple[int, ...], str] = {}
        """The SQL texts of held writes sent together (:mod:`.deferred`), by the plans they combine."""

    def plan(self, statement: Executable, names: frozenset[str], many: bool) -> Plan | None:
        """The plan of ``statement`` for parameters ``names``, or None when it cannot run on the driver."""
        key = (id(statement), names, many)
        try:
            return self._plans[key]
        except KeyError:
            plan = self._plans[key] = self._compile(statement, names, many)
            return plan

    def _compile(self, statement: Executable, names: frozenset[str], many: bool) -> Plan | None:
        compiled = statement.compile(dialect=self.dialect, column_keys=sorted(names), for_executemany=many)  # type: ignore[attr-defined]
        if not isinstance(compiled, SQLCompiler) or compiled.positiontup is None:
            return None
        if compiled.escaped_bind_names or compiled.post_compile_params or compiled.literal_execute_params:
            # Renamed parameters, or SQL rendered per call (expanding IN lists, literal_execute values).
            return None
        binds = compiled.binds
        slots = []
        for name in compiled.positiontup:
            bind = binds[name]
            processor = bind.type.dialect_impl(self.dialect).bind_processor(self.dialect)
            if bind.callable is not None:
                return None  # a value computed per execution: SQLAlchemy's business
            carried = _MISSING if bind.required else bind.value
            slots.append((name, processor, carried))
        # A query's selected columns, or a write's RETURNING columns; a bare text() has no such attribute.
        exported = getattr(statement, "exported_columns", None)
        columns = None if exported is None else tuple(exported)
        return Plan(statement, compiled.string, tuple(slots), columns, footprint(statement, compiled.string))

    def result_processors(self, plan: Plan, type_oids: Sequence[int]) -> tuple[Processor | None, ...]:
        """The result processors of the plan's columns, given their database types."""
        columns = plan.columns or ()
        if len(columns) != len(type_oids):
            raise RuntimeError(f"{len(type_oids)} result columns where the statement names {len(columns)}")
        return tuple(
            column.type.dialect_impl(self.dialect).result_processor(self.dialect, oid)
            for column, oid in zip(columns, type_oids, strict=True)
        )


class DriverTransaction:
    """A PostgreSQL write transaction begun on the asyncpg connection itself, or the connection of an
    autocommit block, whose statements then commit one by one (see the module docstring)."""

    __slots__ = ("connection", "discarded", "driver", "held", "open", "plans")

    def __init__(self, connection: AsyncConnection, driver: Any, plans: Plans) -> None:
        self.connection = connection
        self.driver = driver
        self.plans = plans
        self.held: PendingWrites | None = None
        """The writes held back inside :func:`deferred` (None outside it)."""
        self.discarded = False
        """Whether held writes were dropped (their block raised): the transaction must not commit."""
        self.open = False
        """Whether a transaction begun here is open (not in autocommit, where nothing is held back)."""

    async def begin(self) -> None:
        """``BEGIN`` (READ COMMITTED, the server's default)."""
        self.discarded = False  # a connection held for a request serves one transaction after another
        await self._call("BEGIN", (), self.driver.execute, "BEGIN")
        self.open = True

    async def commit(self) -> None:
        """``COMMIT``; raises :class:`~sqlalchemy.exc.DBAPIError` if the server rolled the transaction back
        instead (it answers ``ROLLBACK`` to a ``COMMIT`` of a transaction a failed statement had aborted), or
        if writes held back by :func:`deferred` were dropped because its block raised."""
        if self.discarded:
            failure = RuntimeError("writes held back for a later statement were dropped when their block raised")
            raise DBAPIError("COMMIT", (), failure)
        await self.flush()
        self.open = False
        status = await self._call("COMMIT", (), self.driver.execute, "COMMIT")
        if status != "COMMIT":
            failure = RuntimeError(f"PostgreSQL answered {status!r} to COMMIT: the transaction had failed")
            raise DBAPIError("COMMIT", (), failure)

    async def roll_back(self, cause: BaseException) -> None:
        """End a transaction that ``cause`` interrupted; ``cause`` is then raised by the caller.

        After an error the connection rolls back and stays in the pool. Cancelled (``cause`` is no
        :class:`Exception`), the block must not wait on the server: an AnyIO cancel scope would cancel the
        ``ROLLBACK`` as well, and asyncpg first waits for the cancelled statement's cancel request. So the
        connection is closed instead, which ends the transaction on the server, and dropped from the pool; so
        is a connection that is broken or cannot roll back."""
        self.open = False
        if isinstance(cause, Exception) and not self.driver.is_closed():
            try:
                await self.driver.execute("ROLLBACK")
                return
            except Exception:
                pass
        self.driver.terminate()  # synchronous: the server sees the socket close and rolls back
        with anyio.CancelScope(shield=True):  # invalidating awaits (SQLAlchemy closes the connection record)
            await self.connection.invalidate()

    async def fetch(self, plan: Plan, args: list[Any], sql: str | None = None) -> Sequence[Sequence[Any]]:
        """The rows of ``plan`` for ``args``; ``sql`` is the plan's statement with held writes before it."""
        sql = sql or plan.sql
        if plan.results is None:
            prepared = await self._call(sql, args, self.driver.prepare, sql)
            plan.results = self.plans.result_processors(plan, [a.type.oid for a in prepared.get_attributes()])
            plan.convert = any(plan.results)
        records = await self._call(sql, args, self.driver.fetch, sql, *args)
        if not plan.convert:
            return records  # type: ignore[no-any-return]
        processors = plan.results
        return [
            tuple(p(v) if p is not None else v for p, v in zip(processors, record, strict=True)) for record in records
        ]

    async def execute(self, plan: Plan, args: list[Any]) -> None:
        await self._call(plan.sql, args, self.driver.execute, plan.sql, *args)

    async def execute_many(self, plan: Plan, args: list[list[Any]]) -> None:
        await self._call(plan.sql, args, self.driver.executemany, plan.sql, args)

    async def write(self, plan: Plan, rows: list[list[Any]]) -> None:
        """Run ``plan`` for each of ``rows``: held back inside :func:`deferred` when it may be, else now."""
        held = self.held
        if held is None or not held.may_hold(plan, len(rows)):
            await self.flush()
            if len(rows) == 1:
                await self.execute(plan, rows[0])
            else:
                await self.execute_many(plan, rows)
            return
        if not held.accepts(plan, len(rows)):
            await self.flush()
        held.add(plan, rows)

    async def query(self, plan: Plan, args: list[Any]) -> Sequence[Sequence[Any]]:
        """The rows of ``plan`` for ``args``, carrying the held writes when it may (see :mod:`.deferred`)."""
        held = self.held
        if not held:
            return await self.fetch(plan, args)
        if held.reaches(plan):
            await self.flush()
            return await self.fetch(plan, args)
        sql, combined = held.take(plan, args)
        return await self.fetch(plan, combined, sql)

    async def flush(self) -> None:
        """Send the held writes, if any, as one statement."""
        if self.held:
            sql, args = self.held.take()
            await self._call(sql, args, self.driver.execute, sql, *args)

    async def _call(self, sql: str, args: Any, method: Callable[..., Any], *call_args: Any) -> Any:
        try:
            return await method(*call_args)
        except asyncpg.IntegrityConstraintViolationError as error:
            raise IntegrityError(sql, args, error) from error
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            if self.driver.is_closed():
                await self.connection.invalidate()
            raise DBAPIError(sql, args, error) from error


Executor = AsyncSession | AsyncConnection
"""What the module's functions run statements on: a session, or a Core connection (e.g. in autocommit)."""


def _driver_plan(
    executor: Executor, statement: Executable, names: frozenset[str], many: bool
) -> tuple[DriverTransaction, Plan] | None:
    transaction: DriverTransaction | None = executor.info.get(DRIVER_KEY)
    if transaction is None or executor.in_nested_transaction():
        # SQLite, a reader, or a savepoint (SQLAlchemy sends its SAVEPOINT with its next statement; held
        # writes go before it, see lifecycle.store.db).
        return None
    plan = transaction.plans.plan(statement, names, many)
    return None if plan is None else (transaction, plan)


async def rows(
    executor: Executor, statement: Executable, params: Mapping[str, Any] | None = None
) -> Sequence[Sequence[Any]]:
    """Every row ``statement`` returns for ``params``, as sequences in its column order."""
    params = params or {}
    found = _driver_plan(executor, statement, frozenset(params), many=False)
    if found is None or found[1].columns is None:
        return (await executor.execute(statement, params)).all()
    transaction, plan = found
    return await transaction.query(plan, plan.args(params))


async def execute(executor: Executor, statement: Executable, params: Mapping[str, Any] | None = None) -> None:
    """Run ``statement`` once for ``params``, reading nothing back (inside :func:`deferred`, perhaps later)."""
    params = params or {}
    found = _driver_plan(executor, statement, frozenset(params), many=False)
    if found is None:
        await executor.execute(statement, params)
        return
    transaction, plan = found
    await transaction.write(plan, [plan.args(params)])


async def execute_many(executor: Executor, statement: Executable, params: Sequence[Mapping[str, Any]]) -> None:
    """Run ``statement`` once per entry of ``params`` (all with the same names), in one batch (inside
    :func:`deferred`, perhaps later)."""
    if not params:
        return
    found = _driver_plan(executor, statement, frozenset(params[0]), many=True)
    if found is None:
        await executor.execute(statement, list(params))
        return
    transaction, plan = found
    await transaction.write(plan, [plan.args(p) for p in params])


@asynccontextmanager
async def deferred(executor: Executor) -> AsyncIterator[None]:
    """Hold back the block's writes and send them with later statements (see :mod:`.deferred`); what is
    still held when the block ends is sent then. Only in a PostgreSQL write transaction; elsewhere (SQLite,
    a reader, an autocommit block, whose statements must each commit when they return), and when already
    inside such a block, the block just runs.

    If the block raises, what it held is dropped, and the transaction refuses to commit (it would lack
    writes its caller believed done)."""
    transaction: DriverTransaction | None = executor.info.get(DRIVER_KEY)
    if transaction is None or not transaction.open or transaction.held is not None:
        yield
        return
    transaction.held = PendingWrites(transaction.plans.combined)
    try:
        yield
        await transaction.flush()
    except BaseException:
        if transaction.held:
            transaction.discarded = True
        raise
    finally:
        transaction.held = None
