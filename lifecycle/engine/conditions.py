"""The closed vocabulary of gate conditions, each implemented once.

A definition names conditions (``group_done``, ``field_compare``…); this module is the only place that gives
them meaning. Evaluation never stops at the first failure: :func:`unmet_conditions` returns every unmet
condition of a gate, each with a stable code and a Chinese and English message naming what is missing, so a
unit sees everything it must still do in one answer.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from lifecycle.errors import Unmet
from lifecycle.messages import register, render
from lifecycle.spec.models import Condition, Definition, FieldCompare, Gate, GroupScope, ItemRef

from .instance import ProjectInstance, Task

register(
    {
        "condition.group_done": (
            "“{group}”尚有 {count} 项未办结：{items}",
            "'{group}' has {count} item(s) not done: {items}",
        ),
        "condition.group_not_opened": ("“{group}”尚未开始办理", "'{group}' has not been opened"),
        "condition.item_done": ("事项“{item}”尚未办结", "item '{item}' is not done"),
        "condition.no_open_deficiency": (
            "尚有 {count} 份补正告知未补正：{items}",
            "{count} deficiency notice(s) not cured: {items}",
        ),
        "condition.commitments_verified": (
            "尚有 {count} 项承诺未核查通过：{items}",
            "{count} commitment(s) not verified: {items}",
        ),
        "condition.field_present": ("“{field}”未填写", "'{field}' is not filled in"),
        "condition.field_compare": (
            "“{field}”应{op_zh} {value}（当前：{actual}）",
            "'{field}' must be {op_en} {value} (now: {actual})",
        ),
        "condition.no_overdue_deadlines": (
            "尚有 {count} 项时限已逾期：{items}",
            "{count} deadline(s) overdue: {items}",
        ),
        "condition.any": ("以下条件至少满足一项：{items}", "at least one of these must hold: {items}"),
        "condition.custom": ("{zh}", "{en}"),
    }
)

_OPS: dict[str, tuple[Callable[[Any, Any], bool], str, str]] = {
    "eq": (operator.eq, "等于", "equal to"),
    "ne": (operator.ne, "不等于", "other than"),
    "gt": (operator.gt, "大于", "greater than"),
    "ge": (operator.ge, "不小于", "at least"),
    "lt": (operator.lt, "小于", "less than"),
    "le": (operator.le, "不大于", "at most"),
}


class ConditionContext:
    """What a condition is evaluated against: the definition, the project, and the current time."""

    __slots__ = ("definition", "now", "project")

    def __init__(self, definition: Definition, project: ProjectInstance, now: datetime) -> None:
        self.definition = definition
        self.project = project
        self.now = now

    def task_outcome(self, task: Task) -> str:
        """``open``, ``done`` or ``failed``: what the task's current state means."""
        machine = self.definition.machine(task.machine)
        for state in machine.states:
            if state.id == task.state:
                return str(state.outcome)
        return "open"

    def item_title(self, group_id: str, item_id: str) -> str:
        group = self.definition.lookup("task_groups").get(group_id)
        if group is not None:
            for item in group.items:
                if item.id == item_id:
                    return str(item.title)
        return item_id

    def field_title(self, field_id: str) -> str:
        spec = self.definition.field(field_id)
        return spec.title if spec is not None else field_id

    def group_title(self, group_id: str) -> str:
        group = self.definition.lookup("task_groups").get(group_id)
        return str(group.title) if group is not None else group_id


def unmet_conditions(gate: Gate, ctx: ConditionContext) -> list[Unmet]:
    """Every unmet condition of ``gate`` (empty when the gate is satisfied)."""
    if gate.mode == "all":
        unmet = [u for condition in gate.conditions for u in evaluate(condition, ctx)]
    else:
        unmet = _any(gate.conditions, ctx)
    return [Unmet(u.code, u.zh, u.en, gate=gate.id, params=u.params) for u in unmet]


def evaluate(condition: Condition, ctx: ConditionContext) -> list[Unmet]:
    """The unmet parts of one condition (empty when it holds)."""
    unmet = _EVALUATORS[condition.kind](condition.argument, ctx)
    if unmet and condition.title:
        # The administrator's own wording leads; the generated detail (which items, which value) follows, so
        # the unit still sees everything it must do. The code stays.
        zh = condition.title + "（" + "；".join(u.zh for u in unmet) + "）"
        en = (condition.title_en or condition.title) + " (" + "; ".join(u.en for u in unmet) + ")"
        return [Unmet(unmet[0].code, zh, en, params=unmet[0].params)]
    return unmet


def _unmet(code: str, **params: Any) -> Unmet:
    zh, en = render(code, params)
    return Unmet(code=code, zh=zh, en=en, params=params)


def _listing(names: Iterable[str], limit: int = 10) -> str:
    names = list(names)
    shown = "、".join(names[:limit])
    return shown + (f" 等 {len(names)} 项" if len(names) > limit else "")


def _group_tasks(ctx: ConditionContext, group: str | None) -> list[Task]:
    return [t for t in ctx.project.tasks.values() if group is None or t.group == group]


def _group_done(group_id: str, ctx: ConditionContext) -> list[Unmet]:
    group = ctx.definition.group(group_id)
    tasks = {t.item: t for t in _group_tasks(ctx, group_id)}
    if not tasks:
        return [_unmet("condition.group_not_opened", group=group.title, group_id=group_id)]
    pending = [
        item
        for item in group.items
        if item.required and (item.id not in tasks or ctx.task_outcome(tasks[item.id]) != "done")
    ]
    if not pending:
        return []
    return [
        _unmet(
            "condition.group_done",
            group=group.title,
            group_id=group_id,
            count=len(pending),
            items=_listing(item.title for item in pending),
            item_ids=[item.id for item in pending],
        )
    ]


