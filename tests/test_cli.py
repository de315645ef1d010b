"""The ``lifecycle`` command line: validate, diagram and explain (lifecycle.cli, lifecycle.cli_definitions)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app, main
from lifecycle.cli_definitions import WORKFLOWS_ENV, bundled_workflows_dir, resolve_definition
from lifecycle.spec.diagram import render_mermaid
from lifecycle.spec.explain import explain_definition
from lifecycle.spec.loader import load_definition_file

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "data" / "engine-mini.yaml"
MINIMAL = ROOT / "tests" / "data" / "valid" / "minimal.yaml"

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_workflows_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WORKFLOWS_ENV, raising=False)


def mini_text() -> str:
    return MINI.read_text(encoding="utf-8")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def bad_gate(tmp_path: Path, name: str = "bad.yaml") -> Path:
    """The mini definition with one transition naming a gate that does not exist."""
    return write(tmp_path / name, mini_text().replace("gate: before_building}", "gate: nope}"))


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


# --- validate -----------------------------------------------------------------------------------------------


def test_validate_a_valid_file() -> None:
    result = runner.invoke(app, ["validate", str(MINI)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"OK {MINI} (mini, 6 states, 6 transitions)\n"
    assert "0 invalid" in result.stderr


def test_validate_an_invalid_file_prints_each_problem_with_its_place(tmp_path: Path) -> None:
    path = bad_gate(tmp_path)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    line = line_of(path, "gate: nope}")
    column = path.read_text(encoding="utf-8").splitlines()[line - 1].index("nope") + 1
    assert result.stdout.splitlines() == [
        f"{path}:{line}:{column}: check.unknown_gate: 关卡 “nope” 未定义 / gate 'nope' is not defined "
        "(transitions[1].gate)"
    ]


def test_validate_reports_every_problem_of_a_file(tmp_path: Path) -> None:
    text = (
        mini_text()
        .replace("gate: before_building}", "gate: nope}")
        .replace("department: housing_bureau", "department: nobody")
        .replace("roles: [dispatcher], gate: before_finish", "roles: [boss], gate: before_finish")
    )
    result = runner.invoke(app, ["validate", str(write(tmp_path / "three.yaml", text))])
    assert result.exit_code == 1
    codes = [line.split(": ")[1] for line in result.stdout.splitlines()]
    assert sorted(codes) == ["check.unknown_department", "check.unknown_gate", "check.unknown_role"]


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("zh", "check.unknown_gate: 关卡 “nope” 未定义 ("), ("en", "check.unknown_gate: gate 'nope' is not defined (")],
)
def test_validate_in_one_language(tmp_path: Path, lang: str, expected: str) -> None:
    result = runner.invoke(app, ["validate", "--lang", lang, str(bad_gate(tmp_path))])
    assert result.exit_code == 1
    assert expected in result.stdout
    assert " / " not in result.stdout


def test_validate_yaml_and_schema_problems(tmp_path: Path) -> None:
    broken = write(tmp_path / "broken.yaml", "key: x\ntitle: [unclosed\n")
    schema = write(tmp_path / "schema_bad.yaml", mini_text().replace("key: mini", "key: Mini"))
    result = runner.invoke(app, ["validate", str(broken), str(schema)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert re.match(rf"^{re.escape(str(broken))}:\d+:\d+: yaml\.syntax: YAML 语法错误", lines[0])
    assert re.match(rf"^{re.escape(str(schema))}:2:6: schema\.string_pattern_mismatch: .* \(key\)$", lines[1])


def test_validate_a_directory(tmp_path: Path) -> None:
    write(tmp_path / "a-mini.yaml", mini_text())
    bad_gate(tmp_path, "b-bad.yaml")
    write(tmp_path / "schema.json", "{}")
    write(tmp_path / "calendars" / "2027.yaml", "year: 2027\n")  # not a definition: never read
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"OK {tmp_path / 'a-mini.yaml'} (mini, 6 states, 6 transitions)"
    assert lines[1].startswith(f"{tmp_path / 'b-bad.yaml'}:")
    assert len(lines) == 2
    assert "2 file(s), 1 invalid, 1 problem(s)" in result.stderr


def test_validate_a_directory_with_two_files_of_one_key(tmp_path: Path) -> None:
    write(tmp_path / "one.yaml", mini_text())
    write(tmp_path / "two.yaml", mini_text())
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == f"OK {tmp_path / 'one.yaml'} (mini, 6 states, 6 transitions)"
    assert re.match(
        rf"^{re.escape(str(tmp_path / 'two.yaml'))}:2:6: definition\.duplicate_key: 定义键 “mini” 已在文件 "
        rf"{re.escape(str(tmp_path / 'one.yaml'))} 中使用",
        result.stdout.splitlines()[1],
    )


def test_validate_json(tmp_path: Path) -> None:
    path = bad_gate(tmp_path)
    result = runner.invoke(app, ["validate", "--json", str(MINI), str(path)])
    assert result.exit_code == 1
    line = line_of(path, "gate: nope}")
    assert json.loads(result.stdout) == [
        {
            "file": str(path),
            "line": line,
            "column": path.read_text(encoding="utf-8").splitlines()[line - 1].index("nope") + 1,
            "path": "transitions[1].gate",
            "code": "check.unknown_gate",
            "zh": "关卡 “nope” 未定义",
            "en": "gate 'nope' is not defined",
        }
    ]
    valid = runner.invoke(app, ["validate", "--json", str(MINI)])
    assert valid.exit_code == 0
    assert json.loads(valid.stdout) == []


def test_validate_the_bundled_workflows() -> None:
    result = runner.invoke(app, ["validate", str(bundled_workflows_dir())])
    assert result.exit_code == 0, result.stdout
    assert "OK " in result.stdout and "major-project" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["validate"],
        ["validate", "no-such-file.yaml"],
        ["validate", "--lang", "fr", str(MINI)],
        ["validate", "--bogus", str(MINI)],
        [],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert runner.invoke(app, args).exit_code == 2


def test_validate_an_empty_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stdout == ""


# --- diagram ------------------------------------------------------------------------------------------------


def test_diagram_of_a_file() -> None:
    result = runner.invoke(app, ["diagram", str(MINI)])
    assert result.exit_code == 0
    assert result.stdout.startswith("stateDiagram-v2\n")
    assert result.stdout == render_mermaid(load_definition_file(MINI).definition)
    assert "    permitting --> building : 开工 [开工前]" in result.stdout.splitlines()


def test_diagram_highlights_the_project_state() -> None:
    result = runner.invoke(app, ["diagram", str(MINI), "--project-state", "permitting"])
    assert result.exit_code == 0
    assert "    class permitting current" in result.stdout.splitlines()
    assert runner.invoke(app, ["diagram", str(MINI), "--project-state", "nowhere"]).exit_code == 2


def test_diagram_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "mini.mmd"
    result = runner.invoke(app, ["diagram", str(MINI), "--output", str(target)])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert target.read_text(encoding="utf-8") == render_mermaid(load_definition_file(MINI).definition)
    markdown = tmp_path / "mini.md"
    assert runner.invoke(app, ["diagram", str(MINI), "-o", str(markdown)]).exit_code == 0
    text = markdown.read_text(encoding="utf-8")
    assert text.startswith("```mermaid\nstateDiagram-v2\n") and text.endswith("```\n")


def test_diagram_by_key_in_a_workflows_directory(tmp_path: Path) -> None:
    write(tmp_path / "procedures.yaml", mini_text())  # the file name need not be the key
    write(tmp_path / "zz-broken.yaml", "key: [\n")  # a broken neighbour does not stop the search
    by_option = runner.invoke(app, ["diagram", "mini", "--workflows", str(tmp_path)])
    assert by_option.exit_code == 0
    assert by_option.stdout.startswith("stateDiagram-v2")
    by_env = runner.invoke(app, ["diagram", "mini"], env={WORKFLOWS_ENV: str(tmp_path)})
    assert by_env.stdout == by_option.stdout


def test_diagram_of_an_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path / "procedures.yaml", mini_text())
    result = runner.invoke(app, ["diagram", "nothing", "--workflows", str(tmp_path)])
    assert result.exit_code == 2
    with pytest.raises(LookupError, match="keys there: mini"):
        resolve_definition("nothing", tmp_path)


def test_diagram_of_an_invalid_definition_prints_its_problems(tmp_path: Path) -> None:
    path = bad_gate(tmp_path)
    result = runner.invoke(app, ["diagram", str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "check.unknown_gate" in result.stderr
    named = bad_gate(tmp_path / "flows", "mini.yaml")
    by_key = runner.invoke(app, ["diagram", "mini", "--workflows", str(named.parent)])
    assert by_key.exit_code == 1  # <key>.yaml exists but is broken: say why rather than "not found"
    assert "check.unknown_gate" in by_key.stderr


def test_diagram_of_the_bundled_major_project() -> None:
    result = runner.invoke(app, ["diagram", "major-project"])
    assert result.exit_code == 0, result.output
    definition = resolve_definition("major-project").definition
    for phase in definition.phases:
        assert f'state "{phase.title}" as ' in result.stdout
    assert "[可研批复前]" in result.stdout and "[开工前]" in result.stdout


# --- explain ------------------------------------------------------------------------------------------------


def test_explain_a_file() -> None:
    result = runner.invoke(app, ["explain", str(MINI)])
    assert result.exit_code == 0
    assert result.stdout == explain_definition(load_definition_file(MINI).definition)
    assert "建设工程规划许可证" in result.stdout and "20个工作日" in result.stdout


def test_explain_in_english() -> None:
    result = runner.invoke(app, ["explain", str(MINIMAL), "--lang", "en"])
    assert result.exit_code == 0
    assert result.stdout.startswith("Minimal project procedure (minimal-project)\n")


def test_explain_with_rich_tables() -> None:
    result = runner.invoke(app, ["explain", str(MINI), "--rich"])
    assert result.exit_code == 0
    for text in ("测试流程（mini）", "建设工程规划许可证", "县规划自然资源局", "20个工作日", "7个自然日"):
        assert text in result.stdout
    assert result.stdout != runner.invoke(app, ["explain", str(MINI), "--plain"]).stdout


def test_explain_the_bundled_major_project_names_all_eleven_steps() -> None:
    result = runner.invoke(app, ["explain", "major-project", "--plain"])
    assert result.exit_code == 0
    for title in (
        "项目策划生成",
        "建立项目储备库",
        "制定工作计划",
        "严格审核论证",
        "提高审批效率",
        "开展专项审批",
        "强化要素保障",
        "强化项目调度",
        "强化竣工验收",
        "强化运营维护",
        "强化绩效评估",
    ):
        assert title in result.stdout


# --- the console script -------------------------------------------------------------------------------------


def test_main_runs_the_app(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["lifecycle", "validate", str(MINI)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("OK ")


def test_exit_codes_of_a_real_process(tmp_path: Path) -> None:
    def run(*args: str) -> int:
        command = [sys.executable, "-m", "lifecycle.cli", *args]
        return subprocess.run(command, capture_output=True, check=False, cwd=ROOT).returncode

    assert run("validate", str(MINI)) == 0
    assert run("validate", str(bad_gate(tmp_path))) == 1
    assert run("validate", str(tmp_path / "missing.yaml")) == 2
