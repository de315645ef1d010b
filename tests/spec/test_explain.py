"""The readable explanation of a definition (lifecycle.spec.explain)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lifecycle.spec.explain import (
    Heading,
    Line,
    Table,
    describe_condition,
    describe_due,
    describe_duration,
    display_width,
    explain_blocks,
    explain_definition,
    render_plain,
)
from lifecycle.spec.loader import load_definition_file, load_definition_text
from lifecycle.spec.models import Duration, Obligation

DATA = Path(__file__).resolve().parents[1] / "data"
MINI = DATA / "engine-mini.yaml"
MINIMAL = DATA / "valid" / "minimal.yaml"
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"

SEED_STEPS = (
    "项目策划生成",
    "建立项目储备库",
    "制定工作计划",
    "严格审核论证",
    "提高审批效率",
    "开展专项审批",
    "强化要素保障",
    "强化项目调度",
    "强化竣工验收",
    "强化运营维护",
    "强化绩效评估",
)
"""The titles of the 11 steps in the work plan (巫山县重大项目全生命周期管理工作方案)."""


def cells(text: str) -> list[list[str]]:
    """The lines of ``text`` split at runs of two or more spaces (table cells), without indentation."""
    return [re.split(r" {2,}", line.strip()) for line in text.splitlines() if line.strip()]


def row_of(text: str, first_cell: str) -> list[str]:
    rows = [row for row in cells(text) if row[0] == first_cell]
    assert len(rows) == 1, f"{first_cell!r} heads {len(rows)} rows"
    return rows[0]


@pytest.fixture(scope="module")
def mini_text() -> str:
    return explain_definition(load_definition_file(MINI).definition)


@pytest.fixture(scope="module")
def minimal_text() -> str:
    return explain_definition(load_definition_file(MINIMAL).definition)


def test_items_list_department_time_limit_and_the_rest(mini_text: str) -> None:
    assert ["事项", "办理部门", "办理时限", "必办", "承诺制", "容缺补正期", "前置事项"] in cells(mini_text)
    assert row_of(mini_text, "建设工程规划许可证") == [
        "建设工程规划许可证",
        "县规划自然资源局",
        "20个工作日",
        "是",
        "否",
        "5个工作日",
        "—",
    ]
    assert row_of(mini_text, "施工许可证") == ["施工许可证", "县住房城乡建委", "7个自然日", "是", "是", "—", "—"]


def test_materials_are_marked_core_and_deficiency_allowed(mini_text: str) -> None:
    assert (
        "材料：申请表（核心）；总平面图（核心）；合同复印件（非核心，可容缺）；现场照片（非核心，可容缺）"
        in mini_text.splitlines()[mini_text.splitlines().index("  建设工程规划许可证：") + 1]
    )


def test_group_facts_and_prerequisites(minimal_text: str) -> None:
    assert (
        "审批类；并联办理（互不为前置）；办理流程：审批事项；补正告知流程：补正通知；进入“报建审批”时开启"
        in minimal_text
    )
    assert "要素保障类；按前置顺序办理；办理流程：审批事项；进入“报建审批”时开启" in minimal_text
    assert row_of(minimal_text, "用地批准")[-1] == "勘测定界"
    assert "依据：行政许可法第四十二条" in minimal_text


def test_gate_conditions_in_chinese(mini_text: str, minimal_text: str) -> None:
    lines = [line.strip() for line in mini_text.splitlines()]
    start = lines.index("“开工前”（before_building）")
    assert lines[start + 1 : start + 6] == [
        "用于：开工",
        "须全部满足以下条件：",
        "1. “并联审批”全部办结",
        "2. 无未补正的补正告知",
        "3. “总投资”不小于 100 万元",
    ]
    for expected in (
        "2. “用地批准”已办结",
        "4. “并联审批”中的承诺均已核查通过",
        "5. 已填写“可研批复文号”",
        "6. “总投资”不小于 5000 万元",
        "7. 无逾期未办的时限",
        "8. 至少满足其一（未满足时提示：已定开工日期或用地已落实）：",
        "· “计划开工日期”不大于 2030-12-31",
        "· “用地手续”全部办结",
    ):
        assert expected in [line.strip() for line in minimal_text.splitlines()]


def test_transitions_say_who_and_through_which_gate(mini_text: str) -> None:
    lines = [line.strip() for line in mini_text.splitlines()]
    start = lines.index("开工（start_building）：审批 → 建设")
    assert lines[start + 1 : start + 3] == ["可执行：项目单位、调度", "关卡：“开工前”"]
    assert "暂缓（hold）：任一进行中状态 → 暂缓" in lines
    assert "恢复（resume）：暂缓 → 暂缓前所在状态" in lines
    start = lines.index("启动审批（start_permitting）：谋划 → 审批")
    assert lines[start + 2] == "须填：批复文号"


def test_phases_steps_and_states(mini_text: str) -> None:
    lines = [line.strip() for line in mini_text.splitlines()]
    assert lines[lines.index("前期（early）") + 1 : lines.index("前期（early）") + 3] == [
        "步骤 1  谋划：谋划",
        "步骤 2  审批：审批",
    ]
    assert row_of(mini_text, "暂缓") == ["暂缓", "on_hold", "—", "—", "—", "暂缓（可返回原状态）"]
    assert row_of(mini_text, "审批")[4] == "并联审批"


def test_clocks_ladders_obligations_and_lights(minimal_text: str, mini_text: str) -> None:
    assert row_of(mini_text, "审批总时限") == ["审批总时限", "30个工作日", "审批", "暂缓", "—", "—"]
    assert row_of(minimal_text, "计划开工") == [
        "计划开工",
        "至“计划开工日期”所填日期",
        "报建审批",
        "—",
        "逾期未开工",
        "四级调度",
    ]
    assert row_of(minimal_text, "补正期限") == ["补正期限", "至告知书写明的补正日期", "待补正", "—", "逾期", "—"]
    assert row_of(minimal_text, "第1级") == [
        "第1级",
        "项目牵头部门一线调度",
        "到期即启动",
        "牵头责任单位、承办部门",
        "提示函",
    ]
    assert row_of(minimal_text, "第2级") == ["第2级", "县政府分管领导跟踪调度", "逾期5个工作日后", "牵头县领导", "—"]
    assert row_of(minimal_text, "第3级")[2:] == ["逾期10个自然日后", "县工作专班、县重点项目事务中心", "督办函"]
    assert row_of(minimal_text, "每周一报送形象进度") == [
        "每周一报送形象进度",
        "每周一 12:00前",
        "施工建设",
        "项目单位",
        "四级调度",
    ]
    assert "每周一报送形象进度填报：形象进度（长文本）、本周完成投资（数字，万元）" in minimal_text
    assert row_of(minimal_text, "黄灯") == ["黄灯", "滞后序时进度（百分点）", "≥ 10", "滞后序时进度 10 个百分点"]
    assert row_of(minimal_text, "红灯")[2] == "≥ 30"


def test_machines_show_outcomes_effects_and_parent_triggers(minimal_text: str) -> None:
    assert "办结状态：已批准" in minimal_text
    assert "未通过状态：不予批准" in minimal_text
    assert row_of(minimal_text, "容缺受理")[-1] == "发出一次性补正告知（容缺受理）"
    assert row_of(minimal_text, "补正材料")[-1] == "补正完成；随后所属事项“恢复办理”"


def test_all_eleven_steps_of_major_project() -> None:
    definition = load_definition_file(WORKFLOWS / "major-project.yaml").definition
    text = explain_definition(definition)
    for number, title in enumerate(SEED_STEPS, start=1):
        assert f"步骤 {number}  {title}：" in text, title
    assert "“可研批复前”（" in text and "“开工前”（" in text


def test_english_uses_english_titles_and_falls_back_to_chinese() -> None:
    text = explain_definition(load_definition_file(MINIMAL).definition, "en")
    assert text.splitlines()[0] == "Minimal project procedure (minimal-project)"
    assert "1. Phases, steps and states" in text.splitlines()
    assert "Step 1  项目策划: 谋划" in [line.strip() for line in text.splitlines()]
    assert row_of(text, "建设工程规划许可证")[2] == "20 working days"


def test_explanation_is_deterministic() -> None:
    definition = load_definition_file(MINIMAL).definition
    assert explain_definition(definition) == explain_definition(load_definition_file(MINIMAL).definition)


def test_describe_duration() -> None:
    assert describe_duration(Duration(days=20, unit="working_days")) == "20个工作日"
    assert describe_duration(Duration(days=7, unit="calendar_days")) == "7个自然日"
    assert describe_duration(Duration(days=1, unit="working_days"), "en") == "1 working day"
    assert describe_duration(Duration(days=7, unit="calendar_days"), "en") == "7 calendar days"


@pytest.mark.parametrize(
    ("recurrence", "due", "zh", "en"),
    [
        ("weekly", {"weekday": 1}, "每周一 18:00前", "every Monday, by 18:00"),
        ("weekly", {"weekday": 7, "time": "09:30"}, "每周日 09:30前", "every Sunday, by 09:30"),
        ("monthly", {"day": 5}, "每月5日 18:00前", "day 5 of every month, by 18:00"),
        ("monthly", {"last_day": True}, "每月最后一日 18:00前", "the last day of every month, by 18:00"),
        (
            "quarterly",
            {"month_of_quarter": 1, "day": 10},
            "每季度首月10日 18:00前",
            "day 10 of month 1 of every quarter, by 18:00",
        ),
        ("quarterly", {"month_of_quarter": 3, "last_day": True}, "每季度末月最后一日 18:00前", None),
        (
            "yearly",
            {"month": 10, "last_day": True},
            "每年10月最后一日 18:00前",
            "the last day of month 10 every year, by 18:00",
        ),
    ],
)
def test_describe_due(recurrence: str, due: dict[str, object], zh: str, en: str | None) -> None:
    obligation = Obligation.model_validate(
        {"id": "report", "title": "报送", "recurrence": recurrence, "due": due, "applies_in": ["x"], "roles": ["unit"]}
    )
    assert describe_due(obligation) == zh
    if en is not None:
        assert describe_due(obligation, "en") == en


def test_describe_condition_on_one_line() -> None:
    definition = load_definition_file(MINIMAL).definition
    conditions = definition.gate("before_start").conditions
    assert describe_condition(conditions[0], definition) == "“并联审批”全部办结"
    assert describe_condition(conditions[5], definition, "en") == "'总投资' at least 5000 万元"
    assert describe_condition(conditions[7], definition) == (
        "至少满足其一：“计划开工日期”不大于 2030-12-31；“用地手续”全部办结（未满足时提示：已定开工日期或用地已落实）"
    )


def test_plain_tables_align_by_display_width() -> None:
    text = render_plain(
        [
            Heading("标题", 0),
            Table(("事项", "时限", "备注"), (("施工许可证", "7个自然日", "x"), ("a", "20 working days", "")), 1),
            Line("结束", 1),
        ]
    )
    lines = text.splitlines()
    assert lines[:2] == ["标题", "===="]
    table = lines[2:6]
    # The second column starts at the same display column on every line of the table.
    header, rule, first, second = table
    starts = [
        display_width(header[: header.index("时限")]),
        display_width(rule[: rule.index("  -", 3) + 2]),
        display_width(first[: first.index("7个")]),
        display_width(second[: second.index("20 ")]),
    ]
    assert len(set(starts)) == 1
    assert all(line == line.rstrip() for line in lines)
    assert lines[-1] == "  结束"
    assert display_width("汉字ab，") == 8


def test_sections_without_content_are_left_out() -> None:
    text = (
        MINI.read_text(encoding="utf-8")
        .split("gates:\n", 1)[0]  # no gates, clocks, machines, groups
        .replace(", gate: before_building}", "}")
        .replace(", gate: before_finish}", "}")
        .replace(", opens: [permits]", "")
    )
    definition = load_definition_text(text, "bare.yaml").definition
    headings = [block.text for block in explain_blocks(definition) if isinstance(block, Heading) and block.level == 1]
    assert headings == ["一、阶段、步骤与状态", "二、项目状态", "三、状态流转", "四、角色、部门与字段"]


@pytest.mark.parametrize(
    "path",
    sorted(path for path in WORKFLOWS.glob("*.yaml") if path.stem != "schema"),
    ids=lambda path: path.stem,
)
def test_bundled_definitions_explain_every_item_gate_and_state(path: Path) -> None:
    definition = load_definition_file(path).definition
    text = explain_definition(definition)
    lines = [line.strip() for line in text.splitlines()]
    rows = cells(text)
    for state in definition.states:
        assert [state.title, state.id] in [row[:2] for row in rows], state.id
    for gate in definition.gates:
        assert f"“{gate.title}”（{gate.id}）" in lines
    for group in definition.task_groups:
        for item in group.items:
            department = definition.lookup("departments")[item.department].title
            expected = [item.title, department, describe_duration(item.time_limit)]
            assert expected in [row[:3] for row in rows], item.id
    assert explain_definition(definition, "en") != text
