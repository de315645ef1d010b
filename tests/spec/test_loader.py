"""The definition loader: safe YAML → schema → static checks, with every problem located and sorted."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from lifecycle.errors import DefinitionError, Problem, YamlProblems
from lifecycle.spec import LoadedDefinition, load_definition_file, load_definition_text, load_directory
from lifecycle.yamlsafe import MAX_FILE_BYTES

DATA = Path(__file__).resolve().parents[1] / "data"
MINIMAL = DATA / "valid" / "minimal.yaml"


def minimal_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    return data


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def problems_of(text: str, name: str = "test.yaml") -> list[Problem]:
    with pytest.raises((DefinitionError, YamlProblems)) as caught:
        load_definition_text(text, name)
    return caught.value.problems()


def codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


# --- a valid definition ---------------------------------------------------------------------------------


def test_minimal_definition_loads() -> None:
    loaded = load_definition_file(MINIMAL)
    assert isinstance(loaded, LoadedDefinition)
    assert loaded.definition.key == "minimal-project"
    assert loaded.definition.state("held").hold
    assert loaded.text == MINIMAL.read_text(encoding="utf-8")
    assert loaded.source.file == str(MINIMAL)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", loaded.content_hash)


def test_text_and_bytes_and_file_load_the_same_definition() -> None:
    text = MINIMAL.read_text(encoding="utf-8")
    from_text = load_definition_text(text, "minimal.yaml")
    from_bytes = load_definition_text(text.encode("utf-8"), "minimal.yaml")
    assert from_text.definition == from_bytes.definition == load_definition_file(MINIMAL).definition
    assert from_text.content_hash == from_bytes.content_hash
    assert from_bytes.text == text
    assert from_text.source.file == "minimal.yaml"


def test_loaded_definition_is_frozen() -> None:
    loaded = load_definition_file(MINIMAL)
    with pytest.raises(AttributeError):
        loaded.content_hash = "sha256:0"  # type: ignore[misc]
    with pytest.raises(ValueError):
        loaded.definition.key = "other"  # type: ignore[misc]


# --- content hash ---------------------------------------------------------------------------------------


def test_content_hash_ignores_formatting_comments_and_key_order() -> None:
    original = load_definition_file(MINIMAL)
    # Dumped again by PyYAML: no comments, block style everywhere, keys sorted, different quoting.
    reformatted = yaml.safe_dump(minimal_data(), allow_unicode=True, sort_keys=True, default_flow_style=False)
    assert "#" not in reformatted
    assert reformatted != original.text
    commented = "# 注释\n" + original.text.replace("initial: planning", "initial: planning   # 起点")
    assert load_definition_text(reformatted).content_hash == original.content_hash
    assert load_definition_text(commented).content_hash == original.content_hash


def test_content_hash_ignores_shorthand_for_one_source() -> None:
    data = minimal_data()
    assert data["transitions"][0]["from"] == "planning"
    data["transitions"][0]["from"] = ["planning"]
    assert load_definition_text(dump(data)).content_hash == load_definition_file(MINIMAL).content_hash


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["states"][0].update(title="谋划阶段"),
        lambda d: d["task_groups"][0]["items"][0]["time_limit"].update(days=21),
        lambda d: d["transitions"][1].pop("gate"),
        lambda d: d["roles"].reverse(),  # list order is content too (states are listed in order)
    ],
    ids=["title", "time_limit", "gate", "order"],
)
def test_content_hash_changes_with_the_content(change: Any) -> None:
    data = minimal_data()
    change(data)
    assert load_definition_text(dump(data)).content_hash != load_definition_file(MINIMAL).content_hash


def test_content_hash_is_over_the_full_model_so_an_explicit_default_changes_nothing() -> None:
    data = minimal_data()
    data["states"][0]["terminal"] = False
    data["roles"][0]["spans_county"] = False
    assert load_definition_text(dump(data)).content_hash == load_definition_file(MINIMAL).content_hash


# --- problems: schema -----------------------------------------------------------------------------------


def test_schema_problems_are_all_reported_and_static_checks_wait() -> None:
    data = minimal_data()
    data["states"][0]["colour"] = "red"  # extra key
    del data["transitions"][0]["roles"]  # missing key
    data["phases"][0]["id"] = "Early"  # pattern (and, were checks to run, unknown phase references)
    problems = problems_of(dump(data))
    assert sorted(codes(problems)) == ["schema.extra_forbidden", "schema.missing", "schema.string_pattern_mismatch"]
    paths = {p.code: p.location.path for p in problems if p.location}
    assert paths["schema.extra_forbidden"] == ("states", 0, "colour")
    assert paths["schema.missing"] == ("transitions", 0, "roles")
    assert paths["schema.string_pattern_mismatch"] == ("phases", 0, "id")


def test_aliased_keys_are_located_as_written_in_yaml() -> None:
    data = minimal_data()
    machine = data["task_machines"][0]
    machine["transitions"][0]["from"] = ["Pending"]
    machine["transitions"][1]["from"] = "Submitted"  # one source written as a scalar
    machine["transitions"][2]["to"] = "Approved"
    problems = problems_of(dump(data))
    assert {p.location.path for p in problems if p.location} == {
        ("task_machines", 0, "transitions", 0, "from", 0),
        ("task_machines", 0, "transitions", 1, "from"),
        ("task_machines", 0, "transitions", 2, "to"),
    }


def test_a_value_fitting_no_member_of_a_union_is_one_problem() -> None:
    data = minimal_data()
    data["gates"][0]["all"][5]["field_compare"]["value"] = [5000]
    (problem,) = problems_of(dump(data))
    assert problem.code == "schema.string_type"
    assert problem.location is not None
    assert problem.location.path == ("gates", 0, "all", 5, "field_compare", "value")
    assert "整数" in problem.zh and "an integer" in problem.en


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d["gates"][0].update(any=[{"group_done": "permits"}]), ("gates", 0)),
        (lambda d: d["gates"][0]["all"][0].update(field_present="fsr_approval_no"), ("gates", 0, "all", 0)),
        (lambda d: d["gates"][0]["all"].append({"title": "只有标题"}), ("gates", 0, "all", 8)),
        (lambda d: d["clocks"][0].update(duration={"days": 3, "unit": "working_days"}), ("clocks", 0)),
        (lambda d: d["clocks"][0].pop("field"), ("clocks", 0)),
        (lambda d: d["fields"][0].update(choices=["甲"]), ("fields", 0)),
        (lambda d: d["obligations"][0]["due"].update(day=3), ("obligations", 0)),
    ],
    ids=["gate_all_and_any", "condition_two_kinds", "condition_no_kind", "clock_duration", "clock_field",
         "choices", "due_rule"],
)  # fmt: skip
def test_every_model_rule_has_a_chinese_message(change: Any, path: tuple[Any, ...]) -> None:
    data = minimal_data()
    change(data)
    (problem,) = problems_of(dump(data))
    assert problem.code == "schema.value_error"
    assert problem.location is not None and problem.location.path == path
    # A translated message, not the generic fallback carrying the English text.
    assert not problem.zh.startswith("取值无效"), problem.zh
    assert not re.search(r"[a-z]{3,} [a-z]{3,} [a-z]{3,}", problem.zh), problem.zh
    assert "Value error" not in problem.en


def test_an_error_type_without_its_own_message_keeps_its_code() -> None:
    data = minimal_data()
    data["traffic_lights"]["bands"][0]["at_least"] = float("inf")
    (problem,) = problems_of(dump(data))
    assert problem.code == "schema.finite_number"
    assert problem.zh.startswith("取值无效") and problem.en.startswith("invalid value")


def test_not_a_mapping_and_integer_keys() -> None:
    assert codes(problems_of("- a\n- b\n")) == ["schema.model_type"]
    data: dict[Any, Any] = minimal_data()
    data[7] = "seven"
    (problem,) = problems_of(dump(data))
    assert problem.code == "schema.invalid_key"
    assert problem.location is not None and problem.location.path == (7,)


# --- problems: static checks and order ------------------------------------------------------------------


def test_problems_are_sorted_by_line_and_column_whatever_order_they_are_found_in() -> None:
    text = MINIMAL.read_text(encoding="utf-8")
    # Project clocks are checked late, states early: move the clocks to the top and break both.
    clocks_at = text.index("\nclocks:\n")
    clocks = text[clocks_at + 1 : text.index("\nladders:\n")]
    text = text[:clocks_at] + text[clocks_at + len(clocks) :]
    text = clocks.replace("runs_in: [permitting]", "runs_in: [permiting]") + "\n" + text
    text = text.replace("    phase: build\n", "    phase: built\n", 1)
    problems = problems_of(text)
    assert codes(problems) == ["check.unknown_state", "check.unknown_phase"]
    lines = [p.location.line for p in problems if p.location]
    assert lines == sorted(lines) and lines[0] < 10


def test_checks_do_not_run_on_a_definition_with_schema_problems() -> None:
    data = minimal_data()
    data["initial"] = "nowhere"  # a check problem
    data["title"] = ""  # a schema problem
    assert codes(problems_of(dump(data))) == ["schema.string_too_short"]


# --- limits ---------------------------------------------------------------------------------------------


def test_a_file_over_one_mebibyte_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    padding = "# " + "x" * 1000 + "\n"
    big.write_text(MINIMAL.read_text(encoding="utf-8") + padding * (MAX_FILE_BYTES // len(padding) + 1))
    assert big.stat().st_size > MAX_FILE_BYTES
    with pytest.raises(YamlProblems) as caught:
        load_definition_file(big)
    assert codes(caught.value.problems()) == ["yaml.too_large"]
    with pytest.raises(YamlProblems) as caught:
        load_definition_text(big.read_text())
    assert codes(caught.value.problems()) == ["yaml.too_large"]


def test_an_alias_bomb_is_stopped_by_the_node_limit() -> None:
    lines = ["a: &a [" + ", ".join(["lol"] * 10) + "]"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    with pytest.raises(YamlProblems) as caught:
        load_definition_text("\n".join(lines))
    assert "yaml.too_many_nodes" in codes(caught.value.problems())


def test_a_missing_file_is_a_yaml_problem(tmp_path: Path) -> None:
    with pytest.raises(YamlProblems) as caught:
        load_definition_file(tmp_path / "absent.yaml")
    assert codes(caught.value.problems()) == ["yaml.unreadable"]


def generated_definition(states: int) -> dict[str, Any]:
    """A definition with a chain of ``states`` states, each with a forward and a backward transition."""
    ids = [f"s{i:03d}" for i in range(states)]
    return {
        "key": "generated",
        "title": "生成的流程",
        "initial": ids[0],
        "phases": [{"id": "only", "title": "唯一阶段"}],
        "roles": [{"id": "unit", "title": "单位"}],
        "states": [
            {"id": sid, "title": f"状态 {i}", "phase": "only", "terminal": i == states - 1} for i, sid in enumerate(ids)
        ],
        "transitions": [
            {"trigger": f"next_{i}", "title": "前进", "from": ids[i], "to": ids[i + 1], "roles": ["unit"]}
            for i in range(states - 1)
        ]
        + [
            {"trigger": f"back_{i}", "title": "退回", "from": ids[i], "to": ids[i - 1], "roles": ["unit"]}
            for i in range(1, states - 1)
        ],
    }


def test_a_large_generated_definition_loads() -> None:
    loaded = load_definition_text(dump(generated_definition(200)))
    assert len(loaded.definition.states) == 200
    assert len(loaded.definition.transitions) == 199 + 198


def test_a_large_generated_definition_with_one_break_reports_exactly_it() -> None:
    data = generated_definition(200)
    broken = copy.deepcopy(data)
    del broken["transitions"][99]  # s099 -> s100: s100 onwards can no longer be reached
    problems = problems_of(dump(broken))
    assert set(codes(problems)) == {"check.unreachable_state"}
    assert [p.location.path for p in problems if p.location] == [("states", i, "id") for i in range(100, 200)]


# --- directories ----------------------------------------------------------------------------------------


def write_definition(folder: Path, name: str, key: str) -> Path:
    data = minimal_data()
    data["key"] = key
    path = folder / name
    path.write_text(dump(data), encoding="utf-8")
    return path


def test_load_directory_keys_definitions_and_skips_other_files(tmp_path: Path) -> None:
    write_definition(tmp_path, "a.yaml", "alpha")
    write_definition(tmp_path, "b.yaml", "beta")
    (tmp_path / "schema.yaml").write_text("not: [a, definition]\n")
    (tmp_path / "notes.txt").write_text("key: ignored\n")
    (tmp_path / "calendars").mkdir()
    write_definition(tmp_path / "calendars", "c.yaml", "gamma")
    loaded = load_directory(tmp_path)
    assert sorted(loaded) == ["alpha", "beta"]
    assert Path(loaded["beta"].source.file).name == "b.yaml"


def test_load_directory_refuses_a_key_used_twice(tmp_path: Path) -> None:
    write_definition(tmp_path, "a.yaml", "same")
    second = write_definition(tmp_path, "b.yaml", "same")
    with pytest.raises(DefinitionError) as caught:
        load_directory(tmp_path)
    (problem,) = caught.value.problems()
    assert problem.code == "definition.duplicate_key"
    assert problem.location is not None
    assert problem.location.file == str(second) and problem.location.path == ("key",)
    assert "a.yaml" in problem.zh and "a.yaml" in problem.en


def test_load_directory_reports_the_problems_of_every_file(tmp_path: Path) -> None:
    write_definition(tmp_path, "good.yaml", "good")
    shutil.copy(DATA / "invalid" / "yaml_duplicate_key.yaml", tmp_path / "one.yaml")
    shutil.copy(DATA / "invalid" / "check_many_errors.yaml", tmp_path / "two.yaml")
    with pytest.raises(DefinitionError) as caught:
        load_directory(tmp_path)
    problems = caught.value.problems()
    files = {Path(p.location.file).name for p in problems if p.location}
    assert files == {"one.yaml", "two.yaml"}
    assert "yaml.duplicate_key" in codes(problems) and "check.terminal_has_exit" in codes(problems)


def test_load_directory_of_an_empty_folder_is_empty(tmp_path: Path) -> None:
    assert load_directory(tmp_path) == {}