def _item_done(ref: ItemRef, ctx: ConditionContext) -> list[Unmet]:
    task = ctx.project.tasks.get(f"{ref.group}.{ref.item}")
    if task is not None and ctx.task_outcome(task) == "done":
        return []
    return [_unmet("condition.item_done", item=ctx.item_title(ref.group, ref.item), item_id=ref.item)]


def _no_open_deficiency(scope: GroupScope, ctx: ConditionContext) -> list[Unmet]:
    open_notices = []
    for notice in ctx.project.notices.values():
        if notice.closed_at is not None:
            continue
        task = ctx.project.tasks.get(notice.task_id)
        if task is None or (scope.group is not None and task.group != scope.group):
            continue
        if notice.submission < task.submission:
            continue  # a resubmission is a new application: the old one's notice no longer binds anyone
        open_notices.append((notice, task))
    if not open_notices:
        return []
    return [
        _unmet(
            "condition.no_open_deficiency",
            count=len(open_notices),
            items=_listing(ctx.item_title(task.group, task.item) for _, task in open_notices),
            notice_ids=[notice.id for notice, _ in open_notices],
        )
    ]


def _commitments_verified(scope: GroupScope, ctx: ConditionContext) -> list[Unmet]:
    pending = []
    for commitment in ctx.project.commitments.values():
        task = ctx.project.tasks.get(commitment.task_id)
        if scope.group is not None and (task is None or task.group != scope.group):
            continue
        if commitment.state != "verified":
            pending.append((commitment, task))
    if not pending:
        return []
    return [
        _unmet(
            "condition.commitments_verified",
            count=len(pending),
            items=_listing(
                ctx.item_title(task.group, task.item) if task else commitment.task_id for commitment, task in pending
            ),
            commitment_ids=[commitment.id for commitment, _ in pending],
        )
    ]


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _field_present(field_id: str, ctx: ConditionContext) -> list[Unmet]:
    if _present(ctx.project.fields.get(field_id)):
        return []
    return [_unmet("condition.field_present", field=ctx.field_title(field_id), field_id=field_id)]


def _comparable(actual: Any, expected: Any) -> tuple[Any, Any] | None:
    """Bring a field value and the YAML constant to one type, or None when they cannot be compared."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return (actual, expected) if isinstance(actual, bool) and isinstance(expected, bool) else None
    if isinstance(expected, int | Decimal | float):
        try:
            return Decimal(str(actual)), Decimal(str(expected))
        except (InvalidOperation, ValueError):
            return None
    if isinstance(actual, date):
        try:
            return actual, date.fromisoformat(str(expected))
        except ValueError:
            return None
    return str(actual), str(expected)


def _field_compare(compare: FieldCompare, ctx: ConditionContext) -> list[Unmet]:
    actual = ctx.project.fields.get(compare.field)
    func, op_zh, op_en = _OPS[compare.op]
    pair = _comparable(actual, compare.value) if _present(actual) else None
    if pair is not None and func(*pair):
        return []
    return [
        _unmet(
            "condition.field_compare",
            field=ctx.field_title(compare.field),
            field_id=compare.field,
            op_zh=op_zh,
            op_en=op_en,
            value=compare.value,
            actual=actual if _present(actual) else "未填写",
        )
    ]


def _no_overdue_deadlines(scope: GroupScope, ctx: ConditionContext) -> list[Unmet]:
    overdue = []
    for deadline in ctx.project.deadlines.values():
        if deadline.closed_at is not None or deadline.paused or deadline.due_at > ctx.now:
            continue
        if scope.group is not None:
            task = ctx.project.tasks.get(deadline.subject_id) if deadline.subject_kind == "task" else None
            if task is None or task.group != scope.group:
                continue
        overdue.append(deadline)
    if not overdue:
        return []
    return [
        _unmet(
            "condition.no_overdue_deadlines",
            count=len(overdue),
            items=_listing(d.title for d in overdue),
            deadline_ids=[d.id for d in overdue],
        )
    ]


def _all(conditions: list[Condition], ctx: ConditionContext) -> list[Unmet]:
    return [u for condition in conditions for u in evaluate(condition, ctx)]


def _any(conditions: list[Condition], ctx: ConditionContext) -> list[Unmet]:
    failures: list[list[Unmet]] = []
    for condition in conditions:
        unmet = evaluate(condition, ctx)
        if not unmet:
            return []
        failures.append(unmet)
    parts = [u for failure in failures for u in failure]
    return [
        Unmet(
            code="condition.any",
            zh=render("condition.any", {"items": "；或 ".join(u.zh for u in parts)})[0],
            en=render("condition.any", {"items": "; or ".join(u.en for u in parts)})[1],
            params={"alternatives": [u.code for u in parts]},
        )
    ]


_EVALUATORS: dict[str, Callable[[Any, ConditionContext], list[Unmet]]] = {
    "group_done": _group_done,
    "item_done": _item_done,
    "no_open_deficiency": _no_open_deficiency,
    "commitments_verified": _commitments_verified,
    "field_present": _field_present,
    "field_compare": _field_compare,
    "no_overdue_deadlines": _no_overdue_deadlines,
    "all": _all,
    "any": _any,
}
