"""Mermaid ``stateDiagram-v2`` drawings of a definition's project machine.

:func:`render_mermaid` turns a :class:`~lifecycle.spec.models.Definition` into Mermaid text that GitHub,
GitLab, most wikis and https://mermaid.live render. ``lifecycle diagram`` prints it; the REST API returns it
with a project's current state highlighted.

How the drawing reads:

* each phase (前期决策生成, 中期建设实施, 后期投产达效) is a composite state holding the states of that phase,
  in the definition's order; states without a phase (暂缓, 终止) stand outside every phase;
* a state is labelled with its Chinese title and the plan's step numbers it carries out (``步骤 5、6``);
* an edge is labelled with the trigger's title and, in brackets, the title of its gate
  (``appraisal --> permitting : 可研批复 [可研批复前]``); triggers only the scheduler fires are marked
  ``（自动）``;
* a transition from ``*`` (every non-terminal, non-holding state) is drawn **once**, from a dashed pseudo-state
  labelled "任一进行中状态 (*)", rather than from each state: with a dozen states the fan of identical edges
  would hide the procedure itself;
* a transition to ``$previous`` (resume a held project) is drawn to a dashed pseudo-state labelled
  "暂缓前所在状态 (H)", the history marker of UML state charts, which Mermaid lacks;
* ``[*] --> initial`` marks the start and every terminal state gets ``--> [*]``;
* holding, terminal, the highlighted current state and states with highlighted open tasks are styled with
  ``classDef`` (``hold``, ``terminal``, ``current``, ``open_tasks``; the pseudo-states are ``pseudo``).

Mermaid cannot *declare* a transition between states of two different composites inside either composite
(the state would move into the composite that names it last), so every transition is written at the top
level, after the composites, where cross-phase edges render correctly.

Text from the definition is escaped with Mermaid entity codes (``#quot;``, ``#58;`` …), which Mermaid
decodes after parsing, so quotes, colons, semicolons, ``#`` and angle brackets in titles cannot break the
syntax. The output depends only on the definition and the arguments: the same input gives the same text.
"""

from __future__ import annotations

from collections.abc import Iterable

from lifecycle.spec.models import ANY_STATE, PREVIOUS_STATE, SYSTEM_ROLE, Definition, State

__all__ = ["escape_label", "render_mermaid"]

ANY_NODE = "ANY_ACTIVE_STATE"
"""Mermaid id of the pseudo-state that ``from: "*"`` transitions leave from (upper case: no state id can be
upper case, so it never collides)."""

PREVIOUS_NODE = "PREVIOUS_STATE"
"""Mermaid id of the history pseudo-state that ``to: $previous`` transitions go to."""

_RESERVED = frozenset(
    {
        "as",
        "choice",
        "class",
        "classdef",
        "click",
        "default",
        "direction",
        "end",
        "fork",
        "hide",
        "join",
        "left",
        "note",
        "of",
        "right",
        "scale",
        "state",
        "style",
    }
)
"""Words of the Mermaid state-diagram grammar that a definition id must not be written as."""

_ESCAPES = {
    "#": "#35;",
    '"': "#quot;",
    ":": "#58;",
    ";": "#59;",
    "<": "#lt;",
    ">": "#gt;",
    "%": "#37;",
    "{": "#123;",
    "}": "#125;",
    "\n": " ",
    "\r": " ",
    "\t": " ",
}

_STYLES = (
    ("hold", "fill:#f5f5f5,stroke:#757575,stroke-dasharray:5 5,color:#424242"),
    ("terminal", "fill:#e0e0e0,stroke:#424242,color:#212121"),
    ("open_tasks", "fill:#e3f2fd,stroke:#1565c0,color:#0d47a1"),
    ("current", "fill:#ffd54f,stroke:#e65100,stroke-width:3px,color:#000"),
    ("pseudo", "fill:#ffffff,stroke:#9e9e9e,stroke-dasharray:3 3,color:#616161"),
)


def escape_label(text: str) -> str:
    """``text`` made safe for a Mermaid label: characters the grammar reads are written as entity codes."""
    return "".join(_ESCAPES.get(char, char) for char in text).strip()


