"""A readable explanation of a definition, in Chinese (or English), for the people who run the procedure.

``lifecycle explain`` prints it; reviewers of a changed YAML file read it to see what the change means without
reading YAML. It covers, in this order: phases → steps → states; the states; the transitions (who may fire
them, through which gate); the gates with their conditions written out (“并联审批”全部办结；无未补正的补正告知；
“总投资”不小于 5000 万元); the task groups and their items (department, time limit such as “20个工作日” or
“7个自然日”, materials with 核心/非核心 and 可容缺 marks, cure period, 承诺制, prerequisites, legal basis); the
task and notice machines; the clocks; the escalation ladders (levels, delays, who is told, notice templates);
the recurring obligations (每周一 18:00前；每年10月最后一日 18:00前); the traffic-light bands; roles,
departments and fields.

The explanation is built as a list of :data:`Block` values (headings, lines and tables) by
:func:`explain_blocks`; :func:`explain_definition` renders them as plain text with columns aligned by display
width (a Chinese character takes two columns). The CLI may render the same blocks as rich tables. Sections
with nothing in them are left out. The output depends only on the definition: it is deterministic.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from lifecycle.spec.models import (
    ANY_STATE,
    PREVIOUS_STATE,
    Clock,
    Condition,
    Definition,
    DueRule,
    Duration,
    FieldSpec,
    Gate,
    Item,
    Obligation,
    TaskMachine,
)

__all__ = [
    "Block",
    "Heading",
    "Line",
    "Table",
    "describe_condition",
    "describe_due",
    "describe_duration",
    "display_width",
    "explain_blocks",
    "explain_definition",
    "render_plain",
]


@dataclass(frozen=True)
class Heading:
    """A heading: level 0 is the definition's title, level 1 a numbered section, level 2 a sub-section."""

    text: str
    level: int = 1


@dataclass(frozen=True)
class Line:
    """A line of text, indented by ``indent`` levels (two spaces each)."""

    text: str
    indent: int = 0


