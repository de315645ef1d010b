"""Static checks of a definition: everything the pydantic models cannot see on one object alone.

The models (:mod:`lifecycle.spec.models`) check the shape of each value; this module checks the definition as
a whole: that every reference names something declared (a transition's state, an item's department, a
gate's task group…), that ids are unique, that the machines make sense as graphs (every state reachable, no
dead ends, no exit from a terminal state), and the procedural rules of the domain:

* 互不为前置 — items of a parallel group may not be prerequisites of one another;
* 容缺受理 — only non-core materials may be missing, the cure period needs a notice machine and may not run
  past the item's time limit;
* 四级调度 — ladder levels climb strictly and their delays never shrink; a notice template names only the
  placeholders of :data:`~lifecycle.spec.models.NOTICE_PLACEHOLDERS`.

Every problem is located at the offending value (e.g. ``("transitions", 4, "to")``) through the file's
:class:`~lifecycle.yamlsafe.SourceMap`, and all problems are returned together, never just the first.
Nothing here knows about a particular procedure: the checks are generic over any definition.

Comparing durations of different units (``cure_exceeds_limit``, ``ladder_not_increasing``): the same unit
compares the day counts; working days against calendar days converts the working days to calendar days as
``ceil(days × 7 / 5)`` (five working days make a calendar week). That ignores holidays, which only make a
working-day period longer, so a cure period flagged as too long is too long in every real calendar week.
"""

from __future__ import annotations

import math
import string
from collections import deque
from collections.abc import Container, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from lifecycle.errors import Problem
from lifecycle.messages import register
from lifecycle.spec.models import (
    ANY_STATE,
    ESCALATION_RECIPIENTS,
    NOTICE_PLACEHOLDERS,
    PREVIOUS_STATE,
    SYSTEM_ROLE,
    Clock,
    Condition,
    Definition,
    Department,
    Duration,
    FieldCompare,
    FieldSpec,
    Gate,
    Item,
    Ladder,
    Phase,
    State,
    Step,
    TaskGroup,
    TaskMachine,
)
from lifecycle.yamlsafe import SourceMap, YamlPath

__all__ = ["OBLIGATION_ID_LIMIT", "calendar_days", "check_definition", "compare_durations", "unknown_placeholders"]

OBLIGATION_ID_LIMIT = 40
"""The longest obligation id: each period's deadline is the clock ``obligation:<id>:<period>`` (at most 64
characters, like every clock id), and the longest period key (``2026-W41``) takes 8 of them."""

