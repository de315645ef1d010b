"""The definition diff (pure): what is added, removed and changed, and how an administrator reads it."""

from __future__ import annotations

import json

import pytest

from lifecycle.spec.diff import describe_condition, diff_definitions, format_value, render_text
from lifecycle.spec.loader import load_definition_text
from lifecycle.spec.models import Definition

from .edits import MAJOR_TEXT, MINI_TEXT, major_v2, mini_v2, replace


def load(text: str) -> Definition:
    return load_definition_text(text).definition


@pytest.fixture(scope="module")
def mini() -> Definition:
    return load(MINI_TEXT)


def test_the_same_definition_is_identical(mini: Definition) -> None:
    # Reformatting and comments are not changes.
    again = load("# 只改了注释和格式\n" + MINI_TEXT.replace("key: mini\ntitle: 测试流程", "title: 测试流程\nkey: mini"))
    diff = diff_definitions(mini, again, from_version=1, to_version=2)
    assert diff.identical and diff.entries == () and diff.summary() == {}
    assert render_text(diff) == "流程定义 mini 第 1 版 → 第 2 版：两个版本内容相同\n"


def test_an_added_item_a_renamed_state_and_shorter_clocks(mini: Definition) -> None:
    diff = diff_definitions(mini, load(mini_v2()), from_version=1, to_version=2)
    added = diff.find("items", "permits.fire_review")
    assert added is not None and (added.op, added.title, added.parent) == ("added", "消防设计审查", "permits")
    removed, new = diff.find("states", "building"), diff.find("states", "constructing")
    assert removed is not None and removed.op == "removed" and removed.hint_zh == "疑为更名为 constructing"
    assert new is not None and new.op == "added" and new.hint_zh == "疑为 building 更名而来"
    assert diff.state_renames == {"building": "constructing"}
    moved = diff.find("transitions", "start_building")
    assert moved is not None and [(c.attribute, c.before, c.after) for c in moved.changes] == [
        ("to", "building", "constructing")
    ]
    clock = diff.find("clocks", "permitting_limit")
    assert clock is not None and [(c.attribute, c.before, c.after) for c in clock.changes] == [
        ("duration", {"days": 30, "unit": "working_days"}, {"days": 20, "unit": "working_days"})
    ]
    assert diff.summary() == {
        "states": {"added": 1, "removed": 1, "changed": 0},
        "transitions": {"added": 0, "removed": 0, "changed": 2},
        "items": {"added": 1, "removed": 0, "changed": 1},
        "clocks": {"added": 0, "removed": 0, "changed": 1},
    }
    assert diff.totals() == {"added": 2, "removed": 1, "changed": 4}
    text = render_text(diff)
    assert text.splitlines()[0] == (
        "流程定义 mini 第 1 版 → 第 2 版：新增 2 项，删除 1 项，修改 4 项"
        "（状态 +1 −1，转换 ~2，事项 +1 ~1，时钟（时限） ~1）"
    )
    assert "（疑为更名的状态：building → constructing）" in text
    assert (
        "  + 新增 permits.fire_review「消防设计审查」（事项组 permits（并联审批）；"
        "办理部门 housing_bureau（县住房城乡建委）；" in text
    )
    assert "      目标状态：building（建设） → constructing（建设）" in text
    assert "      办理时限：20 个工作日 → 15 个工作日" in text
    assert "      时长：30 个工作日 → 20 个工作日" in text


def test_children_of_added_or_removed_entries_are_not_listed_again(mini: Definition) -> None:
    group = """  - id: fire_safety
    title: 消防审查
    machine: approval
    items:
      - id: fire_design
        title: 消防设计审查
        department: housing_bureau
        time_limit: {days: 15, unit: working_days}
        materials:
          - {id: drawings, title: 消防设计文件}
"""
    text = replace(MINI_TEXT, "task_groups:\n", "task_groups:\n" + group)
    text = replace(text, "opens: [permits]}", "opens: [permits, fire_safety]}")
    diff = diff_definitions(mini, load(text))
    assert [(e.section, e.id, e.op) for e in diff.entries] == [
        ("states", "permitting", "changed"),
        ("groups", "fire_safety", "added"),
    ]
    back = diff_definitions(load(text), mini)
    assert [(e.section, e.id, e.op) for e in back.entries] == [
        ("states", "permitting", "changed"),
        ("groups", "fire_safety", "removed"),
    ]


