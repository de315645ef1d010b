"""Engine fixtures: definitions loaded from YAML into an engine, actors, and a clock in local time.

Engine tests need no database: the engine is pure.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lifecycle.clock import SHANGHAI
from lifecycle.engine.core import Engine
from lifecycle.engine.instance import Actor
from lifecycle.spec.models import Definition
from lifecycle.yamlsafe import load_yaml_file

DATA = Path(__file__).resolve().parent.parent / "data"


def load(path: Path) -> Definition:
    """Parse a definition file without the static checks (engine tests only need the model)."""
    return Definition.model_validate(load_yaml_file(path).data)


@pytest.fixture(scope="session")
def mini() -> Definition:
    return load(DATA / "engine-mini.yaml")


@pytest.fixture
def engine(mini: Definition) -> Engine:
    engine = Engine()
    engine.register(mini, 1)
    return engine


def local(year: int, month: int, day: int, hour: int = 10) -> datetime:
    """An instant given in Asia/Shanghai local time, as UTC."""
    return datetime(year, month, day, hour, tzinfo=SHANGHAI).astimezone(UTC)


UNIT = Actor("unit-1", frozenset({"unit"}), "town_a")
PLANNING = Actor("dept-planning", frozenset({"department"}), "planning_bureau")
HOUSING = Actor("dept-housing", frozenset({"department"}), "housing_bureau")
DISPATCHER = Actor("dispatcher-1", frozenset({"dispatcher"}), "ndrc")
