"""Moving a running project to another version of its definition (pure: no database, no clock).

:func:`migrate` takes a project on version *m* of a definition and the compiled version *n*, and either says
why the project cannot move (:attr:`Migration.blockers`) or returns a migrated *copy* of it together with a
:class:`~lifecycle.engine.instance.FireResult` listing exactly what changed, which the services write in one
transaction. The instance given is never changed. A dry run and a real run call the same function, so a dry
run's verdict is the real run's verdict (for the same project, version and time).

What moving means
-----------------
1. **State**: the project's state (and, when held, the state it was held from) is mapped by the
   administrator's ``state_map`` (default: the same id). A state that does not exist in the new version blocks
   the move (``migration.state_removed``, ``migration.held_from_removed``).
2. **Items**: a task whose item still exists (same group and item id) is kept, with its state, submissions,
   notices and commitments. An *open* task whose group or item is gone blocks the move
   (``migration.open_task_removed``); a *closed* one (done or failed) is dropped with its notices,
   commitments and deadlines — its history stays in the project's event log, and the ``project.migrated``
   event lists it. A kept task or notice whose machine, or whose state in that machine, is gone blocks the
   move, and so does a state whose outcome changed between open and closed (a closed item would reopen, or
   an open one close, without anyone acting).
3. **New items**: the groups that the (new) current state opens get the items they lack — e.g. an item
   added to the permitting group opens in a project that is permitting — exactly as entering the state
   would open them (``task.opened`` events, their clocks start). Items added to groups of states the project
   has left are not opened: that part of the procedure is over for it (see 5).
4. **Deadlines**: every open deadline is recomputed with the new version's clock of the same id (same
   subject): its due date from its own start day and pauses with the new duration or basis, its title,
   ladder and expiry trigger; a deadline whose clock is gone, or no longer runs or pauses in the subject's
   state, is closed; clocks that now run in a subject's state and have no open deadline open one (starting
   today), and pauses follow the new ``paused_in`` lists. Escalation levels already fired stay as they are.
5. **Conditions of the current state**: the new version's *entry conditions* of the project's (mapped)
   state are the gates and required fields of the transitions that lead into it from another state
   (``to: S``, ``from`` another state or ``*``; not ``$previous``). The project meets them when S is the
   initial state, when no transition leads into S, or when at least one of those transitions could bring
   it there today: its gate is satisfied and its required fields are filled, evaluated on the project *as
   migrated* (new items opened, fields as they are). Time conditions (``no_overdue_deadlines``) are left
   out: they judge the moment a transition fires, not whether the project belongs in S. A held project
   must also meet the entry conditions of the state it will return to. Unmet → ``migration.gate_unmet``,
   naming every unmet condition of every entering transition. So a project still *in* the permitting
   state moves (the new permitting item opens for it), while a project that has already left permitting
   is blocked by 开工前's ``group_done: permitting``: the new item was never done for it.
6. **Fields**: a stored value that does not fit the new version's field of that name blocks the move
   (``migration.field_incompatible``); fields the new version no longer declares are kept as they are.

A migrated project's version counter is bumped once; its first event is ``project.migrated`` (from and to
state, versions, items opened and dropped, deadlines opened, closed and re-dated).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from lifecycle.clock import end_of_local_day, ensure_utc
from lifecycle.errors import Unmet
from lifecycle.messages import register, render
from lifecycle.spec.models import ANY_STATE, PREVIOUS_STATE, Clock, Condition, Definition, Gate, Transition

from . import fields as field_values
from .compiled import CompiledDefinition
from .conditions import ConditionContext, unmet_conditions
from .core import Engine, _close_deadline, _deadline_title, _due, _mark_changed, _open_group, _Step, _sync_clocks
from .instance import Actor, Deadline, Event, FireResult, ProjectInstance, SubjectKind

__all__ = ["Blocker", "EnteringUnmet", "Migration", "entry_conditions_unmet", "migrate", "state_map_problems"]

register(
    {
        "migration.state_removed": (
            "当前状态“{state_title}”（{state}）在第 {version} 版中已不存在，且未指定对应的新状态",
            "the current state '{state_title}' ({state}) does not exist in version {version} and no mapping "
            "names its new state",
        ),
        "migration.held_from_removed": (
            "暂缓前所在状态“{state_title}”（{state}）在第 {version} 版中已不存在，且未指定对应的新状态",
            "the state the project was held from, '{state_title}' ({state}), does not exist in version {version} "
            "and no mapping names its new state",
        ),
        "migration.open_task_removed": (
            "办理中的事项“{item_title}”（{task}）在第 {version} 版中已删除（其事项组或事项不存在）",
            "the open item '{item_title}' ({task}) was removed in version {version} (its group or item is gone)",
        ),
        "migration.task_machine_removed": (
            "事项“{item_title}”（{task}）所用的事项机 {machine} 在第 {version} 版中已不存在",
            "the machine {machine} of item '{item_title}' ({task}) does not exist in version {version}",
        ),
        "migration.task_state_removed": (
            "事项“{item_title}”（{task}）的当前状态 {state} 在第 {version} 版的事项机 {machine} 中已不存在",
            "the state {state} of item '{item_title}' ({task}) does not exist in machine {machine} of version "
            "{version}",
        ),
        "migration.task_outcome_changed": (
            "事项“{item_title}”（{task}）的状态 {state} 在第 {version} 版中由“{before}”变为“{after}”",
            "the state {state} of item '{item_title}' ({task}) changes from '{before}' to '{after}' in version "
            "{version}",
        ),
        "migration.notice_machine_removed": (
            "补正告知 {notice} 所用的告知机 {machine} 在第 {version} 版中已不存在",
            "the machine {machine} of deficiency notice {notice} does not exist in version {version}",
        ),
        "migration.notice_state_removed": (
            "补正告知 {notice} 的当前状态 {state} 在第 {version} 版的告知机 {machine} 中已不存在",
            "the state {state} of deficiency notice {notice} does not exist in machine {machine} of version {version}",
        ),
        "migration.notice_outcome_changed": (
            "补正告知 {notice} 的状态 {state} 在第 {version} 版中由“{before}”变为“{after}”",
            "the state {state} of deficiency notice {notice} changes from '{before}' to '{after}' in version {version}",
        ),
        "migration.field_incompatible": (
            "字段“{field_title}”（{field}）的值 {value} 不符合第 {version} 版的字段定义：{reason}",
            "the value {value} of field '{field_title}' ({field}) does not fit version {version}: {reason}",
        ),
        "migration.gate_unmet": (
            "第 {version} 版进入“{state_title}”的条件未满足（经“{trigger_title}”{gate_zh}）：{unmet_zh}",
            "version {version}'s conditions for being in '{state_title}' are unmet (via '{trigger_title}'"
            "{gate_en}): {unmet_en}",
        ),
    }
)

_OUTCOME_WORDS = {"open": "办理中", "done": "已办结", "failed": "未通过"}


@dataclass(frozen=True)
class Blocker:
    """Why a project cannot move: a stable code, Chinese and English messages, what it concerns (a state,
    task, notice or field id) and the message parameters."""

    code: str
    zh: str
    en: str
    subject: str | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, code: str, subject: str | None = None, **params: Any) -> Blocker:
        zh, en = render(code, params)
        return cls(code=code, zh=zh, en=en, subject=subject, params=params)


@dataclass
class Migration:
    """What moving one project would do, or does.

    Attributes:
        project_id: the project.
        from_version / to_version: the versions.
        from_state / to_state: its state now and after the move (``to_state`` None when unmapped).
        held_from: the (mapped) state a held project returns to.
        blockers: every reason it cannot move (empty: it can).
        opened: task ids that open (items new in groups of the current state).
        dropped: closed task ids whose item is gone (dropped with their notices, commitments, deadlines).
        instance: the migrated copy (None when blocked).
        result: what changed on the copy, for the store (None when blocked).
        dropped_notices / dropped_commitments / dropped_deadlines: rows to delete with the dropped tasks.
        departments: kept task id → its item's department in the new version, where it changed.
        redated: (deadline id, old due date, new due date) for every open deadline whose due date moved.
    """

    project_id: str
    from_version: int
    to_version: int
    from_state: str
    to_state: str | None
    held_from: str | None = None
    blockers: list[Blocker] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    instance: ProjectInstance | None = None
    result: FireResult | None = None
    dropped_notices: list[str] = field(default_factory=list)
    dropped_commitments: list[str] = field(default_factory=list)
    dropped_deadlines: list[str] = field(default_factory=list)
    departments: dict[str, str | None] = field(default_factory=dict)
    redated: list[tuple[str, date, date]] = field(default_factory=list)

    @property
    def movable(self) -> bool:
        """Whether the project can move."""
        return not self.blockers


def migrate(
    engine: Engine,
    project: ProjectInstance,
    target: CompiledDefinition,
    state_map: Mapping[str, str],
    actor: Actor,
    now: datetime,
) -> Migration:
    """Move ``project`` (on the version the engine has compiled for it) to ``target`` (see the module
    docstring). ``project`` is not changed; the migrated copy is :attr:`Migration.instance`.

    Raises:
        NotFound: the project's own version is not compiled in ``engine``.
    """
    now = ensure_utc(now)
    source = engine.compiled(project.definition_key, project.definition_version)
    version = target.version
    states = target.definition.lookup("states")
    old_states = source.definition.lookup("states")
    to_state = state_map.get(project.state, project.state)
    held_from = state_map.get(project.held_from, project.held_from) if project.held_from else None
    plan = Migration(
        project_id=project.id,
        from_version=project.definition_version,
        to_version=version,
        from_state=project.state,
        to_state=to_state if to_state in states else None,
        held_from=held_from,
    )
    if to_state not in states:
        plan.blockers.append(
            Blocker.of(
                "migration.state_removed",
                project.state,
                state=project.state,
                state_title=_title(old_states, project.state),
                version=version,
            )
        )
    if project.held_from and held_from not in states:
        plan.blockers.append(
            Blocker.of(
                "migration.held_from_removed",
                project.held_from,
                state=project.held_from,
                state_title=_title(old_states, project.held_from),
                version=version,
            )
        )
    plan.blockers.extend(_task_blockers(source, target, project, plan))
    plan.blockers.extend(_field_blockers(target.definition, project, version))
    if plan.blockers:
        return plan

    moved = copy.deepcopy(project)
    moved.definition_version = version
    moved.state = to_state
    moved.held_from = held_from
    _drop(moved, plan)
    result = FireResult(state=moved.state)
    step = _Step(engine, target, moved, actor, now, result)
    for group_id in target.definition.state(moved.state).opens:
        _open_group(step, group_id)
    plan.opened = list(result.tasks_opened)
    _resync(step)
    plan.redated = _redate(step)

    for entering in entry_conditions_unmet(target, moved, moved.state, now):
        plan.blockers.append(_gate_blocker(target, moved.state, entering, version))
    if held_from is not None:
        for entering in entry_conditions_unmet(target, moved, held_from, now):
            plan.blockers.append(_gate_blocker(target, held_from, entering, version))
    if plan.blockers:
        plan.opened = []
        return plan

    for task_id in moved.tasks:
        task = moved.tasks[task_id]
        if task_id in result.tasks_opened:
            continue
        new = target.items[(task.group, task.item)].department
        old = source.items[(task.group, task.item)].department
        if new != old:
            plan.departments[task_id] = new
    moved.version += 1
    result.state = moved.state
    result.events.insert(
        0,
        Event(
            "project.migrated",
            "project",
            moved.id,
            actor.id,
            now,
            from_state=project.state,
            to_state=moved.state,
            data={
                "definition_key": project.definition_key,
                "from_version": project.definition_version,
                "to_version": version,
                "held_from": held_from,
                "opened_tasks": list(plan.opened),
                "dropped_tasks": list(plan.dropped),
                "deadlines_opened": list(result.deadlines_opened),
                "deadlines_closed": list(result.deadlines_closed),
                "deadlines_redated": [
                    {"id": ident, "from": before.isoformat(), "to": after.isoformat()}
                    for ident, before, after in plan.redated
                ],
            },
        ),
    )
    plan.instance, plan.result = moved, result
    return plan


# --- blockers ---------------------------------------------------------------------------------------------


def _title(table: Mapping[str, Any], ident: str) -> str:
    entry = table.get(ident)
    return str(entry.title) if entry is not None else ident


def _task_blockers(
    source: CompiledDefinition, target: CompiledDefinition, project: ProjectInstance, plan: Migration
) -> list[Blocker]:
    blockers: list[Blocker] = []
    version = target.version
    for task in project.tasks.values():
        old_item = source.items.get((task.group, task.item))
        item_title = old_item.title if old_item else task.item
        old_outcome = source.task_machines[task.machine].outcomes.get(task.state, "open")
        params = {"task": task.id, "item_title": item_title, "version": version}
        if (task.group, task.item) not in target.items:
            if old_outcome == "open":
                blockers.append(Blocker.of("migration.open_task_removed", task.id, **params))
            else:
                plan.dropped.append(task.id)
            continue
        machine = target.task_machines.get(task.machine)
        if machine is None:
            blockers.append(Blocker.of("migration.task_machine_removed", task.id, machine=task.machine, **params))
            continue
        if task.state not in machine.outcomes:
            blockers.append(
                Blocker.of("migration.task_state_removed", task.id, machine=task.machine, state=task.state, **params)
            )
            continue
        new_outcome = machine.outcomes[task.state]
        if (old_outcome == "open") != (new_outcome == "open"):
            blockers.append(
                Blocker.of(
                    "migration.task_outcome_changed",
                    task.id,
                    state=task.state,
                    before=_OUTCOME_WORDS.get(old_outcome, old_outcome),
                    after=_OUTCOME_WORDS.get(new_outcome, new_outcome),
                    **params,
                )
            )
    dropped = set(plan.dropped)
    for notice in project.notices.values():
        if notice.task_id in dropped:
            continue
        params = {"notice": notice.id, "machine": notice.machine, "version": version}
        machine = target.task_machines.get(notice.machine)
        if machine is None:
            blockers.append(Blocker.of("migration.notice_machine_removed", notice.id, **params))
            continue
        if notice.state not in machine.outcomes:
            blockers.append(Blocker.of("migration.notice_state_removed", notice.id, state=notice.state, **params))
            continue
        old_outcome = source.task_machines[notice.machine].outcomes.get(notice.state, "open")
        new_outcome = machine.outcomes[notice.state]
        if (old_outcome == "open") != (new_outcome == "open"):
            blockers.append(
                Blocker.of(
                    "migration.notice_outcome_changed",
                    notice.id,
                    state=notice.state,
                    before=_OUTCOME_WORDS.get(old_outcome, old_outcome),
                    after=_OUTCOME_WORDS.get(new_outcome, new_outcome),
                    **params,
                )
            )
    return blockers


def _field_blockers(definition: Definition, project: ProjectInstance, version: int) -> list[Blocker]:
    blockers = []
    for name, value in project.fields.items():
        spec = definition.field(name)
        if spec is None or value is None:
            continue
        stored = field_values.to_json(value)
        _, problem = field_values.coerce(spec, stored, ("fields", name))
        if problem is not None:
            blockers.append(
                Blocker.of(
                    "migration.field_incompatible",
                    name,
                    field=name,
                    field_title=spec.title,
                    value=str(stored)[:60],
                    reason=problem.zh,
                    version=version,
                )
            )
    return blockers


# --- entry conditions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnteringUnmet:
    """A transition into a state whose conditions the project does not meet, and what is unmet."""

    transition: Transition
    unmet: list[Unmet]


def _entering(definition: Definition, state_id: str) -> list[Transition]:
    return [
        t
        for t in definition.transitions
        if t.dest == state_id and t.dest != PREVIOUS_STATE and any(s == ANY_STATE or s != state_id for s in t.source)
    ]


def _lasting(condition: Condition) -> Condition | None:
    """``condition`` without its time conditions (None: nothing lasting is left, so it holds)."""
    if condition.kind == "no_overdue_deadlines":
        return None
    if condition.kind in ("all", "any"):
        parts = [_lasting(c) for c in condition.argument]
        if condition.kind == "any" and any(p is None for p in parts):
            return None  # one alternative always holds
        kept = [p for p in parts if p is not None]
        if not kept:
            return None
        return condition.model_copy(update={condition.kind: kept})
    return condition


def _lasting_gate(gate: Gate) -> Gate | None:
    parts = [_lasting(c) for c in gate.conditions]
    if gate.mode == "any" and any(p is None for p in parts):
        return None
    kept = [p for p in parts if p is not None]
    if not kept:
        return None
    return gate.model_copy(update={gate.mode: kept})


def entry_conditions_unmet(
    target: CompiledDefinition, project: ProjectInstance, state_id: str, now: datetime
) -> list[EnteringUnmet]:
    """The transitions into ``state_id`` with their unmet conditions, when the project meets none of them
    (empty when it meets the state's entry conditions; see the module docstring, step 5)."""
    definition = target.definition
    if state_id == definition.initial:
        return []
    entering = _entering(definition, state_id)
    if not entering:
        return []
    ctx = ConditionContext(definition, project, ensure_utc(now))
    failures = []
    for transition in entering:
        unmet: list[Unmet] = []
        gate = _lasting_gate(definition.gate(transition.gate)) if transition.gate else None
        if gate is not None:
            unmet.extend(unmet_conditions(gate, ctx))
        for field_id in transition.requires_fields:
            value = project.fields.get(field_id)
            if value is None or value == "" or value == []:
                zh, en = render("condition.field_present", {"field": ctx.field_title(field_id)})
                unmet.append(Unmet("condition.field_present", zh, en, params={"field_id": field_id}))
        if not unmet:
            return []
        failures.append(EnteringUnmet(transition, unmet))
    return failures


def _gate_blocker(target: CompiledDefinition, state_id: str, entering: EnteringUnmet, version: int) -> Blocker:
    definition = target.definition
    transition = entering.transition
    gate = definition.gate(transition.gate) if transition.gate else None
    return Blocker.of(
        "migration.gate_unmet",
        state_id,
        state=state_id,
        state_title=_title(definition.lookup("states"), state_id),
        trigger=transition.trigger,
        trigger_title=transition.title,
        gate=gate.id if gate else None,
        gate_zh=f"，关卡“{gate.title}”" if gate else "",
        gate_en=f", gate '{gate.title_en or gate.title}'" if gate else "",
        unmet_zh="；".join(u.zh for u in entering.unmet),
        unmet_en="; ".join(u.en for u in entering.unmet),
        unmet=[{"code": u.code, "zh": u.zh, "en": u.en, "gate": u.gate} for u in entering.unmet],
        version=version,
    )


# --- applying ---------------------------------------------------------------------------------------------


def _drop(project: ProjectInstance, plan: Migration) -> None:
    """Remove the dropped tasks and what hangs on them from the migrated copy."""
    dropped = set(plan.dropped)
    notices = [n.id for n in project.notices.values() if n.task_id in dropped]
    commitments = [c.id for c in project.commitments.values() if c.task_id in dropped]
    subjects = dropped | set(notices)
    deadlines = [d.id for d in project.deadlines.values() if d.subject_kind != "project" and d.subject_id in subjects]
    for ident in plan.dropped:
        del project.tasks[ident]
    for ident in notices:
        del project.notices[ident]
    for ident in commitments:
        del project.commitments[ident]
    for ident in deadlines:
        del project.deadlines[ident]
    plan.dropped_notices, plan.dropped_commitments, plan.dropped_deadlines = notices, commitments, deadlines


def _subject_clocks(step: _Step, kind: SubjectKind, subject_id: str) -> tuple[str, str, list[Clock]]:
    """(machine id, state, clocks) of a deadline's subject in the new version ("" machine: the project)."""
    project = step.project
    if kind == "project":
        return "", project.state, list(step.compiled.definition.clocks)
    if kind == "task":
        task = project.tasks[subject_id]
        return task.machine, task.state, list(step.compiled.task_machines[task.machine].clocks)
    notice = project.notices[subject_id]
    return notice.machine, notice.state, list(step.compiled.task_machines[notice.machine].clocks)


def _resync(step: _Step) -> None:
    """Close deadlines whose clock is gone, then make every subject's deadlines match its state's clocks."""
    project = step.project
    for deadline in list(project.deadlines.values()):
        if deadline.closed_at is not None:
            continue
        _, _, clocks = _subject_clocks(step, deadline.subject_kind, deadline.subject_id)
        if all(clock.id != deadline.clock for clock in clocks):
            _close_deadline(step, deadline)
    _sync_clocks(step, "project", project.id, "", project.state)
    for task in project.tasks.values():
        _sync_clocks(step, "task", task.id, task.machine, task.state)
    for notice in project.notices.values():
        _sync_clocks(step, "notice", notice.id, notice.machine, notice.state)


def _redate(step: _Step) -> list[tuple[str, date, date]]:
    """Recompute every open deadline with its (new) clock; the due dates that moved."""
    redated: list[tuple[str, date, date]] = []
    for deadline in list(step.project.deadlines.values()):
        if deadline.closed_at is not None:
            continue
        _, _, clocks = _subject_clocks(step, deadline.subject_kind, deadline.subject_id)
        clock = next(c for c in clocks if c.id == deadline.clock)
        due = _due(step, clock, deadline.subject_id, deadline.started_on, deadline.pauses)
        if due is None:
            # A date field no longer filled in: the engine opens such a clock only once the date is known.
            _close_deadline(step, deadline)
            continue
        before = _snapshot(deadline)
        old_due = deadline.due_date
        deadline.due_date, deadline.estimated = due.date, due.estimated
        deadline.due_at = end_of_local_day(due.date)
        deadline.title = _deadline_title(step, clock, deadline.subject_kind, deadline.subject_id)
        deadline.ladder, deadline.on_expiry = clock.ladder, clock.on_expiry
        if _snapshot(deadline) != before:
            _mark_changed(step, deadline)
        if deadline.due_date != old_due:
            redated.append((deadline.id, old_due, deadline.due_date))
    return redated


def _snapshot(deadline: Deadline) -> tuple[Any, ...]:
    return (deadline.due_date, deadline.estimated, deadline.title, deadline.ladder, deadline.on_expiry)


def state_map_problems(source: Definition, target: Definition, state_map: Mapping[str, str]) -> list[tuple[str, str]]:
    """The entries of ``state_map`` that name no state: ``(old id, "from")`` when the old id is not a state of
    ``source``, ``(old id, "to")`` when the new id is not a state of ``target``."""
    problems: list[tuple[str, str]] = []
    old, new = source.lookup("states"), target.lookup("states")
    for before, after in state_map.items():
        if before not in old:
            problems.append((before, "from"))
        if after not in new:
            problems.append((before, "to"))
    return problems
