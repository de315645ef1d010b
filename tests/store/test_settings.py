"""Settings from the environment, and the normalisation of database URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.settings import (
    BUNDLED_WORKFLOWS_DIR,
    DEFAULT_DB_MAX_OVERFLOW,
    DEFAULT_DB_POOL_SIZE,
    Settings,
    SettingsError,
    async_database_url,
    sync_database_url,
)


def test_defaults_are_an_sqlite_file_in_the_working_directory(tmp_path: Path) -> None:
    settings = Settings.from_env({}, cwd=tmp_path)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'lifecycle.db'}"
    assert settings.sync_database_url == f"sqlite:///{tmp_path.resolve() / 'lifecycle.db'}"
    assert settings.workflows_dir == BUNDLED_WORKFLOWS_DIR
    assert settings.calendars_dir == BUNDLED_WORKFLOWS_DIR / "calendars"
    assert settings.idempotency_ttl_hours == 24
    assert settings.log_level == "INFO"
    assert (settings.db_pool_size, settings.db_max_overflow) == (DEFAULT_DB_POOL_SIZE, DEFAULT_DB_MAX_OVERFLOW)


def test_values_come_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "LIFECYCLE_DATABASE_URL": "postgresql://lc:p%40ss@db.example:5432/lifecycle",
            "LIFECYCLE_WORKFLOWS_DIR": "defs",
            "LIFECYCLE_IDEMPOTENCY_TTL_HOURS": "48",
            "LIFECYCLE_LOG_LEVEL": "debug",
            "LIFECYCLE_DB_POOL_SIZE": "5",
            "LIFECYCLE_DB_MAX_OVERFLOW": "0",
        },
        cwd=tmp_path,
    )
    assert settings.database_url == "postgresql+asyncpg://lc:p%40ss@db.example:5432/lifecycle"
    assert settings.sync_database_url == "postgresql+psycopg://lc:p%40ss@db.example:5432/lifecycle"
    assert settings.workflows_dir == tmp_path.resolve() / "defs"
    assert settings.calendars_dir == tmp_path.resolve() / "defs" / "calendars"
    assert settings.idempotency_ttl_hours == 48
    assert settings.log_level == "DEBUG"
    assert (settings.db_pool_size, settings.db_max_overflow) == (5, 0)


@pytest.mark.parametrize(
    ("given", "async_url", "sync_url"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db", "sqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db", "sqlite:///x.db"),
        ("postgres://u@h/d", "postgresql+asyncpg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+asyncpg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d", "postgresql+psycopg://u@h/d"),
    ],
)
def test_urls_are_normalised_to_the_drivers(given: str, async_url: str, sync_url: str) -> None:
    assert async_database_url(given) == async_url
    assert sync_database_url(given) == sync_url


@pytest.mark.parametrize(
    "environ",
    [
        {"LIFECYCLE_DATABASE_URL": "mysql://u@h/d"},
        {"LIFECYCLE_IDEMPOTENCY_TTL_HOURS": "a day"},
        {"LIFECYCLE_IDEMPOTENCY_TTL_HOURS": "0"},
        {"LIFECYCLE_LOG_LEVEL": "loud"},
        {"LIFECYCLE_DB_POOL_SIZE": "0"},
        {"LIFECYCLE_DB_POOL_SIZE": "many"},
        {"LIFECYCLE_DB_MAX_OVERFLOW": "-1"},
    ],
)
def test_unusable_values_are_refused(environ: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(environ, cwd=tmp_path)
