"""The JSON Schema of the definition format, for editors and integrators.

``workflows/schema.json`` is generated from :class:`~lifecycle.spec.models.Definition` and kept in the
repository so that an editor (VS Code's YAML extension, say) can complete and check the YAML as an
administrator types. A test keeps the file in step with the models; regenerate it with::

    python -m lifecycle.spec.schema > workflows/schema.json

The schema describes the shape only. Cross-references and the procedural rules are the static checks'
(:mod:`lifecycle.spec.checks`), and a few rules between sibling keys are the models' own validators, so a
file the schema accepts may still be refused by the loader; a file the loader accepts always fits the
schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lifecycle.spec.models import Definition, MachineTransition, Transition

SCHEMA_ID = "https://lifecycle.local/schema/definition-v1.json"
"""The ``$id`` of the schema: version 1 of the definition format."""

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_ONE_OR_MANY: tuple[type[BaseModel], ...] = (Transition, MachineTransition)
"""Models whose ``from`` may be written as one state or a list (their ``_from_one_or_many`` validator
turns the single value into a list before validation, which pydantic's generated schema cannot know)."""


def definition_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a definition file, keys as written in YAML (``from``, ``to``)."""
    schema = Definition.model_json_schema(by_alias=True, mode="validation")
    definitions = schema.get("$defs", {})
    for model in _ONE_OR_MANY:
        prop = definitions[model.__name__]["properties"]["from"]
        definitions[model.__name__]["properties"]["from"] = {
            "title": prop.get("title", "From"),
            "anyOf": [prop["items"], {key: value for key, value in prop.items() if key != "title"}],
        }
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        **{key: value for key, value in schema.items() if key != "title"},
        "title": "Lifecycle definition (生命周期流程定义)",
    }


def schema_text() -> str:
    """The schema as the JSON text stored in ``workflows/schema.json`` (UTF-8, indented, final newline)."""
    return json.dumps(definition_json_schema(), ensure_ascii=False, indent=2) + "\n"


def write_schema(path: Path | str) -> None:
    """Write the schema to ``path`` (normally ``workflows/schema.json``)."""
    Path(path).write_text(schema_text(), encoding="utf-8")


def main() -> None:
    """Print the schema on standard output, as UTF-8 whatever the locale."""
    sys.stdout.buffer.write(schema_text().encode("utf-8"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
