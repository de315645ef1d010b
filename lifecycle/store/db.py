"""The database handle: an async SQLAlchemy engine, its sessions, and the per-dialect settings that make
transactions behave.

SQLite (the embedded default):

* WAL journal, so readers never wait for the writer and the writer never waits for readers;
* ``foreign_keys=ON`` (SQLite leaves it off per connection unless asked);
* ``busy_timeout``: a second writer waits for the lock instead of failing at once;
* every write transaction starts with ``BEGIN IMMEDIATE``. With the default deferred ``BEGIN`` two
  transactions may both read and then both try to upgrade to the write lock; one of them then fails with
  "database is locked" whatever the timeout. Taking the write lock at ``BEGIN`` makes writers queue instead.
  The driver's own transaction handling is switched off and SQLAlchemy's ``begin`` event emits the
  ``BEGIN`` (the recipe in SQLAlchemy's SQLite documentation; for aiosqlite the events go on
  ``engine.sync_engine``). Read-only sessions (:meth:`Database.reader`) use a plain deferred ``BEGIN``
  (a snapshot that takes no write lock) with ``query_only`` on.

PostgreSQL: a connection pool sized by the caller (by default
:data:`~lifecycle.settings.DEFAULT_DB_POOL_SIZE` connections kept open, and
:data:`~lifecycle.settings.DEFAULT_DB_MAX_OVERFLOW` more at a peak). Writers run at the default READ COMMITTED
and lock a project's row with ``SELECT … FOR UPDATE`` (writers of different projects never wait on each
other); once the lock is granted, every later statement of the transaction sees what the previous holder
committed. Readers run ``REPEATABLE READ READ ONLY``: all their statements see one snapshot.

A PostgreSQL write transaction is begun and ended on the asyncpg connection itself, and the store's prebuilt
statements go to the driver (:mod:`lifecycle.store.driver`); writes it holds back (:mod:`lifecycle.store.deferred`)
are sent before any statement SQLAlchemy runs on the same connection (a ``before_execute`` listener).

Single statements that need no transaction around them (the idempotency records) use :meth:`Database.autocommit`:
on PostgreSQL a connection in autocommit mode, so the statement is its own transaction and costs no ``BEGIN``
and ``COMMIT`` round trips; on SQLite a write transaction as above (``BEGIN IMMEDIATE``), which costs no round
trip there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_only

from lifecycle.settings import DEFAULT_DB_MAX_OVERFLOW, DEFAULT_DB_POOL_SIZE, async_database_url
from lifecycle.store.driver import DRIVER_KEY, DriverTransaction, Plans

_READ_ONLY = "lifecycle_read_only"
"""Execution option marking a connection whose transactions only read (deferred ``BEGIN`` on SQLite)."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long an SQLite writer waits for the write lock before giving up."""


@dataclass
class _Held:
    """The connection :meth:`Database.one_connection` holds, and whether a unit of work is using it."""

    driver: DriverTransaction
    busy: bool = False


