"""SVG drawings laid out in pure Python: well-formed, complete, highlighted, escaped, and nothing overlaps."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lifecycle.spec.loader import load_definition_file, load_definition_text
from lifecycle.spec.models import Definition
from lifecycle.spec.svg import _graph, layout_graph, render_svg, text_width

from .edits import MINI_TEXT, replace

SVG = "{http://www.w3.org/2000/svg}"
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


@pytest.fixture(scope="module")
def mini() -> Definition:
    return load_definition_text(MINI_TEXT).definition


def groups(root: ET.Element, css_class: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if css_class in (g.get("class") or "").split()]


@pytest.mark.parametrize("name", ["major-project.yaml", "investment-attraction.yaml"])
def test_every_bundled_definition_draws_as_well_formed_svg_with_every_state(name: str) -> None:
    definition = load_definition_file(WORKFLOWS / name).definition
    document = render_svg(definition)
    root = ET.fromstring(document)
    assert root.tag == f"{SVG}svg" and float(root.get("width", "0")) > 0
    drawn = {g.get("data-state") for g in groups(root, "state")}
    assert drawn == {state.id for state in definition.states}
    text = "".join(root.itertext())
    for state in definition.states:
        assert state.title in text
    assert len(root.findall(f".//{SVG}path[@class='edge']")) >= len({t.trigger for t in definition.transitions}) // 2
    assert render_svg(definition) == document  # deterministic


def test_the_current_state_and_open_items_are_highlighted(mini: Definition) -> None:
    root = ET.fromstring(render_svg(mini, "permitting", ["permits.planning_permit"]))
    assert [g.get("data-state") for g in groups(root, "current")] == ["permitting"]
    [current] = groups(root, "current")
    assert "办理中：建设工程规划许可证" in "".join(current.itertext())
    assert current.find(f"{SVG}rect") is not None and current.find(f"{SVG}rect").get("stroke-width") == "3"  # type: ignore[union-attr]
    english = render_svg(mini, "draft", lang="en")
    assert "state before the hold (H)" in english
    with pytest.raises(ValueError):
        render_svg(mini, "nowhere")
    with pytest.raises(ValueError):
        render_svg(mini, None, ["permits.nothing"])


def test_titles_are_escaped(mini: Definition) -> None:
    nasty = replace(MINI_TEXT, "{id: draft, title: 谋划,", "{id: draft, title: '谋划 <script>alert(\"&\")</script>',")
    document = render_svg(load_definition_text(nasty).definition)
    root = ET.fromstring(document)
    assert "<script>" not in document
    assert '谋划 <script>alert("&")</script>' in "".join(root.itertext())


def test_nothing_overlaps() -> None:
    definition = load_definition_file(WORKFLOWS / "major-project.yaml").definition
    boxes, edges = _graph(definition, "permitting", [], False)
    layout = layout_graph(
        [(b.id, b.width, b.height) for b in boxes],
        [(e.source, e.dest, 60.0 if any(e.labels) else 0.0, 14.0) for e in edges],
    )
    rects = list(layout.nodes.values()) + list(layout.labels.values())

    def overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
        return abs(a[0] - b[0]) * 2 < a[2] + b[2] - 0.5 and abs(a[1] - b[1]) * 2 < a[3] + b[3] - 0.5

    clashes = [(a, b) for a, b in itertools.combinations(rects, 2) if overlap(a, b)]
    assert clashes == []
    assert all(x - w / 2 >= 0 and x + w / 2 <= layout.width for x, _, w, _ in rects)
    # Every state sits below what leads to it, except where an edge goes back (退回).
    rows = {ident: y for ident, (_, y, _, _) in layout.nodes.items()}
    assert rows["planning"] < rows["appraisal"] < rows["permitting"] < rows["construction"] < rows["evaluated"]


def test_text_widths() -> None:
    assert text_width("报建审批", 10) == 40
    assert text_width("ab", 10) == 12
