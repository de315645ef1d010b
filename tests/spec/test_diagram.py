"""The Mermaid drawing of a definition's project machine (lifecycle.spec.diagram)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lifecycle.spec.diagram import ANY_NODE, PREVIOUS_NODE, escape_label, render_mermaid
from lifecycle.spec.loader import load_definition_file, load_definition_text
from lifecycle.spec.models import Definition

DATA = Path(__file__).resolve().parents[1] / "data"
MINI = DATA / "engine-mini.yaml"
MINIMAL = DATA / "valid" / "minimal.yaml"
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"

EDGE = re.compile(r"^    (?P<source>\S+) --> (?P<dest>\S+)(?: : (?P<label>.*))?$")
STATE = re.compile(r'^\s*state "(?P<label>[^"]*)" as (?P<id>[A-Za-z][A-Za-z0-9_]*)(?P<open> \{)?$')


def mini() -> Definition:
    return load_definition_file(MINI).definition


def mini_text() -> str:
    return MINI.read_text(encoding="utf-8")


def edges(text: str) -> list[tuple[str, str, str | None]]:
    found = []
    for line in text.splitlines():
        match = EDGE.match(line)
        if match:
            found.append((match["source"], match["dest"], match["label"]))
    return found


def composites(text: str) -> dict[str, tuple[str, list[str]]]:
    """Composite id → (label, ids of the states declared inside it)."""
    result: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in text.splitlines():
        match = STATE.match(line)
        if match and match["open"]:
            current = match["id"]
            result[current] = (match["label"], [])
        elif line.strip() == "}":
            current = None
        elif match and current is not None:
            result[current][1].append(match["id"])
    return result


def labels(text: str) -> dict[str, str]:
    """State id → its label, for every declared state (composites included)."""
    return {m["id"]: m["label"] for m in map(STATE.match, text.splitlines()) if m}


def assert_mermaid_safe(text: str) -> None:
    """Every label holds only text Mermaid's lexer reads as text: no raw quotes in state labels, and no
    ':' ';' '#' in edge labels once the entity codes (#58; …) are taken out."""
    for line in text.splitlines():
        edge = EDGE.match(line)
        if edge and edge["label"] is not None:
            bare = re.sub(r"#\w+;", "", edge["label"])
            assert not set(bare) & set(':;#"%'), line
        if line.strip().startswith("state "):
            assert STATE.match(line), line


def test_starts_with_the_diagram_type_and_is_deterministic() -> None:
    first = render_mermaid(mini())
    assert first.splitlines()[0] == "stateDiagram-v2"
    assert first.endswith("\n")
    assert render_mermaid(mini()) == first  # a fresh load draws the same text
    assert render_mermaid(load_definition_file(MINI).definition) == first


def test_phases_are_composites_holding_their_states() -> None:
    groups = composites(render_mermaid(mini()))
    assert groups == {
        "early": ("前期", ["draft", "permitting"]),
        "late": ("后期", ["building", "done"]),
    }


def test_states_carry_titles_and_step_numbers() -> None:
    found = labels(render_mermaid(load_definition_file(MINIMAL).definition))
    assert found["planning"] == "谋划<br/>步骤 1"
    assert found["permitting"] == "报建审批<br/>步骤 2"
    assert found["held"] == "暂缓"  # no steps, no step line


def test_edges_carry_trigger_and_gate_titles() -> None:
    drawn = edges(render_mermaid(mini()))
    assert ("permitting", "building", "开工 [开工前]") in drawn
    assert ("building", "done", "完工 [完工前]") in drawn
    assert ("draft", "permitting", "启动审批") in drawn  # no gate, no brackets


def test_any_source_is_one_pseudo_state_and_previous_a_history_marker() -> None:
    text = render_mermaid(mini())
    drawn = edges(text)
    assert (ANY_NODE, "on_hold", "暂缓") in drawn
    assert (ANY_NODE, "stopped", "终止") in drawn
    assert not [edge for edge in drawn if edge[1] == "on_hold" and edge[0] != ANY_NODE]
    assert ("on_hold", PREVIOUS_NODE, "恢复") in drawn
    assert labels(text)[ANY_NODE] == "任一进行中状态 (*)"
    assert labels(text)[PREVIOUS_NODE] == "暂缓前所在状态 (H)"
    assert f"    class {ANY_NODE},{PREVIOUS_NODE} pseudo" in text.splitlines()


def test_start_end_and_styles() -> None:
    lines = render_mermaid(mini()).splitlines()
    assert "    [*] --> draft" in lines
    assert "    done --> [*]" in lines
    assert "    stopped --> [*]" in lines
    assert "    building --> [*]" not in lines
    assert "    class on_hold hold" in lines
    assert "    class done,stopped terminal" in lines
    assert any(line.startswith("    classDef hold ") for line in lines)
    assert not any(" current" in line for line in lines)  # nothing highlighted unless asked


def test_system_only_triggers_are_marked_automatic() -> None:
    drawn = edges(render_mermaid(load_definition_file(MINIMAL).definition))
    assert ("permitting", "permitting", "逾期未开工（自动）") in drawn


def test_highlighted_state_and_open_tasks() -> None:
    text = render_mermaid(mini(), highlight_state="permitting", highlight_tasks=["permits.planning_permit"])
    lines = text.splitlines()
    assert "    class permitting current" in lines
    assert any(line.startswith("    classDef current ") for line in lines)
    assert labels(text)["permitting"] == "审批<br/>步骤 2<br/>办理中：建设工程规划许可证"
    whole_group = render_mermaid(mini(), highlight_tasks=["permits"])
    assert labels(whole_group)["permitting"].endswith("办理中：建设工程规划许可证、施工许可证")
    assert "    class permitting open_tasks" in whole_group.splitlines()


def test_highlighting_something_unknown_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown state"):
        render_mermaid(mini(), highlight_state="nowhere")
    with pytest.raises(ValueError, match="no item"):
        render_mermaid(mini(), highlight_tasks=["permits.nothing"])
    with pytest.raises(ValueError, match="unknown task group"):
        render_mermaid(mini(), highlight_tasks=["nothing.planning_permit"])


def test_titles_that_would_break_the_syntax_are_escaped() -> None:
    text = mini_text().replace("title: 启动审批", """title: '启动: "审批"; #1 <b> 100%'""")
    drawing = render_mermaid(load_definition_text(text, "odd.yaml").definition)
    assert ("draft", "permitting", "启动#58; #quot;审批#quot;#59; #35;1 #lt;b#gt; 100#37;") in edges(drawing)
    assert_mermaid_safe(drawing)
    assert escape_label('a "b": c') == "a #quot;b#quot;#58; c"


def test_ids_that_clash_or_are_mermaid_words_are_renamed() -> None:
    text = (
        mini_text()
        .replace("{id: late, title: 后期}", "{id: building, title: 后期}")
        .replace("phase: late", "phase: building")
        .replace("{id: done, title: 完成", "{id: end, title: 完成")
        .replace("to: done,", "to: end,")
    )
    drawing = render_mermaid(load_definition_text(text, "clash.yaml").definition)
    groups = composites(drawing)
    assert groups["building_phase"] == ("后期", ["building", "end_state"])
    assert ("building", "end_state", "完工 [完工前]") in edges(drawing)
    assert "    end_state --> [*]" in drawing.splitlines()


def test_english_titles_where_present() -> None:
    text = mini_text().replace("{id: early, title: 前期}", "{id: early, title: 前期, title_en: Early}")
    drawing = render_mermaid(load_definition_text(text, "en.yaml").definition, lang="en")
    assert composites(drawing)["early"][0] == "Early"
    assert labels(drawing)["draft"] == "谋划<br/>steps 1"  # no English title: the Chinese one
    assert labels(drawing)[ANY_NODE] == "any active state (*)"


def bundled() -> list[Path]:
    return sorted(path for path in WORKFLOWS.glob("*.yaml") if path.stem != "schema")


@pytest.mark.parametrize("path", bundled(), ids=lambda path: path.stem)
def test_bundled_definitions_draw_every_state_and_transition(path: Path) -> None:
    definition = load_definition_file(path).definition
    drawing = render_mermaid(definition)
    assert_mermaid_safe(drawing)
    declared = labels(drawing)
    groups = composites(drawing)
    for state in definition.states:
        assert any(label.startswith(state.title) for label in declared.values()), state.id
    for phase in definition.phases:
        if any(state.phase == phase.id for state in definition.states):
            assert phase.title in {label for label, _ in groups.values()}
    expected_edges = sum(len(transition.source) for transition in definition.transitions)
    terminal_ends = sum(1 for state in definition.states if state.terminal)
    assert len(edges(drawing)) == expected_edges + terminal_ends + 1  # + [*] --> initial


def test_major_project_gates_sit_on_their_edges() -> None:
    definition = load_definition_file(WORKFLOWS / "major-project.yaml").definition
    drawn = edges(render_mermaid(definition))
    gates = {gate.id: gate.title for gate in definition.gates}
    gated = [t for t in definition.transitions if t.gate]
    assert {gates[t.gate or ""] for t in gated} >= {"可研批复前", "开工前"}
    for transition in gated:
        label = f"{transition.title} [{gates[transition.gate or '']}]"
        for source in transition.source:
            assert any(
                (edge_source, edge_dest) == (source, transition.dest) and (edge_label or "").startswith(label)
                for edge_source, edge_dest, edge_label in drawn
            ), (source, transition.dest, label)