register(
    {
        "check.duplicate_id": (
            "{kind_zh} “{id}” 重复定义（首次定义在第 {first_line} 行）",
            "{kind_en} '{id}' is defined twice (first at line {first_line})",
        ),
        "check.unknown_state": (
            "{scope_zh}中没有状态 “{id}”",
            "state '{id}' is not defined in {scope_en}",
        ),
        "check.unknown_obligation_state": (
            "报送义务适用的状态 “{id}” 在项目状态机中未定义",
            "the obligation applies in state '{id}', which the project machine does not define",
        ),
        "check.unknown_report_field": (
            "报送义务没有报送字段 “{id}”，不能用它更新项目字段",
            "the obligation has no report field '{id}' to update a project field with",
        ),
        "check.report_field_type": (
            "报送字段 “{id}”（{type}）不能写入类型为 {target_type} 的项目字段 “{target}”",
            "report field '{id}' ({type}) cannot update project field '{target}' of type {target_type}",
        ),
        "check.obligation_id_too_long": (
            "报送义务编号 “{id}” 过长：最多 {limit} 个字符（用于生成各期时限编号）",
            "obligation id '{id}' is too long: at most {limit} characters (it names each period's deadline)",
        ),
        "check.unknown_gate": ("关卡 “{id}” 未定义", "gate '{id}' is not defined"),
        "check.unknown_group": ("任务组 “{id}” 未定义", "task group '{id}' is not defined"),
        "check.unknown_item": (
            "任务组 “{group}” 中没有事项 “{id}”",
            "task group '{group}' has no item '{id}'",
        ),
        "check.unknown_machine": ("状态机 “{id}” 未定义", "task machine '{id}' is not defined"),
        "check.machine_subject": (
            "“{id}” 是{actual_zh}状态机，此处需要{expected_zh}状态机",
            "'{id}' is a machine for {actual_en}; a machine for {expected_en} is needed here",
        ),
        "check.unknown_role": ("角色 “{id}” 未定义", "role '{id}' is not defined"),
        "check.unknown_department": ("部门 “{id}” 未定义", "department '{id}' is not defined"),
        "check.unknown_phase": ("阶段 “{id}” 未定义", "phase '{id}' is not defined"),
        "check.unknown_step": ("步骤 {id} 未定义", "step {id} is not defined"),
        "check.unknown_field": ("项目字段 “{id}” 未定义", "project field '{id}' is not defined"),
        "check.unknown_ladder": ("调度阶梯 “{id}” 未定义", "escalation ladder '{id}' is not defined"),
        "check.unknown_material": (
            "事项 “{item}” 没有材料 “{id}”",
            "item '{item}' has no material '{id}'",
        ),
        "check.unknown_trigger": (
            "{scope_zh}中没有触发器 “{id}”",
            "trigger '{id}' is not defined in {scope_en}",
        ),
        "check.expiry_trigger_not_from_state": (
            "计时器到期触发器 “{id}” 不能从以下计时状态执行：{states}",
            "the clock's expiry trigger '{id}' cannot fire from these states it runs in: {states}",
        ),
        "check.expiry_trigger_role": (
            "计时器到期触发器 “{id}” 须允许系统角色 “{role}” 执行",
            "the clock's expiry trigger '{id}' must allow the scheduler's role '{role}'",
        ),
        "check.clock_paused_and_running": (
            "状态 “{id}” 同时列在计时器的 runs_in 和 paused_in 中",
            "state '{id}' is listed in both runs_in and paused_in of the clock",
        ),
        "check.clock_field_not_date": (
            "计时器依据的字段 “{id}” 须为日期类型，实际为 {type}",
            "the clock's field '{id}' must be of type date, not {type}",
        ),
        "check.clock_basis_subject": (
            "计时依据 {basis} 不能用于{scope_zh}（{allowed}）",
            "clock basis {basis} cannot be used in {scope_en} (allowed there: {allowed})",
        ),
        "check.unreachable_state": (
            "{scope_zh}中的状态 “{id}” 从初始状态无法到达",
            "state '{id}' of {scope_en} cannot be reached from the initial state",
        ),
        "check.dead_end": (
            "{scope_zh}中的状态 “{id}” 不是终止状态，却没有任何迁移可以离开",
            "state '{id}' of {scope_en} is not final but no transition leaves it",
        ),
        "check.terminal_has_exit": (
            "终止状态 “{id}” 不能有离开它的迁移",
            "terminal state '{id}' cannot have an outgoing transition",
        ),
        "check.previous_without_hold": (
            "只有暂缓（hold）状态才能返回 $previous，以下来源状态不是：{states}",
            "only a holding state may go to $previous; these sources are not: {states}",
        ),
        "check.parallel_prerequisite": (
            "并联任务组 “{group}” 的事项互不为前置，事项 “{item}” 不能以 “{id}” 为前置",
            "the items of parallel group '{group}' are not prerequisites of one another (互不为前置); "
            "item '{item}' cannot require '{id}'",
        ),
        "check.prerequisite_cycle": (
            "前置事项形成循环：{cycle}",
            "prerequisites form a cycle: {cycle}",
        ),
        "check.cure_exceeds_limit": (
            "补正期限（{cure_zh}）长于事项办理时限（{limit_zh}）",
            "the cure period ({cure_en}) is longer than the item's time limit ({limit_en})",
        ),
        "check.deficiency_core_material": (
            "材料 “{id}” 是主审要件（core），不能容缺",
            "material '{id}' is core (主审要件) and cannot be missing under 容缺受理",
        ),
        "check.deficiency_without_cure": (
            "允许容缺的事项须有补正期限（cure_period）且任务组须有补正通知状态机（notice_machine）：{reason_zh}",
            "an item allowing deficiencies needs a cure_period and its group a notice_machine: {reason_en}",
        ),
        "check.ladder_not_increasing": (
            "调度阶梯的{what_zh}：{value_zh} 小于上一级的 {previous_zh}",
            "the {what_en} of a ladder's levels: {value_en} is less than {previous_en} of the level before",
        ),
        "check.unknown_recipient": (
            "通知对象 “{id}” 不在允许的范围内（{allowed}）",
            "recipient '{id}' is not one of the allowed recipients ({allowed})",
        ),
        "check.unknown_placeholder": (
            "通知模板中的 {bad} 不是允许的占位符（可用：{allowed}；字面花括号写作 {{{{ 和 }}}}）",
            "{bad} is not an allowed placeholder of a notice template (allowed: {allowed}; write literal "
            "braces as {{{{ and }}}})",
        ),
        "check.duplicate_trigger_source": (
            "触发器 “{trigger}” 从状态 {states} 出发已有去向不同的迁移，执行时无法确定去向",
            "trigger '{trigger}' already leaves {states} for another destination: firing it would be ambiguous",
        ),
        "check.empty_gate": ("条件列表不能为空", "a list of conditions cannot be empty"),
        "check.field_type_compare": (
            "字段 “{id}”（{type}）不能这样比较：{reason_zh}",
            "field '{id}' ({type}) cannot be compared like this: {reason_en}",
        ),
        "check.group_opened_twice": (
            "任务组 “{id}” 已由状态 “{first}” 开启，不能再由其他状态开启（事项会被重复开启）",
            "task group '{id}' is already opened by state '{first}'; opening it again would open its items twice",
        ),
        "check.step_phase_mismatch": (
            "步骤 {id} 属于阶段 “{step_phase}”，而该状态属于阶段 “{state_phase}”",
            "step {id} belongs to phase '{step_phase}' but the state belongs to phase '{state_phase}'",
        ),
    }
)