@dataclass(frozen=True)
class Table:
    """A table: column headers and rows of cells (plain strings), indented by ``indent`` levels."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    indent: int = 0


Block = Heading | Line | Table
"""One piece of an explanation."""

_NONE = "—"


def explain_definition(definition: Definition, lang: str = "zh") -> str:
    """The explanation of ``definition`` as plain text (``lang``: ``"zh"`` or ``"en"``)."""
    return render_plain(explain_blocks(definition, lang))


def display_width(text: str) -> int:
    """How many terminal columns ``text`` takes: wide and full-width characters (汉字, ，) take two."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def render_plain(blocks: Iterable[Block]) -> str:
    """Blocks as plain text: headings underlined or numbered, tables with aligned columns, no trailing spaces."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            if block.level == 0:
                out.extend([block.text, "=" * display_width(block.text)])
            elif block.level == 1:
                out.extend(["", block.text, "-" * display_width(block.text)])
            else:
                out.extend(["", block.text])
        elif isinstance(block, Line):
            out.append(("  " * block.indent + block.text).rstrip())
        else:
            out.extend(_plain_table(block))
    return "\n".join(out).strip("\n") + "\n"


def _plain_table(table: Table) -> list[str]:
    columns = len(table.headers)
    widths = [display_width(header) for header in table.headers]
    for row in table.rows:
        for index in range(columns):
            widths[index] = max(widths[index], display_width(row[index]))
    prefix = "  " * table.indent

    def line(cells: Sequence[str]) -> str:
        padded = [cell + " " * (widths[index] - display_width(cell)) for index, cell in enumerate(cells)]
        return (prefix + "  ".join(padded)).rstrip()

    return [line(table.headers), line(["-" * width for width in widths]), *(line(row) for row in table.rows)]


# --- building the explanation -----------------------------------------------------------------------------

_NUMERALS = "一二三四五六七八九十"
_WEEKDAYS_ZH = "一二三四五六日"
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_OPS = {
    "eq": ("等于", "equal to"),
    "ne": ("不等于", "other than"),
    "gt": ("大于", "greater than"),
    "ge": ("不小于", "at least"),
    "lt": ("小于", "less than"),
    "le": ("不大于", "at most"),
}
_EFFECTS = {
    "new_submission": ("新的申请（一次性告知重新起算）", "new submission (the one-time notice rule starts afresh)"),
    "issue_deficiency_notice": ("发出一次性补正告知（容缺受理）", "issue the one-time deficiency notice (容缺受理)"),
    "cure_deficiency": ("补正完成", "deficiency cured"),
    "record_commitment": ("记录承诺（告知承诺制）", "record a commitment (告知承诺制)"),
    "verify_commitment": ("核查承诺", "verify the commitment"),
    "breach_commitment": ("承诺违约", "commitment breached"),
}
_OUTCOMES = {"open": ("办理中", "open"), "done": ("办结", "done"), "failed": ("未通过", "failed")}
_GROUP_KINDS = {
    "approval": ("审批", "approval"),
    "acceptance": ("验收", "acceptance"),
    "support": ("要素保障", "support"),
    "review": ("论证评审", "review"),
}
_DEPARTMENT_KINDS = {
    "department": ("县级部门", "county department"),
    "township": ("乡镇（街道）", "township"),
    "enterprise": ("企业", "enterprise"),
    "ndrc": ("发展改革部门", "development and reform"),
    "leader": ("县领导", "county leader"),
    "task_force": ("工作专班", "task force"),
    "other": ("其他", "other"),
}
_FIELD_TYPES = {
    "string": ("文本", "text"),
    "text": ("长文本", "long text"),
    "integer": ("整数", "integer"),
    "decimal": ("数字", "number"),
    "date": ("日期", "date"),
    "boolean": ("是/否", "yes/no"),
    "choice": ("选项", "choice"),
    "attachments": ("附件", "attachments"),
}
_RECIPIENTS = {
    "lead_unit": ("牵头责任单位", "lead unit"),
    "implementing_unit": ("项目实施单位", "implementing unit"),
    "lead_leader": ("牵头县领导", "lead county leader"),
    "department": ("承办部门", "the item's department"),
    "dispatcher": ("县重点项目事务中心", "major-projects dispatch centre"),
    "task_force": ("县工作专班", "county task force"),
    "leading_group": ("县重大战略推进领导小组", "county leading group"),
}
_MEASURES = {
    "progress_gap_pp": ("滞后序时进度（百分点）", "behind the pro-rata schedule (percentage points)"),
    "months_not_started": ("计划开工后仍未开工（月）", "months past the planned start, not started"),
    "overdue_deadlines": ("逾期时限（项）", "overdue deadlines"),
    "escalation_level": ("调度升级级别", "escalation level reached"),
}
_COLORS = {"yellow": ("黄灯", "yellow"), "red": ("红灯", "red")}
_HOLIDAY_RULES = {
    "next_working_day": ("遇节假日顺延至下一工作日", "moved to the next working day when not a working day"),
    "previous_working_day": ("遇节假日提前至上一工作日", "moved to the previous working day when not a working day"),
    "keep": ("遇节假日不调整", "kept even when not a working day"),
}


class _Explainer:
    """Builds the blocks of one definition's explanation in one language."""

    def __init__(self, definition: Definition, lang: str) -> None:
        self.d = definition
        self.en = lang == "en"
        self.blocks: list[Block] = []
        self.section = 0

    # -- words ---------------------------------------------------------------------------------------------

    def w(self, zh: str, en: str) -> str:
        """The Chinese or English wording."""
        return en if self.en else zh

    def pick(self, pair: tuple[str, str]) -> str:
        return pair[1] if self.en else pair[0]

    def t(self, entry: object) -> str:
        """An entry's title in the chosen language (English where the definition has it)."""
        title_en = getattr(entry, "title_en", None)
        return str(title_en) if self.en and title_en else str(getattr(entry, "title", ""))

    def q(self, text: str) -> str:
        """``text`` in quotation marks."""
        return f"'{text}'" if self.en else f"“{text}”"

    def paren(self, text: str) -> str:
        """``text`` in brackets: full-width in Chinese."""
        return f" ({text})" if self.en else f"（{text}）"

    def subheading(self, text: str, ident: str | None = None) -> None:
        self.blocks.append(Heading(text + (self.paren(ident) if ident else ""), 2))

    def join(self, parts: Iterable[str]) -> str:
        items = [part for part in parts if part]
        return (", " if self.en else "、").join(items) if items else _NONE

    def titled(self, table: str, ident: str) -> str:
        entry = self.d.lookup(table).get(ident)
        return self.t(entry) if entry is not None else ident

    def states(self, ids: Iterable[str]) -> str:
        return self.join(self.state_name(ident) for ident in ids)

    def state_name(self, ident: str) -> str:
        if ident == ANY_STATE:
            return self.w("任一进行中状态", "any active state")
        if ident == PREVIOUS_STATE:
            return self.w("暂缓前所在状态", "the state before the hold")
        return self.titled("states", ident)

    def machine_states(self, machine: TaskMachine, ids: Iterable[str]) -> str:
        titles = {state.id: self.t(state) for state in machine.states}
        return self.join(titles.get(ident, ident) for ident in ids)

    def roles(self, ids: Iterable[str]) -> str:
        return self.join(self.titled("roles", ident) for ident in ids)

    def duration(self, duration: Duration | None) -> str:
        return _NONE if duration is None else _duration_text(duration, self.en)

    def field_value(self, field_id: str, value: object) -> str:
        spec: FieldSpec | None = self.d.field(field_id)
        if isinstance(value, bool):
            text = self.w("是", "yes") if value else self.w("否", "no")
        elif isinstance(value, Decimal):
            text = format(value.normalize(), "f") if value == value.to_integral_value() else str(value)
        else:
            text = str(value)
        if spec is not None and spec.unit and spec.type in ("integer", "decimal"):
            text += f" {spec.unit}"
        return text

    # -- structure -----------------------------------------------------------------------------------------

    def heading(self, zh: str, en: str) -> None:
        self.section += 1
        number = f"{self.section}. " if self.en else (_chinese_number(self.section) + "、")
        self.blocks.append(Heading(number + self.w(zh, en), 1))

    def line(self, text: str, indent: int = 0) -> None:
        self.blocks.append(Line(text, indent))

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[str]], indent: int = 1) -> None:
        self.blocks.append(Table(tuple(headers), tuple(tuple(row) for row in rows), indent))

    # -- sections ------------------------------------------------------------------------------------------

    def build(self) -> list[Block]:
        d = self.d
        self.blocks.append(Heading(f"{self.t(d)}（{d.key}）" if not self.en else f"{self.t(d)} ({d.key})", 0))
        if d.description:
            self.line(d.description)
        self.line(self.w("初始状态：", "Initial state: ") + self.state_name(d.initial))
        self.phases()
        self.project_states()
        self.transitions()
        self.gates()
        self.task_groups()
        self.machines()
        self.project_clocks()
        self.ladders()
        self.obligations()
        self.traffic_lights()
        self.organisation()
        return self.blocks

    def phases(self) -> None:
        d = self.d
        self.heading("阶段、步骤与状态", "Phases, steps and states")
        placed: set[str] = set()
        for phase in d.phases:
            self.subheading(self.t(phase), phase.id)
            steps = [step for step in d.steps if step.phase == phase.id]
            in_phase = [state for state in d.states if state.phase == phase.id]
            for step in steps:
                doing = [state.id for state in in_phase if step.number in state.steps]
                placed.update(doing)
                self.line(
                    self.w(f"步骤 {step.number}  {self.t(step)}", f"Step {step.number}  {self.t(step)}")
                    + self.w("：", ": ")
                    + (self.states(doing) if doing else self.w("（无对应状态）", "(no state)")),
                    1,
                )
            rest = [state.id for state in in_phase if state.id not in placed]
            if rest:
                self.line(self.w("其他状态：", "Other states: ") + self.states(rest), 1)
                placed.update(rest)
        unphased = [state.id for state in d.states if state.id not in placed and state.phase not in d.lookup("phases")]
        if unphased:
            self.blocks.append(Heading(self.w("不属于任何阶段的状态", "States outside the phases"), 2))
            self.line(self.states(unphased), 1)

    def project_states(self) -> None:
        self.heading("项目状态", "Project states")
        rows = []
        for state in self.d.states:
            notes = []
            if state.id == self.d.initial:
                notes.append(self.w("初始", "initial"))
            if state.hold:
                notes.append(self.w("暂缓（可返回原状态）", "holding (returns to where it was)"))
            if state.terminal:
                notes.append(self.w("终结", "terminal"))
            rows.append(
                (
                    self.t(state),
                    state.id,
                    self.titled("phases", state.phase) if state.phase else _NONE,
                    self.join(str(number) for number in state.steps),
                    self.join(self.titled("task_groups", group) for group in state.opens),
                    self.join(notes),
                )
            )
        self.table(
            [
                self.w("状态", "State"),
                self.w("标识", "Id"),
                self.w("阶段", "Phase"),
                self.w("步骤", "Steps"),
                self.w("进入时开启的任务组", "Opens task groups"),
                self.w("说明", "Notes"),
            ],
            rows,
        )

    def transitions(self) -> None:
        """One entry per transition: its title and trigger, from → to, who may fire it, its gate and the
        data it needs (a table would be too wide to read: sources and role lists are long)."""
        self.heading("状态流转", "Transitions")
        sep = "; " if self.en else "；"
        for transition in self.d.transitions:
            self.line(
                self.t(transition)
                + self.paren(transition.trigger)
                + self.w("：", ": ")
                + self.states(transition.source)
                + " → "
                + self.state_name(transition.dest),
                1,
            )
            self.line(self.w("可执行：", "Who may fire: ") + self.roles(transition.roles), 2)
            if transition.gate:
                self.line(self.w("关卡：", "Gate: ") + self.q(self.titled("gates", transition.gate)), 2)
            needs = []
            if transition.requires_fields:
                needs.append(
                    self.w("须填：", "Requires: ")
                    + self.join(self.titled("fields", ident) for ident in transition.requires_fields)
                )
            extra = [ident for ident in transition.accepts_fields if ident not in transition.requires_fields]
            if extra:
                needs.append(
                    self.w("可录入：", "Accepts: ") + self.join(self.titled("fields", ident) for ident in extra)
                )
            if transition.comment_required:
                needs.append(self.w("须填写说明", "A comment is required"))
            if needs:
                self.line(sep.join(needs), 2)

    def gates(self) -> None:
        if not self.d.gates:
            return
        self.heading("关卡", "Gates")
        for gate in self.d.gates:
            used_by = [self.t(t) for t in self.d.transitions if t.gate == gate.id]
            self.subheading(self.q(self.t(gate)), gate.id)
            if gate.description:
                self.line(gate.description, 1)
            self.line(self.w("用于：", "Used by: ") + self.join(used_by), 1)
            self.line(self.gate_mode(gate), 1)
            for number, condition in enumerate(gate.conditions, start=1):
                self.condition(condition, f"{number}. ", 2)

    def gate_mode(self, gate: Gate) -> str:
        if gate.mode == "all":
            return self.w("须全部满足以下条件：", "All of these must hold:")
        return self.w("满足以下任一条件即可：", "Any one of these suffices:")

    def condition(self, condition: Condition, bullet: str, indent: int) -> None:
        """Lines for one condition; ``all``/``any`` nest their parts one level deeper."""
        parts = condition.all if condition.all is not None else condition.any
        if parts is not None:
            if condition.all is not None:
                head = self.w("同时满足", "all of")
            else:
                head = self.w("至少满足其一", "at least one of")
            self.line(bullet + head + self.unmet_hint(condition) + self.w("：", ":"), indent)
            for part in parts:
                self.condition(part, "· ", indent + 1)
            return
        self.line(bullet + self.condition_text(condition) + self.unmet_hint(condition), indent)

    def phrase(self, condition: Condition, nested: bool = False) -> str:
        """One condition on one line (``all``/``any`` parts joined, nested groups bracketed)."""
        parts = condition.all if condition.all is not None else condition.any
        if parts is None:
            return self.condition_text(condition) + self.unmet_hint(condition)
        head = self.w("同时满足", "all of") if condition.all is not None else self.w("至少满足其一", "at least one of")
        body = ("; " if self.en else "；").join(self.phrase(part, nested=True) for part in parts)
        text = head + self.w("：", ": ") + body
        if nested:
            text = f"[{text}]" if self.en else f"〔{text}〕"
        return text + self.unmet_hint(condition)

    def unmet_hint(self, condition: Condition) -> str:
        """A condition's own ``title`` is the message shown when it is not met (it replaces the generated one)."""
        if not condition.title:
            return ""
        return self.paren(self.w("未满足时提示：", "message when unmet: ") + self.t(condition))

    def condition_text(self, condition: Condition) -> str:
        """One leaf condition in words, e.g. “并联审批”全部办结."""
        if condition.group_done is not None:
            group = self.q(self.titled("task_groups", condition.group_done))
            return self.w(f"{group}全部办结", f"every required item of {group} is done")
        if condition.item_done is not None:
            ref = condition.item_done
            task_group = self.d.lookup("task_groups").get(ref.group)
            items = task_group.items if task_group is not None else []
            name = self.q(next((self.t(i) for i in items if i.id == ref.item), ref.item))
            return self.w(f"{name}已办结", f"{name} is done")
        if condition.no_open_deficiency is not None:
            scope = self.scope(condition.no_open_deficiency.group)
            if scope:
                return self.w(f"{scope}中无未补正的补正告知", f"no uncured deficiency notice in {scope}")
            return self.w("无未补正的补正告知", "no uncured deficiency notice")
        if condition.commitments_verified is not None:
            scope = self.scope(condition.commitments_verified.group)
            if scope:
                return self.w(f"{scope}中的承诺均已核查通过", f"every commitment in {scope} is verified")
            return self.w("所有承诺均已核查通过", "every commitment is verified")
        if condition.no_overdue_deadlines is not None:
            scope = self.scope(condition.no_overdue_deadlines.group)
            if scope:
                return self.w(f"{scope}中无逾期未办的时限", f"no overdue deadline in {scope}")
            return self.w("无逾期未办的时限", "no overdue deadline")
        if condition.field_present is not None:
            field = self.q(self.titled("fields", condition.field_present))
            return self.w(f"已填写{field}", f"{field} is filled in")
        if condition.field_compare is not None:
            compare = condition.field_compare
            field = self.q(self.titled("fields", compare.field))
            value = self.field_value(compare.field, compare.value)
            op = self.pick(_OPS[compare.op])
            return f"{field} {op} {value}" if self.en else f"{field}{op} {value}"
        return condition.kind  # pragma: no cover - all/any are handled by condition()

    def scope(self, group: str | None) -> str | None:
        """The quoted title of the task group a condition is limited to, or None for the whole project."""
        return self.q(self.titled("task_groups", group)) if group else None

    def task_groups(self) -> None:
        if not self.d.task_groups:
            return
        self.heading("任务组与事项", "Task groups and items")
        openers = {group: state.id for state in self.d.states for group in state.opens}
        for group in self.d.task_groups:
            self.subheading(self.q(self.t(group)), group.id)
            facts = [
                self.pick(_GROUP_KINDS[group.kind]) + self.w("类", ""),
                self.w("并联办理（互不为前置）", "parallel (互不为前置: none is a prerequisite of another)")
                if group.parallel
                else self.w("按前置顺序办理", "in prerequisite order"),
                self.w("办理流程：", "follows ") + self.titled("task_machines", group.machine),
            ]
            if group.notice_machine:
                facts.append(
                    self.w("补正告知流程：", "notices follow ") + self.titled("task_machines", group.notice_machine)
                )
            opener = openers.get(group.id)
            facts.append(
                self.w("进入", "opened on entering ") + self.q(self.state_name(opener)) + self.w("时开启", "")
                if opener
                else self.w("不由任何状态开启", "opened by no state")
            )
            self.line(("；" if not self.en else "; ").join(facts), 1)
            if group.description:
                self.line(group.description, 1)
            self.table(
                [
                    self.w("事项", "Item"),
                    self.w("办理部门", "Department"),
                    self.w("办理时限", "Time limit"),
                    self.w("必办", "Required"),
                    self.w("承诺制", "Commitment"),
                    self.w("容缺补正期", "Cure period"),
                    self.w("前置事项", "Prerequisites"),
                ],
                [self.item_row(group.items, item) for item in group.items],
                indent=1,
            )
            for item in group.items:
                details = self.item_details(item)
                if details:
                    self.line(self.t(item) + self.w("：", ": "), 1)
                    for detail in details:
                        self.line(detail, 2)

    def item_row(self, items: Sequence[Item], item: Item) -> tuple[str, ...]:
        titles = {other.id: self.t(other) for other in items}
        return (
            self.t(item),
            self.titled("departments", item.department),
            self.duration(item.time_limit),
            self.w("是", "yes") if item.required else self.w("否", "no"),
            self.w("是", "yes") if item.commitment else self.w("否", "no"),
            self.duration(item.cure_period),
            self.join(titles.get(ident, ident) for ident in item.prerequisites),
        )

    def item_details(self, item: Item) -> list[str]:
        details = []
        if item.materials:
            marks = []
            for material in item.materials:
                notes = [self.w("核心", "core") if material.core else self.w("非核心", "non-core")]
                if material.id in item.deficiency_allowed:
                    notes.append(self.w("可容缺", "may be missing (容缺)"))
                marks.append(self.t(material) + self.w(f"（{'，'.join(notes)}）", f" ({', '.join(notes)})"))
            details.append(self.w("材料：", "Materials: ") + ("; " if self.en else "；").join(marks))
        if item.legal_basis:
            details.append(self.w("依据：", "Legal basis: ") + item.legal_basis)
        if item.description:
            details.append(item.description)
        return details

    def machines(self) -> None:
        if not self.d.task_machines:
            return
        self.heading("事项与补正告知的办理流程", "Item and notice machines")
        for machine in self.d.task_machines:
            subject = self.w("事项", "items") if machine.subject == "item" else self.w("补正告知", "deficiency notices")
            self.blocks.append(
                Heading(
                    f"{self.q(self.t(machine))}（{machine.id}，用于{subject}）"
                    if not self.en
                    else f"{self.q(self.t(machine))} ({machine.id}, for {subject})",
                    2,
                )
            )
            self.line(self.w("初始状态：", "Initial state: ") + self.machine_states(machine, [machine.initial]), 1)
            for outcome in ("open", "done", "failed"):
                titles = [self.t(state) for state in machine.states if state.outcome == outcome]
                if titles:
                    self.line(self.pick(_OUTCOMES[outcome]) + self.w("状态：", " states: ") + self.join(titles), 1)
            rows = []
            for transition in machine.transitions:
                effects = [self.pick(_EFFECTS[effect]) for effect in transition.effects]
                if transition.then_parent:
                    parent = self.parent_trigger_title(machine, transition.then_parent)
                    effects.append(self.w(f"随后所属事项{self.q(parent)}", f"then the item: {self.q(parent)}"))
                if transition.comment_required:
                    effects.append(self.w("须填写说明", "comment required"))
                rows.append(
                    (
                        self.t(transition),
                        transition.trigger,
                        self.machine_states(machine, transition.source),
                        self.machine_states(machine, [transition.dest]),
                        self.roles(transition.roles),
                        ("；" if not self.en else "; ").join(effects) or _NONE,
                    )
                )
            self.table(
                [
                    self.w("操作", "Action"),
                    self.w("触发器", "Trigger"),
                    self.w("从", "From"),
                    self.w("到", "To"),
                    self.w("可执行角色", "Who may fire"),
                    self.w("效果", "Effects"),
                ],
                rows,
            )
            if machine.clocks:
                self.line(self.w("计时：", "Clocks:"), 1)
                self.clock_table(machine.clocks, machine)

    def parent_trigger_title(self, notice_machine: TaskMachine, trigger: str) -> str:
        """The title of ``trigger`` on the item machines whose notices follow ``notice_machine``."""
        for group in self.d.task_groups:
            if group.notice_machine != notice_machine.id:
                continue
            parent = self.d.lookup("task_machines").get(group.machine)
            if parent is None:
                continue
            for transition in parent.transitions:
                if transition.trigger == trigger:
                    return self.t(transition)
        return trigger

    def clock_table(self, clocks: Sequence[Clock], machine: TaskMachine | None) -> None:
        rows = []
        for clock in clocks:
            if machine is None:
                running = self.states(clock.runs_in)
                paused = self.states(clock.paused_in)
                triggers = {t.trigger: self.t(t) for t in self.d.transitions}
            else:
                running = self.machine_states(machine, clock.runs_in)
                paused = self.machine_states(machine, clock.paused_in)
                triggers = {t.trigger: self.t(t) for t in machine.transitions}
            rows.append(
                (
                    self.t(clock),
                    self.clock_basis(clock),
                    running,
                    paused,
                    triggers.get(clock.on_expiry, clock.on_expiry) if clock.on_expiry else _NONE,
                    self.titled("ladders", clock.ladder) if clock.ladder else _NONE,
                )
            )
        self.table(
            [
                self.w("时限", "Clock"),
                self.w("期限", "Runs for"),
                self.w("计时状态", "Runs in"),
                self.w("暂停状态", "Paused in"),
                self.w("到期触发", "On expiry"),
                self.w("逾期调度", "Escalation"),
            ],
            rows,
            indent=2 if machine is not None else 1,
        )

    def clock_basis(self, clock: Clock) -> str:
        if clock.basis == "duration":
            return self.duration(clock.duration)
        if clock.basis == "item_time_limit":
            return self.w("事项办理时限", "the item's time limit")
        if clock.basis == "cure_date":
            return self.w("至告知书写明的补正日期", "until the cure date on the notice")
        field = self.q(self.titled("fields", clock.field or ""))
        return self.w(f"至{field}所填日期", f"until the date in {field}")

    def project_clocks(self) -> None:
        if not self.d.clocks:
            return
        self.heading("项目时限", "Project clocks")
        self.clock_table(self.d.clocks, None)

    def ladders(self) -> None:
        if not self.d.ladders:
            return
        self.heading("调度阶梯", "Escalation ladders")
        for ladder in self.d.ladders:
            self.subheading(self.q(self.t(ladder)), ladder.id)
            rows = []
            for level in ladder.levels:
                after = (
                    self.w("到期即启动", "when due")
                    if level.after.days == 0
                    else self.w(f"逾期{self.duration(level.after)}后", f"{self.duration(level.after)} after due")
                )
                rows.append(
                    (
                        self.w(f"第{level.level}级", f"level {level.level}"),
                        self.t(level),
                        after,
                        self.join(self.pick(_RECIPIENTS.get(r, (r, r))) for r in level.notify),
                        level.notice.kind if level.notice else _NONE,
                    )
                )
            self.table(
                [
                    self.w("级别", "Level"),
                    self.w("名称", "Title"),
                    self.w("启动时间", "Starts"),
                    self.w("通知对象", "Notifies"),
                    self.w("文书", "Notice"),
                ],
                rows,
            )
            for level in ladder.levels:
                if level.notice:
                    self.line(
                        self.w(
                            f"第{level.level}级{level.notice.kind}模板：", f"Level {level.level} {level.notice.kind}: "
                        )
                        + " ".join(level.notice.template.split()),
                        1,
                    )

    def obligations(self) -> None:
        if not self.d.obligations:
            return
        self.heading("定期报送", "Recurring reports")
        rows = []
        for obligation in self.d.obligations:
            rows.append(
                (
                    self.t(obligation),
                    _due_text(obligation, self.en),
                    self.states(obligation.applies_in),
                    self.roles(obligation.roles),
                    self.titled("ladders", obligation.ladder) if obligation.ladder else _NONE,
                )
            )
        self.table(
            [
                self.w("报送事项", "Report"),
                self.w("截止时间", "Due"),
                self.w("适用状态", "Applies in"),
                self.w("报送角色", "Reported by"),
                self.w("逾期调度", "Escalation"),
            ],
            rows,
        )
        for obligation in self.d.obligations:
            if obligation.fields:
                self.line(
                    self.t(obligation)
                    + self.w("填报：", " asks for: ")
                    + self.join(self.field_label(spec) for spec in obligation.fields),
                    1,
                )
            rule = self.pick(_HOLIDAY_RULES[obligation.due.holiday_rule])
            self.line(self.t(obligation) + self.w("：", ": ") + rule, 1)

    def field_label(self, spec: FieldSpec) -> str:
        parts = [self.pick(_FIELD_TYPES[spec.type])]
        if spec.unit:
            parts.append(spec.unit)
        return self.t(spec) + self.w(f"（{'，'.join(parts)}）", f" ({', '.join(parts)})")

    def traffic_lights(self) -> None:
        lights = self.d.traffic_lights
        if lights is None:
            return
        self.heading("红黄绿灯", "Traffic lights")
        self.line(
            self.w(
                "取所适用的最严重灯色；都不适用时为绿灯。",
                "The worst band that applies sets the colour; when none applies the light is green.",
            ),
            1,
        )
        rows = [
            (
                self.pick(_COLORS[band.color]),
                self.pick(_MEASURES[band.measure]),
                f"≥ {_decimal(band.at_least)}",
                self.t(band),
            )
            for band in lights.bands
        ]
        self.table(
            [
                self.w("灯色", "Colour"),
                self.w("指标", "Measure"),
                self.w("阈值", "Threshold"),
                self.w("说明", "Meaning"),
            ],
            rows,
        )
        if lights.not_started_states:
            self.line(self.w("视为未开工的状态：", "Not-started states: ") + self.states(lights.not_started_states), 1)
        if lights.progress_states:
            self.line(self.w("考核序时进度的状态：", "Progress measured in: ") + self.states(lights.progress_states), 1)
        used = [
            (self.w("计划开工日期字段", "planned start field"), lights.planned_start_field),
            (self.w("年度计划投资字段", "annual plan field"), lights.annual_plan_field),
            (self.w("已完成投资字段", "completed investment field"), lights.completed_field),
        ]
        for label, field in used:
            if field:
                self.line(f"{label}{self.w('：', ': ')}{self.titled('fields', field)}", 1)

    def organisation(self) -> None:
        d = self.d
        self.heading("角色、部门与字段", "Roles, departments and fields")
        self.blocks.append(Heading(self.w("角色", "Roles"), 2))
        self.table(
            [self.w("角色", "Role"), self.w("标识", "Id"), self.w("可见范围", "Sees")],
            [
                (
                    self.t(role),
                    role.id,
                    self.w("全县项目", "every project")
                    if role.spans_county
                    else self.w("本单位项目", "own unit's projects"),
                )
                for role in d.roles
            ],
        )
        if d.departments:
            self.blocks.append(Heading(self.w("部门", "Departments"), 2))
            self.table(
                [self.w("部门", "Department"), self.w("标识", "Id"), self.w("类别", "Kind")],
                [(self.t(dept), dept.id, self.pick(_DEPARTMENT_KINDS[dept.kind])) for dept in d.departments],
            )
        if d.fields:
            self.blocks.append(Heading(self.w("项目字段", "Project fields"), 2))
            self.table(
                [
                    self.w("字段", "Field"),
                    self.w("标识", "Id"),
                    self.w("类型", "Type"),
                    self.w("单位", "Unit"),
                    self.w("必填", "Required"),
                ],
                [
                    (
                        self.t(spec),
                        spec.id,
                        self.pick(_FIELD_TYPES[spec.type]),
                        spec.unit or _NONE,
                        self.w("是", "yes") if spec.required else self.w("否", "no"),
                    )
                    for spec in d.fields
                ],
            )
            for spec in d.fields:
                if spec.choices:
                    self.line(self.t(spec) + self.w("可选：", " choices: ") + self.join(spec.choices), 1)


