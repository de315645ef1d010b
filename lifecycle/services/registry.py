"""Definitions from the database into the engine, and the start-up publication of the bundled ones.

The database is the record of which definition versions exist: the engine compiles a version the first
time a project on it is touched (``engine.register`` once per key and version), from the YAML text stored
when the version was published. The bundled ``workflows/*.yaml`` files are only a source for the first
version of each key; changing a bundled file later does not change a published version, and publishing
the changed file as a new version is an administrator's explicit act (not done here).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.engine.compiled import CompiledDefinition
from lifecycle.engine.core import Engine
from lifecycle.errors import NotFound
from lifecycle.spec.loader import LoadedDefinition, load_definition_text, load_directory
from lifecycle.spec.models import Definition
from lifecycle.store.definitions import DefinitionRecord, DefinitionRepository

from .views import PublishOutcome

log = logging.getLogger(__name__)


class DefinitionRegistry:
    """Loads published definition versions into one :class:`Engine`, each exactly once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def loaded(self, key: str, version: int) -> CompiledDefinition | None:
        """The compiled version if it is already in the engine, else None (no database access)."""
        try:
            return self.engine.compiled(key, version)
        except NotFound:
            return None

    async def compiled(self, session: AsyncSession, key: str, version: int) -> CompiledDefinition:
        """The compiled version (key, version), loading it from the database the first time.

        Raises:
            NotFound: no such published version.
        """
        compiled = self.loaded(key, version)
        if compiled is not None:
            return compiled
        record = await DefinitionRepository(session).get(key, version)
        if record is None:
            raise NotFound("definition", f"{key}@{version}")
        return self._register(record)

    async def definition(self, session: AsyncSession, key: str, version: int) -> Definition:
        """The definition (key, version); see :meth:`compiled`."""
        return (await self.compiled(session, key, version)).definition

    async def active(self, session: AsyncSession, key: str) -> CompiledDefinition:
        """The active version of ``key``, compiled.

        Raises:
            NotFound: the key has no active version.
        """
        record = await DefinitionRepository(session).active(key)
        if record is None:
            raise NotFound("definition", key)
        return self.loaded(key, record.version) or self._register(record)

    def _register(self, record: DefinitionRecord) -> CompiledDefinition:
        # Another coroutine may have registered it while this one awaited the database: keep the first, so
        # every fire of a version uses the same compiled machines.
        compiled = self.loaded(record.key, record.version)
        if compiled is not None:
            return compiled
        loaded = load_definition_text(record.yaml_text, name=f"{record.key}@{record.version}")
        if loaded.content_hash != record.content_hash:
            # The stored text is what was published; a different hash means the loader's canonical form
            # changed (or the row was edited by hand). Run the stored text, and say so.
            log.warning(
                "definition %s@%s: stored hash %s, text hashes to %s",
                record.key,
                record.version,
                record.content_hash,
                loaded.content_hash,
            )
        return self.engine.register(loaded.definition, record.version)

    async def publish_bundled(
        self, session: AsyncSession, directory: Path, now: datetime, *, published_by: str = "system"
    ) -> list[PublishOutcome]:
        """Publish each definition file in ``directory`` as version 1 of its key if the key has no version
        yet. A file whose content is already a version of its key changes nothing; a file that differs from
        every version of an existing key is reported ``not_published`` and left alone.

        Raises:
            DefinitionError: a file is not a valid definition (every problem of every file).
        """
        outcomes: list[PublishOutcome] = []
        repository = DefinitionRepository(session)
        for key, loaded in sorted(load_directory(directory).items()):
            outcomes.append(await self._publish_first(repository, key, loaded, now, published_by))
        return outcomes

    async def _publish_first(
        self, repository: DefinitionRepository, key: str, loaded: LoadedDefinition, now: datetime, published_by: str
    ) -> PublishOutcome:
        file = loaded.source.file
        same = await repository.by_hash(key, loaded.content_hash)
        if same is not None:
            return PublishOutcome(
                key=key, version=same.version, status="unchanged", content_hash=loaded.content_hash, file=file
            )
        if await repository.list_versions(key):
            log.warning("bundled definition %s (%s) differs from every published version: not published", key, file)
            return PublishOutcome(
                key=key, version=None, status="not_published", content_hash=loaded.content_hash, file=file
            )
        record = await repository.add(
            key=key,
            version=1,
            content_hash=loaded.content_hash,
            yaml_text=loaded.text,
            title=loaded.definition.title,
            published_by=published_by,
            change_note=f"bundled {Path(file).name}",
            active=True,
            now=now,
        )
        # Not registered in the engine here: the transaction may still roll back. The first use loads it.
        return PublishOutcome(
            key=key, version=record.version, status="published", content_hash=loaded.content_hash, file=file
        )
