"""The Alembic migrations: from an empty database up to head and back down, on SQLite and PostgreSQL, and
agreement between the models and what the migrations build."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, inspect, pool
from sqlalchemy.engine import Engine

from lifecycle.settings import sync_database_url
from lifecycle.store.migrate import (
    current_revision,
    downgrade_to_base,
    head_revision,
    is_at_head,
    upgrade_to_head,
)
from lifecycle.store.models import Base

TABLES = {
    "definitions",
    "principals",
    "api_tokens",
    "idempotency_records",
    "projects",
    "project_steps",
    "tasks",
    "deficiency_notices",
    "commitments",
    "deadlines",
    "events",
}
TABLES |= {"webhook_endpoints", "webhook_deliveries", "webhook_attempts", "webhook_log"}  # webhooks (0003)
TABLES |= {"escalations", "escalation_notices", "obligation_reports", "scheduler_state"}  # scheduling (0002)
TABLES |= {"workflow_events", "migration_runs", "migration_outcomes"}  # workflow administration (0004)


def _sync_engine(url: str) -> Engine:
    return create_engine(sync_database_url(url), poolclass=pool.NullPool)


def _tables(url: str) -> set[str]:
    engine = _sync_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _diffs(url: str, metadata: MetaData) -> list[object]:
    engine = _sync_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_from_empty_then_downgrade_to_base(empty_db_url: str) -> None:
    assert current_revision(empty_db_url) is None
    assert not is_at_head(empty_db_url)

    upgrade_to_head(empty_db_url)
    assert current_revision(empty_db_url) == head_revision()
    assert is_at_head(empty_db_url)
    assert _tables(empty_db_url) == TABLES | {"alembic_version"}

    downgrade_to_base(empty_db_url)
    assert current_revision(empty_db_url) is None
    assert _tables(empty_db_url) == {"alembic_version"}

    upgrade_to_head(empty_db_url)  # and up again: the downgrade left nothing behind that gets in the way
    assert _tables(empty_db_url) == TABLES | {"alembic_version"}


def test_models_agree_with_migrations(db_url: str) -> None:
    assert _diffs(db_url, Base.metadata) == []


def test_the_comparison_sees_a_difference(db_url: str) -> None:
    # Guards the test above: the comparison must notice a table the migrations never built.
    metadata = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    Table("not_migrated", metadata, Column("id", Integer, primary_key=True))
    diffs = _diffs(db_url, metadata)
    assert [d[0] for d in diffs if isinstance(d, tuple)] == ["add_table"]


def test_revision_files_are_named_by_date() -> None:
    versions = Path(__file__).parents[2] / "migrations" / "versions"
    names = sorted(p.name for p in versions.glob("*.py"))
    assert names and all(name[:4].isdigit() and name[4] == "_" and name[10] == "_" for name in names)


def test_migrations_create_no_tables_twice(empty_db_url: str) -> None:
    upgrade_to_head(empty_db_url)
    upgrade_to_head(empty_db_url)  # at head: nothing to do, nothing fails
    assert is_at_head(empty_db_url)