_KINDS: dict[str, tuple[str, str]] = {
    "phases": ("阶段", "phase"),
    "roles": ("角色", "role"),
    "departments": ("部门", "department"),
    "fields": ("字段", "field"),
    "states": ("状态", "state"),
    "gates": ("关卡", "gate"),
    "task_machines": ("状态机", "task machine"),
    "task_groups": ("任务组", "task group"),
    "clocks": ("计时器", "clock"),
    "ladders": ("调度阶梯", "ladder"),
    "obligations": ("报送义务", "obligation"),
    "items": ("事项", "item"),
    "materials": ("材料", "material"),
    "transitions": ("迁移（触发器 + 来源状态）", "transition (trigger + source state)"),
    "steps": ("步骤编号", "step number"),
    "levels": ("阶梯级别", "ladder level"),
}
"""How each kind of entry is named in a ``check.duplicate_id`` message."""

_SUBJECTS: dict[str, tuple[str, str]] = {"item": ("事项", "items"), "notice": ("补正通知", "notices")}

_CLOCK_BASES: dict[str, tuple[str, ...]] = {
    # item_time_limit needs an item, cure_date a notice, field_date a project field: each basis reads a
    # value that only that subject has.
    "project": ("duration", "field_date"),
    "item": ("duration", "item_time_limit"),
    "notice": ("duration", "cure_date"),
}

_ORDERED_TYPES = frozenset({"integer", "decimal", "date"})
"""Field types whose values have an order, so that gt/ge/lt/le make sense."""


def calendar_days(duration: Duration) -> int:
    """The length of ``duration`` in calendar days, counting 5 working days as 7 calendar days (rounded up)."""
    if duration.unit == "calendar_days":
        return duration.days
    return math.ceil(duration.days * 7 / 5)


def compare_durations(left: Duration, right: Duration) -> int:
    """-1, 0 or 1 as ``left`` is shorter than, as long as, or longer than ``right``.

    The same unit compares day counts; mixed units compare :func:`calendar_days`.
    """
    if left.unit == right.unit:
        a, b = left.days, right.days
    else:
        a, b = calendar_days(left), calendar_days(right)
    return (a > b) - (a < b)


