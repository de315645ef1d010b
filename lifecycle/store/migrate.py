"""Running the Alembic migrations from Python: the service at start-up, the CLI and the tests.

These are synchronous functions (Alembic is synchronous); async callers run them in a worker thread
(``anyio.to_thread.run_sync`` / ``asyncio.to_thread``). Each accepts any spelling of the database URL that
:mod:`lifecycle.settings` accepts, async drivers included, and runs on the matching synchronous driver.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from lifecycle.settings import sync_database_url

ROOT = Path(__file__).resolve().parents[2]
"""The source tree's root, where ``alembic.ini`` and ``migrations/`` live."""

ALEMBIC_INI = ROOT / "alembic.ini"
MIGRATIONS_DIR = ROOT / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """The Alembic configuration of this project, pointed at ``url`` when given.

    Logging is left alone (``configure_logger`` off): a library call must not reconfigure the host's
    logging, as the ini's ``[loggers]`` would.
    """
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["configure_logger"] = False
    if url is not None:
        # ConfigParser interpolates '%': a password containing it must be escaped.
        config.set_main_option("sqlalchemy.url", sync_database_url(url).replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Migrate the database at ``url`` to the newest revision (creating every table on an empty one)."""
    command.upgrade(alembic_config(url), "head")


def downgrade_to_base(url: str) -> None:
    """Undo every migration of the database at ``url`` (dropping every table the migrations created)."""
    command.downgrade(alembic_config(url), "base")


def head_revision() -> str:
    """The newest revision id in ``migrations/versions``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the project always ships its initial migration
        raise RuntimeError("no migrations found")
    return head


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None for a database never migrated."""
    engine = create_engine(sync_database_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def is_at_head(url: str) -> bool:
    """Whether the database at ``url`` is migrated to the newest revision."""
    return current_revision(url) == head_revision()