def describe_duration(duration: Duration, lang: str = "zh") -> str:
    """A duration in words: “20个工作日”, “7个自然日”; in English “20 working days”."""
    return _duration_text(duration, lang == "en")


def describe_due(obligation: Obligation, lang: str = "zh") -> str:
    """When a recurring obligation is due: “每周一 18:00前”, “每年10月最后一日 18:00前”."""
    return _due_text(obligation, lang == "en")


def describe_condition(condition: Condition, definition: Definition, lang: str = "zh") -> str:
    """A gate condition of ``definition`` in words, on one line: “并联审批”全部办结, “总投资”不小于 5000 万元;
    ``all``/``any`` list their parts after a colon, nested ones in brackets."""
    return _Explainer(definition, lang).phrase(condition)


def explain_blocks(definition: Definition, lang: str = "zh") -> list[Block]:
    """The explanation of ``definition`` as blocks (``lang``: ``"zh"`` or ``"en"``; English titles are used
    where the definition has them, Chinese otherwise)."""
    return _Explainer(definition, lang).build()


def _chinese_number(number: int) -> str:
    """一 … 九十九 (section numbers)."""
    if number <= 10:
        return _NUMERALS[number - 1]
    tens, units = divmod(number, 10)
    head = "" if tens == 1 else _NUMERALS[tens - 1]
    return head + "十" + (_NUMERALS[units - 1] if units else "")


