"""What changed between two versions of a definition, said so that an administrator can read it.

:func:`diff_definitions` compares two :class:`~lifecycle.spec.models.Definition` objects and returns a
:class:`DefinitionDiff`: one :class:`DiffEntry` per thing added, removed or changed, grouped in sections
(states, transitions, gates, gate conditions, task groups, items, materials, clocks, ladders, obligations…),
each with its id, its Chinese title and, for a change, every attribute that differs (before → after).
:func:`render_text` writes it out in Chinese (or English), ids beside the titles; :meth:`DefinitionDiff.as_json`
is the structured form the REST API returns.

How things are matched between the versions:

* by id within their section (states, gates, groups, clocks…); an item is ``group.item``, a material
  ``group.item.material``, a task-machine state ``machine.state``, a machine clock ``machine.clock``, a ladder
  level ``ladder.level``, a step its number;
* a project transition by its trigger, the n-th transition of one trigger being ``trigger#n`` (n ≥ 2);
* a gate condition by what it says (its kind and argument, not its wording): a condition whose argument
  changes is a different condition (one removed, one added); one whose ``title`` changes is changed;
* an entry whose parent was added or removed is not listed again (an added item's materials are part of the
  item's entry).

A changed id is a removal plus an addition. When a removed state and an added state have the same title, the
diff says it looks like a rename (:attr:`DefinitionDiff.state_renames`): that is only a hint (migrations still
map states explicitly), but it is the mapping an administrator usually wants.

Pure: no database, no clock; the same two definitions always give the same diff.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lifecycle.spec.models import Condition, Definition

__all__ = [
    "SECTIONS",
    "AttributeChange",
    "DefinitionDiff",
    "DiffEntry",
    "describe_condition",
    "diff_definitions",
    "format_value",
    "render_text",
]

Op = Literal["added", "removed", "changed"]

SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("definition", "定义", "definition"),
    ("phases", "阶段", "phases"),
    ("steps", "步骤", "steps"),
    ("roles", "角色", "roles"),
    ("departments", "部门", "departments"),
    ("fields", "数据字段", "fields"),
    ("states", "状态", "states"),
    ("transitions", "转换", "transitions"),
    ("gates", "关卡", "gates"),
    ("conditions", "关卡条件", "gate conditions"),
    ("task_machines", "事项机", "task machines"),
    ("machine_states", "事项机状态", "task-machine states"),
    ("machine_transitions", "事项机转换", "task-machine transitions"),
    ("groups", "事项组", "task groups"),
    ("items", "事项", "items"),
    ("materials", "申请材料", "materials"),
    ("clocks", "时钟（时限）", "clocks"),
    ("ladders", "调度阶梯", "escalation ladders"),
    ("ladder_levels", "调度阶梯级别", "ladder levels"),
    ("obligations", "报送义务", "reporting obligations"),
    ("traffic_lights", "红黄绿灯规则", "traffic-light rules"),
)
"""Every section, in the order the diff lists them: (id, Chinese title, English title)."""

_SECTION_TITLES = {section: (zh, en) for section, zh, en in SECTIONS}

# Attribute names as an administrator reads them (zh, en). Unknown attributes are shown by name.
_LABELS: dict[str, tuple[str, str]] = {
    "title": ("标题", "title"),
    "title_en": ("英文标题", "English title"),
    "description": ("说明", "description"),
    "schema_version": ("格式版本", "format version"),
    "initial": ("初始状态", "initial state"),
    "phase": ("所属阶段", "phase"),
    "number": ("编号", "number"),
    "steps": ("步骤", "steps"),
    "terminal": ("终止状态", "terminal"),
    "hold": ("暂缓状态", "holding state"),
    "opens": ("进入时开启的事项组", "groups opened on entry"),
    "from": ("起始状态", "from"),
    "to": ("目标状态", "to"),
    "roles": ("可执行角色", "roles"),
    "gate": ("关卡", "gate"),
    "requires_fields": ("须填写的字段", "required fields"),
    "accepts_fields": ("可填写的字段", "accepted fields"),
    "comment_required": ("须填写说明", "comment required"),
    "mode": ("条件方式", "condition mode"),
    "kind": ("类别", "kind"),
    "parallel": ("并联办理（互不为前置）", "parallel (no prerequisites)"),
    "machine": ("事项机", "machine"),
    "notice_machine": ("补正告知机", "notice machine"),
    "department": ("办理部门", "department"),
    "time_limit": ("办理时限", "time limit"),
    "deficiency_allowed": ("可容缺的材料", "materials that may be missing"),
    "cure_period": ("补正期限", "cure period"),
    "commitment": ("告知承诺制", "commitment (承诺制)"),
    "required": ("必须办结", "required"),
    "prerequisites": ("前置事项", "prerequisites"),
    "legal_basis": ("法律依据", "legal basis"),
    "core": ("主审要件", "core material"),
    "basis": ("计时依据", "basis"),
    "duration": ("时长", "duration"),
    "field": ("字段", "field"),
    "runs_in": ("计时的状态", "runs in"),
    "paused_in": ("暂停计时的状态", "paused in"),
    "on_expiry": ("到期自动触发", "on expiry"),
    "ladder": ("调度阶梯", "ladder"),
    "subject": ("适用对象", "subject"),
    "outcome": ("结果", "outcome"),
    "effects": ("效果", "effects"),
    "then_parent": ("联动事项的触发", "then parent"),
    "level": ("级别", "level"),
    "after": ("到期后多久", "after"),
    "notify": ("通知对象", "notify"),
    "notice": ("通知模板", "notice"),
    "recurrence": ("周期", "recurrence"),
    "due": ("报送时间", "due"),
    "applies_in": ("适用状态", "applies in"),
    "fields": ("字段", "fields"),
    "type": ("类型", "type"),
    "choices": ("选项", "choices"),
    "unit": ("单位", "unit"),
    "max_length": ("最大长度", "max length"),
    "spans_county": ("全县范围", "county-wide"),
    "bands": ("档位", "bands"),
    "not_started_states": ("未开工状态", "not-started states"),
    "progress_states": ("计算序时进度的状态", "progress states"),
    "planned_start_field": ("计划开工日期字段", "planned-start field"),
    "annual_plan_field": ("年度计划投资字段", "annual-plan field"),
    "completed_field": ("累计完成投资字段", "completed field"),
}

# Attributes whose values are ids of another section: shown with that entry's title.
_REFERENCES: dict[str, str] = {
    "initial": "states",
    "from": "states",
    "to": "states",
    "runs_in": "states",
    "paused_in": "states",
    "applies_in": "states",
    "not_started_states": "states",
    "progress_states": "states",
    "opens": "groups",
    "gate": "gates",
    "department": "departments",
    "machine": "task_machines",
    "notice_machine": "task_machines",
    "ladder": "ladders",
    "phase": "phases",
    "roles": "roles",
    "requires_fields": "fields",
    "accepts_fields": "fields",
    "field": "fields",
    "planned_start_field": "fields",
    "annual_plan_field": "fields",
    "completed_field": "fields",
}

_UNITS = {"working_days": ("个工作日", "working days"), "calendar_days": ("个日历日", "calendar days")}


@dataclass(frozen=True)
class AttributeChange:
    """One attribute that differs: its name and its JSON value before and after (None when absent)."""

    attribute: str
    before: Any
    after: Any


@dataclass(frozen=True)
class DiffEntry:
    """One thing added, removed or changed.

    Attributes:
        section: which kind of thing (see :data:`SECTIONS`).
        id: its id within the section (``permitting.construction_permit`` for an item).
        op: ``added``, ``removed`` or ``changed``.
        title: its Chinese title (the new one; the old one when removed).
        title_en: its English title, if any.
        parent: the id of what it belongs to (the gate of a condition, the group of an item…), else None.
        changes: for ``changed``, every differing attribute; empty otherwise.
        attributes: for ``added`` / ``removed``, the entry's attributes (for a short description).
        hint_zh / hint_en: a remark (e.g. "looks like a rename of …"), or None.
    """

    section: str
    id: str
    op: Op
    title: str
    title_en: str | None = None
    parent: str | None = None
    changes: tuple[AttributeChange, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    hint_zh: str | None = None
    hint_en: str | None = None


@dataclass(frozen=True)
class DefinitionDiff:
    """Every difference between two versions of one definition.

    Attributes:
        key: the definition key (of the new version).
        from_version / to_version: version numbers, when known (labels only).
        entries: the differences, in section order, then in the order of the new definition (removed
            entries after the kept ones, in the order of the old definition).
        state_renames: removed state id → added state id with the same title (a hint for migrations).
        titles: section → id → Chinese title, over both versions (new titles win), for rendering references.
    """

    key: str
    from_version: int | None
    to_version: int | None
    entries: tuple[DiffEntry, ...]
    state_renames: Mapping[str, str] = field(default_factory=dict)
    titles: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        """Whether the two versions mean the same (no entry)."""
        return not self.entries

    def section(self, name: str) -> list[DiffEntry]:
        """The entries of section ``name``."""
        return [entry for entry in self.entries if entry.section == name]

    def find(self, section: str, ident: str) -> DiffEntry | None:
        """The entry for ``ident`` in ``section``, or None."""
        return next((e for e in self.entries if e.section == section and e.id == ident), None)

    def summary(self) -> dict[str, dict[str, int]]:
        """Section → {added, removed, changed} counts, for sections with any entry."""
        out: dict[str, dict[str, int]] = {}
        for entry in self.entries:
            counts = out.setdefault(entry.section, {"added": 0, "removed": 0, "changed": 0})
            counts[entry.op] += 1
        return out

    def totals(self) -> dict[str, int]:
        """How many entries were added, removed and changed in all."""
        totals = {"added": 0, "removed": 0, "changed": 0}
        for entry in self.entries:
            totals[entry.op] += 1
        return totals

    def summary_line(self, lang: str = "zh") -> str:
        """One line saying how much changed, e.g. ``新增 2 项，删除 1 项，修改 3 项（状态 +1 −1，事项 +1）``."""
        return _summary_line(self, lang)

    def as_json(self, lang: str = "zh") -> dict[str, Any]:
        """The structured diff (JSON-ready), with ``text`` rendered in ``lang``."""
        sections = []
        for name, zh, en in SECTIONS:
            entries = self.section(name)
            if not entries:
                continue
            sections.append(
                {
                    "section": name,
                    "title": zh if lang != "en" else en,
                    "title_zh": zh,
                    "title_en": en,
                    "entries": [self._entry_json(entry, lang) for entry in entries],
                }
            )
        return {
            "key": self.key,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "identical": self.identical,
            "totals": self.totals(),
            "summary": self.summary(),
            "summary_line": self.summary_line(lang),
            "state_renames": dict(self.state_renames),
            "sections": sections,
            "text": render_text(self, lang),
        }

    def _entry_json(self, entry: DiffEntry, lang: str) -> dict[str, Any]:
        return {
            "id": entry.id,
            "op": entry.op,
            "title": entry.title,
            "title_en": entry.title_en,
            "parent": entry.parent,
            "brief": _brief(self, entry, lang),
            "hint": entry.hint_en if lang == "en" else entry.hint_zh,
            "changes": [
                {
                    "attribute": change.attribute,
                    "label": _label(change.attribute, lang),
                    "before": change.before,
                    "after": change.after,
                    "before_text": format_value(change.before, change.attribute, self.titles, lang),
                    "after_text": format_value(change.after, change.attribute, self.titles, lang),
                }
                for change in entry.changes
            ],
        }


# --- comparing --------------------------------------------------------------------------------------------


@dataclass
class _Entity:
    title: str
    title_en: str | None
    attributes: dict[str, Any]
    parent: str | None = None


_Table = dict[str, _Entity]


def diff_definitions(
    old: Definition, new: Definition, *, from_version: int | None = None, to_version: int | None = None
) -> DefinitionDiff:
    """Every difference between ``old`` and ``new`` (see the module docstring for how things are matched)."""
    before, after = _tables(old), _tables(new)
    entries: list[DiffEntry] = []
    gone_or_new: set[tuple[str, str]] = set()  # (section, id) of added and removed entries, for their children
    for section, _, _ in SECTIONS:
        old_table, new_table = before.get(section, {}), after.get(section, {})
        for ident, entity in new_table.items():
            if _orphan(section, entity, gone_or_new):
                gone_or_new.add((section, ident))  # and so are its own children
                continue
            previous = old_table.get(ident)
            if previous is None:
                entries.append(_entry(section, ident, "added", entity))
                gone_or_new.add((section, ident))
                continue
            changes = _changes(previous.attributes, entity.attributes)
            if changes:
                entries.append(_entry(section, ident, "changed", entity, changes))
        for ident, entity in old_table.items():
            if ident in new_table:
                continue
            if _orphan(section, entity, gone_or_new):
                gone_or_new.add((section, ident))
                continue
            entries.append(_entry(section, ident, "removed", entity))
            gone_or_new.add((section, ident))
    renames = _state_renames(entries)
    entries = [_with_rename_hint(entry, renames) for entry in entries]
    titles: dict[str, dict[str, str]] = {}
    for table in (before, after):  # the new version's titles win
        for section, entities in table.items():
            titles.setdefault(section, {}).update({ident: e.title for ident, e in entities.items()})
    return DefinitionDiff(
        key=new.key,
        from_version=from_version,
        to_version=to_version,
        entries=tuple(entries),
        state_renames=renames,
        titles=titles,
    )


_PARENT_SECTION = {
    "conditions": "gates",
    "machine_states": "task_machines",
    "machine_transitions": "task_machines",
    "items": "groups",
    "materials": "items",
    "ladder_levels": "ladders",
}


def _orphan(section: str, entity: _Entity, gone_or_new: set[tuple[str, str]]) -> bool:
    """Whether ``entity`` belongs to an entry that was itself added or removed (and so is not listed)."""
    if entity.parent is None:
        return False
    parent_section = _PARENT_SECTION.get(section, "task_machines" if section == "clocks" else "")
    return (parent_section, entity.parent) in gone_or_new


def _entry(section: str, ident: str, op: Op, entity: _Entity, changes: tuple[AttributeChange, ...] = ()) -> DiffEntry:
    return DiffEntry(
        section=section,
        id=ident,
        op=op,
        title=entity.title,
        title_en=entity.title_en,
        parent=entity.parent,
        changes=changes,
        attributes=dict(entity.attributes) if op != "changed" else {},
    )


def _changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[AttributeChange, ...]:
    names = list(after) + [name for name in before if name not in after]
    return tuple(
        AttributeChange(name, before.get(name), after.get(name))
        for name in names
        if before.get(name) != after.get(name)
    )


def _state_renames(entries: Iterable[DiffEntry]) -> dict[str, str]:
    removed = [e for e in entries if e.section == "states" and e.op == "removed"]
    added = [e for e in entries if e.section == "states" and e.op == "added"]
    renames: dict[str, str] = {}
    for old in removed:
        same = [new for new in added if new.title == old.title]
        # Only an unambiguous pair is a hint worth giving.
        if len(same) == 1 and sum(1 for other in removed if other.title == old.title) == 1:
            renames[old.id] = same[0].id
    return renames


def _with_rename_hint(entry: DiffEntry, renames: Mapping[str, str]) -> DiffEntry:
    if entry.section != "states":
        return entry
    if entry.op == "removed" and entry.id in renames:
        new = renames[entry.id]
        return _replace_hint(entry, f"疑为更名为 {new}", f"looks renamed to {new}")
    if entry.op == "added":
        old = next((o for o, n in renames.items() if n == entry.id), None)
        if old is not None:
            return _replace_hint(entry, f"疑为 {old} 更名而来", f"looks renamed from {old}")
    return entry


def _replace_hint(entry: DiffEntry, zh: str, en: str) -> DiffEntry:
    return DiffEntry(
        section=entry.section,
        id=entry.id,
        op=entry.op,
        title=entry.title,
        title_en=entry.title_en,
        parent=entry.parent,
        changes=entry.changes,
        attributes=entry.attributes,
        hint_zh=zh,
        hint_en=en,
    )


def _dump(model: Any, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude=set(exclude))
    return data


def _entity(model: Any, *, exclude: Iterable[str] = (), parent: str | None = None) -> _Entity:
    return _Entity(
        title=str(getattr(model, "title", "")),
        title_en=getattr(model, "title_en", None),
        attributes=_dump(model, exclude={"id", *exclude}),
        parent=parent,
    )


def _numbered(ids: Iterable[str]) -> list[str]:
    """``a, b, a`` → ``a, b, a#2``: stable ids for entries that share a name."""
    seen: dict[str, int] = {}
    out = []
    for ident in ids:
        seen[ident] = seen.get(ident, 0) + 1
        out.append(ident if seen[ident] == 1 else f"{ident}#{seen[ident]}")
    return out


