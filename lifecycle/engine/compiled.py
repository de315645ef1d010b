"""A definition prepared for running: lookup tables and one shared ``transitions`` Machine per machine.

Compiling happens once per definition version. Every project of that version shares the same
:class:`CompiledDefinition` and the same :class:`transitions.Machine` objects: a machine is built with
``model=None`` and never holds a model; each fire passes a short-lived :class:`Cursor` that carries the
instance's state in and out. Nothing is generated onto instances (no ``to_<state>()`` methods).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from transitions import Machine, State

from lifecycle.spec.models import (
    ANY_STATE,
    PREVIOUS_STATE,
    Clock,
    Definition,
    Item,
    MachineTransition,
    TaskMachine,
    Transition,
)


class Cursor:
    """The stand-in model handed to a shared Machine for one fire: it carries the state and the step."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


@dataclass(frozen=True)
class ProjectEdge:
    """A concrete project transition from one state: ``$previous`` and ``*`` already expanded."""

    spec: Transition
    source: str
    dest: str
    via_previous: bool


@dataclass
class CompiledMachine:
    """A task or notice machine ready to run."""

    spec: TaskMachine
    machine: Machine
    edges: dict[str, dict[str, MachineTransition]]
    outcomes: dict[str, str]
    titles: dict[str, str]
    clocks: list[Clock]


@dataclass
class CompiledDefinition:
    """A definition version ready to run: lookup tables plus the shared machines.

    Attributes:
        edges: state → trigger → the concrete transitions leaving it (several only for ``$previous``).
        items: ``(group, item)`` → item spec.
        clocks_alive: machine id ("" for the project) → state → clocks that are alive (running or paused) there.
    """

    definition: Definition
    version: int
    machine: Machine
    edges: dict[str, dict[str, list[ProjectEdge]]]
    task_machines: dict[str, CompiledMachine]
    items: dict[tuple[str, str], Item]
    triggers: frozenset[str] = field(default_factory=frozenset)


def compile_definition(
    definition: Definition,
    version: int,
    on_enter: Callable[[Any], None],
) -> CompiledDefinition:
    """Build the shared machines and lookup tables of ``definition``.

    ``on_enter`` is the engine's step 7 for the project (see :mod:`lifecycle.engine.core`): every project
    state gets it, and it reads what to do from the event's ``step`` keyword. Item and notice machines have
    no callbacks: the engine runs their step 7 itself.
    """
    edges = _project_edges(definition)
    states = [State(s.id, on_enter=[on_enter]) for s in definition.states]
    machine = Machine(
        model=None,
        states=states,
        initial=definition.initial,
        send_event=True,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )
    for by_trigger in edges.values():
        for trigger, candidates in by_trigger.items():
            for edge in candidates:
                condition = _held_from(edge.dest) if edge.via_previous else None
                machine.add_transition(trigger, edge.source, edge.dest, conditions=[condition] if condition else None)
    task_machines = {m.id: _compile_task_machine(m) for m in definition.task_machines}
    items = {(g.id, i.id): i for g in definition.task_groups for i in g.items}
    return CompiledDefinition(
        definition=definition,
        version=version,
        machine=machine,
        edges=edges,
        task_machines=task_machines,
        items=items,
        triggers=frozenset(t.trigger for t in definition.transitions),
    )


def _held_from(dest: str) -> Callable[[Any], bool]:
    def condition(event: Any) -> bool:
        return bool(event.kwargs["step"].held_from == dest)

    return condition


def _project_edges(definition: Definition) -> dict[str, dict[str, list[ProjectEdge]]]:
    movable = [s.id for s in definition.states if not s.terminal and not s.hold]
    holds = {s.id for s in definition.states if s.hold}
    # Where a holding state can have been entered from: every source of a transition into it.
    held_sources: dict[str, set[str]] = {h: set() for h in holds}
    for t in definition.transitions:
        if t.dest in holds:
            sources = movable if ANY_STATE in t.source else t.source
            held_sources[t.dest].update(s for s in sources if s != t.dest)
    edges: dict[str, dict[str, list[ProjectEdge]]] = {s.id: {} for s in definition.states}
    for t in definition.transitions:
        sources = [s for s in movable] if ANY_STATE in t.source else list(t.source)
        for source in sources:
            if source not in edges:
                continue
            if t.dest == PREVIOUS_STATE:
                for dest in sorted(held_sources.get(source, ())):
                    edges[source].setdefault(t.trigger, []).append(ProjectEdge(t, source, dest, True))
            elif not (ANY_STATE in t.source and source == t.dest):
                edges[source].setdefault(t.trigger, []).append(ProjectEdge(t, source, t.dest, False))
    return edges


def _compile_task_machine(spec: TaskMachine) -> CompiledMachine:
    states = [State(s.id) for s in spec.states]
    machine = Machine(
        model=None,
        states=states,
        initial=spec.initial,
        send_event=True,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )
    edges: dict[str, dict[str, MachineTransition]] = {s.id: {} for s in spec.states}
    for t in spec.transitions:
        for source in t.source:
            if source not in edges:
                continue
            edges[source].setdefault(t.trigger, t)
            # A transition to the same state is internal: it runs effects without leaving and re-entering
            # the state, so its clocks keep running instead of restarting.
            machine.add_transition(t.trigger, source, None if t.dest == source else t.dest)
    return CompiledMachine(
        spec=spec,
        machine=machine,
        edges=edges,
        outcomes={s.id: s.outcome for s in spec.states},
        titles={s.id: s.title for s in spec.states},
        clocks=list(spec.clocks),
    )