def test_gate_conditions_are_added_and_removed_by_what_they_say(mini: Definition) -> None:
    text = replace(
        MINI_TEXT,
        "      - field_compare: {field: investment, op: ge, value: 100}\n",
        "      - field_compare: {field: investment, op: ge, value: 200}\n      - field_present: approval_no\n",
    )
    diff = diff_definitions(mini, load(text))
    conditions = diff.section("conditions")
    assert sorted((e.op, e.title) for e in conditions) == [
        ("added", "investment（总投资） 不小于 200"),
        ("added", "已填写 approval_no（批复文号）"),
        ("removed", "investment（总投资） 不小于 100"),
    ]
    assert all(e.parent == "before_building" for e in conditions)
    assert "  + 新增 关卡 before_building（开工前）的条件：已填写 approval_no（批复文号）" in render_text(diff)
    # A condition's own wording is not its meaning: retitling it changes the condition, it does not replace it.
    retitled = replace(
        MINI_TEXT, "      - group_done: permits\n", "      - group_done: permits\n        title: 审批未办结\n"
    )
    [entry] = diff_definitions(mini, load(retitled)).entries
    assert (entry.section, entry.op) == ("conditions", "changed")
    assert [(c.attribute, c.before, c.after) for c in entry.changes] == [("title", None, "审批未办结")]


def test_conditions_in_words(mini: Definition) -> None:
    gate = mini.gate("before_building")
    assert [describe_condition(c, mini) for c in gate.conditions] == [
        "事项组 permits（并联审批） 全部办结",
        "全项目 无未补正的容缺材料",
        "investment（总投资） 不小于 100",
    ]
    assert describe_condition(gate.conditions[0], mini, lang="en") == "group permits（并联审批） done"


def test_transitions_sharing_a_trigger_are_told_apart(mini: Definition) -> None:
    text = replace(
        MINI_TEXT,
        '  - {trigger: hold, title: 暂缓, from: "*", to: on_hold, roles: [dispatcher]}\n',
        "  - {trigger: hold, title: 暂缓, from: draft, to: on_hold, roles: [dispatcher]}\n"
        "  - {trigger: hold, title: 暂缓, from: [permitting, building], to: on_hold, roles: [dispatcher, unit]}\n",
    )
    diff = diff_definitions(mini, load(text))
    assert [(e.id, e.op) for e in diff.section("transitions")] == [("hold", "changed"), ("hold#2", "added")]


def test_major_project_v2_reads_right() -> None:
    diff = diff_definitions(load(MAJOR_TEXT), load(major_v2()), from_version=1, to_version=2)
    assert set(diff.summary()) == {"states", "transitions", "items", "clocks", "obligations"}
    item = diff.find("items", "permitting.water_supply_connection")
    assert item is not None and item.op == "added" and item.title == "供水接入审批"
    assert diff.state_renames == {"reserve": "in_reserve"}
    obligation = diff.find("obligations", "quarterly_reserve_update")
    assert obligation is not None and [c.attribute for c in obligation.changes] == ["applies_in"]
    english = render_text(diff, "en")
    assert english.startswith("Definition major-project version 1 → 2: 2 added, 1 removed, 6 changed")
    assert "[items]" in english and "  + added permitting.water_supply_connection「Water supply connection」" in english
    document = diff.as_json()
    json.dumps(document, ensure_ascii=False)  # JSON-ready
    assert document["totals"] == {"added": 2, "removed": 1, "changed": 6}
    assert [s["section"] for s in document["sections"]] == ["states", "transitions", "items", "clocks", "obligations"]
    assert (
        diff_definitions(load(MAJOR_TEXT), load(major_v2())).as_json()
        == diff_definitions(load(MAJOR_TEXT), load(major_v2())).as_json()
    )  # the same input, the same diff


def test_ladders_and_steps() -> None:
    old = load(MAJOR_TEXT)
    text = replace(MAJOR_TEXT, "  - {number: 2, title: 建立项目储备库,", "  - {number: 2, title: 建立重大项目储备库,")
    new = load(text)
    diff = diff_definitions(old, new)
    step = diff.find("steps", "2")
    assert step is not None and [(c.attribute, c.before, c.after) for c in step.changes] == [
        ("title", "建立项目储备库", "建立重大项目储备库")
    ]
    level = old.ladder("four_level_dispatch").levels[0]
    shorter = level.model_copy(update={"title": "一线调度"})
    ladder = old.ladder("four_level_dispatch").model_copy(
        update={"levels": [shorter, *old.ladder("four_level_dispatch").levels[1:]]}
    )
    changed = old.model_copy(update={"ladders": [ladder, *old.ladders[1:]]})
    ladder_diff = diff_definitions(old, changed)
    [entry] = ladder_diff.entries
    assert (entry.section, entry.id, entry.op) == ("ladder_levels", "four_level_dispatch.1", "changed")


def test_values_in_words() -> None:
    assert format_value({"days": 7, "unit": "calendar_days"}) == "7 个日历日"
    assert format_value({"days": 7, "unit": "calendar_days"}, lang="en") == "7 calendar days"
    assert format_value(True) == "是" and format_value(False, lang="en") == "no"
    assert format_value(None) == "（无）" and format_value([]) == "（无）"
    assert format_value(["a", "b"]) == "a、b"
    titles = {"states": {"draft": "谋划"}}
    assert format_value(["draft", "gone"], "runs_in", titles) == "draft（谋划）、gone"
    assert format_value("draft", "title", titles) == "draft"  # only references get titles