def _tables(definition: Definition) -> dict[str, _Table]:
    """Every entity of ``definition`` by section and id, with the attributes compared."""
    tables: dict[str, _Table] = {section: {} for section, _, _ in SECTIONS}
    top = _dump(
        definition,
        exclude={
            "key", "phases", "steps", "roles", "departments", "fields", "states", "transitions", "gates",
            "task_machines", "task_groups", "clocks", "ladders", "obligations", "traffic_lights",
        },
    )  # fmt: skip
    tables["definition"][definition.key] = _Entity(definition.title, definition.title_en, top)
    for section, entries in (
        ("phases", definition.phases),
        ("roles", definition.roles),
        ("departments", definition.departments),
        ("fields", definition.fields),
        ("states", definition.states),
        ("obligations", definition.obligations),
    ):
        for model in entries:
            tables[section].setdefault(model.id, _entity(model))
    for step in definition.steps:
        tables["steps"].setdefault(str(step.number), _entity(step, exclude={"number"}))
    for ident, transition in zip(
        _numbered(t.trigger for t in definition.transitions), definition.transitions, strict=True
    ):
        tables["transitions"][ident] = _entity(transition, exclude={"trigger"})
    for gate in definition.gates:
        if gate.id in tables["gates"]:
            continue
        entity = _entity(gate, exclude={"all", "any"})
        entity.attributes["mode"] = gate.mode
        tables["gates"][gate.id] = entity
        canon = [_canonical(c) for c in gate.conditions]
        for ident, condition in zip(_numbered(f"{gate.id}: {c}" for c in canon), gate.conditions, strict=True):
            tables["conditions"][ident] = _Entity(
                title=describe_condition(condition, definition),
                title_en=describe_condition(condition, definition, lang="en"),
                attributes=_dump(condition),
                parent=gate.id,
            )
    for machine in definition.task_machines:
        if machine.id in tables["task_machines"]:
            continue
        tables["task_machines"][machine.id] = _entity(machine, exclude={"states", "transitions", "clocks"})
        for state in machine.states:
            tables["machine_states"].setdefault(f"{machine.id}.{state.id}", _entity(state, parent=machine.id))
        for ident, mt in zip(_numbered(t.trigger for t in machine.transitions), machine.transitions, strict=True):
            tables["machine_transitions"][f"{machine.id}.{ident}"] = _entity(mt, exclude={"trigger"}, parent=machine.id)
        for clock in machine.clocks:
            tables["clocks"].setdefault(f"{machine.id}.{clock.id}", _entity(clock, parent=machine.id))
    for clock in definition.clocks:
        tables["clocks"].setdefault(clock.id, _entity(clock))
    for group in definition.task_groups:
        if group.id in tables["groups"]:
            continue
        tables["groups"][group.id] = _entity(group, exclude={"items"})
        for item in group.items:
            item_id = f"{group.id}.{item.id}"
            if item_id in tables["items"]:
                continue
            tables["items"][item_id] = _entity(item, exclude={"materials"}, parent=group.id)
            for material in item.materials:
                tables["materials"].setdefault(f"{item_id}.{material.id}", _entity(material, parent=item_id))
    for ladder in definition.ladders:
        if ladder.id in tables["ladders"]:
            continue
        tables["ladders"][ladder.id] = _entity(ladder, exclude={"levels"})
        for level in ladder.levels:
            tables["ladder_levels"].setdefault(
                f"{ladder.id}.{level.level}", _entity(level, exclude={"level"}, parent=ladder.id)
            )
    if definition.traffic_lights is not None:
        tables["traffic_lights"]["traffic_lights"] = _Entity(
            "红黄绿灯规则", "traffic-light rules", _dump(definition.traffic_lights)
        )
    return tables


