"""The JSON Schema export: ``workflows/schema.json`` stays in step with the models and accepts valid files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lifecycle.spec.schema import SCHEMA_ID, definition_json_schema, schema_text, write_schema

ROOT = Path(__file__).resolve().parents[2]
STORED = ROOT / "workflows" / "schema.json"
MINIMAL = ROOT / "tests" / "data" / "valid" / "minimal.yaml"
REGENERATE = "python -m lifecycle.spec.schema > workflows/schema.json"


def test_stored_schema_matches_the_models() -> None:
    assert STORED.exists(), f"workflows/schema.json is missing; generate it with: {REGENERATE}"
    stored = json.loads(STORED.read_text(encoding="utf-8"))
    assert stored == definition_json_schema(), f"workflows/schema.json is out of date; regenerate it with: {REGENERATE}"


def test_schema_header() -> None:
    schema = definition_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID == "https://lifecycle.local/schema/definition-v1.json"
    assert schema["title"]
    assert schema["additionalProperties"] is False
    assert {"key", "title", "initial", "phases", "roles", "states", "transitions"} <= set(schema["required"])


def test_yaml_keys_not_python_names() -> None:
    transition = definition_json_schema()["$defs"]["Transition"]["properties"]
    assert "from" in transition and "to" in transition
    assert "source" not in transition and "dest" not in transition


def test_from_may_be_one_state_or_a_list() -> None:
    for name in ("Transition", "MachineTransition"):
        variants = definition_json_schema()["$defs"][name]["properties"]["from"]["anyOf"]
        assert [v["type"] for v in variants] == ["string", "array"]


def test_main_prints_the_schema_and_write_schema_writes_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    printed = subprocess.run(
        [sys.executable, "-m", "lifecycle.spec.schema"], capture_output=True, check=True, cwd=ROOT, env=env
    )
    assert printed.stdout.decode("utf-8") == schema_text()
    assert b"RuntimeWarning" not in printed.stderr
    write_schema(tmp_path / "schema.json")
    assert (tmp_path / "schema.json").read_text(encoding="utf-8") == schema_text()


# --- validating files with the schema (needs the optional ``jsonschema`` package) -------------------------


@pytest.fixture(scope="module")
def validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed in this environment")
    schema = json.loads(STORED.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_accepts_the_valid_definitions(validator: Any) -> None:
    paths = sorted((ROOT / "tests" / "data" / "valid").glob("*.yaml")) + sorted((ROOT / "workflows").glob("*.yaml"))
    for path in paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]
        assert errors == [], f"{path.name}: {errors}"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["states"][0].update(colour="red"),
        lambda d: d["transitions"][0].pop("roles"),
        lambda d: d["phases"][0].update(id="Early"),
        lambda d: d["task_groups"][0]["items"][0]["time_limit"].update(unit="weeks"),
        lambda d: d["gates"][0]["all"].append({}),
    ],
    ids=["extra_key", "missing_key", "id_pattern", "literal", "empty_condition"],
)
def test_schema_refuses_what_the_loader_refuses_by_shape(validator: Any, change: Any) -> None:
    data = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    change(data)
    assert list(validator.iter_errors(data)), "the schema accepted a broken file"