class Database:
    """An open database: the async engine and two session factories (writer and reader).

    Use :meth:`transaction` for a unit of work that writes (one transaction, committed once at the end,
    rolled back on any exception), :meth:`reader` for one that only reads, and :meth:`autocommit` for single
    statements that are atomic on their own.

    Attributes:
        url: the async URL (``sqlite+aiosqlite://…`` or ``postgresql+asyncpg://…``).
        dialect: ``"sqlite"`` or ``"postgresql"``.
        engine: the SQLAlchemy :class:`AsyncEngine`.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = DEFAULT_DB_POOL_SIZE,
        max_overflow: int = DEFAULT_DB_MAX_OVERFLOW,
        echo: bool = False,
    ) -> None:
        self.url = async_database_url(url)
        options: dict[str, Any] = {"echo": echo}
        if self.url.startswith("sqlite"):
            # sqlite3's own wait, in seconds; the PRAGMA below says the same for clarity.
            options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            # No pre-ping: it would cost a round trip on every checkout (several per request). Connections
            # are recycled hourly instead, and a dead one fails its transaction, which the caller may retry.
            options.update(pool_size=pool_size, max_overflow=max_overflow, pool_recycle=3600)
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        self.dialect: Literal["sqlite", "postgresql"] = (
            "sqlite" if self.engine.dialect.name == "sqlite" else "postgresql"
        )
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        elif self.engine.dialect.driver == "asyncpg":
            event.listen(self.engine.sync_engine, "before_execute", _send_held_writes)
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        reading: dict[str, Any] = {_READ_ONLY: True}
        if self.dialect == "postgresql":
            # One snapshot for every statement of a read (a project and its tasks agree), and no writes.
            reading.update(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        self._reader = async_sessionmaker(
            self.engine.execution_options(**reading), expire_on_commit=False, autoflush=False
        )
        # PostgreSQL: the driver then sends each statement alone, without BEGIN/COMMIT. The isolation level
        # is the connection's own setting (no round trip) and is reset when the connection goes back.
        self._autocommit = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT") if self.dialect == "postgresql" else None
        )
        self._plans = Plans(self.engine.dialect) if self.engine.dialect.driver == "asyncpg" else None
        self._held: ContextVar[_Held | None] = ContextVar(f"lifecycle_held_connection_{id(self)}", default=None)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one write transaction: committed when the block ends, rolled back if it raises.

        On PostgreSQL the transaction is begun and ended on the asyncpg connection itself, and the session
        carries it, so that the store's prebuilt statements can go to the driver directly (see
        :mod:`lifecycle.store.driver`); the session's own statements run in the same transaction."""
        if self._autocommit is None or self._plans is None:
            async with self._writer() as session, session.begin():
                yield session
            return
        async with self._driver_connection() as driver:
            try:
                await driver.begin()
                # The session only runs Core statements (the store uses no ORM unit of work). Until it runs one
                # itself it holds nothing, so there is nothing to end; when it has, ending its bookkeeping sends
                # nothing to the server either (the connection is in autocommit mode: the driver commits).
                session = self._writer(bind=driver.connection)
                session.info[DRIVER_KEY] = driver
                try:
                    yield session
                    if session.in_transaction():
                        await session.commit()
                finally:
                    if session.in_transaction():
                        await session.close()
                await driver.commit()
            except BaseException as cause:
                await driver.roll_back(cause)
                raise

    @asynccontextmanager
    async def one_connection(self) -> AsyncIterator[None]:
        """Run the block's write transactions and single statements (:meth:`transaction`,
        :meth:`autocommit`) on one pooled connection, checked out once (PostgreSQL; elsewhere nothing
        changes). An API request that claims an idempotency key, runs its change and stores its answer
        would otherwise check out a connection three times, and a checkout through SQLAlchemy costs about
        as much CPU as a statement. The connection serves one unit of work at a time: one that starts while
        another is open on it (nested) gets a connection of its own, as without this block. Readers
        (:meth:`reader`) keep their own connections."""
        if self._autocommit is None or self._plans is None or self._held.get() is not None:
            yield
            return
        async with self._checkout() as driver:
            token = self._held.set(_Held(driver))
            try:
                yield
            finally:
                self._held.reset(token)

    @asynccontextmanager
    async def _driver_connection(self) -> AsyncIterator[DriverTransaction]:
        """The block's connection in autocommit mode with its driver: the one held by :meth:`one_connection`
        when it is free, else one checked out for the block. While the block lasts the connection's ``info``
        carries the driver: the store's statements run on the connection go to it (:mod:`.driver`), and a
        statement SQLAlchemy runs there sends the writes it holds back first. The ``info`` dict follows the
        pooled connection, so the entry goes when the block ends."""
        assert self._autocommit is not None and self._plans is not None
        held = self._held.get()
        # A held connection a failed unit of work closed (see DriverTransaction.roll_back) serves no other.
        if held is not None and not held.busy and not held.driver.driver.is_closed():
            held.busy = True
            try:
                with _carried(held.driver) as driver:
                    yield driver
            finally:
                held.busy = False
            return
        async with self._checkout() as checked_out:
            with _carried(checked_out) as driver:
                yield driver

    @asynccontextmanager
    async def _checkout(self) -> AsyncIterator[DriverTransaction]:
        """A pooled connection in autocommit mode, with its asyncpg connection, returned when the block ends."""
        assert self._autocommit is not None and self._plans is not None
        connection = await self._autocommit.connect()
        try:
            # Just checked out, so valid: reading its DBAPI connection does no I/O (no greenlet needed).
            assert connection.sync_connection is not None
            driver = connection.sync_connection.connection.driver_connection
            yield DriverTransaction(connection, driver, self._plans)
        finally:
            # Not SQLAlchemy's `async with`, which closes in a task of its own behind a shield (a task and an
            # event-loop turn per checkout) so that a cancelled caller cannot abandon a close that waits on
            # the server: returning an autocommit connection waits on nothing (no transaction to reset; the
            # isolation level is reset locally), and a transaction's failure was dealt with before.
            await connection.close()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A session in one read-only transaction: one consistent snapshot (SQLite's deferred transaction in
        WAL mode; PostgreSQL ``REPEATABLE READ READ ONLY``), in which any write fails."""
        # The session begins on its first statement and rolls back when closed: nothing was written.
        async with self._reader() as session:
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection whose statements each commit on their own: for single statements that need no
        transaction around them. PostgreSQL runs them in autocommit mode (no ``BEGIN``/``COMMIT`` round
        trips); SQLite runs the block in one write transaction (``BEGIN IMMEDIATE``: writers queue as
        everywhere else), committed when it ends and rolled back if it raises."""
        if self._autocommit is None:
            async with self.engine.begin() as connection:
                yield connection
        elif self._plans is None:
            async with self._autocommit.connect() as connection:
                yield connection
        else:
            async with self._driver_connection() as driver:
                yield driver.connection

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"


@contextmanager
def _carried(driver: DriverTransaction) -> Iterator[DriverTransaction]:
    """``driver`` in its connection's ``info`` while the block lasts."""
    info = driver.connection.info
    info[DRIVER_KEY] = driver
    try:
        yield driver
    finally:
        info.pop(DRIVER_KEY, None)


def _send_held_writes(connection: Connection, *_: Any) -> None:
    """Before SQLAlchemy runs a statement on a connection whose transaction holds writes back (see
    :mod:`lifecycle.store.deferred`), send them: the statement must find them done."""
    if connection.closed or connection.invalidated:
        return  # SQLAlchemy raises its own error for this statement
    transaction: DriverTransaction | None = connection.info.get(DRIVER_KEY)
    if transaction is not None and transaction.held:
        await_only(transaction.flush())  # inside SQLAlchemy's greenlet: waits on the event loop


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Stop the driver from issuing BEGIN (and COMMIT before DDL) itself: the begin event does it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # In WAL mode NORMAL is durable against application crashes and much faster than FULL.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        # query_only makes a reader's accidental write fail, as PostgreSQL's read-only transactions do.
        connection.exec_driver_sql(f"PRAGMA query_only={int(bool(read_only))}")
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