def _canonical(condition: Condition) -> str:
    """A condition's meaning as compact JSON (its title and English title left out: wording, not meaning)."""
    data = condition.model_dump(mode="json", exclude_none=True, exclude={"title", "title_en"})
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# --- describing -------------------------------------------------------------------------------------------

_OPS = {
    "eq": ("等于", "="),
    "ne": ("不等于", "≠"),
    "gt": ("大于", ">"),
    "ge": ("不小于", "≥"),
    "lt": ("小于", "<"),
    "le": ("不大于", "≤"),
}


def describe_condition(condition: Condition, definition: Definition, lang: str = "zh") -> str:
    """A condition in words, ids beside titles: ``事项组 permitting（报建审批）全部办结``."""
    en = lang == "en"

    def group(group_id: str | None) -> str:
        if group_id is None:
            return "the whole project" if en else "全项目"
        found = definition.lookup("task_groups").get(group_id)
        return f"{group_id}（{found.title}）" if found else group_id

    def field_name(field_id: str) -> str:
        found = definition.field(field_id)
        return f"{field_id}（{found.title}）" if found else field_id

    kind, arg = condition.kind, condition.argument
    if kind == "group_done":
        text = f"group {group(arg)} done" if en else f"事项组 {group(arg)} 全部办结"
    elif kind == "item_done":
        found = definition.lookup("task_groups").get(arg.group)
        item = next((i for i in found.items if i.id == arg.item), None) if found else None
        name = f"{arg.group}.{arg.item}" + (f"（{item.title}）" if item else "")
        text = f"item {name} done" if en else f"事项 {name} 已办结"
    elif kind == "no_open_deficiency":
        text = f"no uncured deficiency in {group(arg.group)}" if en else f"{group(arg.group)} 无未补正的容缺材料"
    elif kind == "commitments_verified":
        text = f"commitments verified in {group(arg.group)}" if en else f"{group(arg.group)} 承诺均已核查通过"
    elif kind == "field_present":
        text = f"{field_name(arg)} filled in" if en else f"已填写 {field_name(arg)}"
    elif kind == "field_compare":
        zh_op, sign = _OPS[arg.op]
        text = f"{field_name(arg.field)} {sign} {arg.value}" if en else f"{field_name(arg.field)} {zh_op} {arg.value}"
    elif kind == "no_overdue_deadlines":
        text = f"no overdue deadline in {group(arg.group)}" if en else f"{group(arg.group)} 无逾期时限"
    else:  # all / any
        parts = [describe_condition(c, definition, lang) for c in arg]
        joiner = (" and " if kind == "all" else " or ") if en else ("，且 " if kind == "all" else "，或 ")
        text = "(" + joiner.join(parts) + ")" if en else "（" + joiner.join(parts) + "）"
    title = (condition.title_en or condition.title) if en else condition.title
    return f"{text} [{title}]" if title else text


