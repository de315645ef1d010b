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

DEFAULT_DB_POOL_SIZE = 32
"""Connections a PostgreSQL pool keeps open once it has opened them. A request holds one only while it talks
to the database, but on a busy process nearly every request in flight is at some step of it: with fewer pooled
connections than concurrent requests, connections beyond the pool are opened and closed again all the time
(each opening costs several round trips and milliseconds of CPU). 32 covers the benchmark's 32 concurrent
requests (``bench/api.py``) with the background workers; SQLite does not pool."""

DEFAULT_DB_MAX_OVERFLOW = 8
"""Connections a PostgreSQL pool may open beyond :data:`DEFAULT_DB_POOL_SIZE` at a peak (closed again when
returned to a full pool): 40 per process at most, so two processes stay within PostgreSQL's default
``max_connections`` of 100 with room for migrations and the command line."""

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
        db_pool_size: connections the PostgreSQL pool keeps open (``LIFECYCLE_DB_POOL_SIZE``, default 32).
        db_max_overflow: connections it may open beyond them at a peak (``LIFECYCLE_DB_MAX_OVERFLOW``,
            default 8).
    """

    database_url: str
    workflows_dir: Path = BUNDLED_WORKFLOWS_DIR
    idempotency_ttl_hours: int = 24
    log_level: str = "INFO"
    db_pool_size: int = DEFAULT_DB_POOL_SIZE
    db_max_overflow: int = DEFAULT_DB_MAX_OVERFLOW

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
        ttl = _whole_number(env, "LIFECYCLE_IDEMPOTENCY_TTL_HOURS", 24, 1, 24 * 30)
        pool_size = _whole_number(env, "LIFECYCLE_DB_POOL_SIZE", DEFAULT_DB_POOL_SIZE, 1, 1000)
        max_overflow = _whole_number(env, "LIFECYCLE_DB_MAX_OVERFLOW", DEFAULT_DB_MAX_OVERFLOW, 0, 1000)
        level = (env.get("LIFECYCLE_LOG_LEVEL") or "INFO").upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(f"LIFECYCLE_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {level!r}")
        return cls(
            database_url=async_database_url(raw_url),
            workflows_dir=workflows if workflows.is_absolute() else here / workflows,
            idempotency_ttl_hours=ttl,
            log_level=level,
            db_pool_size=pool_size,
            db_max_overflow=max_overflow,
        )


def env_number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """The number in variable ``name`` (``default`` when unset or empty), between ``low`` and ``high``.

    Raises:
        SettingsError: it is not a number, or out of range.
    """
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {text!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low:g} and {high:g}")
    return value


def _whole_number(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """:func:`env_number`, which must be a whole number.

    Raises:
        SettingsError: it is not a whole number, or out of range.
    """
    value = env_number(env, name, default, low, high)
    if not float(value).is_integer():
        raise SettingsError(f"{name} must be a whole number, not {env.get(name)!r}")
    return int(value)
