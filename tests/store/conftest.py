"""Helpers for the store tests: the ``mini`` definition stored and registered in an engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from lifecycle.clock import FrozenClock
from lifecycle.engine.core import Engine
from lifecycle.engine.instance import Actor
from lifecycle.spec.loader import load_definition_file
from lifecycle.spec.models import Definition
from lifecycle.store import Database, DefinitionRepository

ENGINE_MINI = Path(__file__).parents[1] / "data" / "engine-mini.yaml"

UNIT = Actor("owner", frozenset({"unit"}), "unit_a")
PLANNING = Actor("planner", frozenset({"department"}), "planning_bureau")
HOUSING = Actor("builder", frozenset({"department"}), "housing_bureau")
DISPATCHER = Actor("dispatch", frozenset({"dispatcher"}))


@dataclass
class Mini:
    """The ``mini`` definition, stored as version 1 and registered in ``engine``."""

    engine: Engine
    definition: Definition

    async def definition_for(self, key: str, version: int) -> Definition:
        assert (key, version) == ("mini", 1)
        return self.definition


@pytest.fixture
async def mini(database: Database, clock: FrozenClock, anyio_backend: str) -> Mini:
    loaded = load_definition_file(ENGINE_MINI)
    async with database.transaction() as session:
        await DefinitionRepository(session).add(
            "mini", 1, loaded.content_hash, loaded.text, loaded.definition.title, "test", None, True, clock.now()
        )
    engine = Engine()
    engine.register(loaded.definition, 1)
    return Mini(engine, loaded.definition)