def render_mermaid(
    definition: Definition,
    highlight_state: str | None = None,
    highlight_tasks: Iterable[str] = (),
    *,
    lang: str = "zh",
) -> str:
    """The project machine of ``definition`` as a Mermaid ``stateDiagram-v2`` (see the module docstring).

    Args:
        definition: the definition to draw.
        highlight_state: a state id to mark as the project's current state (class ``current``).
        highlight_tasks: open tasks to show, as ``"group.item"`` (or a bare group id for every item of the
            group): the state that opens their group gets a line "办理中：…" and the class ``open_tasks``.
        lang: ``"zh"`` (default) or ``"en"``: English titles where the definition has them.

    Returns:
        The Mermaid text, starting with ``stateDiagram-v2`` and ending with a newline.

    Raises:
        ValueError: ``highlight_state`` is not a state, or a highlighted task names an unknown group or item.
    """
    english = lang == "en"
    states = {state.id: state for state in definition.states}
    if highlight_state is not None and highlight_state not in states:
        raise ValueError(f"unknown state {highlight_state!r}")
    open_titles = _open_task_titles(definition, highlight_tasks, english)

    ids = _NodeIds()
    for state in definition.states:
        ids.add(("state", state.id), state.id)
    for phase in definition.phases:
        ids.add(("phase", phase.id), phase.id)

    lines = ["stateDiagram-v2", f"    %% {escape_label(definition.key)}: {escape_label(definition.title)}"]

    def declare(state: State, indent: str) -> None:
        label = _title(state, english)
        if state.steps:
            numbers = "、".join(str(number) for number in state.steps)
            label_steps = f"steps {', '.join(str(n) for n in state.steps)}" if english else f"步骤 {numbers}"
            label = f"{escape_label(label)}<br/>{label_steps}"
        else:
            label = escape_label(label)
        tasks = open_titles.get(state.id)
        if tasks:
            prefix = "open: " if english else "办理中："
            label += "<br/>" + escape_label(prefix + ("; " if english else "、").join(tasks))
        lines.append(f'{indent}state "{label}" as {ids.get(("state", state.id))}')

    phase_ids = {phase.id for phase in definition.phases}
    for phase in definition.phases:
        members = [state for state in definition.states if state.phase == phase.id]
        if not members:
            continue
        lines.append(f'    state "{escape_label(_title(phase, english))}" as {ids.get(("phase", phase.id))} {{')
        for state in members:
            declare(state, "        ")
        lines.append("    }")
    for state in definition.states:
        if state.phase not in phase_ids:
            declare(state, "    ")

    uses_any = any(ANY_STATE in t.source for t in definition.transitions)
    uses_previous = any(t.dest == PREVIOUS_STATE for t in definition.transitions)
    if uses_any:
        label = "any active state (*)" if english else "任一进行中状态 (*)"
        lines.append(f'    state "{escape_label(label)}" as {ANY_NODE}')
    if uses_previous:
        label = "state before the hold (H)" if english else "暂缓前所在状态 (H)"
        lines.append(f'    state "{escape_label(label)}" as {PREVIOUS_NODE}')

    if definition.initial in states:
        lines.append(f"    [*] --> {ids.get(('state', definition.initial))}")
    gate_titles = {gate.id: _title(gate, english) for gate in definition.gates}
    for transition in definition.transitions:
        label = _title(transition, english)
        if transition.gate:
            label += f" [{gate_titles.get(transition.gate, transition.gate)}]"
        if list(transition.roles) == [SYSTEM_ROLE]:
            label += " (automatic)" if english else "（自动）"
        dest = PREVIOUS_NODE if transition.dest == PREVIOUS_STATE else ids.get(("state", transition.dest))
        for source in transition.source:
            origin = ANY_NODE if source == ANY_STATE else ids.get(("state", source))
            lines.append(f"    {origin} --> {dest} : {escape_label(label)}")
    for state in definition.states:
        if state.terminal:
            lines.append(f"    {ids.get(('state', state.id))} --> [*]")

    classes: dict[str, list[str]] = {name: [] for name, _ in _STYLES}
    for state in definition.states:
        if state.id == highlight_state:
            kind = "current"
        elif state.hold:
            kind = "hold"
        elif state.terminal:
            kind = "terminal"
        elif state.id in open_titles:
            kind = "open_tasks"
        else:
            continue
        classes[kind].append(ids.get(("state", state.id)))
    classes["pseudo"] = [node for node, used in ((ANY_NODE, uses_any), (PREVIOUS_NODE, uses_previous)) if used]
    for name, style in _STYLES:
        if classes[name]:
            lines.append(f"    classDef {name} {style}")
    for name, _ in _STYLES:
        if classes[name]:
            lines.append(f"    class {','.join(classes[name])} {name}")
    return "\n".join(lines) + "\n"


def _title(entry: object, english: bool) -> str:
    title_en = getattr(entry, "title_en", None)
    return str(title_en) if english and title_en else str(getattr(entry, "title", ""))


def _open_task_titles(definition: Definition, tasks: Iterable[str], english: bool) -> dict[str, list[str]]:
    """State id → titles of the highlighted tasks whose group that state opens, in definition order."""
    wanted: dict[str, set[str] | None] = {}  # group → item ids, or None for the whole group
    for ref in tasks:
        group_id, _, item_id = ref.partition(".")
        group = definition.lookup("task_groups").get(group_id)
        if group is None:
            raise ValueError(f"unknown task group {group_id!r} in highlighted task {ref!r}")
        if not item_id:
            wanted[group_id] = None
            continue
        if item_id not in {item.id for item in group.items}:
            raise ValueError(f"task group {group_id!r} has no item {item_id!r}")
        chosen = wanted.setdefault(group_id, set())
        if chosen is not None:
            chosen.add(item_id)
    result: dict[str, list[str]] = {}
    for state in definition.states:
        titles: list[str] = []
        for group_id in state.opens:
            if group_id not in wanted:
                continue
            chosen = wanted[group_id]
            group = definition.group(group_id)
            titles.extend(_title(item, english) for item in group.items if chosen is None or item.id in chosen)
        if titles:
            result[state.id] = titles
    return result


class _NodeIds:
    """Mermaid ids for states and phases: the definition id itself, unless it is a word of the Mermaid
    grammar or already taken (a phase and a state may share an id), in which case a suffix makes it unique."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}
        self._taken: set[str] = {ANY_NODE, PREVIOUS_NODE}

    def add(self, key: tuple[str, str], wanted: str) -> None:
        if key in self._ids:
            return
        candidate = wanted
        if candidate.lower() in _RESERVED or candidate in self._taken:
            candidate = f"{wanted}_{key[0]}"
            counter = 2
            while candidate in self._taken:
                candidate = f"{wanted}_{key[0]}{counter}"
                counter += 1
        self._taken.add(candidate)
        self._ids[key] = candidate

    def get(self, key: tuple[str, str]) -> str:
        # An unknown state (only in a definition that failed its checks) keeps its own id, so the drawing
        # still shows the dangling edge instead of failing.
        return self._ids.get(key, key[1])
