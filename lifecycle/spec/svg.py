"""SVG drawings of a definition's project machine, laid out in pure Python (no Graphviz, no network).

:func:`render_svg` draws the same graph as :func:`lifecycle.spec.diagram.render_mermaid` — states with their
titles and plan steps, transitions labelled with their titles and gates, ``*`` transitions from one pseudo-state,
``$previous`` to a history pseudo-state — as a standalone SVG document, so a browser shows it without any
script, CDN or server-side binary. The project's current state and the states whose open items are
highlighted are marked as in the Mermaid drawing.

The layout is a small layered ("Sugiyama") drawing, which suits a procedure that mostly runs one way:

1. **Orient**: a depth-first walk from the start, in definition order, finds the edges that go back (退回,
   论证未通过); they are laid out reversed so the rest is acyclic, and drawn with their arrow the right way.
2. **Rank**: each state's rank is its longest distance from the start, so a state sits below everything that
   leads to it. Every transition gets a *label node* half-way between its ends and a chain of point nodes over
   any further rows, so edges and their labels take space in the layout and never lie on top of a state.
3. **Order**: within each row, nodes are sorted by the mean position of their neighbours in the row above,
   then below (the barycentre heuristic), several sweeps, keeping the order with the fewest crossings.
4. **Place**: x positions are pulled towards the mean of each node's neighbours while keeping the row's
   order and the gaps between nodes (an isotonic regression per row, solved exactly by pooling adjacent
   violators), a few passes down and up.
5. **Draw**: states are rounded boxes filled by phase (a legend names the phases), edges are smooth cubic
   curves through their chain, labels sit on their edge on a white ground.

Text widths are estimated (a CJK character is one em, other characters about 0.6 em): the drawing does not
depend on the fonts of the machine that renders it. Everything from the definition is XML-escaped. The
output depends only on the definition and the arguments: the same input gives the same document.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from lifecycle.spec.diagram import _open_task_titles
from lifecycle.spec.models import ANY_STATE, PREVIOUS_STATE, SYSTEM_ROLE, Definition

__all__ = ["Layout", "layout_graph", "render_svg", "text_width"]

FONT_FAMILY = "'Noto Sans CJK SC','Source Han Sans SC','PingFang SC','Microsoft YaHei',sans-serif"
"""Fonts asked for, in order: the common Chinese UI fonts of Linux, macOS and Windows, then any sans-serif."""

_START = "__start__"
_ANY = "__any__"
_PREVIOUS = "__previous__"

_TITLE_SIZE = 14
_SMALL_SIZE = 11
_LABEL_SIZE = 11
_PAD_X = 14
_PAD_Y = 9
_LINE_GAP = 4
_NODE_GAP = 28
_ROW_GAP = 18
_MARGIN = 24
_MAX_TASK_TEXT = 260

_PHASE_FILLS = ("#e8f5e9", "#e3f2fd", "#fff3e0", "#f3e5f5", "#e0f7fa", "#fce4ec", "#f1f8e9", "#ede7f6")
_PHASE_STROKES = ("#2e7d32", "#1565c0", "#e65100", "#6a1b9a", "#00838f", "#ad1457", "#558b2f", "#4527a0")


def text_width(text: str, size: float) -> float:
    """The estimated width of ``text`` at font size ``size``: one em per CJK or full-width character, 0.6 em
    for any other."""
    return sum(size if ord(char) >= 0x2E80 else size * 0.6 for char in text)


# --- the graph --------------------------------------------------------------------------------------------


@dataclass
class _Box:
    """A drawn node: a state, a pseudo-state or the start dot, with its text lines (text, size, bold)."""

    id: str
    lines: list[tuple[str, int, bool]]
    classes: list[str]
    width: float
    height: float
    fill: str = "#ffffff"
    stroke: str = "#424242"


@dataclass
class _Edge:
    source: str
    dest: str
    labels: list[str]
    automatic: bool = False


@dataclass
class Layout:
    """Where everything goes: node centres and sizes, and each edge's points from source to destination.

    Attributes:
        nodes: node id → (x, y, width, height) of its box (centre and size).
        edges: (source, dest) → the points of its path, source end first.
        labels: (source, dest) → (x, y, width, height) of its label box.
        width / height: the drawing's size.
    """

    nodes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    edges: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    labels: dict[tuple[str, str], tuple[float, float, float, float]] = field(default_factory=dict)
    width: float = 0.0
    height: float = 0.0


def _title(entry: object, english: bool) -> str:
    title_en = getattr(entry, "title_en", None)
    return str(title_en) if english and title_en else str(getattr(entry, "title", ""))


def _wrap(text: str, size: int, limit: float) -> list[str]:
    """``text`` cut into lines no wider than ``limit`` (by characters: Chinese has no spaces to break at)."""
    lines, current = [], ""
    for char in text:
        if current and text_width(current + char, size) > limit:
            lines.append(current)
            current = ""
        current += char
    if current:
        lines.append(current)
    return lines


def _box(ident: str, lines: list[tuple[str, int, bool]], classes: list[str]) -> _Box:
    width = max(text_width(text, size) for text, size, _ in lines) + 2 * _PAD_X
    height = sum(size for _, size, _ in lines) + _LINE_GAP * (len(lines) - 1) + 2 * _PAD_Y
    return _Box(ident, lines, classes, max(width, 56.0), height)


def _graph(
    definition: Definition, highlight_state: str | None, highlight_tasks: Iterable[str], english: bool
) -> tuple[list[_Box], list[_Edge]]:
    open_titles = _open_task_titles(definition, highlight_tasks, english)
    phases = {phase.id: index for index, phase in enumerate(definition.phases)}
    boxes = [_Box(_START, [], ["start"], 18.0, 18.0, "#212121", "#212121")]
    for state in definition.states:
        lines: list[tuple[str, int, bool]] = [(_title(state, english), _TITLE_SIZE, True)]
        if state.steps:
            numbers = ", ".join(str(n) for n in state.steps) if english else "、".join(str(n) for n in state.steps)
            lines.append((f"steps {numbers}" if english else f"步骤 {numbers}", _SMALL_SIZE, False))
        tasks = open_titles.get(state.id)
        if tasks:
            prefix = "open: " if english else "办理中："
            text = prefix + ("; " if english else "、").join(tasks)
            wrapped = _wrap(text, _SMALL_SIZE, _MAX_TASK_TEXT)
            if len(wrapped) > 4:
                wrapped = [*wrapped[:3], wrapped[3][:-1] + "…"]
            lines.extend((line, _SMALL_SIZE, False) for line in wrapped)
        classes = ["state"]
        if state.hold:
            classes.append("hold")
        if state.terminal:
            classes.append("terminal")
        if tasks:
            classes.append("open_tasks")
        if state.id == highlight_state:
            classes.append("current")
        box = _box(state.id, lines, classes)
        index = phases.get(state.phase or "")
        if index is not None:
            box.fill = _PHASE_FILLS[index % len(_PHASE_FILLS)]
            box.stroke = _PHASE_STROKES[index % len(_PHASE_STROKES)]
        elif state.hold or state.terminal:
            box.fill, box.stroke = ("#f5f5f5", "#757575") if state.hold else ("#e0e0e0", "#424242")
        if tasks:
            box.fill, box.stroke = "#e3f2fd", "#1565c0"
        if state.id == highlight_state:
            box.fill, box.stroke = "#ffd54f", "#e65100"
        boxes.append(box)
    gate_titles = {gate.id: _title(gate, english) for gate in definition.gates}
    edges: dict[tuple[str, str], _Edge] = {}

    def add(source: str, dest: str, label: str, automatic: bool) -> None:
        edge = edges.setdefault((source, dest), _Edge(source, dest, [], automatic))
        edge.labels.append(label)
        edge.automatic = edge.automatic and automatic

    state_ids = {state.id for state in definition.states}
    if definition.initial in state_ids:
        add(_START, definition.initial, "", False)
    uses_any = uses_previous = False
    for transition in definition.transitions:
        label = _title(transition, english)
        if transition.gate:
            label += f" [{gate_titles.get(transition.gate, transition.gate)}]"
        automatic = list(transition.roles) == [SYSTEM_ROLE]
        if automatic:
            label += " (automatic)" if english else "（自动）"
        if transition.dest == PREVIOUS_STATE:
            dest, uses_previous = _PREVIOUS, True
        elif transition.dest in state_ids:
            dest = transition.dest
        else:
            continue  # a dangling reference (only in a definition that failed its checks)
        for source in transition.source:
            if source == ANY_STATE:
                uses_any = True
                add(_ANY, dest, label, automatic)
            elif source in state_ids:
                add(source, dest, label, automatic)
    if uses_any:
        text = "any active state (*)" if english else "任一进行中状态 (*)"
        boxes.insert(1, _box(_ANY, [(text, _SMALL_SIZE, False)], ["pseudo"]))
    if uses_previous:
        text = "state before the hold (H)" if english else "暂缓前所在状态 (H)"
        boxes.append(_box(_PREVIOUS, [(text, _SMALL_SIZE, False)], ["pseudo"]))
    for box in boxes:
        if "pseudo" in box.classes:
            box.fill, box.stroke = "#ffffff", "#9e9e9e"
    return boxes, list(edges.values())


# --- layout -----------------------------------------------------------------------------------------------


@dataclass
class _Node:
    """A node of the layered layout: a box, an edge's label, or a point an edge passes through."""

    id: str
    width: float
    height: float
    row: int = 0
    x: float = 0.0
    y: float = 0.0
    up: list[str] = field(default_factory=list)
    down: list[str] = field(default_factory=list)


