"""Configuration of a lifecycle process, read once from the environment.

Every setting has a default that makes ``lifecycle serve`` work from a source checkout with nothing else:
an SQLite file in the working directory and the bundled ``workflows/``. Database URLs may be given in any
of the usual spellings (``sqlite:///…``, ``postgresql://…``, ``postgres://…``) and are normalised to the
async drivers the request path uses (``sqlite+aiosqlite``, ``postgresql+asyncpg``); Alembic derives its
synchronous URL from the same setting with :func:`sync_database_url`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

BUNDLED_WORKFLOWS_DIR = Path(__file__).resolve().parent.parent / "workflows"
"""The ``workflows/`` folder shipped with the source tree."""

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


class SettingsError(ValueError):
    """Raised by :meth:`Settings.from_env` when a variable has a value that cannot be used."""


def _url(url: str | URL) -> URL:
    parsed = make_url(url) if isinstance(url, str) else url
    backend = parsed.get_backend_name()
    if backend == "postgres":  # Heroku-style spelling, still common in deployment tooling
        parsed = parsed.set(drivername="postgresql")
        backend = "postgresql"
    if backend not in _ASYNC_DRIVERS:
        raise SettingsError(f"unsupported database {url!s}: use sqlite or postgresql")
    return parsed


def async_database_url(url: str | URL) -> str:
    """``url`` with the async driver of its database: ``sqlite+aiosqlite`` or ``postgresql+asyncpg``.

    Raises:
        SettingsError: the URL names another database.
    """
    parsed = _url(url)
    return parsed.set(drivername=_ASYNC_DRIVERS[parsed.get_backend_name()]).render_as_string(hide_password=False)


def sync_database_url(url: str | URL) -> str:
    """``url`` with the synchronous driver used for migrations: ``sqlite`` (pysqlite) or
    ``postgresql+psycopg``.

    Raises:
        SettingsError: the URL names another database.
    """
    parsed = _url(url)
    return parsed.set(drivername=_SYNC_DRIVERS[parsed.get_backend_name()]).render_as_string(hide_password=False)


@dataclass(frozen=True)
class Settings:
    """The settings of one process.

    Attributes:
        database_url: async SQLAlchemy URL (``LIFECYCLE_DATABASE_URL``; default an SQLite file
            ``lifecycle.db`` in the working directory).
        workflows_dir: the bundled definitions (``LIFECYCLE_WORKFLOWS_DIR``; default ``workflows/``).
        calendars_dir: working-day calendar overrides, ``<workflows_dir>/calendars``.
        idempotency_ttl_hours: how long an ``Idempotency-Key`` is remembered
            (``LIFECYCLE_IDEMPOTENCY_TTL_HOURS``, default 24).
        log_level: ``LIFECYCLE_LOG_LEVEL`` (default ``INFO``).
    """

    database_url: str
    workflows_dir: Path = BUNDLED_WORKFLOWS_DIR
    idempotency_ttl_hours: int = 24
    log_level: str = "INFO"

    @property
    def calendars_dir(self) -> Path:
        """Where the year overrides of the working-day calendar live."""
        return self.workflows_dir / "calendars"

    @property
    def sync_database_url(self) -> str:
        """The database URL with the synchronous driver Alembic uses."""
        return sync_database_url(self.database_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, cwd: Path | None = None) -> Settings:
        """Build the settings from ``environ`` (default ``os.environ``).

        Raises:
            SettingsError: a variable has an unusable value (unsupported database, bad number or level).
        """
        env = os.environ if environ is None else environ
        here = (cwd or Path.cwd()).resolve()
        raw_url = env.get("LIFECYCLE_DATABASE_URL") or f"sqlite:///{here / 'lifecycle.db'}"
        workflows = Path(env.get("LIFECYCLE_WORKFLOWS_DIR") or BUNDLED_WORKFLOWS_DIR)
        ttl_text = env.get("LIFECYCLE_IDEMPOTENCY_TTL_HOURS") or "24"
        try:
            ttl = int(ttl_text)
        except ValueError:
            raise SettingsError(f"LIFECYCLE_IDEMPOTENCY_TTL_HOURS must be a whole number, not {ttl_text!r}") from None
        if not 1 <= ttl <= 24 * 30:
            raise SettingsError("LIFECYCLE_IDEMPOTENCY_TTL_HOURS must be between 1 and 720")
        level = (env.get("LIFECYCLE_LOG_LEVEL") or "INFO").upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(f"LIFECYCLE_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {level!r}")
        return cls(
            database_url=async_database_url(raw_url),
            workflows_dir=workflows if workflows.is_absolute() else here / workflows,
            idempotency_ttl_hours=ttl,
            log_level=level,
        )