def unknown_placeholders(template: str) -> list[str]:
    """The constructs of a notice ``template`` that are not plain ``{name}`` placeholders from
    :data:`~lifecycle.spec.models.NOTICE_PLACEHOLDERS`, as written (empty when the template is fine).

    ``{{`` and ``}}`` are literal braces. Attribute or index access (``{a.b}``, ``{a[0]}``), conversions
    (``{a!r}``), format specs (``{a:>5}``) and positional fields (``{}``, ``{0}``) are all refused: the
    engine substitutes names and nothing else, so a template can never reach into an object.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # an unmatched "{" or "}"
        return [f"({exc})"]
    bad: list[str] = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in NOTICE_PLACEHOLDERS or spec or conversion:
            written = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            bad.append(written)
    return bad


def check_definition(definition: Definition, source: SourceMap) -> list[Problem]:
    """Every static problem of ``definition``, each located through ``source`` at the offending value.

    The definition must have passed schema validation (the checks rely on the models' types). The result is
    in the order the checks ran; callers sort it for display.
    """
    return _Checker(definition, source).run()


@dataclass
class _Machine:
    """What the checks need to know about one machine (the project's, or a task or notice machine)."""

    kind: Literal["project", "item", "notice"]
    scope_zh: str
    scope_en: str
    states: set[str]
    # trigger -> list of (the states it leaves, after expanding "*"; the roles allowed)
    leaves: dict[str, list[tuple[set[str], list[str]]]] = field(default_factory=dict)

    def scope(self) -> dict[str, str]:
        return {"scope_zh": self.scope_zh, "scope_en": self.scope_en}


class _Checker:
    """Runs the checks over one definition and collects the problems."""

    def __init__(self, definition: Definition, source: SourceMap) -> None:
        self.definition = definition
        self.source = source
        self.problems: list[Problem] = []
        d = definition
        # The definition's own lookup tables: by id, the first of duplicate ids wins (duplicates are reported).
        self.phases: dict[str, Phase] = d.lookup("phases")
        self.steps: dict[int, Step] = d.lookup("steps")
        self.roles = {*d.lookup("roles"), SYSTEM_ROLE}  # the scheduler's role always exists
        self.departments: dict[str, Department] = d.lookup("departments")
        self.fields: dict[str, FieldSpec] = d.lookup("fields")
        self.states: dict[str, State] = d.lookup("states")
        self.gates: dict[str, Gate] = d.lookup("gates")
        self.machines: dict[str, TaskMachine] = d.lookup("task_machines")
        self.groups: dict[str, TaskGroup] = d.lookup("task_groups")
        self.ladders: dict[str, Ladder] = d.lookup("ladders")
        # "*" means every non-terminal, non-holding state.
        self.star_states = {s.id for s in d.states if not s.terminal and not s.hold}
        self.project = _Machine("project", "项目状态机", "the project machine", set(self.states))
        for transition in d.transitions:
            self.project.leaves.setdefault(transition.trigger, []).append(
                (set(self._expand(transition.source)), transition.roles)
            )

    # --- helpers ----------------------------------------------------------------------------------------

    def report(self, code: str, path: YamlPath, **params: Any) -> None:
        if path and path[-1] == 0 and path not in self.source.marks and path[:-1] in self.source.marks:
            # One value written for a list (``from: draft``): the model holds [draft], the YAML a scalar.
            path = path[:-1]
        self.problems.append(Problem.of(code, self.source.locate(path), **params))

    def unique(self, table: str, entries: Iterable[tuple[Hashable, YamlPath]]) -> None:
        """Report every entry whose key was already seen, at the second (and any later) occurrence."""
        kind_zh, kind_en = _KINDS[table]
        seen: dict[Hashable, YamlPath] = {}
        for key, path in entries:
            if key in seen:
                first = self.source.locate(seen[key]).line
                self.report("check.duplicate_id", path, kind_zh=kind_zh, kind_en=kind_en, id=key, first_line=first)
            else:
                seen[key] = path

    def known(self, code: str, value: Any, known: Container[Any], path: YamlPath, **params: Any) -> bool:
        """Report ``code`` at ``path`` unless ``value`` is in ``known``; say whether it was."""
        if value in known:
            return True
        self.report(code, path, id=value, **params)
        return False

    def _expand(self, sources: Sequence[str]) -> list[str]:
        """The known project states a transition's sources name, with ``*`` expanded."""
        out: list[str] = []
        for name in sources:
            if name == ANY_STATE:
                out.extend(sorted(self.star_states))
            elif name in self.states:
                out.append(name)
        return out

    # --- the checks -------------------------------------------------------------------------------------

    def run(self) -> list[Problem]:
        self.check_unique_ids()
        self.check_steps_and_states()
        self.check_project_transitions()
        self.check_project_graph()
        self.check_gates()
        self.check_task_machines()
        self.check_task_groups()
        for index, clock in enumerate(self.definition.clocks):
            self.check_clock(clock, ("clocks", index), self.project)
        self.check_ladders()
        self.check_obligations()
        self.check_traffic_lights()
        return self.problems

    def check_unique_ids(self) -> None:
        d = self.definition
        for table in (
            "phases", "roles", "departments", "fields", "states", "gates",
            "task_machines", "task_groups", "clocks", "ladders", "obligations",
        ):  # fmt: skip
            entries: list[Any] = getattr(d, table)
            self.unique(table, ((e.id, (table, i, "id")) for i, e in enumerate(entries)))
        self.unique("steps", ((s.number, ("steps", i, "number")) for i, s in enumerate(d.steps)))
        for o, obligation in enumerate(d.obligations):
            path = ("obligations", o, "fields")
            self.unique("fields", ((f.id, (*path, i, "id")) for i, f in enumerate(obligation.fields)))

    def check_steps_and_states(self) -> None:
        d = self.definition
        for i, step in enumerate(d.steps):
            self.known("check.unknown_phase", step.phase, self.phases, ("steps", i, "phase"))
        self.known("check.unknown_state", d.initial, self.states, ("initial",), **self.project.scope())
        opened_by: dict[str, str] = {}
        for i, state in enumerate(d.states):
            path = ("states", i)
            # Steps are compared with the state's phase only when that phase exists: an unknown phase is
            # one problem, not one more per step.
            phase_known = state.phase is not None and self.known(
                "check.unknown_phase", state.phase, self.phases, (*path, "phase")
            )
            for j, number in enumerate(state.steps):
                if number not in self.steps:
                    self.report("check.unknown_step", (*path, "steps", j), id=number)
                elif phase_known and self.steps[number].phase != state.phase:
                    self.report(
                        "check.step_phase_mismatch",
                        (*path, "steps", j),
                        id=number,
                        step_phase=self.steps[number].phase,
                        state_phase=state.phase,
                    )
            for j, group in enumerate(state.opens):
                where = (*path, "opens", j)
                if not self.known("check.unknown_group", group, self.groups, where):
                    continue
                if group in opened_by:
                    self.report("check.group_opened_twice", where, id=group, first=opened_by[group])
                else:
                    opened_by[group] = state.id

    def check_project_transitions(self) -> None:
        d = self.definition
        scope = self.project.scope()
        # (trigger, source state) -> destination, to find the same trigger leaving a state for two places.
        destinations: dict[tuple[str, str], str] = {}
        for i, transition in enumerate(d.transitions):
            path = ("transitions", i)
            for j, name in enumerate(transition.source):
                where = (*path, "from", j)
                if name == ANY_STATE:
                    continue
                if not self.known("check.unknown_state", name, self.states, where, **scope):
                    continue
                if self.states[name].terminal:
                    self.report("check.terminal_has_exit", where, id=name)
            if transition.dest == PREVIOUS_STATE:
                not_holding = [
                    name
                    for name in transition.source
                    if name == ANY_STATE or (name in self.states and not self.states[name].hold)
                ]
                if not_holding:
                    self.report("check.previous_without_hold", (*path, "to"), states=", ".join(not_holding))
            else:
                self.known("check.unknown_state", transition.dest, self.states, (*path, "to"), **scope)
            for j, role in enumerate(transition.roles):
                self.known("check.unknown_role", role, self.roles, (*path, "roles", j))
            if transition.gate is not None:
                self.known("check.unknown_gate", transition.gate, self.gates, (*path, "gate"))
            for key in ("requires_fields", "accepts_fields"):
                for j, name in enumerate(getattr(transition, key)):
                    self.known("check.unknown_field", name, self.fields, (*path, key, j))
            for j, name in enumerate(transition.source):
                clashes = []
                for state in self._expand([name]):
                    earlier = destinations.setdefault((transition.trigger, state), transition.dest)
                    if earlier != transition.dest:
                        clashes.append(state)
                if clashes:
                    self.report(
                        "check.duplicate_trigger_source",
                        (*path, "from", j),
                        trigger=transition.trigger,
                        states=", ".join(clashes),
                    )

    def check_project_graph(self) -> None:
        d = self.definition
        edges: dict[str, set[str]] = {}
        for transition in d.transitions:
            # A return to $previous goes back to a state the project was held from, so that state was reached
            # before: such a transition is a way out of the hold state but reaches nothing new. (Counting
            # every state with a transition into the hold state would count every state at all as soon as
            # one may be held from "*", and no unreachable state would ever be found.)
            targets = {transition.dest} & self.states.keys()
            for source in self._expand(transition.source):
                edges.setdefault(source, set()).update(targets)
        self.check_graph(
            self.project,
            d.initial,
            edges,
            [(s.id, ("states", i, "id"), not s.terminal) for i, s in enumerate(d.states)],
        )

    def check_graph(
        self,
        machine: _Machine,
        initial: str,
        edges: dict[str, set[str]],
        states: list[tuple[str, YamlPath, bool]],
    ) -> None:
        """Report states not reachable from ``initial`` and states that must be left but cannot be.

        ``edges`` maps each state that some transition leaves to the known states it leads to (possibly
        none, when the destination is unknown: that is reported elsewhere, and the state still has an exit).
        ``states`` lists (id, where its id is written, whether something must leave it).
        """
        reached: set[str] = set()
        if initial in machine.states:
            reached.add(initial)
            queue = deque([initial])
            while queue:
                for target in edges.get(queue.popleft(), ()):
                    if target not in reached:
                        reached.add(target)
                        queue.append(target)
        seen: set[str] = set()
        for state_id, path, needs_exit in states:
            if state_id in seen:  # a duplicate id is reported once, as a duplicate
                continue
            seen.add(state_id)
            if initial in machine.states and state_id not in reached:
                self.report("check.unreachable_state", path, id=state_id, **machine.scope())
            if needs_exit and state_id not in edges:
                self.report("check.dead_end", path, id=state_id, **machine.scope())

    def check_gates(self) -> None:
        for i, gate in enumerate(self.definition.gates):
            self.check_conditions(gate.conditions, ("gates", i, gate.mode))

    def check_conditions(self, conditions: list[Condition], path: YamlPath) -> None:
        if not conditions:
            self.report("check.empty_gate", path)
        for i, condition in enumerate(conditions):
            self.check_condition(condition, (*path, i))

    def check_condition(self, condition: Condition, path: YamlPath) -> None:
        kind = condition.kind
        where = (*path, kind)
        if condition.group_done is not None:
            self.known("check.unknown_group", condition.group_done, self.groups, where)
        elif condition.item_done is not None:
            ref = condition.item_done
            if self.known("check.unknown_group", ref.group, self.groups, (*where, "group")):
                items = {item.id for item in self.groups[ref.group].items}
                self.known("check.unknown_item", ref.item, items, (*where, "item"), group=ref.group)
        elif kind in ("no_open_deficiency", "commitments_verified", "no_overdue_deadlines"):
            group = condition.argument.group
            if group is not None:
                self.known("check.unknown_group", group, self.groups, (*where, "group"))
        elif condition.field_present is not None:
            self.known("check.unknown_field", condition.field_present, self.fields, where)
        elif condition.field_compare is not None:
            self.check_field_compare(condition.field_compare, where)
        elif condition.all is not None or condition.any is not None:
            self.check_conditions(condition.argument, where)

    def check_field_compare(self, compare: FieldCompare, path: YamlPath) -> None:
        if not self.known("check.unknown_field", compare.field, self.fields, (*path, "field")):
            return
        spec = self.fields[compare.field]
        reason = _compare_value_problem(spec, compare.value)
        if reason is not None:
            self.report(
                "check.field_type_compare",
                (*path, "value"),
                id=spec.id,
                type=spec.type,
                reason_zh=reason[0],
                reason_en=reason[1],
            )
        if compare.op not in ("eq", "ne") and spec.type not in _ORDERED_TYPES:
            self.report(
                "check.field_type_compare",
                (*path, "op"),
                id=spec.id,
                type=spec.type,
                reason_zh=f"该类型的值没有大小顺序，只能用 eq 或 ne，不能用 {compare.op}",
                reason_en=f"values of this type have no order: use eq or ne, not {compare.op}",
            )

    def check_task_machines(self) -> None:
        d = self.definition
        for m, machine in enumerate(d.task_machines):
            path = ("task_machines", m)
            subject_zh = _SUBJECTS[machine.subject][0]
            info = _Machine(
                machine.subject,
                f"{subject_zh}状态机 “{machine.id}”",
                f"task machine '{machine.id}'",
                {s.id for s in machine.states},
            )
            scope = info.scope()
            self.unique("states", ((s.id, (*path, "states", i, "id")) for i, s in enumerate(machine.states)))
            self.unique("clocks", ((c.id, (*path, "clocks", i, "id")) for i, c in enumerate(machine.clocks)))
            self.unique(
                "transitions",
                (
                    (f"{t.trigger} ({name})", (*path, "transitions", i, "from", j))
                    for i, t in enumerate(machine.transitions)
                    for j, name in enumerate(t.source)
                ),
            )
            self.known("check.unknown_state", machine.initial, info.states, (*path, "initial"), **scope)
            edges: dict[str, set[str]] = {}
            for i, transition in enumerate(machine.transitions):
                where = (*path, "transitions", i)
                sources = {
                    name
                    for j, name in enumerate(transition.source)
                    if self.known("check.unknown_state", name, info.states, (*where, "from", j), **scope)
                }
                known_dest = self.known("check.unknown_state", transition.dest, info.states, (*where, "to"), **scope)
                for name in sources:
                    targets = edges.setdefault(name, set())
                    if known_dest:
                        targets.add(transition.dest)
                info.leaves.setdefault(transition.trigger, []).append((sources, transition.roles))
                for j, role in enumerate(transition.roles):
                    self.known("check.unknown_role", role, self.roles, (*where, "roles", j))
                if transition.then_parent is not None:
                    self.check_then_parent(machine, transition.then_parent, (*where, "then_parent"))
            self.check_graph(
                info,
                machine.initial,
                edges,
                [(s.id, (*path, "states", i, "id"), s.outcome == "open") for i, s in enumerate(machine.states)],
            )
            for i, clock in enumerate(machine.clocks):
                self.check_clock(clock, (*path, "clocks", i), info)

    def check_then_parent(self, machine: TaskMachine, trigger: str, path: YamlPath) -> None:
        """``then_parent`` of a notice machine fires on the item of every group using it as notice
        machine; of an item machine, on the project."""
        if machine.subject == "item":
            self.known("check.unknown_trigger", trigger, self.project.leaves, path, **self.project.scope())
            return
        for group in self.definition.task_groups:
            parent = self.machines.get(group.machine)
            if group.notice_machine != machine.id or parent is None or parent.subject != "item":
                continue
            triggers = {t.trigger for t in parent.transitions}
            if trigger not in triggers:
                self.report(
                    "check.unknown_trigger",
                    path,
                    id=trigger,
                    scope_zh=f"事项状态机 “{parent.id}”",
                    scope_en=f"task machine '{parent.id}'",
                )
                return

    def check_clock(self, clock: Clock, path: YamlPath, machine: _Machine) -> None:
        scope = machine.scope()
        allowed = _CLOCK_BASES[machine.kind]
        if clock.basis not in allowed:
            self.report(
                "check.clock_basis_subject", (*path, "basis"), basis=clock.basis, allowed=", ".join(allowed), **scope
            )
        code = "check.unknown_state"
        running = {
            name
            for i, name in enumerate(clock.runs_in)
            if self.known(code, name, machine.states, (*path, "runs_in", i), **scope)
        }
        for i, name in enumerate(clock.paused_in):
            where = (*path, "paused_in", i)
            if self.known(code, name, machine.states, where, **scope) and name in running:
                self.report("check.clock_paused_and_running", where, id=name)
        if clock.field is not None and self.known("check.unknown_field", clock.field, self.fields, (*path, "field")):
            spec = self.fields[clock.field]
            if spec.type != "date":
                self.report("check.clock_field_not_date", (*path, "field"), id=spec.id, type=spec.type)
        if clock.ladder is not None:
            self.known("check.unknown_ladder", clock.ladder, self.ladders, (*path, "ladder"))
        if clock.on_expiry is not None:
            self.check_expiry(clock, running, (*path, "on_expiry"), machine)

    def check_expiry(self, clock: Clock, running: set[str], path: YamlPath, machine: _Machine) -> None:
        """The scheduler fires ``on_expiry`` in whichever running state the clock comes due: the trigger
        must exist, leave every such state, and allow the scheduler's role there."""
        trigger = clock.on_expiry
        assert trigger is not None
        if not self.known("check.unknown_trigger", trigger, machine.leaves, path, **machine.scope()):
            return
        leaves = machine.leaves[trigger]
        stuck = sorted(s for s in running if not any(s in sources for sources, _roles in leaves))
        if stuck:
            self.report("check.expiry_trigger_not_from_state", path, id=trigger, states=", ".join(stuck))
        if any(sources & running and SYSTEM_ROLE not in roles for sources, roles in leaves):
            self.report("check.expiry_trigger_role", path, id=trigger, role=SYSTEM_ROLE)

    def check_task_groups(self) -> None:
        for g, group in enumerate(self.definition.task_groups):
            path = ("task_groups", g)
            self.check_group_machine(group.machine, "item", (*path, "machine"))
            if group.notice_machine is not None:
                self.check_group_machine(group.notice_machine, "notice", (*path, "notice_machine"))
            self.unique("items", ((it.id, (*path, "items", i, "id")) for i, it in enumerate(group.items)))
            for i, item in enumerate(group.items):
                self.check_item(group, item, (*path, "items", i))
            if not group.parallel:
                self.check_prerequisite_cycles(group, path)

    def check_group_machine(self, machine_id: str, subject: Literal["item", "notice"], path: YamlPath) -> None:
        if not self.known("check.unknown_machine", machine_id, self.machines, path):
            return
        actual = self.machines[machine_id].subject
        if actual != subject:
            self.report(
                "check.machine_subject",
                path,
                id=machine_id,
                actual_zh=_SUBJECTS[actual][0],
                actual_en=_SUBJECTS[actual][1],
                expected_zh=_SUBJECTS[subject][0],
                expected_en=_SUBJECTS[subject][1],
            )

    def check_item(self, group: TaskGroup, item: Item, path: YamlPath) -> None:
        self.known("check.unknown_department", item.department, self.departments, (*path, "department"))
        self.unique("materials", ((m.id, (*path, "materials", i, "id")) for i, m in enumerate(item.materials)))
        materials = {m.id: m for m in reversed(item.materials)}
        for i, name in enumerate(item.deficiency_allowed):
            where = (*path, "deficiency_allowed", i)
            if self.known("check.unknown_material", name, materials, where, item=item.id) and materials[name].core:
                self.report("check.deficiency_core_material", where, id=name)
        if item.deficiency_allowed:
            missing = [
                (zh, en)
                for lacking, zh, en in (
                    (item.cure_period is None, "事项未设补正期限", "the item has no cure_period"),
                    (group.notice_machine is None, "任务组未设补正通知状态机", "the group has no notice_machine"),
                )
                if lacking
            ]
            if missing:
                self.report(
                    "check.deficiency_without_cure",
                    (*path, "deficiency_allowed"),
                    reason_zh="；".join(zh for zh, _ in missing),
                    reason_en="; ".join(en for _, en in missing),
                )
        if item.cure_period is not None and compare_durations(item.cure_period, item.time_limit) > 0:
            self.report(
                "check.cure_exceeds_limit",
                (*path, "cure_period"),
                **_show("cure", item.cure_period),
                **_show("limit", item.time_limit),
            )
        items = {it.id for it in group.items}
        for i, name in enumerate(item.prerequisites):
            where = (*path, "prerequisites", i)
            if group.parallel:
                self.report("check.parallel_prerequisite", where, group=group.id, item=item.id, id=name)
            else:
                self.known("check.unknown_item", name, items, where, group=group.id)

    def check_prerequisite_cycles(self, group: TaskGroup, path: YamlPath) -> None:
        """Report each prerequisite that closes a cycle (a back edge of a depth-first search), once."""
        index: dict[str, int] = {}
        for i, item in enumerate(group.items):
            index.setdefault(item.id, i)
        # Iterative depth-first search: a group may hold many items, and recursion depth is limited.
        colour: dict[str, int] = {}  # absent = unvisited, 1 = on the current path, 2 = finished
        for start in index:
            if start in colour:
                continue
            colour[start] = 1
            trail = [start]
            stack: list[tuple[str, int]] = [(start, 0)]
            while stack:
                node, k = stack[-1]
                prerequisites = group.items[index[node]].prerequisites
                if k == len(prerequisites):
                    stack.pop()
                    trail.pop()
                    colour[node] = 2
                    continue
                stack[-1] = (node, k + 1)
                target = prerequisites[k]
                if target not in index:
                    continue
                if colour.get(target) == 1:
                    cycle = [*trail[trail.index(target) :], target]
                    self.report(
                        "check.prerequisite_cycle",
                        (*path, "items", index[node], "prerequisites", k),
                        cycle=" → ".join(cycle),
                    )
                elif target not in colour:
                    colour[target] = 1
                    trail.append(target)
                    stack.append((target, 0))

    def check_ladders(self) -> None:
        for a, ladder in enumerate(self.definition.ladders):
            levels = ("ladders", a, "levels")
            self.unique("levels", ((lv.level, (*levels, i, "level")) for i, lv in enumerate(ladder.levels)))
            seen: set[int] = set()
            previous_after: Duration | None = None
            for i, level in enumerate(ladder.levels):
                path = (*levels, i)
                # A repeated number is a duplicate (reported above), not also a step down.
                if level.level not in seen and seen and level.level < max(seen):
                    self.report(
                        "check.ladder_not_increasing",
                        (*path, "level"),
                        what_zh="级别须逐级递增",
                        what_en="level numbers must increase",
                        value_zh=level.level,
                        value_en=level.level,
                        previous_zh=max(seen),
                        previous_en=max(seen),
                    )
                seen.add(level.level)
                if previous_after is not None and compare_durations(level.after, previous_after) < 0:
                    self.report(
                        "check.ladder_not_increasing",
                        (*path, "after"),
                        what_zh="延后时间（after）不得缩短",
                        what_en="delays (after) may not shrink",
                        **_show("value", level.after),
                        **_show("previous", previous_after),
                    )
                previous_after = level.after
                allowed = ", ".join(sorted(ESCALATION_RECIPIENTS))
                for j, name in enumerate(level.notify):
                    self.known(
                        "check.unknown_recipient", name, ESCALATION_RECIPIENTS, (*path, "notify", j), allowed=allowed
                    )
                if level.notice is not None:
                    bad = unknown_placeholders(level.notice.template)
                    if bad:
                        self.report(
                            "check.unknown_placeholder",
                            (*path, "notice", "template"),
                            bad=" ".join(bad),
                            allowed=", ".join(sorted(NOTICE_PLACEHOLDERS)),
                        )

    def check_obligations(self) -> None:
        for o, obligation in enumerate(self.definition.obligations):
            path = ("obligations", o)
            for i, name in enumerate(obligation.applies_in):
                self.known("check.unknown_obligation_state", name, self.states, (*path, "applies_in", i))
            if obligation.ladder is not None:
                self.known("check.unknown_ladder", obligation.ladder, self.ladders, (*path, "ladder"))
            for i, role in enumerate(obligation.roles):
                self.known("check.unknown_role", role, self.roles, (*path, "roles", i))
            if len(obligation.id) > OBLIGATION_ID_LIMIT:
                self.report("check.obligation_id_too_long", (*path, "id"), id=obligation.id, limit=OBLIGATION_ID_LIMIT)
            report_fields = {f.id: f for f in obligation.fields}
            for source, target in obligation.updates_fields.items():
                where = (*path, "updates_fields", source)
                known_source = self.known("check.unknown_report_field", source, report_fields, where)
                if not self.known("check.unknown_field", target, self.fields, where) or not known_source:
                    continue
                if report_fields[source].type != self.fields[target].type:
                    self.report(
                        "check.report_field_type",
                        where,
                        id=source,
                        type=report_fields[source].type,
                        target=target,
                        target_type=self.fields[target].type,
                    )

    def check_traffic_lights(self) -> None:
        lights = self.definition.traffic_lights
        if lights is None:
            return
        path = ("traffic_lights",)
        for key in ("not_started_states", "progress_states"):
            for i, name in enumerate(getattr(lights, key)):
                self.known("check.unknown_state", name, self.states, (*path, key, i), **self.project.scope())
        for key in ("planned_start_field", "annual_plan_field", "completed_field"):
            name = getattr(lights, key)
            if name is not None:
                self.known("check.unknown_field", name, self.fields, (*path, key))


def _show(name: str, duration: Duration) -> dict[str, str]:
    """Message parameters ``<name>_zh`` and ``<name>_en`` showing ``duration``."""
    working = duration.unit == "working_days"
    return {
        f"{name}_zh": f"{duration.days} 个{'工作日' if working else '自然日'}",
        f"{name}_en": f"{duration.days} {'working' if working else 'calendar'} days",
    }


def _compare_value_problem(spec: FieldSpec, value: str | int | Decimal | bool) -> tuple[str, str] | None:
    """Why ``value`` cannot be compared with field ``spec`` (Chinese, English), or None when it can."""
    kind = spec.type
    if kind == "attachments":
        return "附件字段不能比较", "attachments cannot be compared"
    if kind in ("string", "text"):
        ok = isinstance(value, str)
        expected = ("文本", "a string")
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = ("整数", "an integer")
    elif kind == "decimal":
        ok = isinstance(value, int | Decimal) and not isinstance(value, bool)
        expected = ("数字", "a number")
    elif kind == "boolean":
        ok = isinstance(value, bool)
        expected = ("true 或 false", "true or false")
    elif kind == "date":
        ok = isinstance(value, str) and _is_iso_date(value)
        expected = ('带引号的日期，如 "2025-01-31"', 'a quoted date such as "2025-01-31"')
    else:  # choice
        choices = spec.choices or []
        ok = isinstance(value, str) and value in choices
        expected = (f"以下选项之一：{'、'.join(choices)}", f"one of the choices: {', '.join(choices)}")
    if ok:
        return None
    return f"比较值 {value!r} 应为{expected[0]}", f"the value {value!r} should be {expected[1]}"


def _is_iso_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10