def _label(attribute: str, lang: str) -> str:
    zh, en = _LABELS.get(attribute, (attribute, attribute))
    return en if lang == "en" else zh


def format_value(
    value: Any, attribute: str = "", titles: Mapping[str, Mapping[str, str]] | None = None, lang: str = "zh"
) -> str:
    """A JSON attribute value as an administrator reads it: ``20 个工作日``, ``是``/``否``, lists joined with
    、, ids of states, groups, gates… with their titles beside them."""
    en = lang == "en"
    if value is None:
        return "(none)" if en else "（无）"
    if isinstance(value, bool):
        return ("yes" if value else "no") if en else ("是" if value else "否")
    if isinstance(value, list):
        if not value:
            return "(none)" if en else "（无）"
        return ("; " if en else "、").join(format_value(v, attribute, titles, lang) for v in value)
    if isinstance(value, dict):
        if set(value) == {"days", "unit"} and value["unit"] in _UNITS:
            zh, english = _UNITS[value["unit"]]
            return f"{value['days']} {english}" if en else f"{value['days']} {zh}"
        parts = [f"{k}={format_value(v, k, titles, lang)}" for k, v in value.items() if v not in (None, [], False)]
        return ("; " if en else "，").join(parts) or ("(none)" if en else "（无）")
    text = str(value)
    section = _REFERENCES.get(attribute)
    if section and titles:
        title = titles.get(section, {}).get(text)
        if title and title != text:
            return f"{text}（{title}）"
    return text


