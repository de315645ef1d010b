"""Definitions: YAML → immutable, validated definition objects.

* :mod:`~lifecycle.spec.models` — the format (pydantic models);
* :mod:`~lifecycle.spec.loader` — the validating parser (safe YAML, schema, static checks);
* :mod:`~lifecycle.spec.checks` — the static checks over a whole definition;
* :mod:`~lifecycle.spec.schema` — the JSON Schema export (``workflows/schema.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lifecycle.spec.checks import check_definition
from lifecycle.spec.loader import (
    LoadedDefinition,
    content_hash,
    load_definition_file,
    load_definition_text,
    load_directory,
)
from lifecycle.spec.models import Definition

if TYPE_CHECKING:
    from lifecycle.spec.schema import definition_json_schema, write_schema

__all__ = [
    "Definition",
    "LoadedDefinition",
    "check_definition",
    "content_hash",
    "definition_json_schema",
    "load_definition_file",
    "load_definition_text",
    "load_directory",
    "write_schema",
]


def __getattr__(name: str) -> Any:
    # The schema module is imported on first use: importing it here would make
    # ``python -m lifecycle.spec.schema`` find it already loaded and warn (runpy's RuntimeWarning).
    if name in ("definition_json_schema", "write_schema"):
        from lifecycle.spec import schema

        return getattr(schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
