"""Alembic environment for the lifecycle database.

Migrations always run on a synchronous driver derived from the configured URL (``sqlite`` or
``postgresql+psycopg``), whatever async driver the service itself uses. The URL comes from, in order:
``alembic -x url=...``, the ``sqlalchemy.url`` option set by :mod:`lifecycle.store.migrate`, and
``LIFECYCLE_DATABASE_URL`` (via :class:`lifecycle.settings.Settings`).

SQLite cannot alter most of a table in place, so migrations run in batch mode there (copy and move), and
the metadata's naming convention gives every constraint the name a later batch migration needs. DDL is
transactional on both dialects: a migration that fails leaves the database as it was.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import create_engine, event, pool
from sqlalchemy.engine import Connection, Engine

from lifecycle.settings import Settings, sync_database_url
from lifecycle.store.models import Base

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    return sync_database_url(url or Settings.from_env().database_url)


def run_migrations_offline() -> None:
    """Write the SQL to stdout instead of running it (``alembic upgrade head --sql``)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a live connection (one given by the caller, or a new one)."""
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        _transactional_sqlite(engine)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _transactional_sqlite(engine: Engine) -> None:
    """Make SQLite DDL transactional: pysqlite would commit before each CREATE/ALTER on its own, so a
    migration failing half-way would leave half a schema. Its own transaction handling is switched off and
    SQLAlchemy emits the BEGIN (the recipe the service's Database uses too)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