def _brief(diff: DefinitionDiff, entry: DiffEntry, lang: str) -> str | None:
    """A short description of an added or removed entry (its main attributes)."""
    if entry.op == "changed":
        return None
    attributes = entry.attributes
    names = {
        "states": ("phase", "steps", "opens", "hold", "terminal"),
        "transitions": ("from", "to", "gate", "roles"),
        "items": ("department", "time_limit", "deficiency_allowed", "commitment"),
        "materials": ("core",),
        "clocks": ("basis", "duration", "field", "runs_in", "paused_in", "on_expiry", "ladder"),
        "groups": ("kind", "parallel", "machine"),
        "machine_states": ("outcome",),
        "machine_transitions": ("from", "to", "roles", "effects"),
        "ladder_levels": ("after", "notify"),
        "obligations": ("recurrence", "applies_in", "ladder"),
        "fields": ("type", "unit", "required"),
        "gates": ("mode",),
    }.get(entry.section, ())
    parts = []
    if entry.section == "items" and entry.parent:
        group = diff.titles.get("groups", {}).get(entry.parent, entry.parent)
        parts.append(f"{'group' if lang == 'en' else '事项组'} {entry.parent}（{group}）")
    for name in names:
        value = attributes.get(name)
        if value in (None, [], False, {}):
            continue
        parts.append(f"{_label(name, lang)} {format_value(value, name, diff.titles, lang)}")
    if entry.section == "items" and attributes.get("required") is False:
        parts.append(f"{_label('required', lang)} {format_value(False, lang=lang)}")
    return ("; " if lang == "en" else "；").join(parts) or None


