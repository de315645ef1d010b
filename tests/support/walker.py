"""A generic walker that drives a project of any definition from its initial state to a terminal one.

Used by the walk tests and the engine benchmark. It knows nothing about a particular procedure: it reads the
definition to find the shortest way forward (avoiding holding and "*" transitions), completes every open item
of the current state along the shortest path to a ``done`` state of its machine, and supplies field values that
satisfy the gates' ``field_compare`` and ``field_present`` conditions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from lifecycle.engine.core import Engine
from lifecycle.engine.instance import Actor, ProjectInstance
from lifecycle.spec.models import ANY_STATE, PREVIOUS_STATE, SYSTEM_ROLE, Condition, Definition, TaskMachine


@dataclass
class Step:
    """One fire the walker made: on the project (task None) or on a task."""

    trigger: str
    task: str | None = None
    machine: str | None = None
    actor: Actor | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Walk:
    """The fires of one walk, in order, with the fields the project started with: enough to replay it."""

    fields: dict[str, Any] = field(default_factory=dict)
    starter: Actor | None = None
    steps: list[Step] = field(default_factory=list)


def replay(engine: Engine, key: str, version: int, project_id: str, now: datetime, plan: Walk) -> ProjectInstance:
    """Fire a recorded walk again on a new project (no path finding: for benchmarks)."""
    assert plan.starter is not None
    project, _ = engine.start(key, version, project_id, plan.starter, now, fields=plan.fields)
    for step in plan.steps:
        assert step.actor is not None
        if step.task is None:
            engine.fire(project, step.trigger, step.actor, now, data=step.data, comment="walker")
        else:
            engine.fire_task(project, step.task, step.trigger, step.actor, now, comment="walker")
    return project


def actor_for(roles: list[str], unit: str | None = None) -> Actor:
    """An actor holding the first non-system role of ``roles``, in ``unit``."""
    role = next((r for r in roles if r != SYSTEM_ROLE), roles[0])
    return Actor(id=f"walker-{role}", roles=frozenset({role}), unit=unit)


def _conditions(conditions: list[Condition]) -> Iterator[Condition]:
    for condition in conditions:
        yield condition
        for nested in (condition.all or [], condition.any or []):
            yield from _conditions(nested)


def satisfying_fields(definition: Definition) -> dict[str, Any]:
    """Values for every field a gate or transition reads, chosen to satisfy the gates."""
    values: dict[str, Any] = {}
    for spec in definition.fields:
        values[spec.id] = _dummy(spec.type, spec.choices)
    for gate in definition.gates:
        for condition in _conditions(gate.conditions):
            compare = condition.field_compare
            if compare is None:
                continue
            value = compare.value
            if isinstance(value, bool):
                values[compare.field] = value if compare.op != "ne" else not value
            elif isinstance(value, int | Decimal):
                bump = {"gt": 1, "ge": 0, "eq": 0, "le": 0, "lt": -1, "ne": 1}[compare.op]
                values[compare.field] = str(Decimal(value) + bump)
            elif compare.op == "ne":
                spec = definition.field(compare.field)
                others = [c for c in (spec.choices or []) if c != value] if spec else []
                values[compare.field] = others[0] if others else f"{value}之外"
            else:
                values[compare.field] = value
    return values


def _dummy(kind: str, choices: list[str] | None) -> Any:
    return {
        "string": "测试",
        "text": "测试说明",
        "integer": 1,
        "decimal": "1000",
        "date": date(2026, 12, 31).isoformat(),
        "boolean": True,
        "choice": (choices or ["x"])[0],
        "attachments": ["file://walker/1"],
    }[kind]


_SIDE_EFFECTS = {"issue_deficiency_notice", "record_commitment", "verify_commitment", "breach_commitment"}


def _path_to_done(machine: TaskMachine, start: str) -> list[str] | None:
    """The shortest list of non-system triggers leading from ``start`` to a ``done`` state."""
    outcomes = {s.id: s.outcome for s in machine.states}
    queue: deque[tuple[str, list[str]]] = deque([(start, [])])
    seen = {start}
    while queue:
        state, path = queue.popleft()
        if outcomes.get(state) == "done":
            return path
        for t in machine.transitions:
            if state not in t.source or t.roles == [SYSTEM_ROLE] or _SIDE_EFFECTS.intersection(t.effects):
                continue
            if t.dest not in seen:
                seen.add(t.dest)
                queue.append((t.dest, [*path, t.trigger]))
    return None


def path_to(definition: Definition, start: str, target: str) -> list[str] | None:
    """The shortest list of project triggers from ``start`` to ``target`` (no ``*``, ``$previous`` or
    system transitions), or None."""
    queue: deque[tuple[str, list[str]]] = deque([(start, [])])
    seen = {start}
    while queue:
        state, path = queue.popleft()
        if state == target:
            return path
        for t in definition.transitions:
            if ANY_STATE in t.source or t.dest == PREVIOUS_STATE or state not in t.source:
                continue
            if t.roles == [SYSTEM_ROLE] or t.dest in seen:
                continue
            seen.add(t.dest)
            queue.append((t.dest, [*path, t.trigger]))
    return None


def advance_to(engine: Engine, project: ProjectInstance, target: str, now: datetime) -> None:
    """Drive ``project`` forward to state ``target``, completing the items of each state it leaves."""
    definition = engine.compiled(project.definition_key, project.definition_version).definition
    fields = satisfying_fields(definition)
    path = path_to(definition, project.state, target)
    assert path is not None, f"{target} is not reachable from {project.state}"
    for trigger in path:
        _complete_open_tasks(engine, definition, project, now, Walk())
        spec = next(t for t in definition.transitions if t.trigger == trigger and project.state in t.source)
        data = {f: fields[f] for f in spec.accepts_fields if f in fields}
        engine.fire(project, trigger, actor_for(spec.roles), now, data=data, comment="walker")


def complete_task(engine: Engine, project: ProjectInstance, task_id: str, now: datetime) -> None:
    """Drive one item along the shortest path to a ``done`` state of its machine."""
    compiled = engine.compiled(project.definition_key, project.definition_version)
    task = project.tasks[task_id]
    item = compiled.items[(task.group, task.item)]
    for trigger in _path_to_done(compiled.definition.machine(task.machine), task.state) or []:
        spec = compiled.task_machines[task.machine].edges[task.state][trigger]
        engine.fire_task(project, task_id, trigger, actor_for(spec.roles, item.department), now, comment="walker")


def _forward_path(definition: Definition, start: str) -> list[str]:
    """The shortest list of project triggers from ``start`` to a terminal state that is not a dead end
    (avoiding ``*`` and ``$previous`` transitions, and preferring the state listed last among terminals
    reached: the normal end of a lifecycle is written after its alternatives)."""
    terminals = [s.id for s in definition.states if s.terminal]
    queue: deque[tuple[str, list[str]]] = deque([(start, [])])
    best: dict[str, list[str]] = {}
    seen = {start}
    while queue:
        state, path = queue.popleft()
        if state in terminals:
            best.setdefault(state, path)
            continue
        for t in definition.transitions:
            if ANY_STATE in t.source or t.dest == PREVIOUS_STATE or state not in t.source:
                continue
            if t.roles == [SYSTEM_ROLE] or t.dest in seen:
                continue
            seen.add(t.dest)
            queue.append((t.dest, [*path, t.trigger]))
    # The normal end: the reachable terminal whose path is longest (it passes through every phase).
    return max(best.values(), key=len) if best else []


def walk(engine: Engine, key: str, version: int, project_id: str, now: datetime) -> tuple[ProjectInstance, Walk]:
    """Drive a new project of (key, version) to its normal end; returns the project and the fires made."""
    definition = engine.compiled(key, version).definition
    fields = satisfying_fields(definition)
    starter = actor_for([definition.transitions[0].roles[0]])
    project, _ = engine.start(key, version, project_id, starter, now, fields=fields)
    record = Walk(fields=fields, starter=starter)
    for trigger in _forward_path(definition, project.state):
        _complete_open_tasks(engine, definition, project, now, record)
        spec = next(t for t in definition.transitions if t.trigger == trigger and project.state in t.source)
        data = {f: fields[f] for f in spec.accepts_fields if f in fields}
        actor = actor_for(spec.roles)
        engine.fire(project, trigger, actor, now, data=data, comment="walker")
        record.steps.append(Step(trigger, actor=actor, data=data))
    return project, record


def _complete_open_tasks(
    engine: Engine, definition: Definition, project: ProjectInstance, now: datetime, record: Walk
) -> None:
    compiled = engine.compiled(project.definition_key, project.definition_version)
    for task in list(project.tasks.values()):
        machine = definition.machine(task.machine)
        path = _path_to_done(machine, task.state)
        if not path:
            continue
        item = compiled.items[(task.group, task.item)]
        for trigger in path:
            spec = compiled.task_machines[task.machine].edges[task.state][trigger]
            actor = actor_for(spec.roles, item.department)
            engine.fire_task(project, task.id, trigger, actor, now, comment="walker")
            record.steps.append(Step(trigger, task.id, task.machine, actor))