def _decimal(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)


def _duration_text(duration: Duration, english: bool) -> str:
    if english:
        unit = "working day" if duration.unit == "working_days" else "calendar day"
        return f"{duration.days} {unit}{'' if duration.days == 1 else 's'}"
    return f"{duration.days}个{'工作日' if duration.unit == 'working_days' else '自然日'}"


def _due_text(obligation: Obligation, english: bool) -> str:
    """The due rule in words, e.g. 每周一 18:00前, 每年10月最后一日 18:00前."""
    due: DueRule = obligation.due
    if english:
        day = "the last day" if due.last_day else f"day {due.day}"
        if obligation.recurrence == "weekly":
            when = f"every {_WEEKDAYS_EN[(due.weekday or 1) - 1]}"
        elif obligation.recurrence == "monthly":
            when = f"{day} of every month"
        elif obligation.recurrence == "quarterly":
            when = f"{day} of month {due.month_of_quarter} of every quarter"
        else:
            when = f"{day} of month {due.month} every year"
        return f"{when}, by {due.time}"
    day = "最后一日" if due.last_day else f"{due.day}日"
    if obligation.recurrence == "weekly":
        when = f"每周{_WEEKDAYS_ZH[(due.weekday or 1) - 1]}"
    elif obligation.recurrence == "monthly":
        when = f"每月{day}"
    elif obligation.recurrence == "quarterly":
        month = {1: "首月", 2: "第二个月", 3: "末月"}.get(due.month_of_quarter or 1, "")
        when = f"每季度{month}{day}"
    else:
        when = f"每年{due.month}月{day}"
    return f"{when} {due.time}前"