def _summary_line(diff: DefinitionDiff, lang: str) -> str:
    en = lang == "en"
    if diff.identical:
        return "the two versions mean the same" if en else "两个版本内容相同"
    totals = diff.totals()
    head = (
        f"{totals['added']} added, {totals['removed']} removed, {totals['changed']} changed"
        if en
        else f"新增 {totals['added']} 项，删除 {totals['removed']} 项，修改 {totals['changed']} 项"
    )
    per_section = []
    summary = diff.summary()
    for name, zh, english in SECTIONS:
        counts = summary.get(name)
        if not counts:
            continue
        marks = " ".join(
            f"{sign}{counts[op]}" for op, sign in (("added", "+"), ("removed", "−"), ("changed", "~")) if counts[op]
        )
        per_section.append(f"{english if en else zh} {marks}")
    return f"{head} ({', '.join(per_section)})" if en else f"{head}（{'，'.join(per_section)}）"


def render_text(diff: DefinitionDiff, lang: str = "zh") -> str:
    """The diff as text for an administrator: a summary line, then one block per section; each entry on a
    line (``+`` added, ``−`` removed, ``~`` changed) with its id and title, each changed attribute below it
    as ``label：before → after``. Chinese by default, English with ``lang="en"``."""
    en = lang == "en"
    versions = ""
    if diff.from_version is not None and diff.to_version is not None:
        versions = (
            f" version {diff.from_version} → {diff.to_version}"
            if en
            else f" 第 {diff.from_version} 版 → 第 {diff.to_version} 版"
        )
    lines = [f"{'Definition' if en else '流程定义'} {diff.key}{versions}：{diff.summary_line(lang)}"]
    if en:
        lines[0] = lines[0].replace("：", ": ")
    if diff.state_renames:
        pairs = ("、" if not en else ", ").join(f"{old} → {new}" for old, new in diff.state_renames.items())
        lines.append(f"(states that look renamed: {pairs})" if en else f"（疑为更名的状态：{pairs}）")
    verbs = {"added": ("+", "新增", "added"), "removed": ("−", "删除", "removed"), "changed": ("~", "修改", "changed")}
    for name, zh, english in SECTIONS:
        entries = diff.section(name)
        if not entries:
            continue
        lines.append("")
        lines.append(f"[{english}]" if en else f"【{zh}】")
        for entry in entries:
            sign, verb_zh, verb_en = verbs[entry.op]
            title = (entry.title_en or entry.title) if en else entry.title
            if entry.section == "conditions":
                # A condition's id is its canonical JSON: say whose condition it is and what it says instead.
                gate = diff.titles.get("gates", {}).get(entry.parent or "", "")
                owner = f"gate {entry.parent} ({gate})" if en else f"关卡 {entry.parent}（{gate}）的条件"
                lines.append(f"  {sign} {verb_en if en else verb_zh} {owner}{': ' if en else '：'}{title}")
                continue
            line = f"  {sign} {verb_en if en else verb_zh} {entry.id}「{title}」"
            brief = _brief(diff, entry, lang)
            remarks = [text for text in (brief, entry.hint_en if en else entry.hint_zh) if text]
            if remarks:
                line += f" ({'; '.join(remarks)})" if en else f"（{'；'.join(remarks)}）"
            lines.append(line)
            for change in entry.changes:
                before = format_value(change.before, change.attribute, diff.titles, lang)
                after = format_value(change.after, change.attribute, diff.titles, lang)
                lines.append(f"      {_label(change.attribute, lang)}{': ' if en else '：'}{before} → {after}")
    return "\n".join(lines) + "\n"
