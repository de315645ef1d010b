"""The database handle: SQLite pragmas and BEGIN IMMEDIATE for writers, read-only readers on both
dialects."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

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
