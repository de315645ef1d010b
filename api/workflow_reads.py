"""ADAPTER, pending service functions: read-only access to published definition versions.

:class:`lifecycle.services.Services` has no use cases for reading definitions yet (list keys, list a key's
versions, one version with its YAML). Until it has (``list_definitions``, ``definition_versions``,
``definition_version`` are the names asked for), these three functions do it the way a service would: one
read-only transaction each, through :class:`~lifecycle.store.DefinitionRepository` and the services'
:class:`~lifecycle.services.DefinitionRegistry`. No SQL here; replace the module by the service calls when
they land.
"""

from __future__ import annotations

from lifecycle.errors import NotFound
from lifecycle.services import Services
from lifecycle.spec.models import Definition
from lifecycle.store import DefinitionRecord, DefinitionRepository


async def list_definitions(services: Services) -> list[list[DefinitionRecord]]:
    """Every definition key's versions (oldest first), keys sorted."""
    async with services.database.reader() as session:
        repository = DefinitionRepository(session)
        return [await repository.list_versions(key) for key in await repository.list_keys()]


async def definition_versions(services: Services, key: str) -> list[DefinitionRecord]:
    """The versions of ``key``, oldest first.

    Raises:
        NotFound: the key has no version.
    """
    async with services.database.reader() as session:
        versions = await DefinitionRepository(session).list_versions(key)
    if not versions:
        raise NotFound("definition", key)
    return versions


async def definition_version(services: Services, key: str, version: int | None) -> tuple[DefinitionRecord, Definition]:
    """One version of ``key`` (None: the active one) and its parsed definition.

    Raises:
        NotFound: no such version (or no active version).
    """
    async with services.database.reader() as session:
        repository = DefinitionRepository(session)
        record = await (repository.active(key) if version is None else repository.get(key, version))
        if record is None:
            raise NotFound("definition", key if version is None else f"{key}@{version}")
        definition = await services.registry.definition(session, record.key, record.version)
    return record, definition
