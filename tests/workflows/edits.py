"""Helpers that build new versions of a definition by editing its YAML text, as an administrator would."""

from __future__ import annotations

import re
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
MINI_TEXT = (DATA / "engine-mini.yaml").read_text(encoding="utf-8")
MAJOR_TEXT = (WORKFLOWS / "major-project.yaml").read_text(encoding="utf-8")


def replace(text: str, old: str, new: str, count: int = 1) -> str:
    """``text`` with ``old`` replaced by ``new`` exactly ``count`` times (fails loudly if it is not there)."""
    assert text.count(old) == count, f"{old!r} occurs {text.count(old)} times, expected {count}"
    return text.replace(old, new)


FIRE_REVIEW = """      - id: fire_review
        title: 消防设计审查
        department: housing_bureau
        time_limit: {days: 10, unit: working_days}
"""


def mini_v2(
    *,
    add_item: bool = True,
    rename_building: bool = True,
    shorter_clocks: bool = True,
) -> str:
    """The mini definition with, by default: an item added to the permits group (消防设计审查), the state
    ``building`` renamed ``constructing``, the permitting clock cut from 30 to 20 working days and the
    planning permit's time limit from 20 to 15 working days."""
    text = MINI_TEXT
    if add_item:
        text = text + FIRE_REVIEW
    if rename_building:
        text = replace(text, "{id: building, title: 建设,", "{id: constructing, title: 建设,")
        text = replace(text, "to: building,", "to: constructing,")
        text = replace(text, "from: building,", "from: constructing,")
    if shorter_clocks:
        text = replace(text, "duration: {days: 30, unit: working_days}, runs_in: [permitting]",
                       "duration: {days: 20, unit: working_days}, runs_in: [permitting]")  # fmt: skip
        text = replace(text, "time_limit: {days: 20, unit: working_days}", "time_limit: {days: 15, unit: working_days}")
    return text


WATER_SUPPLY = """      - id: water_supply_connection
        title: 供水接入审批
        title_en: Water supply connection
        department: housing_construction
        time_limit: {days: 10, unit: working_days}
        materials:
          - {id: water_application, title: 供水接入申请表}
"""


def major_v2(text: str = MAJOR_TEXT) -> str:
    """major-project.yaml edited as a procedure change would: an item (供水接入审批) added to the permitting
    group, the state ``reserve`` renamed ``in_reserve``, and the permitting total clock cut from 90 to 60
    working days."""
    text = replace(text, "  - id: reserve\n", "  - id: in_reserve\n")
    text, renamed = re.subn(r"(?m)^(    (?:from|to): )reserve$", r"\1in_reserve", text)
    assert renamed == 3, renamed
    text = replace(text, "applies_in: [planning, reserve_review, reserve]",
                   "applies_in: [planning, reserve_review, in_reserve]", count=2)  # fmt: skip
    anchor = "      # 建筑法 第八条: 自收到申请之日起七日内颁发"
    text = replace(text, anchor, WATER_SUPPLY + anchor)
    text = replace(text, "    duration: {days: 90, unit: working_days}\n    runs_in: [permitting]",
                   "    duration: {days: 60, unit: working_days}\n    runs_in: [permitting]")  # fmt: skip
    return text
