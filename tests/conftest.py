"""Fixtures shared by the whole test suite: databases built by the migrations, services, principals.

Async tests
-----------
pytest-asyncio is not used; the AnyIO pytest plugin (installed with AnyIO) runs coroutine tests. Mark a
test ``@pytest.mark.anyio`` (or a module ``pytestmark = pytest.mark.anyio``) and write it as ``async def``.
The ``anyio_backend`` fixture is fixed to ``"asyncio"`` here. Async fixtures (``database``, ``services``)
run on the same event loop as the test that uses them.

Databases
---------
Every test database is built by the Alembic migrations, never by ``create_all``:

* SQLite: the migrations run once per session into a template file; each test gets a fresh copy.
* PostgreSQL: once per session (per xdist worker) a database ``lifecycle_test_<pid>_<n>`` is created on
  the server named by ``LIFECYCLE_TEST_POSTGRES_URL`` (an admin URL, default
  ``postgresql://postgres@127.0.0.1:5432/postgres``), migrated, and dropped at the end of the session;
  before each test every table except ``alembic_version`` is truncated.

If PostgreSQL cannot be reached the PostgreSQL-parametrized tests FAIL with a message saying so, unless
``LIFECYCLE_TEST_SKIP_POSTGRES=1`` is set, which skips them. They carry the ``postgres`` mark, so
``-m "not postgres"`` deselects them.

Fixtures
--------
``db_url`` -> str
    Parametrized ``sqlite`` / ``postgresql``: the async URL (``sqlite+aiosqlite:///…`` or
    ``postgresql+asyncpg://…``) of a migrated, empty database for this test. Any test (or fixture) that
    uses it runs on both dialects.
``empty_db_url`` -> str
    Parametrized the same way: a database with no tables at all (for migration tests); a fresh
    PostgreSQL database is created for the test and dropped after it.
``database`` -> lifecycle.store.Database  (async)
    An open :class:`~lifecycle.store.Database` on ``db_url``, disposed after the test.
``clock`` -> lifecycle.clock.FrozenClock
    Frozen at :data:`T0` (Monday 2 March 2026, 09:00 in Shanghai); move it with ``clock.advance(...)``.
``services`` -> lifecycle.services.Services  (async)
    Services on ``database`` with a fresh engine and ``clock``; the test definition
    ``tests/data/engine-mini.yaml`` (key ``mini``) is published as version 1 through
    ``Services.publish_bundled`` (so it is in the ``definitions`` table and active).
``make_principal`` -> ``(*roles, unit=None, id=None, name=None, unit_kind=None) -> Principal``
    An in-memory :class:`~lifecycle.services.Principal` (not stored: the services need none stored).
    ``id`` defaults to a fresh unique id.
``make_ctx`` -> ``(*roles, unit=None, lang="zh", **kw) -> CallContext``
    A :class:`~lifecycle.services.CallContext` for such a principal.
``issue_token`` -> ``async (principal, description="test") -> str``
    Stores ``principal`` (if not stored yet) with ``services`` and returns a new plain API token for it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from lifecycle.clock import FrozenClock
from lifecycle.engine.core import Engine
from lifecycle.services import CallContext, Principal, Services
from lifecycle.settings import async_database_url
from lifecycle.store import Database
from lifecycle.store.migrate import upgrade_to_head

DATA = Path(__file__).parent / "data"
ENGINE_MINI = DATA / "engine-mini.yaml"

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
"""The frozen clock's start: Monday 2026-03-02 09:00 Asia/Shanghai (a working day)."""

