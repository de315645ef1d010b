"""The database handle: SQLite pragmas and BEGIN IMMEDIATE for writers, read-only readers on both
dialects."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from lifecycle.settings import DEFAULT_DB_MAX_OVERFLOW, DEFAULT_DB_POOL_SIZE
from lifecycle.store import Database
from lifecycle.store.migrate import upgrade_to_head


@pytest.mark.anyio
async def test_sqlite_connections_use_wal_foreign_keys_and_begin_immediate(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    upgrade_to_head(f"sqlite:///{path}")
    database = Database(f"sqlite:///{path}")
    assert database.url.startswith("sqlite+aiosqlite:")
    try:
        async with database.reader() as session:
            assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await session.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        async with database.transaction() as session:
            await session.execute(text("SELECT 1"))
            # The write lock is taken at BEGIN, before anything is written: another writer is refused.
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
                # Readers are not blocked (WAL).
                assert other.execute("SELECT count(*) FROM projects").fetchone() == (0,)
            finally:
                other.close()
        async with database.reader() as session:
            await session.execute(text("SELECT 1"))
            # A read-only transaction takes no write lock.
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
            finally:
                other.close()
    finally:
        await database.dispose()


@pytest.mark.anyio
async def test_readers_cannot_write(database: Database) -> None:
    with pytest.raises(DBAPIError, match=r"read-only|readonly|attempt to write"):
        async with database.reader() as session:
            await session.execute(text("DELETE FROM principals"))
    async with database.transaction() as session:  # a writer on the same pool is not affected
        await session.execute(text("DELETE FROM principals"))


@pytest.mark.anyio
async def test_autocommit_statements_are_committed_on_their_own(database: Database) -> None:
    insert = text("INSERT INTO principals (id, name, roles, created_at) VALUES ('p1', 'p1', '[]', CURRENT_TIMESTAMP)")
    async with database.autocommit() as connection:
        await connection.execute(insert)
        if database.dialect == "postgresql":
            # No transaction around it: another connection sees the row before the block ends.
            async with database.reader() as session:
                assert (await session.execute(text("SELECT count(*) FROM principals"))).scalar() == 1
            raw = await connection.get_raw_connection()
            assert not raw.driver_connection.is_in_transaction()
    async with database.reader() as session:  # SQLite: one write transaction, committed at the end
        assert (await session.execute(text("SELECT count(*) FROM principals"))).scalar() == 1


@pytest.mark.anyio
async def test_an_autocommit_block_that_raises_keeps_nothing_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "rollback.db"
    upgrade_to_head(f"sqlite:///{path}")
    database = Database(f"sqlite:///{path}")
    try:
        with pytest.raises(RuntimeError):
            async with database.autocommit() as connection:
                await connection.execute(
                    text("INSERT INTO principals (id, name, roles, created_at) VALUES ('p', 'p', '[]', '2026-01-01')")
                )
                raise RuntimeError
        async with database.reader() as session:
            assert (await session.execute(text("SELECT count(*) FROM principals"))).scalar() == 0
    finally:
        await database.dispose()


def test_postgresql_pools_are_sized_by_the_caller_with_defaults_from_the_settings() -> None:
    url = "postgresql+asyncpg://u@db.example/lifecycle"  # nothing connects: the pool opens lazily
    for database, size, overflow in (
        (Database(url), DEFAULT_DB_POOL_SIZE, DEFAULT_DB_MAX_OVERFLOW),
        (Database(url, pool_size=3, max_overflow=2), 3, 2),
    ):
        pool: Any = database.engine.pool
        assert (pool.size(), pool._max_overflow) == (size, overflow)


async def _backend(executor: Any) -> int | None:
    """The PostgreSQL backend serving ``executor`` (a session or a connection)."""
    return (await executor.execute(text("SELECT pg_backend_pid()"))).scalar()


@pytest.mark.anyio
async def test_one_connection_serves_the_blocks_units_of_work_on_one_connection(database: Database) -> None:
    if database.dialect != "postgresql":
        # Nothing to share on SQLite: the block just runs.
        async with database.one_connection(), database.transaction() as session:
            await session.execute(text("SELECT 1"))
        return
    async with database.one_connection():
        async with database.autocommit() as connection:
            claimed = await _backend(connection)
        async with database.transaction() as session:
            changed = await _backend(session)
            # A unit of work starting while this one holds the connection gets another connection.
            async with database.transaction() as nested:
                inner = await _backend(nested)
            async with database.autocommit() as connection:
                inner_single = await _backend(connection)
        async with database.autocommit() as connection:
            answered = await _backend(connection)
    assert claimed == changed == answered
    assert inner != changed and inner_single != changed
    async with database.transaction() as session:  # outside the block: a connection from the pool as usual
        await _backend(session)


@pytest.mark.anyio
async def test_one_connection_commits_and_rolls_back_each_transaction_on_its_own(database: Database) -> None:
    insert = text("INSERT INTO principals (id, name, roles, created_at) VALUES (:id, :id, '[]', CURRENT_TIMESTAMP)")
    async with database.one_connection():
        async with database.transaction() as session:
            await session.execute(insert, {"id": "kept"})
        with pytest.raises(RuntimeError, match="refused"):
            async with database.transaction() as session:
                await session.execute(insert, {"id": "dropped"})
                raise RuntimeError("refused")
        # The held connection is not left inside the failed transaction: the next one works and commits.
        async with database.transaction() as session:
            await session.execute(insert, {"id": "after"})
    async with database.reader() as session:
        stored = (await session.execute(text("SELECT id FROM principals ORDER BY id"))).scalars().all()
    assert stored == ["after", "kept"]