def _orient(order: Sequence[str], edges: Sequence[_Edge]) -> set[tuple[str, str]]:
    """The edges that point back up the procedure: found by a depth-first walk from the first node, in
    definition order, as edges to a node still on the walk's stack."""
    out: dict[str, list[str]] = {node: [] for node in order}
    for edge in edges:
        if edge.source != edge.dest:
            out[edge.source].append(edge.dest)
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in order:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, index = stack.pop()
            if index < len(out[node]):
                stack.append((node, index + 1))
                child = out[node][index]
                if state.get(child) == 1:
                    back.add((node, child))
                elif child not in state:
                    state[child] = 1
                    stack.append((child, 0))
            else:
                state[node] = 2
    return back


def _ranks(order: Sequence[str], arcs: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest-path ranks of an acyclic graph (sources at 0)."""
    incoming: dict[str, list[str]] = {node: [] for node in order}
    for source, dest in arcs:
        incoming[dest].append(source)
    rank: dict[str, int] = {}

    def visit(node: str) -> int:
        # Iterative longest path: the graph is small but recursion depth is not worth risking.
        stack = [node]
        while stack:
            current = stack[-1]
            pending = [p for p in incoming[current] if p not in rank]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            rank[current] = max((rank[p] + 1 for p in incoming[current]), default=0)
        return rank[node]

    for node in order:
        if node not in rank:
            visit(node)
    return rank


def _crossings(rows: list[list[str]], nodes: dict[str, _Node]) -> int:
    total = 0
    for upper in rows[:-1]:
        position = {ident: index for index, ident in enumerate(upper)}
        segments = []
        for ident in upper:
            for below in nodes[ident].down:
                segments.append((position[ident], nodes[below].x))
        segments.sort()
        for i in range(len(segments)):
            for j in range(i + 1, len(segments)):
                if segments[i][0] < segments[j][0] and segments[i][1] > segments[j][1]:
                    total += 1
    return total


def _order(rows: list[list[str]], nodes: dict[str, _Node], sweeps: int = 8) -> list[list[str]]:
    def index_rows(current: list[list[str]]) -> None:
        for row in current:
            for index, ident in enumerate(row):
                nodes[ident].x = float(index)

    def sweep(current: list[list[str]], downward: bool) -> list[list[str]]:
        result = [list(row) for row in current]
        indices = range(1, len(result)) if downward else range(len(result) - 2, -1, -1)
        for r in indices:
            index_rows(result)
            row = result[r]

            def barycentre(ident: str, row: list[str] = row) -> float:
                neighbours = nodes[ident].up if downward else nodes[ident].down
                if not neighbours:
                    return float(row.index(ident))
                return sum(nodes[n].x for n in neighbours) / len(neighbours)

            result[r] = sorted(row, key=barycentre)  # stable: ties keep their order
        return result

    best = [list(row) for row in rows]
    index_rows(best)
    best_count = _crossings(best, nodes)
    current = best
    for number in range(sweeps):
        current = sweep(current, downward=number % 2 == 0)
        index_rows(current)
        count = _crossings(current, nodes)
        if count < best_count:
            best, best_count = [list(row) for row in current], count
    index_rows(best)
    return best


def _isotonic(desired: list[float], gaps: list[float]) -> list[float]:
    """Positions as close as possible (least squares) to ``desired`` with ``x[i+1] - x[i] >= gaps[i]``:
    shift out the gaps, pool adjacent violators, shift back."""
    offsets = [0.0]
    for gap in gaps:
        offsets.append(offsets[-1] + gap)
    targets = [d - o for d, o in zip(desired, offsets, strict=True)]
    blocks: list[list[float]] = []  # [sum, count]
    for value in targets:
        blocks.append([value, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    solved: list[float] = []
    for block in blocks:
        solved.extend([block[0] / block[1]] * int(block[1]))
    return [y + o for y, o in zip(solved, offsets, strict=True)]


def _place(rows: list[list[str]], nodes: dict[str, _Node], passes: int = 12) -> None:
    def gaps(row: list[str]) -> list[float]:
        return [
            (nodes[a].width + nodes[b].width) / 2 + (_NODE_GAP if nodes[a].height > 1 or nodes[b].height > 1 else 10)
            for a, b in itertools.pairwise(row)
        ]

    for row in rows:  # packed from the left to start with
        x = 0.0
        for index, ident in enumerate(row):
            if index:
                x += gaps(row)[index - 1]
            nodes[ident].x = x
    for number in range(passes):
        order = range(len(rows)) if number % 2 == 0 else range(len(rows) - 1, -1, -1)
        for r in order:
            row = rows[r]
            desired = []
            for ident in row:
                node = nodes[ident]
                neighbours = node.up + node.down
                desired.append(sum(nodes[n].x for n in neighbours) / len(neighbours) if neighbours else node.x)
            for ident, x in zip(row, _isotonic(desired, gaps(row)), strict=True):
                nodes[ident].x = x


def layout_graph(
    boxes: Sequence[tuple[str, float, float]],
    edges: Sequence[tuple[str, str, float, float]],
) -> Layout:
    """Lay out a directed graph in layers (see the module docstring).

    Args:
        boxes: (id, width, height) of each node, in a meaningful order (the first is the start).
        edges: (source, dest, label width, label height) of each edge; a label of width 0 is none.

    Returns:
        The :class:`Layout`, with the origin at the top left of the drawing (margins included).
    """
    order = [ident for ident, _, _ in boxes]
    graph_edges = [_Edge(source, dest, []) for source, dest, _, _ in edges]
    back = _orient(order, graph_edges)
    arcs = []
    for source, dest, _, _ in edges:
        if source == dest:
            continue
        arcs.append((dest, source) if (source, dest) in back else (source, dest))
    rank = _ranks(order, arcs)
    nodes: dict[str, _Node] = {
        ident: _Node(ident, width, height, row=2 * rank[ident]) for ident, width, height in boxes
    }
    chains: dict[tuple[str, str], list[str]] = {}
    label_of: dict[tuple[str, str], str] = {}
    for number, (source, dest, label_width, label_height) in enumerate(edges):
        if source == dest:
            continue
        reverse = (source, dest) in back
        top, bottom = (dest, source) if reverse else (source, dest)
        first, last = nodes[top].row, nodes[bottom].row
        middle = first + 1 + 2 * ((last - first - 2) // 4)  # the odd row nearest the middle
        chain = [top]
        for between in range(first + 1, last):
            ident = f"__e{number}_{between}"
            is_label = between == middle and label_width > 0
            width, height = (label_width, label_height) if is_label else (2.0, 1.0)
            nodes[ident] = _Node(ident, width, height, row=between)
            if is_label:
                label_of[(source, dest)] = ident
            chain.append(ident)
        chain.append(bottom)
        for upper, lower in itertools.pairwise(chain):
            nodes[upper].down.append(lower)
            nodes[lower].up.append(upper)
        chains[(source, dest)] = chain[::-1] if reverse else chain
    height = max(node.row for node in nodes.values()) + 1
    rows: list[list[str]] = [[] for _ in range(height)]
    for ident in order:
        rows[nodes[ident].row].append(ident)
    for ident, node in nodes.items():
        if ident not in rank:
            rows[node.row].append(ident)
    rows = _order(rows, nodes)
    _place(rows, nodes)

    left = min(node.x - node.width / 2 for node in nodes.values())
    right = max(node.x + node.width / 2 for node in nodes.values())
    tops: list[float] = []
    y = float(_MARGIN)
    for row in rows:
        row_height = max((nodes[i].height for i in row), default=0.0)
        tops.append(y)
        y += row_height + _ROW_GAP
    layout = Layout(width=right - left + 2 * _MARGIN, height=y - _ROW_GAP + _MARGIN)
    for r, row in enumerate(rows):
        row_height = max((nodes[i].height for i in row), default=0.0)
        for ident in row:
            node = nodes[ident]
            node.x = node.x - left + _MARGIN
            center_y = tops[r] + row_height / 2
            if ident in rank:
                layout.nodes[ident] = (node.x, center_y, node.width, node.height)
            node.y = center_y
    for key, chain in chains.items():
        layout.edges[key] = [(nodes[i].x, nodes[i].y) for i in chain]
        label = label_of.get(key)
        if label is not None:
            node = nodes[label]
            layout.labels[key] = (node.x, node.y, node.width, node.height)
    return layout


# --- drawing ----------------------------------------------------------------------------------------------


def _label_lines(edge: _Edge) -> list[str]:
    return [text for text in edge.labels if text]


def _edge_path(points: list[tuple[float, float]], source: tuple[float, ...], dest: tuple[float, ...]) -> str:
    """A smooth path through ``points``, starting and ending at the border of the two boxes."""
    (sx, sy, _, sh), (dx, dy, _, dh) = source, dest
    pts = list(points)
    going_down = dy > sy
    pts[0] = (sx, sy + sh / 2 if going_down else sy - sh / 2)
    pts[-1] = (dx, dy - dh / 2 if going_down else dy + dh / 2)
    parts = [f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        half = (y1 - y0) / 2
        parts.append(f"C{x0:.1f},{y0 + half:.1f} {x1:.1f},{y1 - half:.1f} {x1:.1f},{y1:.1f}")
    return " ".join(parts)


def _self_loop(box: tuple[float, float, float, float]) -> tuple[str, tuple[float, float]]:
    x, y, w, h = box
    right = x + w / 2
    path = f"M{right:.1f},{y - h / 4:.1f} C{right + 40:.1f},{y - h / 2:.1f} {right + 40:.1f},{y + h / 2:.1f} " + (
        f"{right:.1f},{y + h / 4:.1f}"
    )
    return path, (right + 44, y)


def render_svg(
    definition: Definition,
    highlight_state: str | None = None,
    highlight_tasks: Iterable[str] = (),
    *,
    lang: str = "zh",
    title: str | None = None,
) -> str:
    """The project machine of ``definition`` as a standalone SVG document (see the module docstring).

    Args:
        definition: the definition to draw.
        highlight_state: a state id to mark as the project's current state (class ``current``).
        highlight_tasks: open tasks as ``"group.item"`` (or a bare group id): the state that opens their
            group lists them ("办理中：…") and gets the class ``open_tasks``.
        lang: ``"zh"`` (default) or ``"en"``.
        title: a caption drawn above the graph (default: the definition's title and key).

    Raises:
        ValueError: ``highlight_state`` is not a state, or a highlighted task names an unknown group or item.
    """
    english = lang == "en"
    if highlight_state is not None and highlight_state not in definition.lookup("states"):
        raise ValueError(f"unknown state {highlight_state!r}")
    boxes, edges = _graph(definition, highlight_state, highlight_tasks, english)
    label_sizes = {}
    for edge in edges:
        lines = _label_lines(edge)
        if lines:
            width = max(text_width(line, _LABEL_SIZE) for line in lines) + 8
            label_sizes[(edge.source, edge.dest)] = (width, len(lines) * (_LABEL_SIZE + 3) + 4.0)
    layout = layout_graph(
        [(box.id, box.width, box.height) for box in boxes],
        [(e.source, e.dest, *label_sizes.get((e.source, e.dest), (0.0, 0.0))) for e in edges],
    )
    caption = title if title is not None else f"{_title(definition, english)}（{definition.key}）"
    caption_height = 28.0
    phases = [(p, i) for i, p in enumerate(definition.phases)]
    legend_height = 30.0 if phases else 0.0
    width = max(layout.width, text_width(caption, 16) + 2 * _MARGIN, 200.0)
    height = layout.height + caption_height + legend_height
    out: list[str] = [
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'font-family="{FONT_FAMILY}" role="img">',
        f"<title>{escape(caption)}</title>",
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#616161"/></marker>'
        "</defs>",
        '<rect x="0" y="0" width="100%" height="100%" fill="#ffffff"/>',
        f'<text x="{_MARGIN}" y="{_MARGIN:.0f}" font-size="16" font-weight="bold" fill="#212121">'
        f"{escape(caption)}</text>",
        f'<g transform="translate(0,{caption_height:.0f})">',
    ]
    # Edges first, so boxes and labels are drawn over them.
    out.append('<g class="edges" fill="none" stroke="#616161" stroke-width="1.3">')
    by_key = {(e.source, e.dest): e for e in edges}
    for key, edge in by_key.items():
        source, dest = layout.nodes.get(edge.source), layout.nodes.get(edge.dest)
        if source is None or dest is None:
            continue
        dash = ' stroke-dasharray="5,4"' if edge.automatic or edge.source == _ANY else ""
        if edge.source == edge.dest:
            path, _ = _self_loop(source)
        else:
            path = _edge_path(layout.edges[key], source, dest)
        out.append(
            f'<path class="edge" data-from={quoteattr(edge.source)} data-to={quoteattr(edge.dest)} '
            f'd="{path}" marker-end="url(#arrow)"{dash}/>'
        )
    out.append("</g>")
    out.append('<g class="labels" font-size="11" fill="#424242">')
    for key, edge in by_key.items():
        lines = _label_lines(edge)
        if not lines:
            continue
        if edge.source == edge.dest:
            _, (lx, ly) = _self_loop(layout.nodes[edge.source])
            w, h = label_sizes[key]
            cx, cy = lx + w / 2, ly
        else:
            cx, cy, w, h = layout.labels[key]
        out.append(
            f'<g class="label"><rect x="{cx - w / 2:.1f}" y="{cy - h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" '
            'rx="3" fill="#ffffff" fill-opacity="0.92"/>'
        )
        top = cy - h / 2 + 2 + _LABEL_SIZE
        for index, line in enumerate(lines):
            out.append(
                f'<text x="{cx:.1f}" y="{top + index * (_LABEL_SIZE + 3):.1f}" text-anchor="middle">'
                f"{escape(line)}</text>"
            )
        out.append("</g>")
    out.append("</g>")
    out.append('<g class="nodes">')
    for box in boxes:
        x, y, w, h = layout.nodes[box.id]
        if box.id == _START:
            out.append(f'<circle class="start" cx="{x:.1f}" cy="{y:.1f}" r="8" fill="#212121"/>')
            continue
        data = f" data-state={quoteattr(box.id)}" if not box.id.startswith("__") else ""
        dashed = ' stroke-dasharray="5,4"' if "hold" in box.classes or "pseudo" in box.classes else ""
        stroke_width = 3 if "current" in box.classes else (2 if "open_tasks" in box.classes else 1.3)
        out.append(f"<g class={quoteattr(' '.join(box.classes))}{data}>")
        out.append(
            f'<rect x="{x - w / 2:.1f}" y="{y - h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" rx="8" '
            f'fill="{box.fill}" stroke="{box.stroke}" stroke-width="{stroke_width}"{dashed}/>'
        )
        if "terminal" in box.classes:
            out.append(
                f'<rect x="{x - w / 2 + 3:.1f}" y="{y - h / 2 + 3:.1f}" width="{w - 6:.1f}" height="{h - 6:.1f}" '
                f'rx="6" fill="none" stroke="{box.stroke}" stroke-width="1"/>'
            )
        line_y = y - h / 2 + _PAD_Y
        for text, size, bold in box.lines:
            line_y += size
            weight = ' font-weight="bold"' if bold else ""
            out.append(
                f'<text x="{x:.1f}" y="{line_y - 2:.1f}" font-size="{size}" text-anchor="middle" '
                f'fill="#212121"{weight}>{escape(text)}</text>'
            )
            line_y += _LINE_GAP
        out.append("</g>")
    out.append("</g>")
    out.append("</g>")
    if phases:
        legend_y = caption_height + layout.height + 8
        x = float(_MARGIN)
        out.append(f'<g class="legend" font-size="11" fill="#424242" transform="translate(0,{legend_y:.0f})">')
        for phase, index in phases:
            fill, stroke = _PHASE_FILLS[index % len(_PHASE_FILLS)], _PHASE_STROKES[index % len(_PHASE_STROKES)]
            name = _title(phase, english)
            out.append(f'<rect x="{x:.1f}" y="0" width="14" height="14" rx="3" fill="{fill}" stroke="{stroke}"/>')
            out.append(f'<text x="{x + 20:.1f}" y="11">{escape(name)}</text>')
            x += 20 + text_width(name, 11) + 18
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