POSTGRES_ADMIN_URL = os.environ.get("LIFECYCLE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SKIP_POSTGRES = os.environ.get("LIFECYCLE_TEST_SKIP_POSTGRES") == "1"

_database_numbers = itertools.count(1)


def _libpq(url: str) -> str:
    """``url`` as psycopg (libpq) takes it: no SQLAlchemy driver suffix."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin_connection() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(_libpq(POSTGRES_ADMIN_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        where = make_url(POSTGRES_ADMIN_URL).render_as_string(hide_password=True)
        if SKIP_POSTGRES:
            pytest.skip(f"PostgreSQL is not reachable at {where} and LIFECYCLE_TEST_SKIP_POSTGRES=1: skipped")
        pytest.fail(
            f"PostgreSQL is not reachable at {where} ({error}). Start it, point LIFECYCLE_TEST_POSTGRES_URL at "
            "one, or set LIFECYCLE_TEST_SKIP_POSTGRES=1 to skip the PostgreSQL tests explicitly.",
            pytrace=False,
        )


def _new_database_name() -> str:
    # The pid keeps names apart between xdist workers (and concurrent runs); the counter within one.
    return f"lifecycle_test_{os.getpid()}_{next(_database_numbers)}"


def _create_database() -> str:
    """Create an empty PostgreSQL database; its admin-style URL (database replaced)."""
    name = _new_database_name()
    with _admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _drop_database(url: str) -> None:
    name = make_url(url).database
    assert name and name.startswith("lifecycle_test_")
    with _admin_connection() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- async -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio only."""
    return "asyncio"


# --- databases ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated to head, copied for each test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


class _PostgresSession:
    """The session's migrated PostgreSQL database and a connection that empties it between tests."""

    def __init__(self) -> None:
        self.url = _create_database()
        try:
            upgrade_to_head(self.url)
            self.connection = psycopg.connect(_libpq(self.url), autocommit=True)
            # A test that left a transaction open would otherwise make TRUNCATE wait for ever.
            self.connection.execute("SET lock_timeout = '15s'")
        except BaseException:
            _drop_database(self.url)
            raise

    def truncate(self) -> None:
        tables = [
            row[0]
            for row in self.connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            self.connection.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )

    def close(self) -> None:
        self.connection.close()
        _drop_database(self.url)


@pytest.fixture(scope="session")
def _postgres() -> Iterator[_PostgresSession]:
    """The session's PostgreSQL database (created on first use; FAILS if the server is unreachable)."""
    session = _PostgresSession()
    try:
        yield session
    finally:
        session.close()


_DIALECTS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=_DIALECTS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The async URL of an empty database migrated to head, on SQLite or PostgreSQL (see module doc)."""
    if request.param == "sqlite":
        path = tmp_path / "lifecycle.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    postgres: _PostgresSession = request.getfixturevalue("_postgres")
    postgres.truncate()
    return async_database_url(postgres.url)


@pytest.fixture(params=_DIALECTS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The async URL of a database with no tables (not migrated), on SQLite or PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    url = _create_database()
    try:
        yield async_database_url(url)
    finally:
        _drop_database(url)


@pytest.fixture
async def database(db_url: str, anyio_backend: str) -> AsyncIterator[Database]:
    """An open :class:`Database` on ``db_url``."""
    db = Database(db_url)
    try:
        yield db
    finally:
        await db.dispose()


# --- services ------------------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FrozenClock:
    """A clock frozen at :data:`T0`."""
    return FrozenClock(T0)


@pytest.fixture
async def services(
    database: Database, clock: FrozenClock, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[Services]:
    """Services on ``database`` with the ``mini`` test definition published as version 1."""
    service = Services(database, engine=Engine(), clock=clock)
    bundle = tmp_path / "definitions"
    bundle.mkdir()
    shutil.copyfile(ENGINE_MINI, bundle / ENGINE_MINI.name)
    await service.publish_bundled(bundle)
    yield service


@pytest.fixture
def make_principal() -> Callable[..., Principal]:
    """``make_principal(*roles, unit=None, id=None, name=None, unit_kind=None)`` -> an unsaved Principal."""

    def make(
        *roles: str,
        unit: str | None = None,
        id: str | None = None,
        name: str | None = None,
        unit_kind: str | None = None,
    ) -> Principal:
        ident = id or f"{'-'.join(roles) or 'nobody'}-{uuid.uuid4().hex[:8]}"
        return Principal(id=ident, name=name or ident, unit_id=unit, unit_kind=unit_kind, roles=frozenset(roles))

    return make


@pytest.fixture
def make_ctx(make_principal: Callable[..., Principal]) -> Callable[..., CallContext]:
    """``make_ctx(*roles, unit=None, lang="zh", **kw)`` -> a CallContext for a new principal."""

    def make(*roles: str, unit: str | None = None, lang: str = "zh", **kw: Any) -> CallContext:
        return CallContext(make_principal(*roles, unit=unit, **kw), lang=lang)

    return make


@pytest.fixture
def issue_token(services: Services) -> Callable[..., Awaitable[str]]:
    """``await issue_token(principal, description="test")`` -> a plain API token (the principal is stored
    first if it is not yet)."""

    async def issue(principal: Principal, description: str = "test") -> str:
        if await services.get_principal(principal.id) is None:
            await services.add_principal(
                principal.id,
                principal.name,
                sorted(principal.roles),
                unit_id=principal.unit_id,
                unit_kind=principal.unit_kind,
            )
        _, plain = await services.create_token(principal.id, description)
        return plain

    return issue
